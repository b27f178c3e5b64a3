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
from isorun.compile import syscalls
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
from isorun.profile.schema import Seccomp
from tests.unit.test_seccomp_property import NAMES, Compiler, policies, probes, reference

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
        conds = [c for r in prog.rules if r.syscall == name for c in r.conditions]
        wide = [c for c in conds if c[1] != "masked_eq" or c[2] > LOW32]
        assert conds and ((abi == "i386" and name in MULTIPLEXED) or wide), (name, abi)
    if profile == "strict":
        assert ("shmget", "x32") in refused and ("socket", "i386") in refused, refused
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
