"""The seccomp filters a learning run loads (see :mod:`isorun.learn.observe`).

The notifying filter sends the calls to record to the supervisor (every call in ``learn``
mode, the base's refusals in ``widen`` and ``check``); the enforcing one, under it, keeps
the base's hardening refusing while learning.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Literal

# linux/seccomp.h and linux/audit.h, defined once beside the notifying filter's head
from isorun.compile.refusals import BPF_RET_K, SECCOMP_RET_ERRNO, SECCOMP_RET_USER_NOTIF
from isorun.profile.schema import Action, Seccomp

#: what a learning run records and answers (observe's module docstring)
Mode = Literal["learn", "widen", "check"]

#: an errno no rule uses: the observing filter is compiled with it for every refusal and
#: its ``ret`` instructions are then rewritten to USER_NOTIF (see observing_filter)
SENTINEL_ERRNO = 4094


def observing_filter(policy: Seccomp, *, arch: str = "native") -> bytes:
    """The base policy's filter with every refusal turned into USER_NOTIF.

    Compiled by the ordinary compiler with each refusing action replaced by a sentinel
    errno, so the decisions (argument conditions, precedence, hardening) are exactly the
    base's; only the ``ret`` instructions carrying the sentinel are rewritten. clone3's
    hardening ENOSYS is kept: it is what the learned profile answers too.
    """
    from isorun.compile.seccomp import compile_seccomp

    sentinel = Action("errno", SENTINEL_ERRNO)

    def refuse(action: Action) -> Action:
        return action if action.kind == "allow" else sentinel

    rules = tuple(dataclasses.replace(r, action=refuse(r.action)) for r in policy.rules)
    marked = dataclasses.replace(policy, default_action=refuse(policy.default_action),
                                 unknown_action=refuse(policy.unknown_action),
                                 deny_action=sentinel, rules=rules)
    program = compile_seccomp(marked, arch=arch).bpf
    # execve is always notified: the listener is O_CLOEXEC, so an execve the base allows
    # would run before the launcher took the listener, and the closed listener would then
    # answer every later notification with ENOSYS. Waiting on the notified execve is what
    # makes the hand-over race-free (see shim/child/notify.c). Prepended; BPF jumps are relative.
    from isorun.compile.refusals import notify_execve_head

    head = notify_execve_head(native_arch() if arch == "native" else arch)
    out = bytearray(head + program)
    want = SECCOMP_RET_ERRNO | SENTINEL_ERRNO
    for off in range(0, len(out), 8):
        code, _jt, _jf, k = struct.unpack_from("=HBBI", out, off)
        if code == BPF_RET_K and k == want:
            struct.pack_into("=HBBI", out, off, code, 0, 0, SECCOMP_RET_USER_NOTIF)
    return bytes(out)


def notify_everything() -> bytes:
    """One instruction: every call of every architecture goes to the supervisor."""
    return struct.pack("=HBBI", BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF)


def hardening_filter(policy: Seccomp) -> bytes:
    """Only the base's hardening, everything else allowed: enforced while learning."""
    from isorun.compile.seccomp import compile_seccomp

    if not policy.enabled or not policy.hardening:
        return b""
    only = Seccomp(default_action=Action("allow"), unknown_action=Action("allow"),
                   deny_action=policy.deny_action, architectures=policy.architectures,
                   hardening=True)
    return compile_seccomp(only).bpf


def native_arch() -> str:
    machine = os.uname().machine
    return "x86_64" if machine == "x86_64" else machine


def learn_filters(
    policy: Seccomp, mode: Mode, arch: str
) -> tuple[bytes, bytes, tuple[tuple[int, ...], int]]:
    """(the notifying filter, the enforcing one, the supervisor's answers) for ``mode``."""
    if mode == "learn" or not policy.enabled:
        notify = notify_everything()
    else:
        notify = observing_filter(policy)
    # check enforces the profile through the supervisor's answers (check_answers): a
    # kernel filter refusing first would keep those calls from being notified and listed
    enforce = hardening_filter(policy) if mode != "check" else b""
    from isorun.compile.answers import check_answers

    answers = check_answers(policy, arch) if mode == "check" and policy.enabled else ((), 0)
    return notify, enforce, answers
