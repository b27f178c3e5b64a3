"""The refusal report's compiled parts (isorun.compile.refusals): the reporting filter
changes only ERRNO answers, and every refused syscall is named with its profile line."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest

from isorun import api
from isorun.compile import refusals
from isorun.compile.plan import LoadSeccomp
from isorun.kernel import syscalls

INSN = struct.Struct("=HBBI")
RET_K = 0x06
ERRNO, KILL_PROCESS, USER_NOTIF = 0x00050000, 0x80000000, 0x7FC00000


def _rets(program: bytes) -> list[int]:
    return [k for code, _t, _f, k in INSN.iter_unpack(program) if code == RET_K]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _program(text: str) -> tuple[bytes, object]:
    Path("p.toml").write_text(text)
    plan = api.compile_plan(api.load_profile("./p.toml"))
    policy = plan.find(LoadSeccomp)[0].policy
    return api.cached_program(plan), policy


def test_only_errno_answers_go_to_the_listener() -> None:
    program, _ = _program('extends = ["strict"]\n\n[[seccomp.rules]]\nsyscalls = ["getppid"]\n'
                          'action = "kill_process"\n')
    native = os.uname().machine
    out = refusals.reporting_filter(program, native)
    head = refusals.notify_execve_head(native)
    assert out.startswith(head) and len(out) == len(head) + len(program)
    before, after = _rets(program), _rets(out[len(head):])
    assert any(k & 0xFFFF0000 == ERRNO for k in before)
    assert not any(k & 0xFFFF0000 == ERRNO for k in after)  # every errno is the listener's
    for old, new in zip(before, after, strict=True):
        # KILL, TRAP, LOG and ALLOW stay the kernel's own answers
        assert new == (USER_NOTIF if old & 0xFFFF0000 == ERRNO else old)
    assert KILL_PROCESS in after
    # everything but the RET constants is the profile's program, instruction for instruction
    strip = [(c, t, f, 0 if c == RET_K else k) for c, t, f, k in INSN.iter_unpack(program)]
    assert strip == [(c, t, f, 0 if c == RET_K else k)
                     for c, t, f, k in INSN.iter_unpack(out[len(head):])]


def test_a_program_that_returns_a_is_not_rewritten() -> None:
    assert refusals.reporting_filter(INSN.pack(0x16, 0, 0, 0), os.uname().machine) == b""


def test_each_refused_syscall_names_its_rule_and_line() -> None:
    _, policy = _program('extends = ["strict"]\n\n[[seccomp.rules]]\nsyscalls = ["getppid"]\n'
                         'action = "errno:EACCES"\n')
    table, other = refusals.refusal_table(policy, os.uname().machine)  # type: ignore[arg-type]
    nr = syscalls.table(os.uname().machine)
    # the index is the rule's place in the merged list (strict's own rules come first);
    # the location is the user's file
    assert re.fullmatch(r"getppid: seccomp\.rules\[\d+\] -> EACCES \(p\.toml:3:1\)",
                        table[nr["getppid"]]), table[nr["getppid"]]
    assert table[nr["keyctl"]].startswith("keyctl: hardening: the kernel keyring")
    assert "read" not in [t.split(":")[0] for t in table.values()]  # allowed: not named
    assert other.startswith("unknown_action = ENOSYS or default_action = EPERM")
