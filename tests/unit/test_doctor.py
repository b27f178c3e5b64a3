"""isorun doctor: probes fed recorded /proc trees, and the fallback it reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from isorun import doctor
from isorun.host import probe
from isorun.host.facts import HostFacts
from isorun.host.probe import BackendFacts, Tool

USER = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.1")
MOUNTINFO_HYBRID = (
    "30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "33 30 0:29 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
)


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_userns_sysctls_decide_for_unprivileged_callers(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/sys/user/max_user_namespaces": "1000\n",
                           "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"})
    state = probe.read_userns(root, uid=1000)
    assert not state.allowed
    assert state.blocker == "kernel.apparmor_restrict_unprivileged_userns=1"
    assert "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in state.fix
    # root has CAP_SYS_ADMIN: only max_user_namespaces binds it
    assert probe.read_userns(root, uid=0).allowed


def test_max_user_namespaces_zero_blocks_everyone(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/sys/user/max_user_namespaces": "0\n"})
    for uid in (0, 1000):
        state = probe.read_userns(root, uid=uid)
        assert (state.allowed, state.blocker) == (False, "user.max_user_namespaces=0")
        assert state.fix == "sysctl -w user.max_user_namespaces=15000"


def test_debian_unprivileged_userns_clone(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/sys/kernel/unprivileged_userns_clone": "0\n"})
    assert probe.read_userns(root, uid=1000).blocker == "kernel.unprivileged_userns_clone=0"


def test_cgroups_hybrid_has_no_v2_memory(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/self/mountinfo": MOUNTINFO_HYBRID,
                           "proc/self/cgroup": "1:memory:/x\n0::/\n",
                           "sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n",
                           "sys/fs/cgroup/unified/cgroup.procs": ""})
    state = probe.read_cgroups(root)
    assert state.version == "hybrid"
    assert state.v1_controllers == ("memory", "pids")
    checks = doctor.check_cgroups(root)
    assert checks[0].status == doctor.WARN
    assert "no memory, pids: held by cgroup v1" in checks[0].detail
    assert "Delegate=yes" in checks[0].remedy


def test_seccomp_actions_and_user_notification(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/sys/kernel/seccomp/actions_avail":
                           "kill_process kill_thread trap errno trace log allow\n"})
    checks = {c.name: c for c in doctor.check_seccomp(root)}
    assert checks["seccomp actions"].status == doctor.OK
    assert checks["seccomp user notification"].status == doctor.INFO
    assert doctor.check_seccomp(tree(tmp_path / "empty", {}))[0].status == doctor.FAIL


def test_container_detection(tmp_path: Path) -> None:
    root = tree(tmp_path, {".dockerenv": "", "proc/self/status": "Name:\tx\nSeccomp:\t2\n"})
    (check,) = doctor.check_container(root)
    assert check.status == doctor.WARN and "inside docker" in check.detail
    assert "seccomp filter" in check.detail


def test_tool_versions_parse() -> None:
    assert probe.parse_version("bubblewrap 0.8.0\n") == "0.8.0"
    assert probe.parse_version("firejail version 0.9.72\n\nCompile time support:") == "0.9.72"


def test_firejail_users_file(tmp_path: Path) -> None:
    root = tree(tmp_path, {"etc/firejail/firejail.users": "# allowed\nalice\n\nbob\n"})
    assert probe.read_firejail_users(root) == frozenset({"alice", "bob"})
    assert probe.read_firejail_users(tmp_path / "none") is None


def test_doctor_with_userns_off_reports_the_fallback_and_why(tmp_path: Path) -> None:
    """User namespaces off (recorded sysctl, failed clone, injected tools): auto falls back
    to a setuid bwrap, and the doctor says why native was passed over."""
    root = tree(tmp_path, {"proc/sys/user/max_user_namespaces": "0\n"})
    facts = BackendFacts(host=USER, userns=probe.read_userns(root, uid=1000),
                         bwrap=Tool("/usr/bin/bwrap", "0.8.0", setuid=True),
                         firejail=Tool("/usr/bin/firejail", "0.9.72", setuid=True))
    checks = {c.name: c for c in doctor.diagnose(facts, root=root, clone=(False, "EPERM"),
                                                 landlock=0, live=False)}
    assert checks["user.max_user_namespaces"].status == doctor.FAIL
    assert checks["clone(CLONE_NEWUSER)"].status == doctor.FAIL
    backend = checks["backend for strict"]
    assert backend.status == doctor.OK
    assert backend.detail.startswith("auto selects bwrap: backend native: not usable here: "
                                     "user namespaces are disabled "
                                     "(user.max_user_namespaces=0)")


def test_doctor_with_userns_off_and_plain_bwrap_falls_to_firejail_for_hostview(
        tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/sys/user/max_user_namespaces": "0\n",
                           "hostview.toml": HOSTVIEW})
    facts = BackendFacts(host=USER, userns=probe.read_userns(root, uid=1000),
                         bwrap=Tool("/usr/bin/bwrap", "0.8.0", setuid=False),
                         firejail=Tool("/usr/bin/firejail", "0.9.72", setuid=True))
    (check,) = doctor.check_backend(facts, str(root / "hostview.toml"))
    assert check.detail.startswith("auto selects firejail")
    assert "bwrap: not usable here: bwrap is not setuid and user namespaces are disabled" \
        in check.detail


def test_doctor_fails_with_a_fix_when_nothing_can_run(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/sys/user/max_user_namespaces": "0\n"})
    facts = BackendFacts(host=replace(USER, landlock=0),
                         userns=probe.read_userns(root, uid=1000))
    (check,) = doctor.check_backend(facts, "strict")
    assert check.status == doctor.FAIL
    assert check.remedy == "sysctl -w user.max_user_namespaces=15000"


def test_doctor_names_landlock_mode_and_its_losses_without_user_namespaces(
        tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/sys/user/max_user_namespaces": "0\n"})
    facts = BackendFacts(host=USER, userns=probe.read_userns(root, uid=1000))
    (check,) = doctor.check_backend(facts, "strict")
    assert check.status == doctor.FAIL
    assert "backend landlock: would not enforce" in check.detail
    for rule in ("pid namespace", "net namespace", "hostname", "new root", "tmpfs /tmp"):
        assert rule in check.detail
    assert check.remedy.startswith("sysctl -w user.max_user_namespaces=15000; or pass "
                                   "--allow-weaker to run in landlock mode")


def test_doctor_json_names_the_landlock_abi_and_what_each_level_adds() -> None:
    (check,) = doctor.check_landlock(4)
    (data,) = doctor.to_json([check])
    assert data["data"]["abi"] == 4
    assert set(data["data"]["levels"]) == {str(n) for n in range(1, 8)}
    assert [m.split(":")[0] for m in data["data"]["missing"]] == ["ABI 5", "ABI 6", "ABI 7"]
    assert check.status == doctor.WARN


def test_doctor_command_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from isorun.cli.doctor import doctor as command

    fake = [doctor.Check("x", doctor.OK, "fine"), doctor.Check("y", doctor.FAIL, "bad", "fix")]
    monkeypatch.setattr(doctor, "diagnose", lambda **_: fake)
    result = CliRunner().invoke(command, ["--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)[1] == {"name": "y", "status": "fail", "detail": "bad",
                                            "remedy": "fix"}
    text = CliRunner().invoke(command, [])
    assert text.output == "[  ok] x: fine\n[fail] y: bad\n       fix: fix\n"


HOSTVIEW = """
extends = ["strict"]
override = ["mounts", "filesystem.root", "namespaces.cgroup", "process.die_with_parent"]
mounts = []
[filesystem]
root = "host"
[namespaces]
cgroup = false
[process]
die_with_parent = false
"""


STATUS_FILTERED = "Name:\tpython3\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"


def test_userns_refusal_names_an_outer_isorun_sandbox(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/self/status": STATUS_FILTERED,
                           "proc/self/uid_map": "     65534      65534          1\n"})
    state = probe.userns_refusal(root, 1)
    assert not state.allowed
    assert "inside a sandbox (a user namespace mapping '65534 65534 1'" in state.blocker
    assert "(EPERM)" in state.blocker and "--backend landlock" in state.fix


def test_userns_refusal_names_a_container_filter_and_the_step(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/self/status": STATUS_FILTERED,
                           "proc/self/uid_map": "0 0 4294967295\n"})
    assert "container engine's default profile) refuses unshare" in \
        probe.userns_refusal(root, 1).blocker
    step = probe.userns_refusal(root, 1, "sethostname")
    assert step.blocker.startswith("a user namespace can be made, but sethostname in it "
                                   "fails with EPERM: the seccomp filter")
    assert "--security-opt seccomp=" in step.fix


def test_setuid_wrappers_are_unusable_under_no_new_privs() -> None:
    from isorun.host.probe import UsernsState
    from isorun.sandbox.backends import BACKENDS

    facts = BackendFacts(host=USER, userns=UsernsState(False, "x", "fix"),
                         bwrap=Tool("/usr/bin/bwrap", "0.8.0", setuid=True),
                         firejail=Tool("/usr/bin/firejail", "0.9.72", setuid=True),
                         no_new_privs=True)
    plan = api_plan()
    assert "no_new_privs" in BACKENDS["firejail"].unavailable(plan, facts)[0]
    assert "no_new_privs" in BACKENDS["bwrap"].unavailable(plan, facts)[0]


def api_plan() -> object:
    from isorun import api

    return api.compile_plan(api.load_profile("strict"), USER,
                            {"CWD": "/home/u/p", "HOME": "/home/u"})
