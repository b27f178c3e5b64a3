"""Docker seccomp JSON -> an isorun ``Seccomp`` policy, rendered as profile TOML.

Docker's semantics are kept, and everything an engine would have ignored or read
differently becomes a warning with its location. Siblings: :mod:`isorun.compile.docker`
(the exports and the shared action/operator/architecture tables) and
:mod:`isorun.compile.docker_diff` (what a Docker profile decides; diff of two policies).
"""

from __future__ import annotations

import errno as errno_module
import json
import re
from dataclasses import dataclass
from typing import Any

from isorun.compile import syscalls
from isorun.compile.docker import (
    ACTIONS_IN,
    ARCH_IN,
    ARCH_OUT,
    DOCKER_ARCH_NAMES,
    OPS_IN,
    engine_facts,
)
from isorun.compile.seccomp import parse_kernel
from isorun.errors import Diagnostic, Loc, ProfileError
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule, When

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
ARG_KEYS = {"index", "value", "valueTwo", "op"}
FILTER_KEYS = {"caps", "arches", "minKernel"}
#: names runc and crun drop when built with libseccomp 2.5.4 (data/engines.toml)
LIBSECCOMP_254_UNKNOWN = frozenset(engine_facts()["libseccomp"]["2.5.4"]["unknown"])


@dataclass(frozen=True, slots=True)
class DockerWarning:
    """Something an engine would have ignored or read differently, with where it is."""

    loc: Loc
    message: str

    def render(self) -> str:
        return f"{self.loc}: warning: {self.message}"


class _Locator:
    """Approximate JSON positions (json gives none): the n-th occurrence of a token."""

    def __init__(self, text: str, file: str) -> None:
        self.text, self.file = text, file
        self.rule_starts = [m.start() for m in re.finditer(r'"names?"\s*:', text)]

    def at(self, offset: int) -> Loc:
        line = self.text.count("\n", 0, offset) + 1
        col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return Loc(self.file, line, col)

    def rule(self, n: int) -> Loc:
        if n < len(self.rule_starts):
            return self.at(self.rule_starts[n])
        return Loc(self.file)

    def token(self, needle: str, n: int) -> Loc:
        start = self.rule_starts[n] if n < len(self.rule_starts) else 0
        found = self.text.find(needle, start)
        return self.at(found) if found >= 0 else self.rule(n)


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
    where = _Locator(text, filename)
    top = Loc(filename, 1, 1)
    warnings: list[DockerWarning] = []
    errors: list[Diagnostic] = []
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
    if not doc:
        warnings.append(
            DockerWarning(
                top,
                "an empty profile means no filter at all for engines;"
                " imported as seccomp.enabled = false",
            )
        )
        return Seccomp(enabled=False, loc=top), warnings

    def errno_ret_of(number: Any, name: Any, loc: Loc, what: str) -> Any:
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

    def action(raw: Any, errno_ret: Any, loc: Loc, what: str) -> Action:
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

    default_errno = errno_ret_of(
        doc.get("defaultErrnoRet"), doc.get("defaultErrno"), top, "defaultAction"
    )
    default = action(doc.get("defaultAction"), default_errno, top, "defaultAction")
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
    arches = _import_arches(doc, top, errors, warnings)
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
        if not good:
            if names:
                warnings.append(
                    DockerWarning(
                        loc,
                        f"syscalls[{n}]: no known syscall left; rule skipped (engines skip it too)",
                    )
                )
            continue
        ret = errno_ret_of(raw.get("errnoRet"), raw.get("errno"), loc, f"syscalls[{n}]")
        act = action(raw.get("action"), ret, loc, f"syscalls[{n}]")
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
        when = _import_when(raw, n, loc, where, warnings, errors)
        alternatives = _import_args(raw.get("args") or [], n, loc, warnings, errors)
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
    if errors:
        raise ProfileError(errors)
    stub = runc_stub(doc)
    enosys = Action("errno", 38)
    if stub is not None and default != enosys:
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
    unknown = default
    if stub is not None and default != enosys:
        # numbers with no name answer the default below the stub and ENOSYS above it; a
        # profile whose stub is below the table's first gap gets ENOSYS for all of them
        table = syscalls.table("x86_64")
        numbers = set(table.values())
        first_gap = min(n for n in range(max(numbers) + 2) if n not in numbers)
        if stub < first_gap:
            unknown = enosys
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


def runc_stub(doc: dict[str, Any], arch: str = "x86_64") -> int | None:
    """The number above which runc answers ENOSYS before the profile's filter runs
    (libcontainer/seccomp/patchbpf: generatePatch, findLastSyscalls): the largest number
    of a name the profile lists. None when runc adds no stub (an allow, log or trace
    default). Names the engine's libseccomp lacks lower it further (a warning says so)."""
    if doc.get("defaultAction") in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        return None
    table = syscalls.table(arch)
    listed = [
        table[n]
        for rule in doc.get("syscalls") or []
        if isinstance(rule, dict)
        for n in [*(rule.get("names") or []), *([rule["name"]] if rule.get("name") else [])]
        if isinstance(n, str) and n in table
    ]
    return max(listed) if listed else None


