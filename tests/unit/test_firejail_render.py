"""render_firejail: golden argv for every built-in profile, and the rules firejail refuses."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from isorun.compile import plan as p
from isorun.compile.render.firejail import render_firejail
from isorun.errors import InternalError, Unsupported
from isorun.profile.schema import Seccomp
from tests.golden.backends.harness import CALLER_ENV, cases, plan_of, render

CASES = [c for c in cases() if c[2] == "firejail"]


def make_plan(*steps: p.Step) -> p.Plan:
    return p.Plan(profile="t", steps=(*steps, p.Exec()))


def rules_lost(plan: p.Plan) -> list[str]:
    with pytest.raises(Unsupported) as info:
        render_firejail(plan, ["cmd"], {}, seccomp_fd=None, env_fd=4, helper_fd=5)
    assert info.value.backend == "firejail"
    return [lost.rule for lost in info.value.lost]


@pytest.mark.parametrize(("profile", "expected"), [(c[1], c[3]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_golden_firejail_argv(profile: str, expected: Path) -> None:
    actual = render(profile, "firejail")
    want = expected.read_text() if expected.exists() else ""
    if actual != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), actual.splitlines(True),
                                            "expected", "actual"))
        pytest.fail(f"{expected} differs (run `make golden`, review):\n{diff}")


def test_builtin_profiles_are_refused_on_firejail() -> None:
    # firejail cannot build an empty root nor follow the launcher's death: the built-in
    # profiles all ask for both, so firejail must refuse rather than run them weaker.
    for _, profile, _, _ in CASES:
        with pytest.raises(Unsupported) as info:
            render_firejail(plan_of(profile), ["true"], CALLER_ENV, seccomp_fd=3, env_fd=4,
                            helper_fd=5)
        rules = {lost.rule for lost in info.value.lost}
        assert any(rule.startswith("new root: empty tmpfs") for rule in rules)
        assert "die with parent (PR_SET_PDEATHSIG SIGKILL)" in rules


def test_cgroup_and_time_namespaces_are_refused() -> None:
    assert rules_lost(make_plan(p.Clone(("user", "cgroup", "time")))) == [
        "cgroup namespace", "time namespace"]


def test_only_identity_maps_of_a_non_root_caller() -> None:
    assert rules_lost(make_plan(p.Clone(("user",)), p.MapIds(0, 0, 1000, 1000)))
    assert rules_lost(make_plan(p.Clone(("user",)), p.MapIds(0, 0, 0, 0)))
    inv = render_firejail(make_plan(p.Clone(("user",)), p.MapIds(1000, 1000, 1000, 1000)),
                          ["cmd"], {}, seccomp_fd=None, env_fd=4, helper_fd=5)
    assert inv.user == (1000, 1000)
    assert "--noroot" in inv.argv


def test_binds_to_another_path_and_devices_are_refused() -> None:
    assert rules_lost(make_plan(p.MountStep("ro-bind", "/a", "/b"))) == ["ro-bind /a (from /b)"]
    assert rules_lost(make_plan(p.MountStep("dev", "/dev"))) == ["dev /dev"]
    assert rules_lost(make_plan(p.MountStep("tmpfs", "/tmp", size=10))) == [
        "tmpfs /tmp (size 10)"]


def test_host_view_mounts_map_to_firejail_options() -> None:
    plan = make_plan(p.MountStep("ro-bind", "/usr", "/usr", noexec=True),
                     p.MountStep("tmpfs", "/tmp", mode=0o1777), p.MountStep("proc", "/proc"))
    argv = render_firejail(plan, ["cmd"], {}, seccomp_fd=None, env_fd=4, helper_fd=5).argv
    assert "--read-only=/usr" in argv
    assert "--noexec=/usr" in argv
    assert "--private-tmp" in argv


def test_the_stage_loads_the_same_program_and_environment() -> None:
    plan = make_plan(p.CloseFds((7,)),
                     p.Environment(clear=True, keep=("TERM",), set=(("A", "1"),)),
                     p.DropCaps(()), p.NoNewPrivs(), p.LoadSeccomp(Seccomp()))
    inv = render_firejail(plan, ["cmd", "x"], CALLER_ENV, seccomp_fd=3, env_fd=4, helper_fd=5)
    argv = list(inv.argv)
    stage = argv[argv.index("--") + 1:]
    assert stage[0] == "/proc/self/fd/5"
    assert stage[stage.index("--seccomp-fd") + 1] == "3"
    assert stage[stage.index("--env-fd") + 1] == "4"
    assert stage[-6:] == ["7", "--close-fds", "--reset-signals", "--", "cmd", "x"]
    assert "--no-new-privs" in stage
    assert inv.inputs == ((4, b"A=1\0TERM=xterm-256color\0"),)
    assert inv.pass_fds == (3, 4, 5, 7)
    assert "--keep-fd=3,4,5,7" in argv
    assert "--caps.drop=all" in argv and "--nonewprivs" in argv
    with pytest.raises(InternalError):
        render_firejail(plan, ["cmd"], {}, seccomp_fd=None, env_fd=4, helper_fd=5)


def test_kept_capabilities_are_refused() -> None:
    assert rules_lost(make_plan(p.DropCaps(("CAP_NET_RAW",)))) == [
        "drop all capabilities except CAP_NET_RAW"]


def test_allow_weaker_lists_what_is_lost() -> None:
    inv = render_firejail(make_plan(p.DieWithParent()), ["cmd"], {}, seccomp_fd=None,
                          env_fd=4, helper_fd=5, allow_weaker=True)
    assert [lost.rule for lost in inv.lost] == ["die with parent (PR_SET_PDEATHSIG SIGKILL)"]


def test_terminal_leaves_out_the_stage_setsid_only_with_hardening() -> None:
    def plan(hardening: bool) -> p.Plan:
        return make_plan(p.NewSession(), p.NoNewPrivs(),
                         p.LoadSeccomp(Seccomp(hardening=hardening)))

    shared = render_firejail(plan(True), ["cmd"], {}, seccomp_fd=3, env_fd=4, helper_fd=5,
                             terminal=True)
    assert shared.terminal_job and "--setsid" not in shared.argv
    for inv in (render_firejail(plan(True), ["cmd"], {}, seccomp_fd=3, env_fd=4,
                                helper_fd=5),
                render_firejail(plan(False), ["cmd"], {}, seccomp_fd=3, env_fd=4,
                                helper_fd=5, terminal=True)):
        assert not inv.terminal_job and "--setsid" in inv.argv
