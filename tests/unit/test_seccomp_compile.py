"""compile_seccomp, checked by running the BPF in our own interpreter (bpf_verify)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isorun.compile import argspace
from isorun.compile import bpf_verify as V
from isorun.compile.argspace import Cube, Span
from isorun.compile.seccomp import (
    SeccompProgram,
    build_entries,
    compile_seccomp,
    decide,
)
from isorun.errors import Loc, ProfileError
from isorun.kernel import syscalls
from isorun.kernel.abi import X32_SYSCALL_BIT
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule

X86_64 = syscalls.table("x86_64")
ALLOW = V.RET_ALLOW
LOC = Loc("web.toml", 7, 3)


def errno(n: int) -> int:
    return V.RET_ERRNO | n


def service_policy(**kw: object) -> Seccomp:
    base: dict[str, object] = {
        "allow": ("@system-service",),
        "rules": (
            SeccompRule(("mkdir",), Action("errno", 13), loc=LOC),
            SeccompRule(("acct",), Action("allow"), (ArgCond(0, "eq", 0),), loc=LOC),
            SeccompRule(("kill",), Action("errno", 1), (ArgCond(1, "gt", 15),), loc=LOC),
            SeccompRule(
                ("fchmod",), Action("errno", 13), (ArgCond(1, "masked_eq", 0o4000, 0o4000),)
            ),
        ),
    }
    base.update(kw)
    return Seccomp(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def service() -> tuple[Seccomp, SeccompProgram]:
    policy = service_policy()
    return policy, compile_seccomp(policy)


def probe_args(policy: Seccomp, name: str) -> list[tuple[int, ...]]:
    """Argument vectors on both sides of every boundary the profile's regions have."""
    entries, _ = build_entries(policy)
    values: dict[int, set[int]] = {i: {0, 1, argspace.MAX} for i in range(6)}
    for entry in entries.get(name, []):
        for box in entry.region:
            for i, atom in box:
                if isinstance(atom, Cube):
                    lo, hi = atom.bounds()
                    extra = {
                        atom.value,
                        atom.value ^ (atom.mask & -atom.mask),
                        hi,
                        atom.value | (1 << 40),
                    }
                    extra |= {atom.value ^ (1 << b) for b in range(64) if atom.mask >> b & 1}
                else:
                    lo, hi = atom.lo, atom.hi
                    extra = set()
                values[i] |= {v & argspace.MAX for v in (lo - 1, lo, hi, hi + 1, *extra)}
    out: list[tuple[int, ...]] = [()]
    for i, vals in values.items():
        out += [tuple([0] * i + [v]) for v in sorted(vals)]
    return out


def assert_matches_profile(policy: Seccomp, prog: SeccompProgram) -> int:
    insns = V.decode(prog.bpf)
    entries, _ = build_entries(policy)
    checked = 0
    for name, nr in X86_64.items():
        for args in probe_args(policy, name):
            want = decide(policy, name, args, entries)
            got = V.evaluate(insns, nr, args=args)
            assert V.describe(got) == str(want), (name, [hex(a) for a in args])
            checked += 1
    return checked


def test_every_x86_64_syscall_answers_what_the_profile_says(
    service: tuple[Seccomp, SeccompProgram],
) -> None:
    policy, prog = service
    assert assert_matches_profile(policy, prog) > 5000


def test_errno_is_exact(service: tuple[Seccomp, SeccompProgram]) -> None:
    _, prog = service
    assert V.evaluate(prog.bpf, X86_64["mkdir"]) == errno(13)
    assert V.evaluate(prog.bpf, X86_64["reboot"]) == errno(1)  # default_action EPERM
    assert V.evaluate(prog.bpf, X86_64["getppid"]) == ALLOW
    assert V.evaluate(prog.bpf, X86_64["acct"], args=(0,)) == ALLOW
    assert V.evaluate(prog.bpf, X86_64["acct"], args=(2,)) == errno(1)
    assert V.evaluate(prog.bpf, X86_64["kill"], args=(1, 15)) == ALLOW
    assert V.evaluate(prog.bpf, X86_64["kill"], args=(1, 16)) == errno(1)


def test_unknown_syscall_numbers_get_enosys(service: tuple[Seccomp, SeccompProgram]) -> None:
    _, prog = service
    known = set(X86_64.values())
    for nr in [n for n in range(0, 1100) if n not in known] + [0x3FFFFFFF]:
        assert V.evaluate(prog.bpf, nr) == errno(38), nr


NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x20000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}


