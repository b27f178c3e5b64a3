"""The wrapper backends' path checks (issue #12): the walk that follows only trusted links,
the bwrap destinations refused below a directory others can change, the binds bwrap never
needs to make, and the checks the exec stage is given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isorun.compile import plan as p
from isorun.compile.render.bwrap import render_bwrap
from isorun.compile.render.bwrap_mounts import elide_redundant, expects
from isorun.errors import HostError, Unsupported
from isorun.host.facts import HostFacts
from isorun.host.probe import BackendFacts, Tool, UsernsState
from isorun.sandbox import safepath
from isorun.sandbox.backends import select_backend as select
from isorun.sandbox.wrapper_mounts import check_sources, unsafe_destination

NOBODY = 65534


def make_plan(*steps: p.Step) -> p.Plan:
    return p.Plan(profile="t", steps=(p.NewRoot("tmpfs"), *steps, p.Exec()))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


def test_walk_follows_a_root_owned_link_in_a_root_only_directory() -> None:
    if not os.path.islink("/bin") or os.lstat("/bin").st_uid != 0:
        pytest.skip("/bin is not a root-owned link here (no merged /usr)")
    found = safepath.probe("/bin/sh")
    assert found.path == os.path.realpath("/bin/sh")


@pytest.mark.needs("root")
@pytest.mark.parametrize("target", ["..", "../..", "/", "loop", "nowhere"])
def test_walk_refuses_a_link_someone_else_could_have_planted(tree: Path, target: str) -> None:
    link = tree / "link"
    os.symlink(target, link)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(safepath.SymlinkRefused) as err:
        safepath.probe(str(link / "x"))
    assert err.value.link == str(link) and err.value.target == target
    assert err.value.exit_code == 125
    assert "hint: remove the link" in err.value.render()


@pytest.mark.needs("root")
def test_walk_refuses_a_root_owned_link_in_a_directory_others_can_write(tree: Path) -> None:
    tree.chmod(0o777)
    os.symlink("/etc", tree / "link")
    with pytest.raises(safepath.SymlinkRefused):
        safepath.probe(str(tree / "link"))


def test_walk_resolves_dot_dot_and_reports_a_missing_path(tree: Path) -> None:
    (tree / "a").mkdir()
    assert safepath.probe(str(tree / "a" / ".." / "a")).path == str(tree / "a")
    with pytest.raises(FileNotFoundError):
        safepath.probe(str(tree / "missing"))


def test_missing_optional_bind_is_dropped_and_a_required_one_refused(tree: Path) -> None:
    optional = p.MountStep("rw-bind", str(tree / "gone"), str(tree / "gone"), optional=True)
    required = p.MountStep("ro-bind", str(tree / "gone"), str(tree / "gone"))
    assert check_sources(make_plan(optional)).plan.find(p.MountStep) == []
    with pytest.raises(HostError, match="does not exist"):
        check_sources(make_plan(required))
    # at selection it is kept: the launch reports it, on whichever backend
    assert check_sources(make_plan(required), launch=False).plan.find(p.MountStep)


def _nested(tree: Path) -> p.Plan:
    project = tree / "project"
    (project / ".tox").mkdir(parents=True)
    return make_plan(p.MountStep("ro-bind", str(project), str(project)),
                     p.MountStep("rw-bind", str(project / ".tox"), str(project / ".tox")))


@pytest.mark.needs("root")
def test_bwrap_destination_below_a_directory_a_user_owns_is_refused(tree: Path) -> None:
    plan = _nested(tree)
    os.chown(tree / "project", 1000, 1000)
    why, fix = unsafe_destination(check_sources(plan))
    assert f"{tree}/project/.tox" in why and "owned by uid 1000" in why
    assert "--backend native" in fix


@pytest.mark.needs("root")
def test_bwrap_destination_below_a_root_only_directory_is_allowed(tree: Path) -> None:
    plan = _nested(tree)
    (tree / "project").chmod(0o755)
    assert unsafe_destination(check_sources(plan)) == ("", "")
    (tree / "project").chmod(0o775)
    assert "writable by group or others" in unsafe_destination(check_sources(plan))[0]


@pytest.mark.needs("root")
def test_same_kind_bind_inside_a_bind_is_not_made(tree: Path) -> None:
    project = tree / "project"
    (project / ".venv").mkdir(parents=True)
    os.chown(project, 1000, 1000)
    plan = make_plan(p.MountStep("ro-bind", str(project), str(project)),
                     p.MountStep("ro-bind", str(project / ".venv"), str(project / ".venv")))
    checked = check_sources(plan)
    assert unsafe_destination(checked) == ("", "")
    assert len(elide_redundant(checked.plan, checked.identities).find(p.MountStep)) == 1
    # without the walk's word that neither path has a link, both stay
    assert len(elide_redundant(checked.plan, {}).find(p.MountStep)) == 2


def test_stage_checks_each_bind_not_covered_by_a_later_mount() -> None:
    plan = make_plan(p.MountStep("ro-bind", "/a", "/a"), p.MountStep("ro-bind", "/b", "/b"),
                     p.MountStep("tmpfs", "/b"), p.MountStep("rw-bind", "/d", "/c"))
    got = expects(plan, {"/a": ("/a", 1, 2), "/b": ("/b", 1, 3), "/c": ("/c", 1, 4)})
    assert [e.arg() for e in got] == ["1:2:r:/a", "1:4:-:/d"]


def test_bwrap_bind_without_proc_is_lost_with_the_inner_check() -> None:
    plan = make_plan(p.MountStep("ro-bind", "/a", "/a"))
    with pytest.raises(Unsupported, match="bwrap"):
        render_bwrap(plan, ["cmd"], {}, seccomp_fd=None, stage_fd=20)
    with_proc = make_plan(p.MountStep("proc", "/proc"), p.MountStep("ro-bind", "/a", "/a"))
    inv = render_bwrap(with_proc, ["cmd"], {}, seccomp_fd=None, stage_fd=20,
                       identities={"/a": ("/a", 7, 8)})
    tail = list(inv.argv[inv.command_at:])
    assert tail == ["/proc/self/fd/20", "--expect", "7:8:r:/a", "--close-fds",
                    "--reset-signals", "--", "cmd"]
    assert 20 in inv.pass_fds


@pytest.mark.needs("root")
def test_auto_passes_over_bwrap_for_an_unsafe_destination_and_bwrap_refuses(
        tree: Path) -> None:
    plan = make_plan(p.MountStep("proc", "/proc"), *_nested(tree).find(p.MountStep))
    os.chown(tree / "project", 1000, 1000)
    said: list[str] = []
    backend, lost = select(plan, "auto", _facts(native_missing="shim not built"), True,
                           log=said.append)
    assert backend.name == "firejail" and lost
    assert any("backend bwrap: not usable here:" in line and "bwrap 0.8 creates" in line
               for line in said), said
    with pytest.raises(HostError) as err:
        select(plan, "bwrap", _facts(), False)
    text = err.value.render()
    assert err.value.exit_code == 125
    assert "cannot enforce profile t on backend bwrap" in text
    assert f"{tree}/project/.tox" in text and "hint: use --backend native" in text


def _facts(**kw: object) -> BackendFacts:
    base: dict[str, object] = {
        "host": HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.1"),
        "userns": UsernsState(True), "bwrap": Tool("/usr/bin/bwrap", "0.8.0", setuid=False),
        "firejail": Tool("/usr/bin/firejail", "0.9.72", setuid=True)}
    base.update(kw)
    return BackendFacts(**base)  # type: ignore[arg-type]



@pytest.mark.needs("root")
def test_a_root_owned_link_in_a_root_owned_project_is_refused(tmp_path: Path) -> None:
    # a repository cloned by root: root-owned, not group/other-writable, not a system tree
    project = tmp_path / "proj"
    project.mkdir(mode=0o755)
    (tmp_path / "target").mkdir()
    os.symlink("../target", project / "data")
    with pytest.raises(safepath.SymlinkRefused):
        safepath.walk(str(project / "data"))
