"""Where coverage data goes: the project's coverage configuration, read as data; a
data_file outside the project or through a link is refused with a hint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isorun.testing import coverage as pytest_coverage
from isorun.testing.coverage import CoverageConfigError, data_file


def where(project: Path, args: tuple[str, ...] = ("--cov",), **env: str) -> str:
    return data_file(list(args), str(project), str(project), env)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pyproject.toml", '[tool.coverage.run]\ndata_file = "build/cov.db"\n'),
        (".coveragerc", "[run]\ndata_file = build/cov.db\n"),
        (".coveragerc", "[coverage:run]\ndata_file = build/cov.db\n"),
        (".coveragerc.toml", '[run]\ndata_file = "build/cov.db"\n'),
        ("setup.cfg", "[coverage:run]\ndata_file = build/cov.db\n"),
        ("tox.ini", "[tox]\nenvlist = py\n[coverage:run]\ndata_file = build/cov.db\n"),
    ],
)
def test_data_file_of_each_configuration_file(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert where(tmp_path) == str(tmp_path.resolve() / "build" / "cov.db")


def test_without_configuration_the_data_is_dot_coverage(tmp_path: Path) -> None:
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = x\n")
    assert where(tmp_path) == str(tmp_path / ".coverage")


def test_first_coverage_file_decides_as_in_coverage_py(tmp_path: Path) -> None:
    # .coveragerc is coverage's own: used even without data_file, pyproject's not read.
    (tmp_path / ".coveragerc").write_text("[run]\nbranch = true\n")
    (tmp_path / "pyproject.toml").write_text('[tool.coverage.run]\ndata_file = "x.db"\n')
    assert where(tmp_path) == str(tmp_path / ".coverage")
    # setup.cfg without coverage sections is skipped for pyproject.toml
    (tmp_path / ".coveragerc").unlink()
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = x\n")
    assert where(tmp_path) == str(tmp_path.resolve() / "x.db")


def test_cov_config_and_coverage_rcfile_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "cov.ini").write_text("[run]\ndata_file = a.db\n")
    (tmp_path / "rc.ini").write_text("[run]\ndata_file = b.db\n")
    assert where(tmp_path, ("--cov", "--cov-config=cov.ini")) == str(tmp_path.resolve() / "a.db")
    assert where(tmp_path, ("--cov", "--cov-config", "cov.ini")) == str(tmp_path.resolve() / "a.db")
    assert where(tmp_path, COVERAGE_RCFILE="rc.ini") == str(tmp_path.resolve() / "b.db")


def test_callers_coverage_file_wins_over_the_configuration(tmp_path: Path) -> None:
    (tmp_path / ".coveragerc").write_text("[run]\ndata_file = /etc/passwd\n")
    assert where(tmp_path, COVERAGE_FILE="mine.db") == str(tmp_path / "mine.db")


@pytest.mark.parametrize(
    "value", ["/etc/cron.d/x", "../outside.db", "sub/../../outside.db", ".", "$HOME/x", "~/x"]
)
def test_data_file_outside_the_project_is_refused(tmp_path: Path, value: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".coveragerc").write_text(f"[run]\ndata_file = {value}\n")
    with pytest.raises(CoverageConfigError) as err:
        where(project)
    text = err.value.render()
    assert str(project / ".coveragerc") in text
    assert "hint: write data_file as a path inside the project" in text
    assert "COVERAGE_FILE" in text
    assert err.value.exit_code == 2


@pytest.mark.parametrize("link", ["dir", "file"])
def test_data_file_through_a_link_is_refused(tmp_path: Path, link: str) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    if link == "dir":
        (project / "build").symlink_to(outside)
        value = "build/.coverage"
    else:
        (project / "data.db").symlink_to(outside / "data.db")
        value = "data.db"
    (project / "pyproject.toml").write_text(f'[tool.coverage.run]\ndata_file = "{value}"\n')
    with pytest.raises(CoverageConfigError, match="goes through the link"):
        where(project)


def test_configuration_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.ini"
    secret.write_text("[run]\ndata_file = a.db\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".coveragerc").symlink_to(secret)
    with pytest.raises(CoverageConfigError, match="is a symbolic link"):
        where(project)


def test_broken_configuration_is_left_to_coverage(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.coverage.run\n")
    assert where(tmp_path) == str(tmp_path / ".coverage")


def test_copy_walks_down_without_following_a_link(tmp_path: Path) -> None:
    # Between the check and the copy the run may replace a directory it could write by
    # a link: the walk refuses it.
    root = tmp_path / "project"
    (root / "build" / "sub").mkdir(parents=True)
    fd = pytest_coverage.open_directory_below(str(root), str(root / "build" / "sub"))
    os.close(fd)
    (root / "build" / "sub").rmdir()
    (root / "build" / "sub").symlink_to(tmp_path)
    with pytest.raises(OSError):
        pytest_coverage.open_directory_below(str(root), str(root / "build" / "sub"))
