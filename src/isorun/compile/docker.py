"""Seccomp exports (Docker/moby JSON, OCI runtime-spec, Kubernetes SPO) and Docker import.

Engines accept much bad input without a word (README of shared/tools): unknown names and
keys are skipped, two conditions on one argument index are ORed by runc (each becomes a
rule of its own), ``includes.arches`` takes Go's names. So the export is right by
construction and the import says what an engine would have ignored.

Export of an isorun profile writes the compiler's disjoint rules (see
:mod:`isorun.compile.argspace`): engines add them to libseccomp, which has no precedence
between overlapping rules, so only disjoint rules keep isorun's meaning. The default action
is ``unknown_action`` (ENOSYS by default): an ERRNO default, never KILL, which would kill
a thread of runc's own init and hang ``runc create``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from isorun.compile import syscalls
from isorun.compile.seccomp import (
    DOCKER_ARCH,
    Context,
    ResolvedRule,
    build_entries,
    check_seccomp,
    lower,
    parse_kernel,
    plan_rules,
    target_arches,
)
from isorun.errors import Diagnostic, Loc, ProfileError
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule, When

ACTIONS_OUT = {
    "allow": "SCMP_ACT_ALLOW",
    "errno": "SCMP_ACT_ERRNO",
    "kill_process": "SCMP_ACT_KILL_PROCESS",
    "kill_thread": "SCMP_ACT_KILL_THREAD",
    "trap": "SCMP_ACT_TRAP",
    "log": "SCMP_ACT_LOG",
}
ACTIONS_IN = {v: k for k, v in ACTIONS_OUT.items()} | {"SCMP_ACT_KILL": "kill_thread"}
OPS_OUT = {
    "ne": "SCMP_CMP_NE",
    "lt": "SCMP_CMP_LT",
    "le": "SCMP_CMP_LE",
    "eq": "SCMP_CMP_EQ",
    "ge": "SCMP_CMP_GE",
    "gt": "SCMP_CMP_GT",
    "masked_eq": "SCMP_CMP_MASKED_EQ",
}
OPS_IN = {v: k for k, v in OPS_OUT.items()}
ARCH_OUT = {
    "x86_64": "SCMP_ARCH_X86_64",
    "x32": "SCMP_ARCH_X32",
    "i386": "SCMP_ARCH_X86",
    "aarch64": "SCMP_ARCH_AARCH64",
}
ARCH_IN = {v: k for k, v in ARCH_OUT.items()}
#: Go's GOARCH names Docker compares ``includes.arches`` with (moby seccomp.go), plus the
#: sub-architecture names moby's own profile uses
DOCKER_ARCH_NAMES = frozenset(
    (
        "386",
        "amd64",
        "arm",
        "arm64",
        "loong64",
        "loongarch64",
        "mips",
        "mips64",
        "mips64le",
        "mips64n32",
        "mips64len32",
        "mipsle",
        "ppc",
        "ppc64",
        "ppc64le",
        "riscv64",
        "s390",
        "s390x",
        "x32",
        "x86",
    )
)
TOP_KEYS = {
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "archMap",
    "syscalls",
    "flags",
    "listenerPath",
    "listenerMetadata",
}
RULE_KEYS = {"name", "names", "action", "errnoRet", "args", "comment", "includes", "excludes"}
ARG_KEYS = {"index", "value", "valueTwo", "op"}
FILTER_KEYS = {"caps", "arches", "minKernel"}


def _docker_action(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"action": ACTIONS_OUT[action.kind]}
    if action.kind == "errno":
        out["errnoRet"] = action.errno
    return out


def _docker_args(conds: tuple[tuple[int, str, int, int], ...]) -> list[dict[str, Any]]:
    # libseccomp's masked_eq takes (mask, value): Docker's value is the mask, valueTwo the
    # value, as in moby's own clone rule
    return [{"index": i, "value": a, "valueTwo": b, "op": OPS_OUT[op]} for i, op, a, b in conds]


def _check(policy: Seccomp) -> None:
    diags = check_seccomp(policy)
    if diags:
        raise ProfileError(diags)


def _has_when(policy: Seccomp) -> bool:
    return any(r.when is not None for r in policy.rules)


def docker_object(policy: Seccomp, *, arch: str = "x86_64") -> dict[str, Any]:
    """The Docker profile as a JSON-ready dict (see :func:`export_docker`)."""
    _check(policy)
    targets = target_arches(policy, arch)
    default = policy.unknown_action
    arch_map = [
        {
            "architecture": ARCH_OUT[arch],
            "subArchitectures": [ARCH_OUT[a] for a in targets[1:]] or None,
        }
    ]
    head: dict[str, Any] = {"defaultAction": ACTIONS_OUT[default.kind]}
    if default.kind == "errno":
        head["defaultErrnoRet"] = default.errno
    head["archMap"] = arch_map
    if _has_when(policy):
        head["syscalls"] = _structural_rules(policy)
        return head
    rules, _ = plan_rules(policy, targets, Context(arch=arch))
    head["syscalls"] = _grouped(rules, str(default))
    return head


def _grouped(rules: list[ResolvedRule], default: str) -> list[dict[str, Any]]:
    groups: dict[tuple[str, tuple[tuple[int, str, int, int], ...]], tuple[set[str], set[str]]] = {}
    for rule in rules:
        if rule.action == default:
            continue  # the default action answers it (runc rejects rules equal to it)
        names, origins = groups.setdefault((rule.action, rule.conditions), (set(), set()))
        names.add(rule.syscall)
        origins.add(rule.origin.split(" via ")[0])
    out = []
    for (action, conds), (names, origins) in sorted(
        groups.items(), key=lambda kv: (bool(kv[0][1]), kv[0][0], min(kv[1][0]), kv[0][1])
    ):
        kind, _, num = action.partition(":")
        entry: dict[str, Any] = {"names": sorted(names)}
        entry |= _docker_action(Action(kind, int(num or 0)))
        if conds:
            entry["args"] = _docker_args(conds)
        entry["comment"] = "; ".join(sorted(origins))
        out.append(entry)
    return out


def _structural_rules(policy: Seccomp) -> list[dict[str, Any]]:
    """Rules as written, for profiles with ``when`` (imported from Docker): the conditions
    must stay conditions. Exact only under Docker's own semantics, so isorun-only meaning
    (hardening, a default for known names other than the unknown default) is refused."""
    problems = []
    if policy.hardening:
        problems.append("seccomp.hardening = true")
    if policy.default_action != policy.unknown_action:
        problems.append("default_action differs from unknown_action")
    if problems:
        raise ProfileError(
            Diagnostic(
                policy.loc,
                "a profile with `when` conditions exports to Docker only with Docker's"
                f" own semantics, but it has {' and '.join(problems)}",
                "set hardening = false and unknown_action = default_action, or drop the `when`"
                " conditions",
            )
        )
    out: list[dict[str, Any]] = []

    def names(items: tuple[str, ...]) -> list[str]:
        got: set[str] = set()
        for item in items:
            got |= syscalls.expand(item)
        return sorted(got)

    if policy.allow:
        out.append({"names": names(policy.allow), "action": "SCMP_ACT_ALLOW"})
    if policy.deny:
        out.append({"names": names(policy.deny)} | _docker_action(policy.deny_action))
    for rule in policy.rules:
        entry: dict[str, Any] = {"names": names(rule.syscalls)} | _docker_action(rule.action)
        if rule.args:
            entry["args"] = [
                {
                    "index": c.index,
                    "value": c.mask if c.op == "masked_eq" else c.value,
                    "valueTwo": c.value if c.op == "masked_eq" else 0,
                    "op": OPS_OUT[c.op],
                }
                for c in rule.args
            ]
        if rule.comment:
            entry["comment"] = rule.comment
        if rule.when is not None:
            inc, exc = _filters(rule.when)
            if inc:
                entry["includes"] = inc
            if exc:
                entry["excludes"] = exc
        out.append(entry)
    return out


def _filters(when: When) -> tuple[dict[str, Any], dict[str, Any]]:
    inc: dict[str, Any] = {}
    exc: dict[str, Any] = {}
    for d, caps, arches, kernel in (
        (inc, when.caps, when.arches, when.min_kernel),
        (exc, when.not_caps, when.not_arches, when.below_kernel),
    ):
        if caps:
            d["caps"] = list(caps)
        if arches:
            d["arches"] = list(arches)
        if kernel:
            d["minKernel"] = kernel
    return inc, exc


def export_docker(policy: Seccomp, *, arch: str = "x86_64") -> str:
    """moby's seccomp JSON for the policy; the same policy gives the same bytes."""
    return json.dumps(docker_object(policy, arch=arch), indent=2, sort_keys=False) + "\n"


