"""render_bwrap: golden argv for every built-in profile, and the rules bwrap cannot keep."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from isorun.compile import plan as p
from isorun.compile.render.bwrap import file_mounts, render_bwrap
from isorun.errors import InternalError, Loc, Unsupported
from isorun.profile.schema import Seccomp
from tests.golden.backends.harness import CALLER_ENV, cases, plan_of, render

CASES = [c for c in cases() if c[2] == "bwrap"]


def make_plan(*steps: p.Step) -> p.Plan:
    return p.Plan(profile="t", steps=(*steps, p.Exec()))


def argv_of(plan: p.Plan, **kw: object) -> list[str]:
    return list(render_bwrap(plan, ["cmd"], {}, seccomp_fd=None, **kw).argv)  # type: ignore[arg-type]


@pytest.mark.parametrize(("profile", "expected"), [(c[1], c[3]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_golden_bwrap_argv(profile: str, expected: Path) -> None:
    actual = render(profile, "bwrap")
    want = expected.read_text() if expected.exists() else ""
    if actual != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), actual.splitlines(True),
                                            "expected", "actual"))
        pytest.fail(f"{expected} differs (run `make golden`, review):\n{diff}")


def test_builtin_profiles_render_on_bwrap_without_loss() -> None:
    # with the exec stage inside and Landlock on the host, as spawn renders here: the
    # stage applies the ruleset (web's abstract-unix scope included) and keeps the
    # command out of bwrap's pid 1
    for _, profile, _, _ in CASES:
        plan = plan_of(profile)
        inv = render_bwrap(plan, ["true"], CALLER_ENV, seccomp_fd=3, allow_weaker=True,
                           stage_fd=4, landlock_fd=5, landlock=True)
        assert [item.rule for item in inv.lost] == []


def test_without_landlock_bwrap_pid1_loses_the_filter() -> None:
    # bwrap's pid 1 is unfiltered, dumpable and the command's uid; with /proc mounted
    # the command could write into /proc/1/mem, so without Landlock the filter is a
    # rule bwrap cannot keep: refused unless the caller accepts the loss
    plan = plan_of("strict")
    with pytest.raises(Unsupported) as refused:
        render_bwrap(plan, ["true"], CALLER_ENV, seccomp_fd=3, stage_fd=4, landlock=False)
    assert "/proc/1/mem" in refused.value.render()
    inv = render_bwrap(plan, ["true"], CALLER_ENV, seccomp_fd=3, stage_fd=4,
                       allow_weaker=True, landlock=False)
    assert "seccomp" in [item.rule for item in inv.lost]


def test_time_namespace_is_refused_with_its_location() -> None:
    loc = Loc("x.toml", 3, 1)
    plan = make_plan(p.Clone(("user", "time"), loc))
    with pytest.raises(Unsupported) as info:
        argv_of(plan)
    assert info.value.backend == "bwrap"
    assert [(lost.rule, lost.loc) for lost in info.value.lost] == [("time namespace", loc)]
    assert "x.toml:3: time namespace" in info.value.render()


def test_noexec_bind_is_refused() -> None:
    plan = make_plan(p.NewRoot("tmpfs"), p.MountStep("ro-bind", "/usr", "/usr", noexec=True))
    with pytest.raises(Unsupported, match="1 rule"):
        argv_of(plan)


def test_cgroup_limits_are_refused_unless_weaker_is_allowed() -> None:
    plan = make_plan(p.Cgroup(memory=1 << 20, pids=None))
    with pytest.raises(Unsupported):
        argv_of(plan)
    inv = render_bwrap(plan, ["cmd"], {}, seccomp_fd=None, allow_weaker=True)
    assert [lost.rule.split(" (")[0] for lost in inv.lost] == ["cgroup: memory.max 1048576"]


def test_every_lost_rule_is_listed_at_once() -> None:
    plan = make_plan(p.Clone(("time",)), p.Cgroup(memory=None, pids=5),
                     p.NewRoot("tmpfs"), p.MountStep("tmpfs", "/t", noexec=True))
    with pytest.raises(Unsupported) as info:
        argv_of(plan)
    assert len(info.value.lost) == 3


def test_proc_masks_kernel_knobs_read_only() -> None:
    args = argv_of(make_plan(p.NewRoot("tmpfs"), p.MountStep("proc", "/proc")))
    at = args.index("--proc")
    assert args[at:at + 5] == ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
    assert "/proc/sysrq-trigger" in args


def test_host_root_binds_the_whole_tree_first() -> None:
    args = argv_of(make_plan(p.MountStep("tmpfs", "/tmp")))
    bwrap = args.index("bwrap")
    assert args[bwrap + 1:bwrap + 4] == ["--dev-bind", "/", "/"]


def test_rootfs_is_bound_on_root() -> None:
    args = argv_of(make_plan(p.NewRoot("rootfs", "/srv/root"),
                             p.MountStep("proc", "/proc")))
    assert args[args.index("bwrap") + 1:][:3] == ["--bind", "/srv/root", "/"]


def test_optional_bind_uses_try_variant() -> None:
    args = argv_of(make_plan(p.NewRoot("tmpfs"),
                             p.MountStep("rw-bind", "/data", "/srv/data", optional=True)))
    assert args[-5:-2] == ["--bind-try", "/srv/data", "/data"]


def test_file_mounts_read_from_the_given_descriptors() -> None:
    plan = make_plan(p.NewRoot("tmpfs"), p.MountStep("file", "/etc/a", content="A", mode=0o600),
                     p.MountStep("file", "/etc/b", content="B"))
    assert file_mounts(plan) == (b"A", b"B")
    inv = render_bwrap(plan, ["cmd"], {}, seccomp_fd=None, file_fds=(7, 8))
    args = list(inv.argv)
    assert args[args.index("/etc/a") - 4:args.index("/etc/a") + 1] == [
        "--perms", "0600", "--file", "7", "/etc/a"]
    assert inv.pass_fds == (7, 8)
    with pytest.raises(InternalError):
        render_bwrap(plan, ["cmd"], {}, seccomp_fd=None, file_fds=(7,))


def test_capabilities_are_dropped_explicitly_then_kept_ones_added() -> None:
    args = argv_of(make_plan(p.DropCaps(("CAP_NET_BIND_SERVICE",))))
    at = args.index("--cap-drop")
    assert args[at:at + 4] == ["--cap-drop", "ALL", "--cap-add", "CAP_NET_BIND_SERVICE"]


def test_environment_is_built_from_nothing_with_kept_values() -> None:
    step = p.Environment(clear=True, keep=("TERM", "LC_*"), set=(("PATH", "/bin"),))
    inv = render_bwrap(make_plan(step), ["cmd"], CALLER_ENV, seccomp_fd=None)
    args = list(inv.argv)
    assert "--clearenv" in args
    pairs = [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == "--setenv"]
    assert pairs == [("LC_ALL", "C"), ("PATH", "/bin"), ("TERM", "xterm-256color")]
    assert "hunter2" not in args


def test_seccomp_program_descriptor_is_passed_and_required() -> None:
    plan = make_plan(p.NoNewPrivs(), p.LoadSeccomp(Seccomp()))
    inv = render_bwrap(plan, ["cmd"], {}, seccomp_fd=9)
    assert list(inv.argv[-4:-2]) == ["--seccomp", "9"]
    assert inv.pass_fds == (9,)
    with pytest.raises(InternalError):
        render_bwrap(plan, ["cmd"], {}, seccomp_fd=None)


def test_kept_descriptors_are_the_only_others_inherited() -> None:
    inv = render_bwrap(make_plan(p.CloseFds((5, 4))), ["cmd"], {}, seccomp_fd=None)
    assert inv.pass_fds == (4, 5)


def test_rlimits_are_set_by_the_exec_stage_before_bwrap() -> None:
    inv = render_bwrap(make_plan(p.Rlimit("nofile", 64), p.Rlimit("core", 0)), ["cmd"], {},
                       seccomp_fd=None, helper="/x/stage", bwrap="/usr/bin/bwrap")
    assert list(inv.argv[:6]) == ["/x/stage", "--rlimit", "nofile=64", "--rlimit", "core=0",
                                  "--"]
    assert inv.argv[6] == "/usr/bin/bwrap"


def test_id_map_spawns_bwrap_as_the_host_ids() -> None:
    inv = render_bwrap(make_plan(p.Clone(("user",)), p.MapIds(0, 0, 1000, 1001)), ["cmd"], {},
                       seccomp_fd=None)
    assert inv.user == (1000, 1001)
    at = inv.argv.index("--uid")
    assert list(inv.argv[at:at + 4]) == ["--uid", "0", "--gid", "0"]


def test_command_follows_double_dash_unchanged() -> None:
    inv = render_bwrap(make_plan(), ["--weird", "arg with space"], {}, seccomp_fd=None)
    assert list(inv.argv[-3:]) == ["--", "--weird", "arg with space"]


def _terminal_plan(hardening: bool, proc: bool = True) -> p.Plan:
    mounts = (p.MountStep("proc", "/proc"),) if proc else ()
    return p.Plan("t", (p.NewRoot("tmpfs"), *mounts, p.NewSession(), p.NoNewPrivs(),
                        p.LoadSeccomp(Seccomp(hardening=hardening)), p.Exec()))


def test_terminal_drops_new_session_only_behind_the_stage_filter() -> None:
    # bwrap's --new-session is its CVE-2017-5226 guard: left out only when the stage
    # inside loads the filter that refuses TIOCSTI/TIOCLINUX before the command runs.
    # And only with Landlock: the stage's --ptrace-domain keeps the command from
    # writing into bwrap's pid 1, which is unfiltered and then in the caller's session.
    shared = render_bwrap(_terminal_plan(True), ["cmd"], {}, seccomp_fd=9, stage_fd=8,
                          terminal=True, landlock=True)
    assert shared.terminal_job and "--new-session" not in shared.argv
    assert "--seccomp-fd" in shared.argv and "--reset-signals" in shared.argv
    tail = shared.argv[shared.command_at:]
    assert tail.index("--no-new-privs") < tail.index("--ptrace-domain") < tail.index("--")
    for inv in (render_bwrap(_terminal_plan(True), ["cmd"], {}, seccomp_fd=9, stage_fd=8,
                             landlock=True),
                render_bwrap(_terminal_plan(True), ["cmd"], {}, seccomp_fd=9, stage_fd=8,
                             terminal=True),
                render_bwrap(_terminal_plan(False), ["cmd"], {}, seccomp_fd=9, stage_fd=8,
                             terminal=True, landlock=True),
                render_bwrap(_terminal_plan(True, proc=False), ["cmd"], {}, seccomp_fd=9,
                             stage_fd=8, terminal=True, landlock=True)):
        assert not inv.terminal_job and "--new-session" in inv.argv
    # the domain in every run with the stage inside, where the host has Landlock: pid 1
    # is unfiltered in a new session too
    assert "--ptrace-domain" in render_bwrap(_terminal_plan(True), ["cmd"], {}, seccomp_fd=9,
                                             stage_fd=8, landlock=True).argv
    assert "--ptrace-domain" not in render_bwrap(_terminal_plan(True), ["cmd"], {},
                                                 seccomp_fd=9, stage_fd=8).argv


def test_filter_without_a_stage_inside_is_loaded_by_bwrap() -> None:
    # no /proc: the stage cannot run inside, so bwrap itself loads the program
    inv = render_bwrap(_terminal_plan(True, proc=False), ["cmd"], {}, seccomp_fd=9,
                       stage_fd=8)
    assert inv.argv[inv.argv.index("--seccomp") + 1] == "9"
    assert inv.argv[inv.command_at:] == ("cmd",)
