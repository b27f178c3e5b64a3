"""The working-directory policy and the credential masks, on plans (issue #13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from isorun import api
from isorun.compile import exposure
from isorun.compile import plan as p
from isorun.errors import ProfileError
from isorun.host.facts import HostFacts

FACTS = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.18")


def variables(cwd: str, home: str = "/home/u", agent: str = "") -> dict[str, str]:
    return {"CWD": cwd, "HOME": home, "TMPDIR": "/tmp", "UID": "1000", "GID": "1000",
            "USER": "u", "PYTHON_PREFIX": "/usr", "PYTHON_BASE_PREFIX": "/usr",
            "SSH_AUTH_SOCK": agent}


def mounts(profile: str, cwd: str, **kwargs: str) -> list[p.MountStep]:
    plan = api.compile_plan(api.load_profile(profile), FACTS, variables(cwd, **kwargs))
    return plan.find(p.MountStep)


@pytest.mark.parametrize("cwd", ["/", "/home", "/home/u", "/tmp", "/var/tmp", "/run",
                                 "/run/user/1000", "/run/user/1000/gnupg"])
@pytest.mark.parametrize("profile", ["strict", "build", "test", "web"])
def test_a_working_directory_that_is_no_project_is_refused(cwd: str, profile: str) -> None:
    with pytest.raises(ProfileError) as info:
        mounts(profile, cwd)
    text = info.value.render()
    assert ".toml:" in text and "of ${CWD} would give the sandbox" in text
    assert "hint: cd into the project directory first" in text


def test_a_project_under_the_home_runs_and_shows_no_credential() -> None:
    got = mounts("strict", "/home/u/src/app")
    assert not [m for m in got if m.type == "mask"]


def test_a_bound_home_masks_every_credential_location(tmp_path: Path) -> None:
    profile = tmp_path / "home.toml"
    profile.write_text('extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
                       'dst = "/srv/h"\nsrc = "/home/u"\n')
    got = mounts(str(profile), "/work/app", agent="/home/u/.cache/agent/s.sock")
    masked = {m.dst for m in got if m.type == "mask"}
    assert {f"/srv/h/{rel}" for rel in exposure.CREDENTIALS} <= masked
    assert {"/srv/h/.cache/agent/s.sock", "/srv/h/.cache/agent"} <= masked
    # each after the bind that shows it
    order = [m.dst for m in got]
    assert order.index("/srv/h") < order.index("/srv/h/.ssh")


def test_a_credential_the_profile_names_is_not_masked(tmp_path: Path) -> None:
    profile = tmp_path / "ssh.toml"
    profile.write_text('extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\ndst = "/home/u"\n'
                       '[[mounts]]\ntype = "ro-bind"\ndst = "/home/u/.ssh/known_hosts"\n')
    masked = {m.dst for m in mounts(str(profile), "/work/app") if m.type == "mask"}
    assert "/home/u/.ssh" not in masked and "/home/u/.aws" in masked


def test_the_agent_directory_is_not_masked_when_shared() -> None:
    paths = dict(exposure.credential_paths(variables("/w", agent="/tmp/agent.sock")))
    assert "/tmp/agent.sock" in paths and "/tmp" not in paths


def test_a_writable_bind_keeps_its_git_read_only() -> None:
    got = mounts("build", "/home/u/src/app")
    guard = [m for m in got if m.dst == "/home/u/src/app/.git"]
    assert [(m.type, m.optional) for m in guard] == [("ro-bind", True)]
    assert [m.dst for m in got].index("/home/u/src/app") < [m.dst for m in got].index(
        "/home/u/src/app/.git")


def test_every_tmpfs_has_a_size_and_the_root_is_read_only() -> None:
    plan = api.compile_plan(api.load_profile("test"), FACTS, variables("/home/u/src/app"))
    for mount in plan.find(p.MountStep):
        if mount.type in ("tmpfs", "dev", "overlay"):
            assert mount.size and mount.inodes, mount.describe()
    root = plan.find(p.NewRoot)[0]
    assert (root.size, root.inodes) == (8 << 20, 2048)
    assert plan.find(p.ReadOnlyRoot)


def test_web_states_what_host_networking_exposes() -> None:
    plan = api.compile_plan(api.load_profile("web"), FACTS, variables("/srv/app"))
    assert any("host's loopback (127.0.0.1, ::1" in w for w in plan.warnings)


def test_an_agent_directory_in_the_runtime_dir_is_still_masked(tmp_path: Path) -> None:
    """The runtime-dir rule refuses a working directory there; it does not stop the
    agent's own directory (/run/user/UID/keyring) from being masked."""
    paths = dict(exposure.credential_paths(
        variables("/work/app", agent="/run/user/1000/keyring/ssh")))
    assert paths["/run/user/1000/keyring"] == "ssh-agent directory"


@pytest.mark.parametrize("cwd", ["/home/u", "/home"])
def test_the_passwd_home_is_refused_as_working_directory_when_home_differs(cwd: str) -> None:
    """HOME=/tmp/x (a service unit, sudo -E, a test's env) must not open the real home."""
    facts_vars = {**variables(cwd, home="/tmp/x"), "PASSWD_HOME": "/home/u"}
    with pytest.raises(ProfileError) as info:
        api.compile_plan(api.load_profile("build"), FACTS, facts_vars)
    assert "of ${CWD} would give the sandbox" in info.value.render()


def test_credentials_of_both_homes_are_masked(tmp_path: Path) -> None:
    profile = tmp_path / "root.toml"
    profile.write_text('extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
                       'dst = "/srv/all"\nsrc = "/home"\n')
    facts_vars = {**variables("/work/app", home="/home/x"), "PASSWD_HOME": "/home/u"}
    plan = api.compile_plan(api.load_profile(str(profile)), FACTS, facts_vars)
    masked = {m.dst for m in plan.find(p.MountStep) if m.type == "mask"}
    assert {"/srv/all/u/.ssh", "/srv/all/x/.ssh", "/srv/all/u/.aws"} <= masked