def export_oci(policy: Seccomp, *, arch: str = "x86_64") -> str:
    """The runtime-spec ``linux.seccomp`` object (config.json): no archMap, no comments, no
    includes/excludes (a runtime applies no conditions, so ``when`` rules are refused)."""
    if _has_when(policy):
        raise ProfileError(
            Diagnostic(
                policy.loc,
                "OCI seccomp has no conditions; this profile has `when` rules",
                "export to docker instead, or compile for one capability set",
            )
        )
    obj = docker_object(policy, arch=arch)
    out: dict[str, Any] = {"defaultAction": obj["defaultAction"]}
    if "defaultErrnoRet" in obj:
        out["defaultErrnoRet"] = obj["defaultErrnoRet"]
    out["architectures"] = [
        obj["archMap"][0]["architecture"],
        *(obj["archMap"][0]["subArchitectures"] or []),
    ]
    out["syscalls"] = [{k: v for k, v in r.items() if k != "comment"} for r in obj["syscalls"]]
    return json.dumps(out, indent=2) + "\n"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def export_k8s(
    policy: Seccomp, *, name: str = "isorun", namespace: str = "default", arch: str = "x86_64"
) -> str:
    """A security-profiles-operator SeccompProfile (v1beta1) plus the pod snippet that uses
    it, as YAML written by hand (no YAML library in the launch path)."""
    oci = json.loads(export_oci(policy, arch=arch))
    safe = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-") or "isorun"
    lines = [
        "apiVersion: security-profiles-operator.x-k8s.io/v1beta1",
        "kind: SeccompProfile",
        "metadata:",
        f"  name: {safe}",
        f"  namespace: {namespace}",
        "spec:",
        f"  defaultAction: {oci['defaultAction']}",
    ]
    if "defaultErrnoRet" in oci:
        lines.append(f"  defaultErrnoRet: {oci['defaultErrnoRet']}")
    lines.append("  architectures:")
    lines += [f"  - {a}" for a in oci["architectures"]]
    lines.append("  syscalls:")
    for rule in oci["syscalls"]:
        lines.append(f"  - action: {rule['action']}")
        if "errnoRet" in rule:
            lines.append(f"    errnoRet: {rule['errnoRet']}")
        lines.append("    names:")
        lines += [f"    - {_yaml_scalar(n)}" for n in rule["names"]]
        if rule.get("args"):
            lines.append("    args:")
            for arg in rule["args"]:
                lines.append(f"    - index: {arg['index']}")
                lines.append(f"      value: {arg['value']}")
                lines.append(f"      valueTwo: {arg['valueTwo']}")
                lines.append(f"      op: {arg['op']}")
    lines += [
        "---",
        "# Use it from a pod (the operator installs the profile on every node):",
        "# spec:",
        "#   securityContext:",
        "#     seccompProfile:",
        "#       type: Localhost",
        f"#       localhostProfile: operator/{namespace}/{safe}.json",
    ]
    return "\n".join(lines) + "\n"