def test_clone3_gets_enosys_and_every_namespace_flag_is_denied(
    service: tuple[Seccomp, SeccompProgram],
) -> None:
    _, prog = service
    assert V.evaluate(prog.bpf, X86_64["clone3"]) == errno(38)
    # fork, threads (CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|...) still work
    for flags in (0x11, 0x3D0F00, 0x1200011):
        assert V.evaluate(prog.bpf, X86_64["clone"], args=(flags,)) == ALLOW, hex(flags)
        assert V.evaluate(prog.bpf, X86_64["clone"], args=(flags | 1 << 32,)) == ALLOW
    assert V.evaluate(prog.bpf, X86_64["unshare"], args=(0x400,)) == ALLOW  # CLONE_FILES
    for name, flag in NAMESPACE_FLAGS.items():
        for high in (0, 1 << 32, 0xFFFFFFFF << 32):
            for call in ("clone", "unshare"):
                got = V.evaluate(prog.bpf, X86_64[call], args=(flag | 0x11 | high,))
                assert got == errno(1), (call, name, hex(high))
    # CLONE_NEWTIME is 0x80: unshare takes it, clone reads that bit as part of CSIGNAL
    assert V.evaluate(prog.bpf, X86_64["unshare"], args=(0x80,)) == errno(1)
    assert V.evaluate(prog.bpf, X86_64["clone"], args=(0x80 | 0x11,)) == ALLOW


def test_x32_and_i386_syscalls_kill_the_process(service: tuple[Seccomp, SeccompProgram]) -> None:
    _, prog = service
    for nr in (0, 1, 59, 0x200, 1000):
        assert V.evaluate(prog.bpf, nr | X32_SYSCALL_BIT) == V.RET_KILL_PROCESS
        assert V.evaluate(prog.bpf, nr, arch=V.AUDIT_ARCH_I386) == V.RET_KILL_PROCESS
    assert V.evaluate(prog.bpf, 0, arch=V.AUDIT_ARCH_AARCH64) == V.RET_KILL_PROCESS


def test_x32_allowed_when_listed() -> None:
    prog = compile_seccomp(Seccomp(allow=("@default", "read"), architectures=("native", "x32")))
    assert V.evaluate(prog.bpf, 0 | X32_SYSCALL_BIT) == ALLOW
    assert V.evaluate(prog.bpf, syscalls.table("x32")["mkdir"]) == errno(1)
    assert V.evaluate(prog.bpf, 3, arch=V.AUDIT_ARCH_I386) == V.RET_KILL_PROCESS


@pytest.mark.parametrize(
    "cmd", [0x5412, 0x541C, 0x1_0000_5412, 0xFFFFFFFF_00005412, 0xDEAD_0000_541C]
)
def test_tiocsti_cve_2019_10063_denied_with_and_without_high_bits(
    service: tuple[Seccomp, SeccompProgram], cmd: int
) -> None:
    _, prog = service
    assert V.evaluate(prog.bpf, X86_64["ioctl"], args=(0, cmd)) == errno(1)


@pytest.mark.parametrize("cmd", [0x5401, 0x5413, 0x541B, 0x5410, 0x1_0000_5413, 0x80045430])
def test_other_ioctls_allowed(service: tuple[Seccomp, SeccompProgram], cmd: int) -> None:
    _, prog = service
    assert V.evaluate(prog.bpf, X86_64["ioctl"], args=(0, cmd)) == ALLOW


@settings(max_examples=300, deadline=None)
@given(
    cmd=st.integers(0, argspace.MAX),
    flags=st.integers(0, argspace.MAX),
    pers=st.integers(0, argspace.MAX),
)
def test_random_arguments_match_profile(cmd: int, flags: int, pers: int) -> None:
    policy, prog = _SERVICE
    entries, _ = build_entries(policy)
    for name, args in (
        ("ioctl", (0, cmd)),
        ("clone", (flags,)),
        ("personality", (pers,)),
        ("fchmod", (3, flags)),
        ("kill", (1, cmd)),
    ):
        want = str(decide(policy, name, args, entries))
        assert V.describe(V.evaluate(prog.bpf, X86_64[name], args=args)) == want


_SERVICE = (service_policy(), compile_seccomp(service_policy()))


def test_personality_only_safe_values(service: tuple[Seccomp, SeccompProgram]) -> None:
    _, prog = service
    # personality takes an unsigned int: the kernel reads the low 32 bits only, so
    # 0x1_0000_0000 is PER_LINUX and -1 sign-extended is the 0xffffffff query
    for ok in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF, 0x1_0000_0000, argspace.MAX):
        assert V.evaluate(prog.bpf, X86_64["personality"], args=(ok,)) == ALLOW
    for bad in (0x0040000, 0x0400000, 1, 0x1_0004_0000, 0xFFFFFFFF_00000001):
        assert V.evaluate(prog.bpf, X86_64["personality"], args=(bad,)) == errno(1)


