"""Docker seccomp JSON -> an isorun ``Seccomp`` policy, rendered as profile TOML.

Docker's semantics are kept, and everything an engine would have ignored or read
differently becomes a warning with its location. Siblings:
:mod:`isorun.compile.render.docker` (the exports and the shared action/operator/architecture
tables), :mod:`isorun.compile.render.docker_diff` (what a Docker profile decides; diff of
two policies), :mod:`isorun.compile.render.docker_toml` (a policy as profile TOML) and
:mod:`isorun.compile.engines` (what container engines do besides the profile).
"""

from __future__ import annotations

import errno as errno_module
import json
from typing import Any

from isorun.compile.engines import LIBSECCOMP_254_UNKNOWN, runc_stub
from isorun.compile.render.docker import (
    ACTIONS_IN,
)
from isorun.compile.render.docker_fields import (
    DockerWarning,
    Locator,
    import_arches,
    import_args,
    import_when,
)
from isorun.compile.render.docker_toml import render_toml
from isorun.errors import Diagnostic, Loc, ProfileError
from isorun.kernel import syscalls
from isorun.profile.schema import Action, Seccomp, SeccompRule

TOP_KEYS = {
    "defaultAction",
    "defaultErrnoRet",
    "defaultErrno",
    "architectures",
    "archMap",
    "syscalls",
    "flags",
    "listenerPath",
    "listenerMetadata",
}
RULE_KEYS = {
    "name",
    "names",
    "action",
    "errnoRet",
    "errno",
    "args",
    "comment",
    "includes",
    "excludes",
}


