"""The pure parts of the front door and the project's trust rules: fast, no sandbox."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from isorun.cli import pytest as cli_pytest
from isorun.errors import UsageError
from isorun.testing import child as pytest_inner
from isorun.testing import project
from isorun.testing import trust as pytest_trust


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / ".git" / "hooks").mkdir(parents=True)
    (project / "reports").mkdir()
    (tmp_path / "home").mkdir()
    (project / "to-home").symlink_to(tmp_path / "home")
    return project


@pytest.mark.parametrize(("value", "why"), [
    ("reports", None),
    ("reports/sub", None),
    ("../home", "is outside the project"),
    ("to-home", "is outside the project"),
    ("to-home/inner", "is outside the project"),
    ("/", "is outside the project"),
    (".", "the whole project"),
    (".git/hooks", "the repository's .git"),
    ("venv/lib", "the interpreter's installation"),
])  # fmt: skip
def test_path_loosening(tmp_path: Path, value: str, why: str | None) -> None:
    project = _project(tmp_path)
    (project / "venv" / "lib").mkdir(parents=True)
    found = pytest_trust.path_loosening(
        "isorun_writable", value, str(project), "pyproject.toml", [str(project / "venv")]
    )
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found.why, found
        assert found.describe().startswith(f"isorun_writable = {value} (from pyproject.toml): ")


def test_enforce_refuses_without_trust_and_prints_with_it() -> None:
    x = pytest_trust.Loosening("cache_dir = /elsewhere", "tox.ini", "/elsewhere is outside")
    with pytest.raises(pytest_trust.ProjectLoosensError) as err:
        pytest_trust.enforce([x], trust=False)
    text = err.value.render()
    assert "cache_dir = /elsewhere (from tox.ini): /elsewhere is outside" in text
    assert "hint: remove the setting, or, if you trust this checkout, pass " \
           "--isorun-trust-project" in text  # fmt: skip
    assert err.value.exit_code == 2
    assert pytest_trust.enforce([x], trust=True) == [
        "isorun: trusted project loosens the sandbox: cache_dir = /elsewhere (from tox.ini): "
        "/elsewhere is outside"
    ]
    assert pytest_trust.enforce([], trust=False) == []


def test_trust_only_from_the_users_flag_or_variable() -> None:
    assert pytest_trust.trusted(["-q", "--isorun-trust-project"], {})
    assert pytest_trust.trusted([], {"ISORUN_TRUST_PROJECT": "1"})
    assert not pytest_trust.trusted([], {"ISORUN_TRUST_PROJECT": "yes"})
    assert not pytest_trust.trusted(["-q"], {})


def test_builtin_profiles_judged_against_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ${CWD} is where the session starts, inside the project.
    monkeypatch.chdir(tmp_path)
    assert pytest_trust.profile_loosenings("test", str(tmp_path), "pyproject.toml") == []
    assert pytest_trust.profile_loosenings("strict", str(tmp_path), "pyproject.toml") == []
    web = pytest_trust.profile_loosenings("web", str(tmp_path), "pyproject.toml")
    assert [x.why for x in web] == ["host network (no network namespace)"], web


def test_missing_profile_file_named_as_written(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--isorun=\./x\.toml: no such profile file"):
        pytest_trust.check_profile_file("--isorun", "./x.toml", str(tmp_path / "x.toml"))
    pytest_trust.check_profile_file("--isorun", "test", "test")


def test_find_project_config_like_pytest(tmp_path: Path) -> None:
    top = tmp_path / "top"
    sub = top / "pkg" / "tests"
    sub.mkdir(parents=True)
    (top / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nisorun_writable = ["a", "b"]\ncache_dir = ".c"\n'
    )
    (top / "pkg" / "setup.cfg").write_text("[metadata]\nname = x\n")  # no pytest section
    config = project.find_project_config(str(sub), [])
    assert config.rootdir == str(top) and config.inifile == str(top / "pyproject.toml")
    assert config.lines("isorun_writable") == ["a", "b"] and config.get("cache_dir") == ".c"
    (top / "pkg" / "tox.ini").write_text("[pytest]\nisorun_writable =\n    x\n    y\n")
    config = project.find_project_config(str(sub), [])
    assert config.rootdir == str(top / "pkg") and config.lines("isorun_writable") == ["x", "y"]
    (tmp_path / "other.ini").write_text("[pytest]\ncache_dir = z\n")
    config = project.find_project_config(str(sub), ["-c", str(tmp_path / "other.ini")])
    assert config.rootdir == str(tmp_path) and config.get("cache_dir") == "z"
    config = project.find_project_config(str(tmp_path), [])
    assert config.inifile == "" and config.rootdir == str(tmp_path)


def test_pth_paths_read_not_run(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "src").mkdir()
    (site / "plain.pth").write_text(f"# comment\n{tmp_path / 'src'}\n")
    (site / "__editable__.x.pth").write_text(
        "import __editable___x_finder; __editable___x_finder.install()\n"
    )
    (site / "__editable___x_finder.py").write_text(
        f"MAPPING = {{'x': {str(tmp_path / 'proj' / 'src' / 'x')!r}}}\n"
        "raise SystemExit('must not run')\n"
    )
    (site / "evil.pth").write_text("import os; os.system('touch /tmp/never')\n")
    found = project._pth_paths(str(site))
    assert str(tmp_path / "src") in found
    assert str(tmp_path / "proj" / "src") in found


def test_split_args_takes_only_its_own() -> None:
    profile, trust, rest = cli_pytest.split_args(
        ["-q", "--isorun-profile", "strict", "--isorun-trust-project", "-k", "x", "--",
         "--isorun-trust-project"]
    )  # fmt: skip
    assert (profile, trust) == ("strict", True)
    assert rest == ["-q", "-k", "x", "--", "--isorun-trust-project"]


def test_inner_check_fails_on_the_host() -> None:
    # This process is the host's (or a sandbox without the launcher's descriptor).
    why = pytest_inner.why_not_inside()
    assert why is not None
    assert "ISORUN_PYTEST_INNER is set" in pytest_inner.refusal(why)


def test_hand_over_refuses_a_busy_descriptor() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        os.dup2(fd, pytest_inner.NS_FD)
        with pytest.raises(OSError, match="already open"):
            pytest_inner.hand_over_namespace()
    finally:
        os.close(pytest_inner.NS_FD)
        os.close(fd)


@pytest.mark.parametrize(("path", "why"), [
    ("home", "holds your home directory"),
    (".", "holds your home directory"),
    ("home/.ssh", "is inside"),
    ("home/.config/gcloud", "is inside"),
    ("home/.pyenv/versions/3.11/lib", ""),
    ("home/src/project", ""),
    ("elsewhere", ""),
])  # fmt: skip
def test_import_path_exposing_home_is_dropped(tmp_path: Path, path: str, why: str) -> None:
    # A .pth line of an installed package may name any directory: none that shows the
    # caller's home or credentials is bound into the sandbox.
    target = tmp_path / path
    target.mkdir(parents=True, exist_ok=True)
    found = pytest_trust.exposes_home(str(target), str(tmp_path / "home"))
    assert (why in found) if why else found == "", found
    kept, dropped = pytest_trust.drop_exposing([str(target)], str(tmp_path / "home"))
    assert (kept, bool(dropped)) == (([], True) if why else ([str(target)], False))


def _venv(tmp_path: Path, home: str, system: str = "false") -> Path:
    """A virtual environment as build could leave it: pyvenv.cfg naming ``home``, a site
    directory with a .pth file, and a bin/python that is a script of the sandbox's."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = tmp_path / "venv"
    site_dir = venv / "lib" / version / "site-packages"
    site_dir.mkdir(parents=True, exist_ok=True)
    (venv / "bin").mkdir(exist_ok=True)
    (tmp_path / "src").mkdir(exist_ok=True)
    (site_dir / "x.pth").write_text(f"{tmp_path / 'src'}\n")
    (venv / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = {system}\n")
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    return venv


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir(exist_ok=True)
    return {"HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.mark.parametrize("system", ["false", "true"])
def test_python_paths_read_from_data_never_run(tmp_path: Path, system: str) -> None:
    """The project's interpreter may be the sandbox's program: its paths come from
    pyvenv.cfg, the base's landmark and the .pth files, and it runs nowhere here."""
    base = os.path.realpath(sys.base_prefix)
    venv = _venv(tmp_path, os.path.join(base, "bin"), system)
    prefix, paths, site_dirs = project.python_paths(str(venv / "bin" / "python"),
                                                       _env(tmp_path))
    assert not (tmp_path / "ran").exists()
    assert prefix == str(venv)
    assert set(paths) >= {base, str(venv), str(tmp_path / "src")}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert site_dirs[0] == str(venv / "lib" / version / "site-packages")
    base_dirs = [d for d in site_dirs[1:] if os.path.realpath(d).startswith(base + "/")]
    assert len(base_dirs) == len(site_dirs) - 1
    assert bool(base_dirs) == (system == "true"), site_dirs


def test_python_paths_of_a_base_interpreter_by_its_landmark(tmp_path: Path) -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = os.path.join(sys.base_prefix, "bin", version)
    prefix, paths, site_dirs = project.python_paths(python, _env(tmp_path))
    assert prefix == os.path.realpath(sys.base_prefix)
    assert paths[0] == prefix or prefix in paths
    assert site_dirs and all(d.startswith(prefix + "/") for d in site_dirs)


def test_python_paths_refuse_what_a_sandbox_could_name(tmp_path: Path) -> None:
    """pyvenv.cfg's home as /, or the caller's home's bin (with a python3 in it), is no
    base to bind; an interpreter with no standard library above it is none either."""
    env = _env(tmp_path)
    (tmp_path / "home" / "bin").mkdir()
    (tmp_path / "home" / "bin" / "python3").write_text("")
    for home in ("/", str(tmp_path / "home" / "bin"), "relative/bin"):
        venv = _venv(tmp_path, home)
        with pytest.raises(UsageError, match=r"pyvenv\.cfg names no Python installation"):
            project.python_paths(str(venv / "bin" / "python"), env)
        (venv / "pyvenv.cfg").unlink()
    with pytest.raises(UsageError, match=r"where .* keeps its standard library"):
        project.python_paths(str(venv / "bin" / "python"), env)
    assert not (tmp_path / "ran").exists()


def test_pth_files_read_up_to_a_bound(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "big.pth").write_bytes(b"#" * (project._PTH_FILE_MAX + 1))
    with pytest.raises(UsageError, match=r"big\.pth is larger than"):
        project._pth_paths(str(site_dir))
    (site_dir / "big.pth").unlink()
    for n in range(project._PTH_DIR_MAX // project._PTH_FILE_MAX + 1):
        (site_dir / f"{n}.pth").write_bytes(b"#" * project._PTH_FILE_MAX)
    with pytest.raises(UsageError, match="hold more than"):
        project._pth_paths(str(site_dir))


def test_pyproject_syntax_error_is_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = = 1\n")
    monkeypatch.chdir(tmp_path)
    assert cli_pytest.run(["-q"], _env(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"isorun: error: {tmp_path / 'pyproject.toml'}:2:11: TOML syntax" in err, err
    assert "Traceback" not in err


def test_pyproject_a_sandbox_wrote_is_bounded(tmp_path: Path) -> None:
    """A dotted key of 200,000 parts held the host some 20 minutes in tomllib (3.11); a
    huge file is not read at all."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.pytest.ini_options]\n" + ".".join(["a"] * 200_000) + " = 1\n")
    started = time.monotonic()
    with pytest.raises(UsageError, match="a dotted key of too many parts"):
        project.find_project_config(str(tmp_path), [])
    assert time.monotonic() - started < 10
    pyproject.write_bytes(b"#" * (project._PYPROJECT_MAX + 1))
    with pytest.raises(UsageError, match="larger than"):
        project.find_project_config(str(tmp_path), [])
