"""Every ABI of a multi-ABI filter answers what the profile says, not just the same as the
others: x86_64, x32 (x86_64's arch token, numbers with bit 30) and i386.

The promise (docs/security.md, "Other ABIs"): a call on x32 is decided as the x86_64 call
of the same name with the same 64-bit arguments; a call on i386 as the x86_64 call with
its arguments as the kernel reads them there, the low 32 bits. A syscall whose rules that
ABI's filter cannot check is refused there (the profile's default action): on i386 a
socket or ipc call with argument rules (socketcall/ipc pass them in memory), and on both a
syscall with a rule on the high half of a 64-bit argument (their libseccomp filters see
32 bits). Each refusal is checked against that rule, from the profile, so a refusal the
promise does not explain fails too.
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isorun.compile import bpf_verify as V
from isorun.compile.seccomp import (
    CLONE_NAMESPACES,
    MULTIPLEXED,
    SAFE_PERSONALITIES,
    TIOCLINUX,
    TIOCSTI,
    SeccompProgram,
    build_entries,
    compile_seccomp,
    decide,
)
from isorun.kernel import syscalls
from isorun.profile.schema import Action, Seccomp
from tests.integration.conftest import missing
from tests.unit.test_seccomp_property import (
    NAMES,
    Compiler,
    issue_14_policy,
    policies,
    probes,
    reference,
)

LOW32 = 0xFFFFFFFF
MAX = (1 << 64) - 1
ARCHES = ("native", "x32", "i386")
#: (our name, AUDIT_ARCH_* the filter reads)
ABIS = (("x86_64", V.AUDIT_ARCH_X86_64), ("x32", V.AUDIT_ARCH_X86_64), ("i386", V.AUDIT_ARCH_I386))


@pytest.fixture(scope="module")
def compiler() -> Any:
    c = Compiler()
    yield c
    c.close()


def as_read_on(abi: str, args: tuple[int, ...]) -> tuple[int, ...]:
    """The argument values the kernel's handler gets on ``abi``."""
    return tuple(a & LOW32 for a in args) if abi == "i386" else args


def refused_with(policy: Seccomp) -> str:
    """The documented answer of a refused call: ``default_action``, or ``deny_action``
    where the default allows (or only logs)."""
    if policy.default_action.kind in ("allow", "log"):
        return str(policy.deny_action)
    return str(policy.default_action)


def refusal_explained(policy: Seccomp, name: str, abi: str) -> bool:
    """Whether the profile itself has a rule on ``name`` that ``abi`` cannot check."""
    narrow = syscalls.narrow_args(name)
    for rule in policy.rules:
        if name not in rule.syscalls or not rule.args:
            continue
        if abi == "i386" and name in MULTIPLEXED:
            return True
        for c in rule.args:
            if c.index not in narrow and (c.op != "masked_eq" or c.mask > LOW32):
                return True
    return False


SEEN = {"refused": 0, "checked": 0}


