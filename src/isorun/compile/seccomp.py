"""``[seccomp]`` -> a raw BPF program the shim loads with seccomp(SECCOMP_SET_MODE_FILTER).

Semantics, first match wins, per syscall:

1. ``hardening`` (on by default): the denies listed in :data:`HARDENING`; ``clone3`` gets
   ENOSYS so libc falls back to ``clone``, whose flags a filter can read (clone3 passes
   them in memory, out of a filter's reach).
2. ``deny`` (answered with ``deny_action``), then ``[[seccomp.rules]]`` whose action is
   not ``allow``, in file order.
3. ``allow`` and the ``allow`` rules.
4. ``default_action`` for every other syscall of isorun's table, by an explicit rule each.

The filter's own default is ``unknown_action`` (ENOSYS): only syscall numbers newer than
the table reach it, so new kernels' syscalls fail the way programs expect on old kernels.
Any other ABI than the ones listed (x32, i386 on x86_64) kills the process: a filter
written for x86_64 numbers means nothing for i386 numbers, and x32 reuses x86_64 numbers
with bit 30 set (libseccomp checks that bit; the kill is SCMP_FLTATR_ACT_BADARCH).

Precedence is decided here, not by libseccomp, which has none between rules of one
syscall (see :mod:`isorun.compile.argspace`): every rule given to libseccomp covers a
region of argument values disjoint from the other actions' regions.

Checking a policy (unknown names, bad values, contradictions) is
:mod:`isorun.profile.seccomp_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass

from isorun.compile.seccomp_entries import (
    CLONE_NAMESPACES,
    DOCKER_ARCH,
    ENOSYS,
    EPERM,
    SAFE_PERSONALITIES,
    SIMPLER,
    TIOCLINUX,
    TIOCSTI,
    UNSHARE_NAMESPACES,
    Context,
    Entry,
    build_entries,
    decide,
    hardening_entries,
    parse_kernel,
    when_holds,
)
from isorun.compile.seccomp_filter import ABIS_32, MULTIPLEXED, action_value, build_filter
from isorun.compile.seccomp_plan import (
    ALWAYS,
    MAX_COMPARISONS_PER_SYSCALL,
    MAX_MIXED_RULES,
    ResolvedRule,
    Unresolved,
    lower,
    plan_rules,
    refusal_action,
    target_arches,
)
from isorun.errors import DEFAULT_LOC, Diagnostic, ProfileError
from isorun.profile.schema import Seccomp
from isorun.profile.seccomp_rules import check_seccomp

# The compiler's stages live in seccomp_entries (first-match entries), seccomp_plan
# (disjoint libseccomp rules) and seccomp_filter (per-ABI filters); their public names are
# re-exported here because this module is the compiler's one entry point for the CLI,
# the exports, learn and the tests.
__all__ = [
    "ABIS_32",
    "ALWAYS",
    "BPF_MAXINSNS",
    "CLONE_NAMESPACES",
    "DOCKER_ARCH",
    "ENOSYS",
    "EPERM",
    "LAYOUTS",
    "MAX_COMPARISONS_PER_SYSCALL",
    "MAX_MIXED_RULES",
    "MULTIPLEXED",
    "SAFE_PERSONALITIES",
    "TIOCLINUX",
    "TIOCSTI",
    "UNSHARE_NAMESPACES",
    "Context",
    "Entry",
    "ResolvedRule",
    "SeccompProgram",
    "Unresolved",
    "action_value",
    "build_entries",
    "compile_seccomp",
    "decide",
    "hardening_entries",
    "lower",
    "parse_kernel",
    "plan_rules",
    "refusal_action",
    "target_arches",
    "when_holds",
]

LAYOUTS = ("tree", "linear")
#: the longest filter the kernel loads (linux/bpf_common.h BPF_MAXINSNS)
BPF_MAXINSNS = 4096


@dataclass(frozen=True, slots=True)
class SeccompProgram:
    """The compiled filter: what the shim loads, and what ``explain`` shows."""

    bpf: bytes
    """Raw ``struct sock_filter`` array, native byte order."""
    pfc: str
    """libseccomp's pseudo-C rendering of the same filter."""
    arch: str
    arches: tuple[str, ...]
    layout: str
    rules: tuple[ResolvedRule, ...]
    unresolved: tuple[Unresolved, ...]
    libseccomp: str = ""
    refused: tuple[Unresolved, ...] = ()
    """Syscalls refused outright on an ABI where their argument conditions cannot be
    checked (i386 socket and ipc calls, multiplexed through socketcall and ipc; on i386
    and x32, rules on the high half of a 64-bit argument)."""

    def describe(self) -> str:
        head = (
            f"seccomp: {len(self.bpf) // 8} BPF instructions, {len(self.rules)} rules,"
            f" arches {','.join(self.arches)}, layout {self.layout}"
        )
        lines = [head]
        if self.unresolved:
            names = sorted({u.name for u in self.unresolved if u.arch == self.arch})
            lines.append(f"  not on {self.arch} (ignored there): {' '.join(names)}")
        for abi in sorted({u.arch for u in self.refused}):
            names = sorted(u.name for u in self.refused if u.arch == abi)
            lines.append(
                f"  refused on {abi} (its filter cannot check these rules' arguments:"
                f" socketcall/ipc, or the high half of a 64-bit argument): {' '.join(names)}"
            )
        return "\n".join(lines)