def _import_arches(
    doc: dict[str, Any], loc: Loc, errors: list[Diagnostic], warnings: list[DockerWarning]
) -> tuple[str, ...]:
    """isorun lists ABIs besides the native one; Docker's archMap/architectures list all.
    Every entry of ``archMap`` is kept (an x86_64 host reads x86_64's, an aarch64 host
    aarch64's); ABIs isorun cannot filter are named in a warning."""
    names: set[str] = set()
    for entry in doc.get("archMap") or []:
        if isinstance(entry, dict):
            names.add(str(entry.get("architecture")))
            names |= set(entry.get("subArchitectures") or [])
    names |= set(doc.get("architectures") or [])
    for name in sorted(names):
        if not isinstance(name, str) or not name.startswith("SCMP_ARCH_"):
            errors.append(
                Diagnostic(
                    loc,
                    f"unknown architecture {name!r}",
                    "use SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, ...",
                )
            )
    foreign = sorted(n for n in names if n.startswith("SCMP_ARCH_") and n not in ARCH_IN)
    if foreign:
        warnings.append(
            DockerWarning(
                loc,
                f"isorun does not filter {', '.join(foreign)}: on a host of that family a"
                " call of those ABIs is killed (bad architecture) instead of filtered",
            )
        )
    out = ["native"]
    out += [ARCH_IN[t] for t in ARCH_OUT.values() if t in names]
    return tuple(out)


def _import_when(
    raw: dict[str, Any],
    n: int,
    loc: Loc,
    where: _Locator,
    warnings: list[DockerWarning],
    errors: list[Diagnostic],
) -> When | None:
    parts: dict[str, Any] = {}
    for key, (caps, arches, kernel) in (
        ("includes", ("caps", "arches", "min_kernel")),
        ("excludes", ("not_caps", "not_arches", "below_kernel")),
    ):
        block = raw.get(key) or {}
        if not isinstance(block, dict):
            errors.append(Diagnostic(loc, f"syscalls[{n}].{key} must be an object", ""))
            continue
        for extra in sorted(set(block) - FILTER_KEYS):
            warnings.append(
                DockerWarning(loc, f"syscalls[{n}].{key}: unknown key {extra!r}: engines ignore it")
            )
        if block.get("caps"):
            parts[caps] = tuple(block["caps"])
            for cap in block["caps"]:
                if not re.fullmatch(r"CAP_[A-Z_]+", str(cap)):
                    warnings.append(
                        DockerWarning(
                            loc,
                            f"syscalls[{n}].{key}.caps: {cap!r} is not a"
                            " capability name; it never matches",
                        )
                    )
        if block.get("arches"):
            parts[arches] = tuple(block["arches"])
            for arch in block["arches"]:
                if arch not in DOCKER_ARCH_NAMES:
                    warnings.append(
                        DockerWarning(
                            where.token(f'"{arch}"', n),
                            f"syscalls[{n}].{key}.arches: {arch!r} is"
                            " not a Docker (Go) architecture name; it never matches"
                            + (" (write 'amd64')" if arch == "x86_64" else ""),
                        )
                    )
        if block.get("minKernel"):
            try:
                parse_kernel(str(block["minKernel"]))
            except ValueError:
                errors.append(
                    Diagnostic(
                        loc,
                        f"syscalls[{n}].{key}.minKernel"
                        f" {block['minKernel']!r} is not a kernel version",
                        'write e.g. "4.8"',
                    )
                )
                continue
            parts[kernel] = str(block["minKernel"])
    return When(loc=loc, **parts) if parts else None