@settings(
    max_examples=int(os.environ.get("ISORUN_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    derandomize=os.environ.get("ISORUN_PROPERTY_SEED") != "random",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(policy=policies(), rng=st.randoms(use_true_random=False))
def test_each_abi_answers_the_profiles_decision(
    compiler: Compiler, policy: Seccomp, rng: random.Random
) -> None:
    policy = dataclasses.replace(policy, architectures=ARCHES)
    status, out = compiler.compile(policy)
    assert status not in ("hang", "error"), out
    if status == "profile":
        return
    bpf = V.decode(out)
    refused = _refused_by_filter(policy, bpf)
    for name in NAMES:
        vectors = probes(policy, rng)
        # i386 callers can set the high halves too (int 0x80 from a 64-bit process):
        # the filter must read them as the kernel does
        vectors += [tuple(a | (0xDEAD << 32) for a in v) for v in vectors[:40]]
        for abi, token in ABIS:
            nr = syscalls.table(abi)[name]
            if (name, abi) in refused:
                assert refusal_explained(policy, name, abi), (name, abi, policy.rules)
                SEEN["refused"] += 1
            for args in vectors:
                got = V.describe(V.evaluate(bpf, nr, token, args))
                if (name, abi) in refused:
                    want = refused_with(policy)
                else:
                    want = reference(policy, name, as_read_on(abi, args))
                assert got == want, (abi, name, [hex(a) for a in args], policy.rules)
                SEEN["checked"] += 1


def _refused_by_filter(policy: Seccomp, bpf: tuple[V.Insn, ...]) -> set[tuple[str, str]]:
    """(name, abi) pairs the compiler reports as refused (compiled again in-process: the
    worker sends only the BPF)."""
    prog = compile_seccomp(policy)
    assert V.decode(prog.bpf) == bpf
    return {(u.name, u.arch) for u in prog.refused}


def test_the_abi_property_run_saw_both_refusals_and_checks() -> None:
    if SEEN["checked"] == 0:
        pytest.skip("runs after the property test, in the same session")
    assert SEEN["refused"] > 0 and SEEN["checked"] > 10 * SEEN["refused"], SEEN


#: values the built-in profiles' rules (hardening and @docker-default's checks) turn on
EDGES = sorted(
    {0, 1, 2, 10, 16, 38, 39, 40, 41, 44, 45, LOW32, 1 << 32, MAX, TIOCSTI, TIOCLINUX}
    | {TIOCSTI | 1 << 32, CLONE_NAMESPACES, 0x10000000, 0x80, 0x20000000, 0x7E020080}
    | {p for p in SAFE_PERSONALITIES}
    | {p | 1 << 32 for p in SAFE_PERSONALITIES}
    | {0x0400000}
)


@pytest.mark.parametrize("profile", ["strict", "build", "web", "test"])
def test_builtin_profiles_with_i386_and_x32_answer_the_profile_on_each_abi(profile: str) -> None:
    from isorun import api

    policy = dataclasses.replace(api.load_profile(profile).seccomp, architectures=ARCHES)
    prog: SeccompProgram = compile_seccomp(policy)
    bpf = V.decode(prog.bpf)
    entries = build_entries(policy)[0]
    refused = {(u.name, u.arch) for u in prog.refused}
    unknown = {(u.name, u.arch) for u in prog.unresolved}
    # refused only where the promise says so: i386's multiplexed calls with argument
    # rules, and rules on the high half of a 64-bit argument (strict's shmget size bound)
    for name, abi in refused:
        if (name, abi) in (("socketcall", "i386"), ("ipc", "i386")):
            # the multiplexer goes with the calls it carries
            carried = {n for n, a in refused if a == "i386" and n in MULTIPLEXED}
            assert any(n.startswith(("sem", "msg", "shm")) == (name == "ipc") for n in carried)
            continue
        conds = [c for r in prog.rules if r.syscall == name for c in r.conditions]
        wide = [c for c in conds if c[1] != "masked_eq" or c[2] > LOW32]
        assert conds and ((abi == "i386" and name in MULTIPLEXED) or wide), (name, abi)
    if profile == "strict":
        assert {("shmget", "x32"), ("socket", "i386"), ("socketcall", "i386")} <= refused
    tables = {abi: syscalls.table(abi) for abi, _ in ABIS}
    names = sorted(set(tables["x86_64"]) & set(tables["i386"]) & set(tables["x32"]))
    for name in names:
        conditional = any(e.region != [()] for e in entries.get(name, []))
        vectors: list[tuple[int, ...]] = [()]
        if conditional:
            vectors = [(0,) * i + (v,) for i in range(4) for v in EDGES]
            vectors += [(a, b) for a in EDGES for b in (0, 1, TIOCSTI, LOW32, 1 << 32)]
        for abi, token in ABIS:
            for args in vectors:
                got = V.describe(V.evaluate(bpf, tables[abi][name], token, args))
                if (name, abi) in refused:
                    want = refused_with(policy)
                elif (name, abi) in unknown:
                    # newer than libseccomp 2.5.4's table (it translates numbers between
                    # ABIs by name): the filter's own answer for unknown numbers
                    want = str(policy.unknown_action)
                else:
                    want = str(decide(policy, name, as_read_on(abi, args), entries))
                assert got == want, (profile, abi, name, [hex(a) for a in args])


#: loads the filter from argv[1] (no_new_privs first, as the shim does), then makes each
#: call "abi:nr:a0:a1:a2:a3" (abi x64 or i386, values in hex) and prints its return value;
#: i386 calls go through int 0x80, which a 64-bit process may use on a kernel with IA32
#: emulation: the kernel then runs i386's syscall and seccomp sees AUDIT_ARCH_I386
HELPER_C = r"""
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static long int80(long nr, long a, long b, long c, long d) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

static long sys64(long nr, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "memory", "rcx", "r11");
    return ret;
}

int main(int argc, char **argv) {
    static struct sock_filter insns[4096];
    FILE *f = fopen(argv[1], "rb");
    size_t n = f ? fread(insns, sizeof insns[0], 4096, f) : 0;
    struct sock_fprog prog = { .len = (unsigned short)n, .filter = insns };
    if (n == 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        perror("load");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        char abi[8];
        unsigned long nr, a[4];
        if (sscanf(argv[i], "%7[^:]:%lx:%lx:%lx:%lx:%lx", abi, &nr, a, a + 1, a + 2, a + 3) != 6)
            return 3;
        long (*call)(long, long, long, long, long) = abi[0] == 'i' ? int80 : sys64;
        long ret = call((long)nr, (long)a[0], (long)a[1], (long)a[2], (long)a[3]);
        printf("%ld\n", ret);
    }
    return 0;
}
"""


@pytest.mark.needs("gcc")
def test_i386_calls_through_int_0x80_get_the_promised_answers_from_the_kernel(
    tmp_path: Any,
) -> None:
    import subprocess

    from isorun.profile.schema import ArgCond, SeccompRule

    src, exe, bpf = tmp_path / "abi.c", tmp_path / "abi", tmp_path / "filter.bpf"
    src.write_text(HELPER_C)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    # a deny-list profile (default allow): what i386 cannot check must still be refused
    policy = Seccomp(
        default_action=Action("allow"),
        architectures=("native", "i386"),
        rules=(
            # a 32-bit argument: i386 decides it on the low half, as x86_64 does
            SeccompRule(("personality",), Action("errno", 13), (ArgCond(0, "eq", 0x20008),)),
            # the high half of a 64-bit argument: i386 cannot check it, refused there
            SeccompRule(("mremap",), Action("errno", 95), (ArgCond(1, "eq", 5),)),
            # socketcall hides socket's arguments on i386: refused there
            SeccompRule(("socket",), Action("errno", 94), (ArgCond(0, "eq", 40),)),
        ),
    )
    prog = compile_seccomp(policy)
    assert {(u.name, u.arch) for u in prog.refused} >= {("mremap", "i386"), ("socket", "i386")}
    bpf.write_bytes(prog.bpf)
    x64, i386 = syscalls.table("x86_64"), syscalls.table("i386")
    high = 1 << 32
    calls = {
        # (abi, nr, args): the answer, a negative errno, or None for "allowed" (>= 0)
        ("i386", i386["getpid"], (0,)): None,
        ("x64", x64["personality"], (0x20008,)): -13,
        ("i386", i386["personality"], (0x20008,)): -13,
        ("i386", i386["personality"], (high | 0x20008,)): -13,
        ("i386", i386["personality"], (0xFFFFFFFF,)): None,
        ("x64", x64["mremap"], (0, 5)): -95,
        ("i386", i386["mremap"], (0, 6)): -1,
        ("x64", x64["socket"], (40, 1)): -94,
        ("x64", x64["socket"], (1, 1)): None,
        ("i386", i386["socket"], (1, 1)): -1,
        ("i386", i386["socketcall"], (1, 0)): -1,
    }
    argv = [
        f"{abi}:{nr:x}:" + ":".join(f"{a:x}" for a in (*args, 0, 0, 0, 0)[:4])
        for abi, nr, args in calls
    ]
    probe = subprocess.run([str(exe), str(bpf), "i386:14:0:0:0:0"], capture_output=True, text=True)
    if probe.returncode != 0 or int(probe.stdout) == -38:
        missing("IA32 emulation (int 0x80 answers ENOSYS)")
    out = subprocess.run([str(exe), str(bpf), *argv], capture_output=True, text=True, check=True)
    got = [int(line) for line in out.stdout.split()]
    for (call, want), ret in zip(calls.items(), got, strict=True):
        assert (ret >= 0) if want is None else ret == want, (call, ret)


@pytest.mark.parametrize("listed", [(), ("socketcall", "ipc")])
def test_i386_socketcall_and_ipc_answer_as_the_call_they_carry(listed: tuple[str, ...]) -> None:
    # a deny-list profile: socketcall's own allow (listed, or the default) used to wipe
    # libseccomp's refusal of socketcall(SYS_SOCKET), so a denied socket() got through
    policy = Seccomp(
        default_action=Action("allow"),
        deny=("socket", "shmget"),
        allow=listed,
        architectures=("native", "i386"),
    )
    bpf = compile_seccomp(policy).bpf
    i386 = syscalls.table("i386")
    for name, args, want in (
        ("socket", (1, 1), "errno:1"),
        ("socketcall", (1, 0), "errno:1"),  # SYS_SOCKET
        ("socketcall", (3, 0), "allow"),  # SYS_CONNECT
        ("shmget", (0,), "errno:1"),
        ("ipc", (23, 0), "errno:1"),  # SHMGET
        ("ipc", (21, 0), "allow"),  # SHMAT
    ):
        got = V.describe(V.evaluate(bpf, i386[name], V.AUDIT_ARCH_I386, args))
        assert got == want, (name, args)


def test_the_issue_14_fall_through_on_each_abi() -> None:
    """issue 14's socket rules take the fall-through (over the exact-size limit), which is
    proven on every ABI before it is kept: x32 answers as x86_64, and i386, whose socket
    arguments sit in socketcall's memory, refuses socket as the promise says."""
    policy = dataclasses.replace(issue_14_policy("socket"), architectures=ARCHES)
    prog = compile_seccomp(policy)
    assert {(u.name, u.arch) for u in prog.refused} >= {("socket", "i386")}
    assert ("socket", "x32") not in {(u.name, u.arch) for u in prog.refused}
    for args in ((16, 1, 0), ((1 << 32) | 16, 1, 0), (2, 1, 0), (2, 1, 9), (2, 1, 10)):
        for abi, token in ABIS:
            got = V.describe(V.evaluate(prog.bpf, syscalls.table(abi)["socket"], token, args))
            want = (
                refused_with(policy)
                if abi == "i386"
                else reference(policy, "socket", as_read_on(abi, args))
            )
            assert got == want, (abi, args)
