"""The .git guard's second half (sandbox/git_guard.py): which mounts are guards, and the
move aside of a .git that appeared, on real files."""

from __future__ import annotations

import os
from pathlib import Path

from isorun.compile import plan as p
from isorun.sandbox import git_guard


def test_only_an_optional_read_only_bind_of_a_git_is_a_guard(tmp_path: Path) -> None:
    src = str(tmp_path / ".git")
    guard = p.MountStep(type="ro-bind", dst="/w/.git", src=src, optional=True)
    assert git_guard.missing_guards([guard]) == (src,)
    others = [p.MountStep(type="rw-bind", dst="/w/.git", src=src, optional=True),
              p.MountStep(type="ro-bind", dst="/w/.git", src=src),
              p.MountStep(type="ro-bind", dst="/w/.git", src=str(tmp_path / "data"),
                          optional=True)]
    assert git_guard.missing_guards(others) == ()
    (tmp_path / ".git").mkdir()
    assert git_guard.missing_guards([guard]) == ()  # present: the mount guards it


def test_a_record_names_the_same_guards(tmp_path: Path) -> None:
    src = str(tmp_path / ".git")
    mounts = [(1, "/w/.git", src, 0x1, "", 0, 1, 3, -1),
              (1, "/w/.git", src, 0x0, "", 0, 1, 4, -1),  # writable: no guard
              (2, "/w/.git", src, 0x1, "", 0, 1, 5, -1)]  # a tmpfs
    assert git_guard.missing_in_record(mounts) == (src,)


def test_a_planted_git_directory_and_file_are_moved_aside(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / ".git", tmp_path / "b" / ".git"
    one.parent.mkdir()
    two.parent.mkdir()
    one.mkdir()
    (one / "config").write_text("[core]\n\tfsmonitor = id\n")
    two.symlink_to("/etc")  # moved as a name, never followed
    taken = Path(f"{two}.isorun-quarantine-{os.getpid()}-0")
    taken.mkdir()  # a name already there is never replaced
    notes = git_guard.quarantine([str(one), str(two), str(tmp_path / "c" / ".git")])
    assert len(notes) == 2 and all("the sandbox created" in n for n in notes)
    assert not os.path.lexists(one) and not os.path.lexists(two)
    assert (tmp_path / "a" / f".git.isorun-quarantine-{os.getpid()}-0" / "config").exists()
    assert os.readlink(f"{two}.isorun-quarantine-{os.getpid()}-1") == "/etc"
    assert taken.is_dir() and Path("/etc/passwd").exists()
