"""The seccomp compiler never hangs and never changes a decision, on random rule sets.

libseccomp 2.5.4 loops forever on some rule sets (isorun issue 14: a range comparison
followed by another argument, merged with a second rule of the same range). Each random
policy is compiled in a worker process with a time bound, so a hang fails the test instead
of hanging CI, and the BPF is run in our own interpreter (bpf_verify) against a reference
written here from the profile's first-match semantics, independent of the compiler's set
algebra (argspace).
"""

from __future__ import annotations

import multiprocessing
import os
import random
from multiprocessing.connection import Connection
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isorun.compile import bpf_verify as V
from isorun.compile.seccomp import compile_seccomp
from isorun.errors import ProfileError
from isorun.kernel import syscalls
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule

X86_64 = syscalls.table("x86_64")
MAX = (1 << 64) - 1
LOW32 = 0xFFFFFFFF
#: seconds one compile may take; a normal one takes well under a tenth of that
TIME_BOUND = 20.0
#: syscalls with 32-bit arguments (socket, kill, personality, mkdir's mode) and with 64-bit
#: ones (mmap and mremap take unsigned long only: compared on 64 bits)
NAMES = ("socket", "personality", "kill", "mkdir", "mmap", "mremap")
OPS = ("eq", "ne", "lt", "le", "gt", "ge", "masked_eq")
VALUES = (0, 1, 8, 9, 15, 16, 17, 40, 0x7FFFFFFF, LOW32, 1 << 32, (1 << 32) | 16, MAX - 1, MAX)


def _worker(conn: Connection) -> None:
    while True:
        policy = conn.recv()
        try:
            conn.send(("ok", compile_seccomp(policy).bpf))
        except ProfileError as err:
            conn.send(("profile", str(err)))
        except Exception as err:
            conn.send(("error", repr(err)))