def export_bpf(policy: Seccomp, **kw: Any) -> bytes:
    from isorun.compile.seccomp import compile_seccomp

    return compile_seccomp(policy, **kw).bpf


def export_pfc(policy: Seccomp, **kw: Any) -> str:
    from isorun.compile.seccomp import compile_seccomp

    return compile_seccomp(policy, **kw).pfc


# ---------------------------------------------------------------------------- import


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

    default = action(doc.get("defaultAction"), doc.get("defaultErrnoRet"), top, "defaultAction")
    arches = _import_arches(doc, top, errors)
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
        act = action(raw.get("action"), raw.get("errnoRet"), loc, f"syscalls[{n}]")
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
    policy = Seccomp(
        default_action=default,
        unknown_action=default,
        allow=tuple(allow),
        rules=tuple(rules),
        architectures=arches,
        hardening=False,
        loc=top,
    )
    return policy, warnings


def _import_arches(doc: dict[str, Any], loc: Loc, errors: list[Diagnostic]) -> tuple[str, ...]:
    """isorun lists ABIs besides the native one; Docker's archMap/architectures list all."""
    names: set[str] = set()
    for entry in doc.get("archMap") or []:
        if isinstance(entry, dict) and entry.get("architecture") == "SCMP_ARCH_X86_64":
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
    out = ["native"]
    out += [
        a for a, token in (("x32", "SCMP_ARCH_X32"), ("i386", "SCMP_ARCH_X86")) if token in names
    ]
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
        if not all(isinstance(v, int) and 0 <= v < 1 << 63 for v in (value, two)):
            errors.append(
                Diagnostic(
                    loc,
                    f"syscalls[{n}].args[{m}]: value {value!r} / valueTwo"
                    f" {two!r} must be integers below 2**63",
                    "TOML integers are signed 64-bit",
                )
            )
            continue
        ours = OPS_IN[op]
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


# ----------------------------------------------------------------- Docker semantics