def test_masked_eq_rule(service: tuple[Seccomp, SeccompProgram]) -> None:
    _, prog = service
    assert V.evaluate(prog.bpf, X86_64["fchmod"], args=(3, 0o4755)) == errno(13)
    assert V.evaluate(prog.bpf, X86_64["fchmod"], args=(3, 0o755)) == ALLOW


def test_hardening_wins_over_group_allow() -> None:
    prog = compile_seccomp(Seccomp(allow=("@docker-default", "@mount", "@debug", "@aio")))
    for name in (
        "mount",
        "ptrace",
        "io_uring_setup",
        "bpf",
        "perf_event_open",
        "keyctl",
        "pivot_root",
        "fsopen",
        "userfaultfd",
    ):
        assert V.evaluate(prog.bpf, X86_64[name]) == errno(1), name


def test_hardening_off_allows_them() -> None:
    prog = compile_seccomp(Seccomp(allow=("@mount", "ioctl", "clone3"), hardening=False))
    assert V.evaluate(prog.bpf, X86_64["mount"]) == ALLOW
    assert V.evaluate(prog.bpf, X86_64["ioctl"], args=(0, 0x5412)) == ALLOW
    assert V.evaluate(prog.bpf, X86_64["clone3"]) == ALLOW


def test_linear_and_tree_layouts_decide_the_same() -> None:
    policy = service_policy()
    tree, linear = compile_seccomp(policy), compile_seccomp(policy, layout="linear")
    assert tree.bpf != linear.bpf
    t, lin = V.decode(tree.bpf), V.decode(linear.bpf)
    for nr in range(0, 1100):
        for args in ((), (0, 0x5412), (0x10000000,), (9,)):
            assert V.evaluate(t, nr, args=args) == V.evaluate(lin, nr, args=args), nr


def test_default_and_unknown_actions_are_configurable() -> None:
    policy = Seccomp(
        allow=("@default",),
        default_action=Action("kill_process"),
        unknown_action=Action("errno", 95),
    )
    prog = compile_seccomp(policy)
    assert V.evaluate(prog.bpf, X86_64["mkdir"]) == V.RET_KILL_PROCESS
    assert V.evaluate(prog.bpf, 1000) == errno(95)
    assert V.evaluate(prog.bpf, X86_64["getpid"]) == ALLOW


def test_deny_list_with_kill_action() -> None:
    prog = compile_seccomp(
        Seccomp(
            allow=("@system-service",), deny=("@network-io",), deny_action=Action("kill_process")
        )
    )
    assert V.evaluate(prog.bpf, X86_64["connect"]) == V.RET_KILL_PROCESS
    assert V.evaluate(prog.bpf, X86_64["read"]) == ALLOW


def test_trap_log_kill_thread_actions() -> None:
    prog = compile_seccomp(
        Seccomp(
            allow=("@default",),
            rules=(
                SeccompRule(("mkdir",), Action("trap")),
                SeccompRule(("rmdir",), Action("log")),
                SeccompRule(("unlink",), Action("kill_thread")),
            ),
        )
    )
    assert V.evaluate(prog.bpf, X86_64["mkdir"]) == V.RET_TRAP
    assert V.evaluate(prog.bpf, X86_64["rmdir"]) == V.RET_LOG
    assert V.evaluate(prog.bpf, X86_64["unlink"]) == V.RET_KILL_THREAD


def test_names_not_on_this_arch_are_reported() -> None:
    prog = compile_seccomp(Seccomp(allow=("chown32", "read")))
    assert ("chown32", "x86_64") in {(u.name, u.arch) for u in prog.unresolved}
    assert "chown32" in prog.describe()


def test_rules_keep_provenance(service: tuple[Seccomp, SeccompProgram]) -> None:
    _, prog = service
    mkdir = [r for r in prog.rules if r.syscall == "mkdir"]
    assert mkdir and mkdir[0].loc == LOC and mkdir[0].action == "errno:13"
    tiocsti = [r for r in prog.rules if r.syscall == "ioctl" and "TIOCSTI" in r.origin]
    assert tiocsti


def test_argspace_complement_is_exact() -> None:
    region = argspace.from_conditions([(1, "masked_eq", 0x5412, 0xFFFFFFFF)])
    rest = argspace.complement(region)
    for v in (0, 0x5412, 0x1_0000_5412, 0x5413, argspace.MAX):
        assert argspace.contains(rest, (0, v)) != argspace.contains(region, (0, v))
    assert argspace.complement([((0, Span(0, argspace.MAX)),)]) == []


