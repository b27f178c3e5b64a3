"""Disjoint rules -> one libseccomp filter per ABI, merged into the BPF the shim loads.

One filter per ABI, merged at the end: libseccomp rewrites an i386 socket or ipc rule
into a socketcall/ipc rule whose first argument it overwrites (src/syscalls.c,
abi_rule_add), so argument conditions cannot be given to it together with the native
rules (their rewritten copies collide: EEXIST, isorun issue 14). A rule an ABI's filter
cannot decide as written refuses its syscall there instead (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from isorun.compile.seccomp_plan import ALWAYS, ResolvedRule, Unresolved, refusal_action
from isorun.errors import Diagnostic, ProfileError
from isorun.profile.schema import Action, Seccomp

#: calls that i386 may also make through the socketcall and ipc multiplexers, where their
#: arguments sit in memory (libseccomp src/syscalls.c, _abi_syscall_mux)
MULTIPLEXED = frozenset(
    [
        "socket",
        "bind",
        "connect",
        "listen",
        "accept",
        "getsockname",
        "getpeername",
        "socketpair",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "sendmsg",
        "recvmsg",
        "accept4",
        "recvmmsg",
        "sendmmsg",
        "semop",
        "semget",
        "semctl",
        "semtimedop",
        "msgsnd",
        "msgrcv",
        "msgget",
        "msgctl",
        "shmat",
        "shmdt",
        "shmget",
        "shmctl",
    ]
)


def action_value(action: Action) -> int:
    """The SECCOMP_RET_* value of an action (linux/seccomp.h)."""
    match action.kind:
        case "allow":
            return 0x7FFF0000
        case "errno":
            return 0x00050000 | (action.errno & 0xFFFF)
        case "kill_process":
            return 0x80000000
        case "kill_thread":
            return 0x00000000
        case "trap":
            return 0x00030000
        case "log":
            return 0x7FFC0000
    raise ValueError(f"unknown action {action.kind!r}")


#: ABIs whose libseccomp filters compare 32 bits of each argument: arch-x86.c and
#: arch-x32.c are ARCH_SIZE_32, and _db_rule_gen_32 (src/db.c) keeps only the low halves
#: of a rule's mask and datum
ABIS_32 = frozenset({"i386", "x32"})
_LOW32 = 0xFFFFFFFF


def _low32_exact(cond: tuple[int, str, int, int]) -> bool:
    """Whether a 32-bit ABI's filter decides a comparison as the profile does: only a
    ``masked_eq`` whose mask has no high bit. Every condition on a 32-bit argument is
    written that way (argspace), so this is false only where a rule compares the high
    half of a 64-bit argument (``eq``, ranges, wide masks): libseccomp would drop that
    half (``a1 == 0x100000005`` becomes ``a1 == 5``), and x32 calls pass 64-bit registers
    that the kernel reads whole."""
    _index, op, mask, _value = cond
    # the fall-through's ``arg0 >= 0`` holds for every value, at either width
    return (op == "masked_eq" and mask <= _LOW32) or cond == ALWAYS


_IPC_PREFIX = re.compile(r"(sem|msg|shm)")


def _unreadable(abi: str, name: str, conditional: set[str], inexact32: set[str]) -> bool:
    """Whether ``name``'s argument rules cannot be enforced on ``abi``: on i386 the
    socket and ipc calls also go through socketcall/ipc, which pass their arguments in
    memory (and libseccomp pairs every direct rule with a multiplexed copy); on both
    32-bit ABIs, a rule on the high half of a 64-bit argument."""
    if abi == "i386" and name in conditional and name in MULTIPLEXED:
        return True
    if abi == "i386" and name in ("socketcall", "ipc"):
        # the multiplexer itself too: libseccomp refuses a carried call there by a rule
        # on its call number, which an unconditional rule for the multiplexer (a group
        # that allows socketcall, or a default that allows) would wipe out
        carried = {n for n in conditional & MULTIPLEXED if _IPC_PREFIX.match(n)}
        return bool(carried if name == "ipc" else (conditional & MULTIPLEXED) - carried)
    return abi in ABIS_32 and name in inexact32


def _abi_filter(lsc: Any, lib: Any, unknown_value: int, layout: str, native: str, abi: str) -> Any:
    """An empty libseccomp filter for one ABI, with isorun's attributes."""
    flt = lsc.Filter(lib, unknown_value)
    # the kernel loads what the shim gives it; no_new_privs is the shim's own step
    flt.set_attr(lsc.ATTR_CTL_NNP, 0)
    flt.set_attr(lsc.ATTR_ACT_BADARCH, action_value(Action("kill_process")))
    if layout == "tree":
        # binary search over syscall numbers instead of a linear if-chain
        flt.set_attr(lsc.ATTR_CTL_OPTIMIZE, 2)
    if abi != native:
        flt.add_arch(lsc.ARCH_TOKENS[abi])
        flt.remove_arch(lsc.ARCH_TOKENS[native])
    return flt