def docker_decide(
    doc: dict[str, Any],
    name: str,
    args: tuple[int, ...] = (),
    *,
    caps: frozenset[str] = frozenset(),
    arch: str = "x86_64",
    kernel: tuple[int, ...] | None = (6, 1),
) -> str:
    """What an engine (moby + runc + libseccomp) answers, in our action words.

    A reference for tests: applies includes/excludes like moby, ORs a rule's conditions
    when one index repeats like runc, and refuses (ValueError) a call that two matching
    rules answer differently, where the result would depend on libseccomp's internals.
    """
    host = DOCKER_ARCH.get(arch, arch)
    full = tuple(args) + (0,) * (6 - len(args))
    answers: set[str] = set()
    for rule in doc.get("syscalls") or []:
        names = set(rule.get("names") or []) | ({rule["name"]} if rule.get("name") else set())
        if name not in names:
            continue
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if any(c not in caps for c in inc.get("caps") or []):
            continue
        if any(c in caps for c in exc.get("caps") or []):
            continue
        if inc.get("arches") and host not in inc["arches"]:
            continue
        if host in (exc.get("arches") or []):
            continue
        if inc.get("minKernel") and (kernel is None or kernel < parse_kernel(inc["minKernel"])):
            continue
        if exc.get("minKernel") and kernel is not None and kernel >= parse_kernel(exc["minKernel"]):
            continue
        conds = rule.get("args") or []
        results = [_docker_cmp(full[c["index"]], c) for c in conds]
        indexes = [c["index"] for c in conds]
        repeated = len(set(indexes)) < len(indexes)
        if not conds or (any(results) if repeated else all(results)):
            act = ACTIONS_IN[rule["action"]]
            answers.add(f"errno:{rule.get('errnoRet', 1)}" if act == "errno" else act)
    if len(answers) > 1:
        raise ValueError(f"{name}{args}: rules answer {sorted(answers)}")
    if answers:
        return answers.pop()
    act = ACTIONS_IN[doc["defaultAction"]]
    return f"errno:{doc.get('defaultErrnoRet', 1)}" if act == "errno" else act


def _docker_cmp(arg: int, cond: dict[str, Any]) -> bool:
    a, v, two = arg, int(cond.get("value", 0)), int(cond.get("valueTwo", 0))
    match OPS_IN[cond["op"]]:
        case "eq":
            return a == v
        case "ne":
            return a != v
        case "lt":
            return a < v
        case "le":
            return a <= v
        case "gt":
            return a > v
        case "ge":
            return a >= v
        case _:
            return a & v == two


# ---------------------------------------------------------------------------- diff


def diff_policies(
    a: Seccomp, b: Seccomp, *, arch: str = "x86_64", ctx: Context | None = None
) -> list[str]:
    """Semantic differences, one line per syscall: allowed in one only, changed action,
    changed argument conditions. Empty when both decide every call the same."""
    ctx = ctx or Context(arch=arch)
    _check(a)
    _check(b)
    out: list[str] = []
    for label, x, y in (
        ("default_action", a.default_action, b.default_action),
        ("unknown_action", a.unknown_action, b.unknown_action),
    ):
        if x != y:
            out.append(f"{label}: {x} -> {y}")
    ea, _ = build_entries(a, ctx)
    eb, _ = build_entries(b, ctx)
    from isorun.compile.argspace import FULL
    from isorun.compile.seccomp import Entry

    names: set[str] = set(syscalls.table(arch))
    for name in sorted(names):
        pa = _canon(lower(name, ea.get(name, []), Entry(FULL, a.default_action, "default")))
        pb = _canon(lower(name, eb.get(name, []), Entry(FULL, b.default_action, "default")))
        if pa == pb:
            continue
        acts_a = {act for act, _ in pa}
        acts_b = {act for act, _ in pb}
        if len(acts_a) == 1 and len(acts_b) == 1:
            act_a, act_b = next(iter(acts_a)), next(iter(acts_b))
            if act_a == "allow":
                out.append(f"{name}: allowed only in A (B: {act_b})")
            elif act_b == "allow":
                out.append(f"{name}: allowed only in B (A: {act_a})")
            else:
                out.append(f"{name}: {act_a} -> {act_b}")
        else:
            out.append(f"{name}: argument conditions differ (A: {_show(pa)}; B: {_show(pb)})")
    return out


def _canon(pieces: list[tuple[Any, Any]]) -> frozenset[tuple[str, Any]]:
    merged: dict[str, list[Any]] = {}
    for region, entry in pieces:
        merged.setdefault(str(entry.action), []).extend(region)
    from isorun.compile.argspace import simplify

    return frozenset((act, frozenset(simplify(boxes))) for act, boxes in merged.items())


def _show(canon: frozenset[tuple[str, Any]]) -> str:
    from isorun.compile.argspace import comparisons

    parts = []
    for act, boxes in sorted(canon, key=lambda p: p[0]):
        conds = [
            " and ".join(
                f"arg{i} {op} {x:#x}" + (f"/{y:#x}" if op == "masked_eq" else "")
                for i, op, x, y in cmp
            )
            for box in sorted(boxes)
            for cmp in comparisons(box)
        ]
        shown = " or ".join(c or "always" for c in conds[:3])
        parts.append(f"{act} if {shown}{' ...' if len(conds) > 3 else ''}")
    return ", ".join(parts)