def _import_args(
    raw: Any, n: int, loc: Loc, warnings: list[DockerWarning], errors: list[Diagnostic]
) -> list[tuple[ArgCond, ...]]:
    """Docker args -> alternatives (rules). runc ANDs the conditions of a rule unless one
    index appears twice; then it adds every condition as a rule of its own (OR)."""
    conds: list[ArgCond] = []
    if not isinstance(raw, list):
        errors.append(Diagnostic(loc, f"syscalls[{n}].args must be an array", ""))
        return [()]
    for m, arg in enumerate(raw):
        if not isinstance(arg, dict):
            errors.append(Diagnostic(loc, f"syscalls[{n}].args[{m}] must be an object", ""))
            continue
        for key in sorted(set(arg) - ARG_KEYS):
            warnings.append(DockerWarning(loc, f"syscalls[{n}].args[{m}]: unknown key {key!r}"))
        index, op = arg.get("index"), arg.get("op")
        value, two = arg.get("value", 0), arg.get("valueTwo", 0)
        if not isinstance(index, int) or not 0 <= index <= 5:
            errors.append(
                Diagnostic(
                    loc,
                    f"syscalls[{n}].args[{m}].index {index!r} out of range",
                    "syscalls have 6 arguments: index 0 to 5",
                )
            )
            continue
        if op not in OPS_IN:
            errors.append(
                Diagnostic(
                    loc,
                    f"syscalls[{n}].args[{m}].op: unknown operator {op!r}",
                    f"use one of {', '.join(OPS_IN)}",
                )
            )
            continue
        if not all(isinstance(v, int) and 0 <= v < 1 << 64 for v in (value, two)):
            errors.append(
                Diagnostic(
                    loc,
                    f"syscalls[{n}].args[{m}]: value {value!r} / valueTwo"
                    f" {two!r} must be integers from 0 to 2**64-1",
                    "runc compares unsigned 64-bit values",
                )
            )
            continue
        ours = OPS_IN[op]
        if ours == "masked_eq" and value == 0:
            # libseccomp compares arg & 0 with valueTwo & 0: true for every argument
            warnings.append(
                DockerWarning(
                    loc,
                    f"syscalls[{n}].args[{m}]: masked_eq with mask (value) 0 always matches;"
                    " imported as no condition",
                )
            )
            continue
        if ours == "masked_eq":
            conds.append(ArgCond(index, ours, two & value, value, loc))
        else:
            conds.append(ArgCond(index, ours, value, 0, loc))
    indexes = [c.index for c in conds]
    if len(set(indexes)) < len(indexes):
        warnings.append(
            DockerWarning(
                loc,
                f"syscalls[{n}]: two conditions on one argument index;"
                " engines (runc) OR every condition of this rule, not AND;"
                " imported as one rule per condition",
            )
        )
        return [(c,) for c in conds]
    return [tuple(conds)]


def _toml_str(s: str) -> str:
    return json.dumps(s)  # TOML basic strings use JSON's escapes for what we emit


def render_toml(policy: Seccomp, *, header: str = "") -> str:
    """The ``[seccomp]`` table of a profile, as TOML text the loader reads back."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += ["[seccomp]"]
    if not policy.enabled:
        lines.append("enabled = false")
        return "\n".join(lines) + "\n"
    lines.append(f"default_action = {_toml_str(str(policy.default_action))}")
    lines.append(f"unknown_action = {_toml_str(str(policy.unknown_action))}")
    lines.append(f"deny_action = {_toml_str(str(policy.deny_action))}")
    if not policy.hardening:
        lines.append("# Docker's profile carries its own restrictions; set true to add isorun's")
        lines.append("hardening = false")
    lines.append("architectures = [" + ", ".join(_toml_str(a) for a in policy.architectures) + "]")
    for key, items in (("allow", policy.allow), ("deny", policy.deny)):
        if items:
            lines.append(f"{key} = [")
            lines += [f"  {_toml_str(n)}," for n in items]
            lines.append("]")
    for rule in policy.rules:
        lines += ["", "[[seccomp.rules]]"]
        lines.append("syscalls = [" + ", ".join(_toml_str(n) for n in rule.syscalls) + "]")
        lines.append(f"action = {_toml_str(str(rule.action))}")
        if rule.args:
            parts = []
            for c in rule.args:
                text = f"index = {c.index}, op = {_toml_str(c.op)}, value = {c.value:#x}"
                if c.op == "masked_eq":
                    text += f", mask = {c.mask:#x}"
                parts.append("{ " + text + " }")
            lines.append("args = [" + ", ".join(parts) + "]")
        if rule.comment:
            lines.append(f"comment = {_toml_str(rule.comment)}")
        if rule.when is not None:
            w = rule.when
            fields = []
            for key, val in (
                ("caps", w.caps),
                ("not_caps", w.not_caps),
                ("arches", w.arches),
                ("not_arches", w.not_arches),
            ):
                if val:
                    fields.append(f"{key} = [" + ", ".join(_toml_str(v) for v in val) + "]")
            for key, text in (("min_kernel", w.min_kernel), ("below_kernel", w.below_kernel)):
                if text:
                    fields.append(f"{key} = {_toml_str(text)}")
            lines.append("when = { " + ", ".join(fields) + " }")
    return "\n".join(lines) + "\n"


def import_docker(text: str, filename: str) -> tuple[str, list[DockerWarning]]:
    """Docker JSON -> equivalent profile TOML text, and warnings with locations."""
    policy, warnings = docker_to_policy(text, filename)
    header = (
        f"Imported from {filename} by `isorun import docker`.\n"
        "Docker's semantics are kept: one default for known and unknown syscalls, the\n"
        "includes/excludes as `when`, conditions runc ORs split into separate rules."
    )
    return render_toml(policy, header=header), warnings