class Compiler:
    """One worker process that compiles policies; a compile past the bound kills it."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self._proc.start()
        self._conn = parent
        return parent

    def compile(self, policy: Seccomp) -> tuple[str, Any]:
        conn = self._conn or self._start()
        conn.send(policy)
        if not conn.poll(TIME_BOUND):
            self.close()
            return "hang", None
        result: tuple[str, Any] = conn.recv()
        return result

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
        self._proc, self._conn = None, None


@pytest.fixture(scope="module")
def compiler() -> Any:
    c = Compiler()
    yield c
    c.close()


def holds(cond: ArgCond, name: str, args: tuple[int, ...]) -> bool:
    """One condition as the kernel sees the call: 32-bit arguments by their low half."""
    v, value, mask = (*args, 0, 0, 0, 0, 0, 0)[cond.index], cond.value, cond.mask
    if cond.index in syscalls.narrow_args(name):
        v, value, mask = v & LOW32, value & LOW32, mask & LOW32
    match cond.op:
        case "eq":
            return v == value
        case "ne":
            return v != value
        case "lt":
            return v < value
        case "le":
            return v <= value
        case "gt":
            return v > value
        case "ge":
            return v >= value
        case "masked_eq":
            return v & mask == value
    raise AssertionError(cond.op)


def reference(policy: Seccomp, name: str, args: tuple[int, ...]) -> str:
    """First match: deny, rules that do not allow (file order), allow, allow rules, default."""
    if name in policy.deny:
        return str(policy.deny_action)
    for rule in policy.rules:
        hit = name in rule.syscalls and all(holds(c, name, args) for c in rule.args)
        if rule.action.kind != "allow" and hit:
            return str(rule.action)
    if name in policy.allow:
        return "allow"
    for rule in policy.rules:
        hit = name in rule.syscalls and all(holds(c, name, args) for c in rule.args)
        if rule.action.kind == "allow" and hit:
            return "allow"
    return str(policy.default_action)


values = st.one_of(st.sampled_from(VALUES), st.integers(0, 64), st.integers(0, MAX))


@st.composite
def conditions(draw: st.DrawFn) -> ArgCond:
    op = draw(st.sampled_from(OPS))
    index = draw(st.integers(0, 3))
    if op == "masked_eq":
        mask = draw(st.sampled_from((0xF0, 0x7E020000, 0x10000000, LOW32, MAX)))
        return ArgCond(index, op, draw(values) & mask, mask)
    return ArgCond(index, op, draw(values))


actions = st.sampled_from(
    # errno 38 is the filter's own default (unknown_action): rules with it are left out
    (
        Action("allow"),
        Action("errno", 22),
        Action("errno", 13),
        Action("errno", 38),
        Action("kill_process"),
    )
)


@st.composite
def policies(draw: st.DrawFn) -> Seccomp:
    rules = draw(
        st.lists(
            st.builds(
                SeccompRule,
                st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True).map(tuple),
                actions,
                # at least one condition: unconditional rules that disagree are refused by
                # check as contradictions, which test_seccomp_compile covers
                st.lists(conditions(), min_size=1, max_size=2).map(tuple),
            ),
            min_size=1,
            max_size=5,
        )
    )
    allow = draw(st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
    return Seccomp(
        allow=("execve", "exit_group", *allow),
        rules=tuple(rules),
        hardening=False,
        default_action=draw(st.sampled_from((Action("errno", 1), Action("allow")))),
    )


def probes(policy: Seccomp, rng: random.Random) -> list[tuple[int, ...]]:
    """Argument vectors on both sides of every value the policy compares with, at both
    widths (so a high half that only the kernel ignores is probed too)."""
    edge: dict[int, set[int]] = {i: {0, 1, LOW32, 1 << 32, MAX} for i in range(4)}
    for rule in policy.rules:
        for c in rule.args:
            for v in (c.value, c.value & LOW32):
                edge[c.index] |= {(v + d) & MAX for d in (-1, 0, 1)}
                edge[c.index] |= {v | 1 << 32, (v | 0xFFFFFFFF << 32) & MAX}
            if c.mask:
                edge[c.index] |= {c.value ^ (c.mask & -c.mask), c.value | (~c.mask & MAX)}
    out: list[tuple[int, ...]] = []
    for i, vals in edge.items():
        out += [(0,) * i + (v,) for v in sorted(vals)]
    pools = [sorted(edge[i]) for i in range(4)]
    out += [tuple(rng.choice(p) for p in pools) for _ in range(60)]
    return out


SEEN = {"ok": 0, "profile": 0}
# 400 random sets by default (about a minute); ISORUN_PROPERTY_EXAMPLES=3000 for a long run


@settings(
    max_examples=int(os.environ.get("ISORUN_PROPERTY_EXAMPLES", "400")),
    deadline=None,
    # the same sets on every run (CI stays reproducible); ISORUN_PROPERTY_SEED=random to
    # explore (a 1500-set random run found the personality hang tested below)
    derandomize=os.environ.get("ISORUN_PROPERTY_SEED") != "random",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(policy=policies(), rng=st.randoms(use_true_random=False))
def test_random_rule_sets_compile_in_bounded_time_to_the_profiles_decisions(
    compiler: Compiler, policy: Seccomp, rng: random.Random
) -> None:
    status, out = compiler.compile(policy)
    assert status != "hang", f"compiling took more than {TIME_BOUND}s: {policy.rules}"
    assert status != "error", out
    SEEN[status] += 1
    if status == "profile":
        # refusing is allowed as a located error (a contradiction between unconditional
        # rules, or the size limit), never as a crash; the next test counts these
        assert "error:" in out, out
        return
    insns = V.decode(out)
    for name in NAMES:
        for args in probes(policy, rng):
            got = V.describe(V.evaluate(insns, X86_64[name], args=args))
            assert got == reference(policy, name, args), (name, [hex(a) for a in args])


def test_personality_rules_on_two_arguments_with_a_range_never_hang(compiler: Compiler) -> None:
    """Found by a random run: cube rules on arg1 alone next to ``arg0 == 0 && arg1 <= 1``
    rules made libseccomp 2.5.4 spin in seccomp_rule_add_array (about 190 rules; a greedy
    one-rule-at-a-time reduction still spins with 110). The compiler now keeps ranges only
    where every box of a syscall compares the same arguments (argspace.ranges_are_safe)."""
    policy = Seccomp(
        allow=("execve", "exit_group"),
        hardening=False,
        rules=(
            SeccompRule(
                ("personality",), Action("allow"), (ArgCond(1, "ge", 2), ArgCond(1, "le", MAX - 2))
            ),
            SeccompRule(("personality",), Action("allow"), (ArgCond(1, "eq", MAX),)),
            SeccompRule(("personality",), Action("allow"), (ArgCond(0, "eq", 0),)),
        ),
    )
    status, bpf = compiler.compile(policy)
    assert status == "ok", (status, bpf)
    nr = X86_64["personality"]
    for args in (
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (1, 2),
        (1, MAX - 2),
        (1, MAX - 1),
        (1, MAX),
        ((1 << 32), 1),
        ((1 << 32) | 1, MAX - 1),
    ):
        got = V.describe(V.evaluate(V.decode(bpf), nr, args=args))
        assert got == reference(policy, "personality", args), [hex(a) for a in args]


def test_property_run_compiled_nearly_everything() -> None:
    """Guard against a strategy (or a size limit) that makes the property test vacuous."""
    if SEEN["ok"] == 0:
        pytest.skip("runs after the property test, in the same session")
    # about a quarter to a third of the random sets need more rules than a filter should
    # carry (libseccomp takes one comparison per argument, so every range before another
    # argument becomes aligned cubes): those are refused with a located error
    assert SEEN["profile"] * 3 <= SEEN["ok"] * 2, SEEN


def issue_14_policy(name: str) -> Seccomp:
    return Seccomp(
        allow=("execve", "exit_group"),
        hardening=False,
        rules=(
            SeccompRule((name,), Action("errno", 22), (ArgCond(0, "eq", 16),)),
            SeccompRule((name,), Action("allow"), (ArgCond(2, "ne", 9),)),
        ),
    )


def test_the_issue_14_rule_set_never_hangs(compiler: Compiler) -> None:
    """allow execve, exit_group; socket arg0 == 16 -> errno 22; socket arg2 != 9 -> allow:
    the range rewrite of these made libseccomp 2.5.4 loop forever. On socket, whose
    arguments are 32-bit, "!= 9" on the low half is 32 cubes, and the product with
    "!= 16" needs 1057 exact rules, over the limit: the allow pieces become one
    fall-through rule (seccomp._with_fallthrough), proven against the profile before it is
    kept. On 64-bit arguments (mremap's) the same rules compile exactly."""
    status, bpf = compiler.compile(issue_14_policy("socket"))
    assert status == "ok", (status, bpf)
    nr = X86_64["socket"]
    for args in ((16, 1, 0), (16, 1, 9), ((1 << 32) | 16, 1, 0), (2, 1, 0), (2, 1, 9),
                 (2, 1, (1 << 32) | 9), (2, 1, 10), (17, 1, 8), (MAX, 1, MAX)):  # fmt: skip
        got = V.describe(V.evaluate(bpf, nr, args=args))
        assert got == reference(issue_14_policy("socket"), "socket", args), args
    assert V.evaluate(bpf, nr, args=((1 << 32) | 16, 1, 0)) == V.RET_ERRNO | 22
    status, bpf = compiler.compile(issue_14_policy("mremap"))
    assert status == "ok", (status, bpf)
    nr = X86_64["mremap"]
    assert V.evaluate(bpf, nr, args=(16, 1, 0)) == V.RET_ERRNO | 22
    assert V.evaluate(bpf, nr, args=(16, 1, 9)) == V.RET_ERRNO | 22
    assert V.evaluate(bpf, nr, args=((1 << 32) | 16, 1, 0)) == V.RET_ALLOW
    assert V.evaluate(bpf, nr, args=(2, 1, 0)) == V.RET_ALLOW
    assert V.evaluate(bpf, nr, args=(2, 1, 9)) == V.RET_ERRNO | 1
    assert V.evaluate(bpf, nr, args=(2, 1, (1 << 32) | 9)) == V.RET_ALLOW


def test_a_wrong_fall_through_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proof is not vacuous: an encoding that drops the errno 22 rule (as a wrong
    libseccomp order would lose it) must be caught, on the issue's own rule set."""
    from isorun.compile import seccomp_plan as S

    real = S._with_fallthrough

    def lossy(emitted: Any, *args: Any) -> Any:
        out, took = real(emitted, *args)
        return [(e, [] if str(e.action) == "errno:22" else cl) for e, cl in out], took

    monkeypatch.setattr(S, "_with_fallthrough", lossy)
    with pytest.raises(ProfileError) as err:
        compile_seccomp(issue_14_policy("socket"))
    assert "the rules for socket need 1057 libseccomp rules to compile exactly" in str(err.value)
    assert "(the shorter encoding was checked and gave a different answer)" in str(err.value)


def test_the_fall_through_proof_refuses_masks_its_samples_do_not_decide() -> None:
    # ``arg & 0xF0 == 0x10`` is not an interval, so interval starts do not cover it: the
    # proof must say it did not check (the fall-through is then not kept), not pass
    from isorun.compile import bpf_verify as V
    from isorun.compile import fallthrough_check as F
    from isorun.compile.argspace import Cube

    allow_all = (V.Insn(0x06, 0, 0, V.RET_ALLOW),)  # ret ALLOW
    flags: list[tuple[tuple[int, Cube], ...]] = [((1, Cube(0xF0, 0x10)),)]
    prefix: list[tuple[tuple[int, Cube], ...]] = [((1, Cube(0xFFFFFFFF_FFFFFFF0, 0x10)),)]
    nr = 41  # socket on x86_64
    assert F.check(allow_all, nr, V.AUDIT_ARCH_X86_64, [flags], lambda a: V.RET_ALLOW) == F.TOO_MANY
    # a prefix mask is decided, and a wrong answer found
    assert F.check(allow_all, nr, V.AUDIT_ARCH_X86_64, [prefix], lambda a: V.RET_ALLOW) is None

    def refused(args: tuple[int, ...]) -> int:
        return V.RET_ERRNO | 1 if args[1] & 0xFFFFFFFF_FFFFFFF0 == 0x10 else V.RET_ALLOW

    wrong = F.check(allow_all, nr, V.AUDIT_ARCH_X86_64, [prefix], refused)
    assert wrong is not None and wrong != F.TOO_MANY
