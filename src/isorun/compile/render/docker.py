"""Seccomp exports: Docker/moby JSON, OCI runtime-spec, BPF and PFC (Kubernetes SPO:
:mod:`isorun.compile.render.k8s`, built from :func:`docker_object`).

Engines accept much bad input without a word (README of shared/tools): unknown names and
keys are skipped, two conditions on one argument index are ORed by runc (each becomes a
rule of its own), ``includes.arches`` takes Go's names. So the export is right by
construction and the import (:mod:`isorun.compile.render.docker_import`) says what an engine would
have ignored.

Export of an isorun profile writes exact, compact, int64-safe entries built from the
policy's first-match regions (:mod:`isorun.compile.render.docker_rules`): engines add them to
libseccomp, which has no precedence between overlapping rules, so only rules that agree
where they overlap keep isorun's meaning. The default action is ``unknown_action``
(ENOSYS by default): an ERRNO default, never KILL, which would kill a thread of runc's own
init and hang ``runc create`` (:func:`isorun.compile.engines.export_warnings` says so).

The action, operator and architecture tables here are shared with the importer and with
:mod:`isorun.compile.render.docker_diff` (what a Docker profile decides; diff of two policies).
"""

from __future__ import annotations

import json
from itertools import product
from typing import Any

from isorun.compile import argspace
from isorun.compile.render import docker_rules
from isorun.compile.seccomp import Context, target_arches
from isorun.errors import Diagnostic, ProfileError
from isorun.kernel import syscalls
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule, When
from isorun.profile.seccomp_rules import check_seccomp

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


def has_when(policy: Seccomp) -> bool:
    return any(r.when is not None for r in policy.rules)


def docker_object(
    policy: Seccomp,
    *,
    arch: str = "x86_64",
    default: Action | None = None,
    max_args: int | None = None,
    int64: bool = False,
) -> dict[str, Any]:
    """The Docker profile as a JSON-ready dict (see :func:`export_docker`).

    ``default`` replaces ``unknown_action`` as defaultAction (the Kubernetes export, whose
    CRD has no defaultErrnoRet); ``max_args`` caps ``args`` per entry (the CRD's 6);
    ``int64`` refuses a comparison value of 2**63 or more (the CRD's int64 fields; runc and
    crun read uint64, so the Docker export uses such a value where nothing else says it).
    """
    _check(policy)
    if arch not in ARCH_OUT or arch in ("x32", "i386"):
        raise ProfileError(
            Diagnostic(
                policy.loc,
                f"cannot export for architecture {arch!r}",
                "use --arch x86_64 or --arch aarch64",
            )
        )
    targets = target_arches(policy, arch)
    default = default or policy.unknown_action
    arch_map = [
        {
            "architecture": ARCH_OUT[arch],
            "subArchitectures": [ARCH_OUT[a] for a in targets[1:]] or None,
        }
    ]
    head: dict[str, Any] = {"defaultAction": ACTIONS_OUT[default.kind]}
    if default.kind == "errno" and default.errno != 1:
        head["defaultErrnoRet"] = default.errno
    head["archMap"] = arch_map
    if has_when(policy):
        head["syscalls"] = _structural_rules(policy)
        return head
    found = docker_rules.groups(
        policy,
        targets,
        Context(arch=arch),
        default,
        max_args=max_args,
        list_default=True,
        int64=int64,
    )
    head["syscalls"] = [_entry(g) for g in found]
    return head


def _entry(group: docker_rules.Group) -> dict[str, Any]:
    kind, _, num = group.action.partition(":")
    entry: dict[str, Any] = {"names": list(group.names)}
    entry |= _docker_action(Action(kind, int(num or 0)))
    if group.args:
        entry["args"] = _docker_args(group.args)
    entry["comment"] = "; ".join(group.origins)
    return entry


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
        head: dict[str, Any] = {}
        if rule.comment:
            head["comment"] = rule.comment
        if rule.when is not None:
            inc, exc = _filters(rule.when)
            if inc:
                head["includes"] = inc
            if exc:
                head["excludes"] = exc
        # syscalls whose conditioned arguments are 32-bit at the same indexes share entries
        by_width: dict[frozenset[int], list[str]] = {}
        for name in names(rule.syscalls):
            low = frozenset({c.index for c in rule.args} & syscalls.narrow_args(name))
            by_width.setdefault(low, []).append(name)
        for low, group in sorted(by_width.items(), key=lambda kv: sorted(kv[0])):
            for args in _structural_args(rule, low, group[0]):
                entry: dict[str, Any] = {"names": group} | _docker_action(rule.action)
                if args:
                    entry["args"] = args
                out.append(entry | head)
    return out


#: the most entries one rule may become when its 32-bit conditions are spelled out
MAX_STRUCTURAL_ENTRIES = 256


def _structural_args(
    rule: SeccompRule, low: frozenset[int], name: str
) -> list[list[dict[str, Any]]]:
    """The ``args`` of the entries one rule becomes: its conditions, those on the 32-bit
    arguments ``low`` (of ``name`` and the syscalls grouped with it) compared on the low
    32 bits the kernel reads, as the native filter compares them. An engine compares the whole
    register, so ``eq 40`` becomes ``masked_eq 0xffffffff 40`` (socket(0x100000028) is
    AF_VSOCK), and ``ne``/``lt``/... become low-half cubes: one entry per combination,
    each ANDing distinct indexes (runc ORs an entry whose indexes repeat)."""

    def raw(c: ArgCond) -> dict[str, Any]:
        return {
            "index": c.index,
            "value": c.mask if c.op == "masked_eq" else c.value,
            "valueTwo": c.value if c.op == "masked_eq" else 0,
            "op": OPS_OUT[c.op],
        }

    if not low:
        return [[raw(c) for c in rule.args]]
    per: list[list[dict[str, Any]]] = []
    for c in rule.args:
        if c.index not in low:
            per.append([raw(c)])
            continue
        alts: list[dict[str, Any]] = []
        for atom in argspace.atom_of(c.op, c.value, c.mask, bits=32):
            assert isinstance(atom, argspace.Cube)  # 32-bit atoms are cubes
            if atom.mask:
                alts.append(
                    {
                        "index": c.index,
                        "value": atom.mask,
                        "valueTwo": atom.value,
                        "op": OPS_OUT["masked_eq"],
                    }
                )
            else:
                alts.append({})  # mask 0: holds for every value
        per.append(alts)
    if len(per) == 1 and all(per[0]):
        # one condition: its cubes go into one entry, which runc ORs (same index)
        return [per[0]] if per[0] else []
    combos = 1
    for alts in per:
        combos *= len(alts)
    if combos > MAX_STRUCTURAL_ENTRIES:
        raise ProfileError(
            Diagnostic(
                rule.loc,
                f"{name}: the rule's conditions on 32-bit arguments need {combos}"
                " Docker entries to compare the low 32 bits the kernel reads",
                "use eq or masked_eq on 32-bit arguments, or fewer conditions per rule",
            )
        )
    return [[a for a in combo if a] for combo in product(*per)]


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
    if has_when(policy):
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


def export_bpf(policy: Seccomp, **kw: Any) -> bytes:
    from isorun.compile.seccomp import compile_seccomp

    return compile_seccomp(policy, **kw).bpf


def export_pfc(policy: Seccomp, **kw: Any) -> str:
    from isorun.compile.seccomp import compile_seccomp

    return compile_seccomp(policy, **kw).pfc