def errors_of(policy: Seccomp) -> str:
    with pytest.raises(ProfileError) as err:
        compile_seccomp(policy)
    return err.value.render()


def test_unknown_name_has_location_and_did_you_mean() -> None:
    text = errors_of(Seccomp(rules=(SeccompRule(("mkdri",), Action("allow"), loc=LOC),)))
    assert text.startswith(
        "web.toml:7:3: error: seccomp.rules[0].syscalls[0]: unknown syscall 'mkdri'"
    )
    assert "hint: did you mean 'mkdir'?" in text


def test_unknown_group_suggests_a_group() -> None:
    text = errors_of(Seccomp(allow=("@netwrk-io",), loc=LOC))
    assert "unknown syscall group '@netwrk-io'" in text and "'@network-io'" in text


def test_arg_index_above_5_is_an_error() -> None:
    cond = ArgCond(6, "eq", 1, loc=Loc("p.toml", 9, 14))
    text = errors_of(Seccomp(rules=(SeccompRule(("kill",), Action("allow"), (cond,)),)))
    assert "p.toml:9:14: error: seccomp.rules[0].args[0].index: 6 out of range" in text


def test_bad_operator_suggests() -> None:
    cond = ArgCond(0, "masked_equal", 1, 1, loc=LOC)
    text = errors_of(Seccomp(rules=(SeccompRule(("kill",), Action("allow"), (cond,)),)))
    assert "unknown operator 'masked_equal'" in text and "'masked_eq'" in text


def test_negative_value_and_bad_mask_are_errors() -> None:
    text = errors_of(
        Seccomp(
            rules=(
                SeccompRule(
                    ("kill",),
                    Action("allow"),
                    (
                        ArgCond(0, "eq", -1),
                        ArgCond(1, "masked_eq", 3, 0),
                        ArgCond(2, "masked_eq", 4, 3),
                    ),
                ),
            )
        )
    )
    assert "not an unsigned 64-bit value" in text
    assert "masked_eq needs a mask" in text
    assert "bits outside mask" in text
    assert text.endswith("3 errors")


def test_allowed_and_denied_unconditionally_is_a_contradiction() -> None:
    text = errors_of(Seccomp(allow=("mkdir",), deny=("mkdir",), loc=LOC))
    assert "mkdir is denied here and allowed by seccomp.allow" in text


def test_two_unconditional_actions_for_one_name_is_a_contradiction() -> None:
    text = errors_of(
        Seccomp(
            rules=(
                SeccompRule(("mkdir",), Action("errno", 13)),
                SeccompRule(("mkdir",), Action("kill_process"), loc=LOC),
            )
        )
    )
    assert "web.toml:7:3: error: seccomp.rules[1]: mkdir answers kill_process" in text


def test_explicit_allow_of_hardened_name_is_an_error() -> None:
    text = errors_of(Seccomp(allow=("ptrace",), loc=LOC))
    assert "ptrace is allowed here but seccomp.hardening denies it" in text
    assert "seccomp.hardening = false" in text


def test_group_allow_refined_by_deny_is_fine() -> None:
    prog = compile_seccomp(Seccomp(allow=("@file-system",), deny=("mkdir",)))
    assert V.evaluate(prog.bpf, X86_64["mkdir"]) == errno(1)
    assert V.evaluate(prog.bpf, X86_64["openat"]) == ALLOW


def test_bad_actions_and_errno_range() -> None:
    text = errors_of(
        Seccomp(
            default_action=Action("alow"), rules=(SeccompRule(("kill",), Action("errno", 5000)),)
        )
    )
    assert "unknown action 'alow'" in text and "'allow'" in text
    assert "errno 5000 out of range" in text


def test_architecture_names_checked() -> None:
    assert "unknown architecture 'x86'" in errors_of(Seccomp(architectures=("native", "x86")))


