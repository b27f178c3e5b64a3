"""The planner's mount list: a mount that repeats the previous one at its destination is
dropped (it shows nothing new and costs a mount per launch); anything else stays."""

from __future__ import annotations

from pathlib import Path

from isorun import api
from isorun.compile import plan as p


def _mounts(tmp_path: Path, body: str) -> list[p.MountStep]:
    path = tmp_path / "m.toml"
    path.write_text('extends = ["strict"]\n\n' + body)
    steps = api.compile_plan(str(path)).steps
    return [s for s in steps if isinstance(s, p.MountStep) and s.dst.startswith("/srv")]


def _bind(dst: str, kind: str = "ro-bind", optional: bool = False) -> str:
    extra = "optional = true\n" if optional else ""
    return f'[[mounts]]\ntype = "{kind}"\nsrc = "/usr"\ndst = "{dst}"\n{extra}\n'


def test_an_identical_repeat_is_dropped(tmp_path: Path) -> None:
    got = _mounts(tmp_path, _bind("/srv/a") + _bind("/srv/a"))
    assert [(m.type, m.dst) for m in got] == [("ro-bind", "/srv/a")]


def test_a_repeat_over_another_mount_at_that_place_stays(tmp_path: Path) -> None:
    # ro-bind, tmpfs over it, ro-bind again: the last one shows the bind again, so it is
    # not a repeat of the mount just below it.
    tmpfs = '[[mounts]]\ntype = "tmpfs"\ndst = "/srv/a"\n\n'
    got = _mounts(tmp_path, _bind("/srv/a") + tmpfs + _bind("/srv/a"))
    assert [m.type for m in got] == ["ro-bind", "tmpfs", "ro-bind"]


def test_a_different_mount_at_the_same_place_stays(tmp_path: Path) -> None:
    got = _mounts(tmp_path, _bind("/srv/a") + _bind("/srv/a", kind="rw-bind"))
    # (the planner's own read-only bind of /srv/a/.git under the writable one aside)
    assert [m.type for m in got if not m.reason] == ["ro-bind", "rw-bind"]


def test_a_required_repeat_makes_the_kept_one_required(tmp_path: Path) -> None:
    got = _mounts(tmp_path, _bind("/srv/a", optional=True) + _bind("/srv/a"))
    assert [(m.dst, m.optional) for m in got] == [("/srv/a", False)]
    got = _mounts(tmp_path, _bind("/srv/a") + _bind("/srv/a", optional=True))
    assert [(m.dst, m.optional) for m in got] == [("/srv/a", False)]


def test_a_deeper_mount_between_repeats_keeps_its_place(tmp_path: Path) -> None:
    # The depth sort puts /srv/a/b after both binds of /srv/a; one /srv/a goes, the
    # mount under it is still mounted after it.
    deeper = '[[mounts]]\ntype = "tmpfs"\ndst = "/srv/a/b"\n\n'
    got = _mounts(tmp_path, _bind("/srv/a") + deeper + _bind("/srv/a"))
    assert [(m.type, m.dst) for m in got] == [("ro-bind", "/srv/a"), ("tmpfs", "/srv/a/b")]
