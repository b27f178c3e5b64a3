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


@pytest.mark.parametrize("cwd", ["/", "/home", "/home/u", "/tmp", "/var/tmp"])
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
