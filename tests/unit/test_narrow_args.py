"""The 32-bit syscall arguments come from the kernel's prototypes (data/narrow_args.json),
and the compiler compares exactly those on their low half, as the kernel reads them."""

from __future__ import annotations

import json
import os

from isorun.compile import bpf_verify as V
from isorun.compile.seccomp import compile_seccomp
from isorun.kernel import syscalls
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule

DATA = os.path.join(os.path.dirname(syscalls.__file__), "..", "data", "narrow_args.json")
HIGH = 1 << 32


def test_narrow_args_file_says_where_it_came_from_and_names_known_syscalls() -> None:
    with open(DATA, encoding="utf-8") as f:
        doc = json.load(f)
    assert "include/linux/syscalls.h" in doc["source"] and "gen_narrow_args.py" in doc["about"]
    known = {n for arch in ("x86_64", "i386", "aarch64") for n in syscalls.table(arch)}
    assert set(doc["args"]) <= known
    assert all(0 <= i < 6 for idx in doc["args"].values() for i in idx)
    # facts the hand-kept list had (issue 13), now read from the prototypes
    assert syscalls.narrow_args("socket") == {0, 1, 2}
    assert syscalls.narrow_args("ioctl") == {0, 1}
    assert syscalls.narrow_args("personality") == {0}
    assert syscalls.narrow_args("umount2") == {1}  # sys_umount(name, int flags)
    assert 0 in syscalls.narrow_args("clone") and 0 in syscalls.narrow_args("unshare")
    # unsigned long and pointers stay 64-bit
    assert syscalls.narrow_args("mmap") == frozenset()
    assert 2 not in syscalls.narrow_args("ioctl")


def test_compiler_compares_a_prototype_int_on_its_low_half() -> None:
    """setpriority(int which, int who, int niceval) was not in the hand-kept list: a
    deny on which == PRIO_USER (2) must also catch 2 with a high half the kernel drops;
    mremap's unsigned long flags keep all 64 bits."""
    policy = Seccomp(
        allow=("execve", "exit_group", "setpriority", "mremap"),
        hardening=False,
        rules=(
            SeccompRule(("setpriority",), Action("errno", 13), (ArgCond(0, "eq", 2),)),
            SeccompRule(("mremap",), Action("errno", 13), (ArgCond(3, "eq", 2),)),
        ),
    )
    insns = V.decode(compile_seccomp(policy).bpf)
    nr = syscalls.table("x86_64")["setpriority"]
    assert V.evaluate(insns, nr, args=(2, 0, 0)) == V.RET_ERRNO | 13
    assert V.evaluate(insns, nr, args=(HIGH | 2, 0, 0)) == V.RET_ERRNO | 13
    assert V.evaluate(insns, nr, args=(3, 0, 0)) == V.RET_ALLOW
    nr = syscalls.table("x86_64")["mremap"]
    assert V.evaluate(insns, nr, args=(0, 0, 0, 2)) == V.RET_ERRNO | 13
    assert V.evaluate(insns, nr, args=(0, 0, 0, HIGH | 2)) == V.RET_ALLOW