def compile_seccomp(
    policy: Seccomp,
    *,
    arch: str = "native",
    layout: str = "tree",
    caps: frozenset[str] = frozenset(),
    kernel: tuple[int, ...] | None = None,
) -> SeccompProgram:
    """Compile ``[seccomp]`` to BPF for ``arch`` (the host's by default).

    ``caps`` (the capabilities the sandbox keeps) and ``kernel`` decide rules with a
    ``when``. Raises ProfileError listing every problem of the policy, with locations.
    """
    diags = check_seccomp(policy)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if diags:
        raise ProfileError(diags)

    from isorun.compile import _libseccomp as lsc

    lib = lsc.load()
    native = lsc.native_arch(lib)
    primary = native if arch == "native" else arch
    if primary not in lsc.ARCH_TOKENS or primary in ("x32", "i386"):
        raise ValueError(f"cannot compile for {primary!r}")
    targets = target_arches(policy, primary)
    ctx = Context(caps, primary, kernel)
    fell: dict[str, int] = {}
    rules, unresolved = plan_rules(
        policy, targets, ctx, fallthrough=str(policy.unknown_action), fell=fell
    )
    built = build_filter(lsc, lib, policy, rules, targets, native, layout)
    _check_size(policy, built.bpf, rules)
    if fell:
        _prove_fallthrough(
            policy, ctx, built.bpf, targets, fell, built.refused, built.missing, rules
        )
    unresolved += tuple(
        Unresolved(n, a) for n, a in sorted(built.missing) if Unresolved(n, a) not in unresolved
    )
    return SeccompProgram(
        bpf=built.bpf,
        pfc=built.pfc,
        arch=primary,
        arches=targets,
        layout=layout,
        rules=tuple(built.kept),
        unresolved=unresolved,
        libseccomp=".".join(str(v) for v in lib.version),
        refused=tuple(built.refused),
    )


def _check_size(policy: Seccomp, bpf: bytes, rules: list[ResolvedRule]) -> None:
    """Refuse a filter longer than the kernel loads (EINVAL from seccomp(2) at launch),
    naming the syscalls that cost the most."""
    if len(bpf) // 8 <= BPF_MAXINSNS:
        return
    cost: dict[str, int] = {}
    for rule in rules:
        cost[rule.syscall] = cost.get(rule.syscall, 0) + 1
    worst = sorted(cost, key=lambda n: -cost[n])[:3]
    raise ProfileError(
        [
            Diagnostic(
                policy.loc,
                f"the seccomp filter needs {len(bpf) // 8} BPF instructions, more than"
                f" the kernel's {BPF_MAXINSNS} (most rules: "
                + ", ".join(f"{n} {cost[n]}" for n in worst)
                + ")",
                SIMPLER,
            )
        ]
    )


def _prove_fallthrough(
    policy: Seccomp,
    ctx: Context,
    bpf: bytes,
    targets: tuple[str, ...],
    fell: dict[str, int],
    refused: list[Unresolved],
    missing: set[tuple[str, str]],
    rules: list[ResolvedRule],
) -> None:
    """Refuse the profile unless every fall-through syscall's BPF answers what the
    profile does, on every ABI, for a set of calls that decides every region (see
    :mod:`isorun.compile.fallthrough_check`)."""
    from isorun.compile import bpf_verify, fallthrough_check
    from isorun.compile.fallthrough_check import TOO_MANY

    insns = bpf_verify.decode(bpf)
    entries = build_entries(policy, ctx)[0]
    gone = {(u.name, u.arch) for u in refused}
    errors: list[Diagnostic] = []
    for name in sorted(fell):

        def answer(abi: str, args: tuple[int, ...], name: str = name) -> int:
            if (name, abi) in gone:  # the whole syscall is refused on that ABI
                return action_value(refusal_action(policy))
            return action_value(decide(policy, name, args, entries))

        abis = [a for a in targets if (name, a) not in missing]
        regions = [e.region for e in entries.get(name, [])]
        why = fallthrough_check.check_syscall(insns, name, abis, regions, answer)
        if why is not None:
            located = (r.loc for r in rules if r.syscall == name and r.loc != DEFAULT_LOC)
            loc = next(located, policy.loc)
            checked = " (the shorter encoding was checked and gave a different answer)"
            text = f"the rules for {name} need {fell[name]} libseccomp rules to compile exactly"
            errors.append(Diagnostic(loc, text + ("" if why == TOO_MANY else checked), SIMPLER))
    if errors:
        raise ProfileError(errors)