def _parse_json(text: str, filename: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(
            Diagnostic(
                Loc(filename, err.lineno, err.colno),
                f"malformed Docker seccomp JSON: {err.msg}",
                "engines refuse this file too (exit 125); fix the JSON syntax",
            )
        ) from err


def docker_to_policy(text: str, filename: str) -> tuple[Seccomp, list[DockerWarning]]:
    """Docker JSON -> an equivalent ``Seccomp`` (Docker's semantics kept, hardening off)."""
    doc = _parse_json(text, filename)
    where = Locator(text, filename)
    top = Loc(filename, 1, 1)
    warnings: list[DockerWarning] = []
    errors: list[Diagnostic] = []
    _check_top(doc, text, where, top, warnings)
    if not doc:
        warnings.append(
            DockerWarning(
                top,
                "an empty profile means no filter at all for engines;"
                " imported as seccomp.enabled = false",
            )
        )
        return Seccomp(enabled=False, loc=top), warnings
    default = _import_default(doc, text, where, top, errors, warnings)
    arches = import_arches(doc, top, errors, warnings)
    allow, rules = _import_rules(doc, default, where, top, errors, warnings)
    if errors:
        raise ProfileError(errors)
    unknown = _import_runc_stub(doc, default, top, rules, warnings)
    policy = Seccomp(
        default_action=default,
        unknown_action=unknown,
        allow=tuple(allow),
        rules=tuple(rules),
        architectures=arches,
        hardening=False,
        loc=top,
    )
    return policy, warnings


def _check_top(
    doc: Any, text: str, where: Locator, top: Loc, warnings: list[DockerWarning]
) -> None:
    """Refuse a document that is not an object; warn about top-level keys engines ignore."""
    if not isinstance(doc, dict):
        raise ProfileError(
            Diagnostic(
                top,
                "a Docker seccomp profile is a JSON object",
                'write { "defaultAction": "SCMP_ACT_ERRNO", ... }',
            )
        )
    for key in sorted(set(doc) - TOP_KEYS):
        warnings.append(
            DockerWarning(
                where.at(max(0, text.find(f'"{key}"'))), f"unknown key {key!r}: engines ignore it"
            )
        )


def _errno_ret_of(
    number: Any,
    name: Any,
    loc: Loc,
    what: str,
    errors: list[Diagnostic],
    warnings: list[DockerWarning],
) -> Any:
    """podman (containers/common) also reads an errno *name* (``errno``,
    ``defaultErrno``) when the number is missing; runc and Docker read the number."""
    if name is None:
        return number
    value = getattr(errno_module, str(name), None) if str(name).startswith("E") else None
    if not isinstance(value, int):
        errors.append(Diagnostic(loc, f"{what}: {name!r} is not an errno name", "e.g. EPERM"))
        return number
    if number is None:
        warnings.append(
            DockerWarning(
                loc,
                f"{what}: errno {name!r} without a number: podman answers {name}"
                " (imported so), Docker and runc answer EPERM",
            )
        )
        return value
    if number != value:
        warnings.append(
            DockerWarning(
                loc, f"{what}: errno {name!r} and number {number} disagree; the number wins"
            )
        )
    return number


def _action(raw: Any, errno_ret: Any, loc: Loc, what: str, errors: list[Diagnostic]) -> Action:
    """A Docker action (and its errnoRet) as an isorun ``Action``; an unusable one is an
    error, answered with EPERM so the import can go on and report every error."""
    if raw not in ACTIONS_IN:
        errors.append(
            Diagnostic(
                loc,
                f"{what}: unsupported action {raw!r}",
                "use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS,"
                " SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP or SCMP_ACT_LOG",
            )
        )
        return Action("errno", 1)
    kind = ACTIONS_IN[raw]
    if kind != "errno":
        return Action(kind)
    if errno_ret is None:
        return Action("errno", 1)  # runc's default errno is EPERM
    if not isinstance(errno_ret, int) or not 0 <= errno_ret <= 4095:
        errors.append(
            Diagnostic(
                loc,
                f"{what}: errnoRet {errno_ret!r} is not an errno",
                "use a number from 1 to 4095",
            )
        )
        return Action("errno", 1)
    return Action("errno", errno_ret)


def _import_default(
    doc: dict[str, Any],
    text: str,
    where: Locator,
    top: Loc,
    errors: list[Diagnostic],
    warnings: list[DockerWarning],
) -> Action:
    """The default action, with warnings for the top-level settings isorun does not import."""
    default_errno = _errno_ret_of(
        doc.get("defaultErrnoRet"), doc.get("defaultErrno"), top, "defaultAction", errors, warnings
    )
    default = _action(doc.get("defaultAction"), default_errno, top, "defaultAction", errors)
    if default.kind in ("kill_thread", "kill_process"):
        warnings.append(
            DockerWarning(
                top,
                f"defaultAction {doc.get('defaultAction')}: engines hang in `runc create` (a"
                " thread of runc's own init is killed); isorun applies it only to the command",
            )
        )
    if doc.get("flags"):
        warnings.append(
            DockerWarning(
                where.at(max(0, text.find('"flags"'))),
                f"flags {doc['flags']!r} are not imported: isorun loads its filter with"
                " flags of its own (no SECCOMP_FILTER_FLAG_LOG or SPEC_ALLOW)",
            )
        )
    for key in ("listenerPath", "listenerMetadata"):
        if doc.get(key):
            warnings.append(
                DockerWarning(top, f"{key} is not imported: isorun has no seccomp agent")
            )
    return default


def _import_rules(
    doc: dict[str, Any],
    default: Action,
    where: Locator,
    top: Loc,
    errors: list[Diagnostic],
    warnings: list[DockerWarning],
) -> tuple[list[str], list[SeccompRule]]:
    """Docker's ``syscalls`` array -> (plain allow list, rules), in the array's order."""
    allow: list[str] = []
    rules: list[SeccompRule] = []
    raw_rules = doc.get("syscalls") or []
    if not isinstance(raw_rules, list):
        errors.append(Diagnostic(top, "syscalls must be an array", 'write "syscalls": [...]'))
        raw_rules = []
    known = syscalls.all_names()
    for n, raw in enumerate(raw_rules):
        loc = where.rule(n)
        if not isinstance(raw, dict):
            errors.append(Diagnostic(loc, f"syscalls[{n}] must be an object", ""))
            continue
        for key in sorted(set(raw) - RULE_KEYS):
            warnings.append(
                DockerWarning(loc, f"syscalls[{n}]: unknown key {key!r}: engines ignore it")
            )
        good = _known_names(raw, n, loc, where, known, warnings)
        if not good:
            continue
        ret = _errno_ret_of(
            raw.get("errnoRet"), raw.get("errno"), loc, f"syscalls[{n}]", errors, warnings
        )
        act = _action(raw.get("action"), ret, loc, f"syscalls[{n}]", errors)
        stale = sorted(set(good) & LIBSECCOMP_254_UNKNOWN)
        if stale and act != default:
            warnings.append(
                DockerWarning(
                    loc,
                    f"syscalls[{n}]: libseccomp 2.5.4 (Debian 12's runc and podman) does not"
                    f" know {', '.join(stale)}: engines built with it skip the name, so the"
                    " container answers ENOSYS or the default instead",
                )
            )
        when = import_when(raw, n, loc, where, warnings, errors)
        alternatives = import_args(raw.get("args") or [], n, loc, warnings, errors)
        comment = str(raw.get("comment") or "")
        if (
            act.kind == "allow"
            and when is None
            and alternatives == [()]
            and not comment
            and not rules
        ):
            allow += good
            continue
        for args in alternatives:
            rules.append(SeccompRule(tuple(good), act, args, comment, when, loc))
    return allow, rules


def _known_names(
    raw: dict[str, Any],
    n: int,
    loc: Loc,
    where: Locator,
    known: frozenset[str],
    warnings: list[DockerWarning],
) -> list[str]:
    """The rule's names this syscall table knows; engines skip the others, and so does
    the import (with a warning for each)."""
    names = list(raw.get("names") or []) + ([raw["name"]] if raw.get("name") else [])
    good = []
    for name in names:
        if name in known and not name.startswith("@"):
            good.append(name)
        else:
            hint = syscalls.suggest(str(name))
            warnings.append(
                DockerWarning(
                    where.token(f'"{name}"', n),
                    f"syscalls[{n}]: unknown syscall {name!r}: engines skip it"
                    + (f" ({hint})" if hint else ""),
                )
            )
    if not good and names:
        warnings.append(
            DockerWarning(
                loc,
                f"syscalls[{n}]: no known syscall left; rule skipped (engines skip it too)",
            )
        )
    return good


def _import_runc_stub(
    doc: dict[str, Any],
    default: Action,
    top: Loc,
    rules: list[SeccompRule],
    warnings: list[DockerWarning],
) -> Action:
    """runc answers ENOSYS above the highest listed syscall: add that as a rule (appended to
    ``rules``) and return the action for numbers with no name."""
    stub = runc_stub(doc)
    enosys = Action("errno", 38)
    if stub is None or default == enosys:
        return default
    table = syscalls.table("x86_64")
    above = tuple(sorted(n for n, nr in table.items() if nr > stub))
    if above:
        top_name = next(n for n, nr in table.items() if nr == stub)
        rules.append(
            SeccompRule(
                above,
                enosys,
                comment=f"runc's ENOSYS stub: numbers above {top_name} ({stub}),"
                " the highest syscall the profile lists",
                loc=top,
            )
        )
        warnings.append(
            DockerWarning(
                top,
                f"runc answers ENOSYS for every number above {stub} ({top_name}), the"
                f" highest syscall listed: imported as an errno:38 rule for the"
                f" {len(above)} names above it",
            )
        )
    # numbers with no name answer the default below the stub and ENOSYS above it; a
    # profile whose stub is below the table's first gap gets ENOSYS for all of them
    numbers = set(table.values())
    first_gap = min(n for n in range(max(numbers) + 2) if n not in numbers)
    return enosys if stub < first_gap else default


def import_docker(text: str, filename: str) -> tuple[str, list[DockerWarning]]:
    """Docker JSON -> equivalent profile TOML text, and warnings with locations."""
    policy, warnings = docker_to_policy(text, filename)
    header = (
        f"Imported from {filename} by `isorun import docker`.\n"
        "Docker's semantics are kept: one default for known and unknown syscalls, the\n"
        "includes/excludes as `when`, conditions runc ORs split into separate rules."
    )
    return render_toml(policy, header=header), warnings