def test_i386_socket_conditions_fail_closed_instead_of_colliding() -> None:
    # podman's default profile: socket(AF_NETLINK, *, NETLINK_AUDIT) -> EINVAL, the rest
    # allowed, on x86_64, x32 and i386. libseccomp rewrites i386 socket rules into
    # socketcall rules it overwrites the first argument of; the copies collided (EEXIST).
    policy = Seccomp(
        allow=("execve", "exit_group", "connect"),
        architectures=("native", "x32", "i386"),
        hardening=False,
        rules=(
            SeccompRule(
                ("socket",), Action("errno", 22), (ArgCond(0, "eq", 16), ArgCond(2, "eq", 9))
            ),
            SeccompRule(("socket",), Action("allow"), (ArgCond(2, "ne", 9),)),
            SeccompRule(("socket",), Action("allow"), (ArgCond(0, "ne", 16),)),
        ),
    )
    prog = compile_seccomp(policy)
    nr = X86_64["socket"]
    assert V.evaluate(prog.bpf, nr, args=(16, 3, 9)) == errno(22)
    assert V.evaluate(prog.bpf, nr, args=(16, 3, 0)) == ALLOW
    assert V.evaluate(prog.bpf, nr, args=(2, 1, 9)) == ALLOW
    x32 = syscalls.table("x32")["socket"]
    assert V.evaluate(prog.bpf, x32, args=(16, 3, 9)) == errno(22)
    assert V.evaluate(prog.bpf, x32, args=(2, 1, 0)) == ALLOW
    # i386: socket and socketcall(SYS_SOCKET) are refused; connect (allowed) still works
    i386 = syscalls.table("i386")
    for args in ((16, 3, 9), (2, 1, 0)):
        assert V.evaluate(prog.bpf, i386["socket"], V.AUDIT_ARCH_I386, args) == errno(1)
    assert V.evaluate(prog.bpf, i386["socketcall"], V.AUDIT_ARCH_I386, (1, 0)) == errno(1)
    assert V.evaluate(prog.bpf, i386["connect"], V.AUDIT_ARCH_I386, (3, 0)) == ALLOW
    # socketcall goes with it: an unconditional rule for it would undo the refusal
    assert [(u.name, u.arch) for u in prog.refused] == [("socket", "i386"), ("socketcall", "i386")]
    assert "refused on i386" in prog.describe()


def test_a_syscall_refused_for_every_argument_is_one_rule() -> None:
    # hardening's personality and ioctl denies on a profile that allows neither: one
    # unconditional rule each, not the argument pieces of both (isorun issue 14, item 6)
    prog = compile_seccomp(Seccomp(allow=("execve", "exit_group")))
    assert not [r for r in prog.rules if r.conditions]
    assert len([r for r in prog.rules if r.syscall == "personality"]) == 1


def test_strict_socket_checks_survive_docker_export_and_import() -> None:
    # @docker-default keeps moby's socket checks; the export writes them as low-32-bit
    # masked_eq conditions, which import back to the same decisions, high bits included
    from isorun import api
    from isorun.compile.render import docker as D
    from isorun.compile.render import docker_import as DI
    from isorun.profile.loader import load_layer

    policy = api.load_profile("strict").seccomp
    toml, _ = DI.import_docker(D.export_docker(policy), "strict.json")
    back = load_layer(toml.encode(), "back.toml", "back").profile.seccomp
    ours, theirs = compile_seccomp(policy).bpf, compile_seccomp(back).bpf
    nr = X86_64["socket"]
    for family, want in ((1, ALLOW), (2, ALLOW), (39, ALLOW), (41, ALLOW), (38, errno(1)),
                         (40, errno(1)), (0x1_0000_0028, errno(1)), (0x1_0000_0026, errno(1)),
                         (0xFFFFFFFF_00000028, errno(1)), (0x1_0000_0002, ALLOW)):  # fmt: skip
        assert V.evaluate(ours, nr, args=(family, 1, 0)) == want, hex(family)
        assert V.evaluate(theirs, nr, args=(family, 1, 0)) == want, hex(family)


def test_two_ranges_on_one_argument_keep_the_gap_between_them() -> None:
    # libseccomp 2.5.4 compiles arg3 <= 0xfffffffe and arg3 >= 1 << 32 (same action) to a
    # filter that also matches 0xffffffff; found by the property test, the kernel agrees
    policy = Seccomp(
        allow=("execve", "exit_group"),
        hardening=False,
        rules=(
            SeccompRule(("socket",), Action("allow"), (ArgCond(0, "eq", 0),)),
            SeccompRule(("socket",), Action("errno", 22), (ArgCond(3, "ne", 0xFFFFFFFF),)),
        ),
    )
    prog = compile_seccomp(policy)
    nr = X86_64["socket"]
    assert V.evaluate(prog.bpf, nr, args=(0, 0, 0, 0xFFFFFFFF)) == ALLOW
    assert V.evaluate(prog.bpf, nr, args=(1, 0, 0, 0xFFFFFFFF)) == errno(1)
    for v in (0, 5, 0xFFFFFFFE, 1 << 32, argspace.MAX):
        assert V.evaluate(prog.bpf, nr, args=(0, 0, 0, v)) == errno(22), hex(v)