def _split(action: str) -> tuple[str, int]:
    kind, _, num = action.partition(":")
    return kind, int(num or 0)


@dataclass(slots=True)
class Built:
    """The merged filter, and what building it decided per ABI."""

    bpf: bytes = b""
    pfc: str = ""
    #: the primary ABI's rules that libseccomp knows the syscall of
    kept: list[ResolvedRule] = field(default_factory=list)
    refused: list[Unresolved] = field(default_factory=list)
    #: (syscall, ABI) pairs libseccomp has no number for
    missing: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Job:
    lsc: Any
    policy: Seccomp
    primary: str
    unknown_value: int
    #: syscalls with an argument rule, and those with one a 32-bit ABI reads differently
    conditional: set[str]
    inexact32: set[str]


def build_filter(
    lsc: Any,
    lib: Any,
    policy: Seccomp,
    rules: list[ResolvedRule],
    targets: tuple[str, ...],
    native: str,
    layout: str,
) -> Built:
    """``rules`` in one libseccomp filter per ABI of ``targets`` (``targets[0]`` first),
    merged and exported."""
    unknown_value = action_value(policy.unknown_action)
    job = _Job(
        lsc,
        policy,
        targets[0],
        unknown_value,
        {r.syscall for r in rules if r.conditions},
        {r.syscall for r in rules if not all(map(_low32_exact, r.conditions))},
    )
    out = Built()
    filters = [_abi_filter(lsc, lib, unknown_value, layout, native, a) for a in targets]
    try:
        numbers = _numbers(lsc, filters[0], rules, targets)
        for abi, flt in zip(targets, filters, strict=True):
            for rule in rules:
                _add_rule(job, out, flt, abi, rule, numbers[rule.syscall])
        for other in filters[1:]:
            filters[0].merge(other)
        out.bpf = filters[0].export_bpf()
        out.pfc = filters[0].export_pfc()
    finally:
        for flt in filters:
            flt.close()
    return out


def _numbers(
    lsc: Any, flt: Any, rules: list[ResolvedRule], targets: tuple[str, ...]
) -> dict[str, int]:
    """libseccomp's number of each rule's syscall on ``targets[0]``."""
    # libseccomp takes the primary ABI's numbers (or its pseudo-numbers for names only
    # other ABIs have) and translates them by name for each ABI of a filter
    token = lsc.ARCH_TOKENS[targets[0]]
    numbers: dict[str, int] = {}
    for rule in rules:
        if rule.syscall not in numbers:
            nr = flt.resolve(token, rule.syscall)
            # libseccomp older than our table: the number is a kernel fact, but only
            # safe on a single-ABI filter (libseccomp would reuse it on other ABIs)
            if nr == lsc.NR_SCMP_ERROR and rule.nr >= 0 and len(targets) == 1:
                nr = rule.nr
            numbers[rule.syscall] = nr
    return numbers


def _add_rule(job: _Job, out: Built, flt: Any, abi: str, rule: ResolvedRule, nr: int) -> None:
    """One rule into ``abi``'s filter, or its syscall refused there, or nothing."""
    if nr == job.lsc.NR_SCMP_ERROR:
        out.missing.add((rule.syscall, abi))
        return
    if abi == job.primary:
        out.kept.append(rule)
    if _unreadable(abi, rule.syscall, job.conditional, job.inexact32):
        # fail closed: a rule this ABI's filter cannot decide as written would answer
        # other calls than the profile says; the call is refused there
        if not any(u.name == rule.syscall and u.arch == abi for u in out.refused):
            out.refused.append(Unresolved(rule.syscall, abi, rule.loc))
            value = action_value(refusal_action(job.policy))
            if value != job.unknown_value:
                flt.add_rule(value, nr, [])
        return
    if abi == "i386" and rule.syscall in ("socketcall", "ipc") and not rule.conditions:
        # libseccomp decides socketcall(N) and ipc(N) by the rules of the call N carries
        # (abi_rule_add adds each on the multiplexer's call number); an unconditional
        # rule for the multiplexer would wipe those out (db_rule_add), and
        # socketcall(SYS_SOCKET) would escape a deny socket
        return
    value = action_value(Action(*_split(rule.action)))
    if value == job.unknown_value:  # the filter's default answers it already
        return
    try:
        flt.add_rule(value, nr, list(rule.conditions))
    except OSError as err:
        raise ProfileError(
            [
                Diagnostic(
                    rule.loc,
                    f"{rule.origin}: libseccomp cannot compile the rule for"
                    f" {rule.syscall} on {abi}: {err.strerror}",
                    f"remove {abi!r} from seccomp.architectures, or simplify"
                    " the argument conditions",
                )
            ]
        ) from err
