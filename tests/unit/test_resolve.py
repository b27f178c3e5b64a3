"""isorun_resolve (src/isorun/shim/resolve.c): which links the parent follows (#12).

docs/security.md's rule: only root's links in root-only directories of the system's own
trees. Everything else, root's own links in a project included, comes back as ELOOP with
the link's path, so the caller can name it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isorun.sandbox import shim_ffi


@pytest.fixture
def shim() -> Any:
    return shim_ffi.load_shim()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "file").write_text("x")
    yield tmp_path


def resolve(shim: Any, path: Path | str) -> tuple[int, str]:
    fd, out = shim_ffi.resolve_in_parent(shim, os.fsencode(path))
    if fd >= 0:
        os.close(fd)
    return fd, os.fsdecode(out)


@pytest.mark.needs("shim")
def test_resolve_returns_a_link_free_path_as_given(shim: Any, project: Path) -> None:
    fd, out = resolve(shim, project / "real" / "file")
    assert fd >= 0 and out == str(project / "real" / "file")


@pytest.mark.needs("shim")
def test_resolve_normalises_dots_without_following_links(shim: Any, project: Path) -> None:
    fd, out = resolve(shim, f"{project}/real/./../real//file")
    assert fd >= 0 and out == str(project / "real" / "file")


@pytest.mark.needs("shim")
@pytest.mark.parametrize("target", ["real", "..", "/", "/etc", "missing", "loop"])
def test_resolve_refuses_a_project_link_whoever_owns_it(
    shim: Any, project: Path, target: str
) -> None:
    # Owned by whoever runs the test, root included: a repository root cloned brings
    # root-owned links, and root ownership alone trusts nothing outside the system trees.
    if target == "loop":
        (project / "loop").symlink_to("loop")
    (project / "link").symlink_to(target)
    for path in (project / "link", project / "link" / "file"):
        fd, out = resolve(shim, path)
        assert (fd, out) == (-errno.ELOOP, str(project / "link"))


@pytest.mark.needs("shim")
def test_resolve_reports_a_missing_component(shim: Any, project: Path) -> None:
    fd, _ = resolve(shim, project / "nothing" / "here")
    assert fd == -errno.ENOENT


@pytest.mark.needs("shim")
def test_resolve_follows_the_systems_own_links(shim: Any) -> None:
    # /bin -> usr/bin, root's, in "/": the layout of every merged-/usr distribution. On
    # another layout (or inside a sandbox, where /bin is a bind) /bin is a directory.
    merged = os.path.islink("/bin") and os.lstat("/bin").st_uid == 0
    fd, out = resolve(shim, "/bin")
    assert fd >= 0 and out == (os.path.realpath("/bin") if merged else "/bin")


@pytest.mark.needs("shim")
def test_resolve_rejects_a_relative_path(shim: Any) -> None:
    assert resolve(shim, "relative/path")[0] == -errno.EINVAL
