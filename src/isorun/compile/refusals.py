"""The refusal report (issue #17): what the CLI says when a command fails in the sandbox.

Two parts, both compiled here and carried by the launch record, so that isorun-launch
(shim/launch_report.c) can say them with no Python at all:

- the *reporting filter*: the profile's own seccomp program with each ERRNO answer turned
  into SECCOMP_RET_USER_NOTIF. Allowed calls never leave the kernel; a refused one goes to
  the launcher, which counts it and answers with the errno the profile's program gives
  for it (shim/notify.c evaluates that program), so the command sees the same errno.
  KILL and TRAP answers stay as they are: the kernel acts on them, nobody is asked.
- per syscall number, the rule that refuses it with its profile line, and the notes on
  refusals that no filter sees (EROFS from a read-only mount, ENETUNREACH without a
  network), said only as "if it failed with ...", since without tracing we cannot know.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from isorun.kernel import syscalls

if TYPE_CHECKING:
    from isorun.compile.plan import Plan
    from isorun.errors import Loc
    from isorun.profile.schema import Action, Seccomp

#: linux/seccomp.h and linux/filter.h
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
BPF_RET = 0x06
BPF_RET_K = 0x06
BPF_RET_A = 0x16
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_MAXINSNS = 4096
#: AUDIT_ARCH_* (linux/audit.h) by our architecture name
AUDIT_ARCH = {"x86_64": 0xC000003E, "i386": 0x40000003, "aarch64": 0xC00000B7}
_INSN = struct.Struct("=HBBI")


def notify_execve_head(native: str) -> bytes:
    """Instructions that send the native execve to the listener before anything else.

    Every notifying filter starts so: the listener is O_CLOEXEC, and the launcher takes it
    while the command's first execve waits for its answer (shim/notify.c, the hand-over).
    An execve the profile allows is answered with CONTINUE. Prepended: BPF jumps are
    relative, so the program after it is unchanged.
    """
    execve = syscalls.table(native)["execve"]
    return b"".join(_INSN.pack(*insn) for insn in (
        (BPF_LD_W_ABS, 0, 0, 4),                     # A = seccomp_data.arch
        (BPF_JEQ_K, 0, 3, AUDIT_ARCH[native]),       # other ABI: the program decides
        (BPF_LD_W_ABS, 0, 0, 0),                     # A = seccomp_data.nr
        (BPF_JEQ_K, 0, 1, execve),
        (BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF),
    ))  # fmt: skip


def reporting_filter(program: bytes, native: str, head: bool = True) -> bytes:
    """``program`` with every ``ret ERRNO|n`` answered by the listener instead; b"" when
    it cannot be rewritten so (a ``ret A``, whose action is only known at run time, or
    no room for the head): then the run has no report, and the same enforcement.

    ``head=False`` for the wrappers' exec stage, which sends the listener itself
    (shim/seccomp_exec.c): nothing waits for a hand-over, so an allowed execve stays in
    the kernel.
    """
    if not program or native not in AUDIT_ARCH or len(program) % 8:
        return b""
    head_insns = notify_execve_head(native) if head else b""
    if (len(program) + len(head_insns)) // 8 > BPF_MAXINSNS:
        return b""
    out = bytearray(program)
    for off in range(0, len(out), 8):
        code, _jt, _jf, k = _INSN.unpack_from(out, off)
        if code & 0x07 != BPF_RET:
            continue
        if code != BPF_RET_K:
            return b""
        if k & SECCOMP_RET_ACTION_FULL == SECCOMP_RET_ERRNO:
            _INSN.pack_into(out, off, code, 0, 0, SECCOMP_RET_USER_NOTIF)
    return head_insns + bytes(out)


def _where(loc: Loc) -> str:
    return f"{loc.file}:{loc.line}:{loc.col}" if loc.line else loc.file


def _action(action: Action) -> str:
    import errno as errnos

    if action.kind == "errno":
        return errnos.errorcode.get(action.errno, f"errno {action.errno}")
    return action.kind


def refusal_table(policy: Seccomp, native: str) -> tuple[dict[int, str], str]:
    """Per native syscall number the profile may refuse, ``name: rule (file:line:col)``;
    and the line for numbers the table does not name (the unknown/default action)."""
    from isorun.compile.seccomp import build_entries

    entries, _ = build_entries(policy)
    section = _where(policy.loc)
    default = (f"default_action = {_action(policy.default_action)} "
               f"([seccomp] at {section})")  # fmt: skip
    out: dict[int, str] = {}
    for name, nr in syscalls.table(native).items():
        if not 0 <= nr < 4096:
            continue
        refusing = [e for e in entries.get(name, []) if e.action.kind not in ("allow", "log")]
        allowed = any(e.action.kind in ("allow", "log") for e in entries.get(name, []))
        reasons = []
        for e in refusing:
            where = section if e.loc.file == "<default>" else _where(e.loc)
            reasons.append(f"{e.origin} -> {_action(e.action)} ({where})")
        if not allowed and not any(
                e.region == _full() for e in refusing):  # falls through to the default
            reasons.append(default)
        if reasons:
            out[nr] = f"{name}: " + "; ".join(dict.fromkeys(reasons))
    other = (f"unknown_action = {_action(policy.unknown_action)} or {default}")
    return out, other


def _full() -> object:
    from isorun.compile import argspace

    return argspace.FULL


def failure_notes(plan: Plan) -> str:
    """The rules that explain refusals no filter sees, as "if it failed with ..." lines.

    Only what the plan makes possible: a read-only view (EROFS), no network (ENETUNREACH).
    """
    from isorun.compile.plan import Clone, Loopback, MountStep, ReadOnlyRoot

    lines = []
    ro_root = plan.find(ReadOnlyRoot)
    ro_binds = [m for m in plan.find(MountStep) if m.type == "ro-bind"]
    if ro_root or ro_binds:
        writable = [m.dst for m in plan.find(MountStep)
                    if m.type in ("bind", "tmpfs", "overlay", "dev-bind")]  # fmt: skip
        where = ro_root[0].loc if ro_root else ro_binds[0].loc
        shown = ", ".join(writable[:6]) + (", ..." if len(writable) > 6 else "")
        lines.append(
            'isorun: if it failed with "Read-only file system": the sandbox can write only '
            f"{shown or 'nothing'} (read-only view: [filesystem] and [[mounts]] at "
            f"{_where(where)})")
    clones = plan.find(Clone)
    loopback = plan.find(Loopback)
    if clones and "net" in clones[0].namespaces:
        where = _where(loopback[0].loc if loopback else clones[0].loc)
        lines.append(
            'isorun: if it failed with "Network is unreachable" or a name lookup failed: '
            f'network = "none" ({where}) leaves only loopback')
    return "\n".join(lines)


def landlock_notes(plan: Plan) -> str:
    """failure_notes for the landlock backend, which has no view to make read-only and no
    network namespace: Landlock answers EACCES outside its grants, and seccomp refuses
    socket(2) under network = "none" (which the seccomp report names itself)."""
    from isorun.compile.plan import Landlock

    steps = plan.find(Landlock)
    if not steps:
        return ""
    return ('isorun: if it failed with "Permission denied": the landlock backend grants only '
            f"the paths of the profile's mounts (Landlock at {_where(steps[0].loc)})")


def report_fields(plan: Plan, program: bytes, notes: str | None = None) -> dict[str, object]:
    """The launch record's report fields (isorun.sandbox.flat) for ``plan``; ``notes``
    instead of :func:`failure_notes` (another backend's)."""
    import os

    from isorun.compile.plan import LoadSeccomp

    native = os.uname().machine
    found = plan.find(LoadSeccomp)
    report_bpf = reporting_filter(program, native) if found and program else b""
    table: dict[int, str] = {}
    other = ""
    if report_bpf:
        table, other = refusal_table(found[0].policy, native)
    return {"report_bpf": report_bpf, "refusals": table, "refusal_other": other,
            "notes": failure_notes(plan) if notes is None else notes}


def seccomp_report(calls: Sequence[tuple[int, int, int]], refused: int, lost: int,
                   table: Mapping[int, str], other: str, native_arch: int) -> list[str]:
    """The report's lines for ``calls`` (arch, number, count) refused out of ``refused``,
    worded as isorun-launch words them (shim/launch_report.c, isorun_report_print)."""
    lines = []
    counted = 0
    for arch, nr, count in sorted(calls, key=lambda c: (-c[2], c[1])):
        counted += count
        plural = "" if count == 1 else "s"
        why = table.get(nr) if arch == native_arch else None
        if why is not None:
            lines.append(f"isorun: seccomp refused {count} call{plural} of {why}")
        else:
            lines.append(f"isorun: seccomp refused {count} call{plural} of syscall {nr} "
                         f"(arch {arch:#x}): {other or 'not allowed'}")
    if refused > counted:
        lines.append(f"isorun: seccomp refused {refused - counted} more call(s) of other kinds")
    if lost:
        lines.append(f"isorun: {lost} refused call(s) were interrupted before the answer")
    return lines
