"""``isorun pytest``: nothing of the project, its plugins or its configuration runs or
decides on the host; ``pytest --isorun`` names what did run there; the inner side is
proven by the kernel; the project's configuration may only tighten its sandbox."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import missing, unprivileged_user
from tests.plugin._helpers import PYTHON, output, run

pytestmark = pytest.mark.needs("userns", "shim")

#: an installed plugin's module and a repository module: each, once imported, writes a
#: file named after itself into the host directory OUT and into the project
HOSTILE = textwrap.dedent("""
    import os
    for _path in ({out!r} + "/{name}", {project!r} + "/pwned-{name}"):
        try:
            with open(_path, "w") as _f:
                _f.write(str(os.getuid()))
        except OSError:
            pass
""")

ENTRY_POINTS = "[pytest11]\nhostile = hostile_plugin\n"
METADATA = "Metadata-Version: 2.1\nName: hostile-plugin\nVersion: 1.0\n"
PYPROJECT = '[tool.pytest.ini_options]\naddopts = "-p repo_plugin"\n'
TEST_OK = "def test_ok():\n    pass\n"


@dataclass(frozen=True)
class Caller:
    """Who runs pytest: root, or an unprivileged user through setpriv. The user runs the
    system's python3 with this checkout and its venv's packages on PYTHONPATH: the venv's
    interpreter may live under root's 0700 home (pyenv), where it cannot exec it."""

    uid: int
    gid: int
    prefix: tuple[str, ...]
    python: str = PYTHON
    pythonpath: tuple[str, ...] = ()

    def run(
        self, argv: Sequence[str], cwd: Path, home: Path, pythonpath: Sequence[str] = ()
    ) -> str:
        # The caller's own HOME and cache, outside the project as for a real user (an
        # import path that is the home directory is never bound).
        home.mkdir(exist_ok=True)
        os.chown(home, self.uid, self.gid)
        env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
        paths = [*pythonpath, *self.pythonpath]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        if self.prefix:
            env["PATH"] = "/usr/bin:/bin"
        argv = [self.python if a == PYTHON else a for a in argv]
        proc = run([*self.prefix, *argv], cwd=cwd, env=env, timeout=180)
        return output(proc)


@pytest.fixture(params=["root", "user"])
def caller(request: pytest.FixtureRequest) -> Caller:
    if request.param == "root":
        if os.geteuid() != 0:
            missing("root")
        return Caller(0, 0, ())
    user = unprivileged_user()
    if os.geteuid() != 0 or user is None or shutil.which("setpriv") is None:
        missing("root to switch to an unprivileged user with setpriv")
    assert user is not None
    prefix = ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups")
    import pytest as pytest_module

    import isorun

    paths = (str(Path(isorun.__file__).parents[1]), str(Path(pytest_module.__file__).parents[1]))
    return Caller(user.pw_uid, user.pw_gid, prefix, "/usr/bin/python3", paths)


@pytest.fixture
def hostile(caller: Caller) -> Iterator[tuple[Path, Path, Path]]:
    """(project, OUT, site): a project with ``addopts = "-p repo_plugin"``, the host
    directory the plugins write to, and a site directory holding an installed plugin
    (a dist-info with a pytest11 entry point), for PYTHONPATH."""
    top = Path(tempfile.mkdtemp(prefix="isorun-front-door-", dir="/var/tmp"))
    project, out, site = top / "project", top / "out", top / "site"
    (top / "home").mkdir()
    for path in (project, out, site):
        path.mkdir()
    (site / "hostile_plugin.py").write_text(
        HOSTILE.format(out=str(out), project=str(project), name="hostile_plugin")
    )
    dist = site / "hostile_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(METADATA)
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    (project / "repo_plugin.py").write_text(
        HOSTILE.format(out=str(out), project=str(project), name="repo_plugin")
    )
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "test_ok.py").write_text(TEST_OK)
    for path in (top, top / "home", project, out, site, dist, *site.iterdir(),
                 *dist.iterdir(), *project.iterdir()):  # fmt: skip
        os.chown(path, caller.uid, caller.gid)
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        yield project, out, site
    finally:
        shutil.rmtree(top)


def _written(project: Path, out: Path) -> list[str]:
    return sorted(p.name for p in [*out.iterdir(), *project.glob("pwned-*")])


def test_hostile_plugins_write_nothing_on_host_under_front_door(
    caller: Caller, hostile: tuple[Path, Path, Path]
) -> None:
    project, out, site = hostile
    env = [str(site)]
    # Control: without isorun both plugins run and write on the host.
    home = project.parent / "home"
    text = caller.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project, home,
                      env)  # fmt: skip
    assert "1 passed" in text, text
    assert _written(project, out) == [
        "hostile_plugin", "pwned-hostile_plugin", "pwned-repo_plugin", "repo_plugin"
    ], text  # fmt: skip
    for path in [*out.iterdir(), *project.glob("pwned-*")]:
        path.unlink()
    argvs = [
        [PYTHON, "-m", "isorun", "pytest", "-q", "-p", "no:cacheprovider"],
        [PYTHON, "-m", "isorun.pytest", "-q", "-p", "no:cacheprovider"],
    ]
    if not caller.prefix:
        # The installed program: its C front end hands "pytest" to the Python CLI (it
        # starts the venv's interpreter, which the user cannot exec here).
        argvs.append(
            [str(Path(PYTHON).with_name("isorun")), "pytest", "-q", "-p", "no:cacheprovider"]
        )
    for argv in argvs:
        text = caller.run(argv, project, home, env)
        assert "1 passed" in text, text
        assert _written(project, out) == [], text


def test_isorun_option_names_modules_that_ran_on_host(
    caller: Caller, hostile: tuple[Path, Path, Path]
) -> None:
    project, out, site = hostile
    text = caller.run(
        [PYTHON, "-m", "pytest", "--isorun", "-q", "-p", "no:cacheprovider"],
        project,
        project.parent / "home",
        [str(site)],
    )
    assert "1 passed" in text, text
    assert "already ran on the host" in text, text
    assert "hostile_plugin (pytest11 entry point of hostile-plugin)" in text, text
    assert "repo_plugin (-p)" in text, text
    assert "run `isorun pytest ARGS` instead" in text, text
    # named, because they did run outside: that is the point of the warning
    assert "hostile_plugin" in _written(project, out), text


INNER_SUITE = textwrap.dedent("""
    import os

    def test_writes_on_host():
        open({marker!r}, "w").write("unconfined")
""")


def test_inner_variable_set_by_hand_does_not_run_unconfined(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    marker = tmp_path / "ran-unconfined"
    (tmp_path / "test_inner.py").write_text(INNER_SUITE.format(marker=str(marker)))
    for value in ("test", "1", ""):
        proc = run(
            [PYTHON, "-m", "pytest", "--isorun", "-q", "-p", "no:cacheprovider"],
            cwd=tmp_path,
            env={"ISORUN_PYTEST_INNER": value},
        )
        assert proc.returncode == 2, output(proc)
        assert "is not inside an isorun sandbox" in proc.stderr, output(proc)
        assert "hint: unset ISORUN_PYTEST_INNER" in proc.stderr, output(proc)
        assert not marker.exists(), output(proc)


def test_inner_side_is_proven_inside_the_sandbox(tmp_path: Path) -> None:
    # --isorun inside the front door's sandbox: the descriptor and namespaces hold, so
    # the inner pytest runs the suite itself, and the test's write stays refused.
    tmp_path.chmod(0o755)
    marker = tmp_path / "ran-unconfined"
    (tmp_path / "test_inner.py").write_text(INNER_SUITE.format(marker=str(marker)))
    proc = run(
        [PYTHON, "-m", "isorun", "pytest", "--isorun", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, output(proc)
    assert "Read-only file system" in proc.stdout, output(proc)
    assert not marker.exists()


CI_TOML = textwrap.dedent("""
    extends = ["test"]
    override = ["network.mode", "namespaces.net", "seccomp.enabled"]

    [namespaces]
    net = false

    [network]
    mode = "host"

    [seccomp]
    enabled = false
""")

#: each setting a hostile pyproject.toml may try, and what the refusal says of it
LOOSENINGS = {
    "writable": ('isorun_writable = ["{outside}"]', "isorun_writable = {outside}",
                 ["is outside the project"]),
    "writable-git": ('isorun_writable = [".git/hooks"]', "isorun_writable = .git/hooks",
                     ["the repository's .git"]),
    "writable-link": ('isorun_writable = ["reports"]', "isorun_writable = reports",
                      ["is outside the project"]),
    "cache_dir": ('cache_dir = "{outside}/cache"', "cache_dir = {outside}/cache",
                  ["is outside the project"]),
    "profile": ('isorun_profile = "./ci.toml"', "isorun_profile = ./ci.toml",
                ["a profile file from the repository", "host network", "seccomp off"]),
    "builtin-profile": ('isorun_profile = "web"', "isorun_profile = web", ["host network"]),
}  # fmt: skip


@pytest.fixture(params=list(LOOSENINGS))
def loosening(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, list[str]]:
    line, setting, whys = LOOSENINGS[request.param]
    project = tmp_path / "project"
    outside = tmp_path / "home"
    for path in (tmp_path, project, outside, project / ".git" / "hooks"):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
    (project / "reports").symlink_to(outside)
    (project / "ci.toml").write_text(CI_TOML)
    (project / "test_ok.py").write_text(TEST_OK)
    text = f"[tool.pytest.ini_options]\n{line.format(outside=outside)}\n"
    (project / "pyproject.toml").write_text(text)
    return project, setting.format(outside=outside), whys


def test_project_loosening_refused_without_trust(loosening: tuple[Path, str, list[str]]) -> None:
    project, setting, whys = loosening
    for argv in (
        [PYTHON, "-m", "isorun", "pytest", "-q"],
        [PYTHON, "-m", "pytest", "--isorun", "-q"],
    ):
        proc = run(argv, cwd=project)
        assert proc.returncode == 2, output(proc)
        assert "would loosen its own test sandbox" in proc.stderr, output(proc)
        for why in whys:
            assert f"{setting} (from pyproject.toml): " in proc.stderr, output(proc)
            assert why in proc.stderr, output(proc)
        assert "hint: remove the setting, or, if you trust this checkout, pass " \
               "--isorun-trust-project" in proc.stderr, output(proc)  # fmt: skip
        assert "passed" not in proc.stdout, output(proc)


def test_project_loosening_printed_with_trust(loosening: tuple[Path, str, list[str]]) -> None:
    project, setting, whys = loosening
    for argv, env in (
        ([PYTHON, "-m", "isorun", "pytest", "--isorun-trust-project", "-q"], {}),
        ([PYTHON, "-m", "pytest", "--isorun", "-q"], {"ISORUN_TRUST_PROJECT": "1"}),
    ):  # fmt: skip
        proc = run(argv, cwd=project, env=env)
        assert proc.returncode == 0, output(proc)
        for why in whys:
            assert f"isorun: trusted project loosens the sandbox: {setting} (from " \
                   f"pyproject.toml): " in proc.stdout, output(proc)  # fmt: skip
            assert why in proc.stdout, output(proc)
        assert "1 passed" in proc.stdout, output(proc)


def test_trust_flag_in_project_addopts_is_not_trust(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "test_ok.py").write_text(TEST_OK)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\naddopts = "--isorun-trust-project"\n'
        'isorun_writable = ["/"]\n'
    )
    proc = run([PYTHON, "-m", "pytest", "--isorun", "-q", "-p", "no:cacheprovider"],
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, output(proc)
    assert "isorun_writable = / (from pyproject.toml)" in proc.stderr, output(proc)


def test_project_may_tighten(tmp_path: Path) -> None:
    # A writable path inside the project and the strict built-in profile need no trust.
    tmp_path.chmod(0o755)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports").chmod(0o777)
    (tmp_path / "test_ok.py").write_text(TEST_OK)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nisorun_writable = ["reports"]\n'
    )
    proc = run([PYTHON, "-m", "isorun", "pytest", "-q", "-p", "no:cacheprovider"],
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, output(proc)
    assert "loosens" not in proc.stdout + proc.stderr, output(proc)


CONVENTIONS_SUITE = textwrap.dedent("""
    import os
    from hypothesis import given, strategies as st

    @given(st.integers())
    def test_with_hypothesis(n):
        assert n == n

    def test_plain():
        assert not os.path.exists(os.path.expanduser("~/.ssh"))
""")


@pytest.mark.parametrize("door", ["front", "option"])
def test_fresh_checkout_writes_cache_reports_and_summary(caller: Caller, door: str) -> None:
    # filterwarnings = error turns a cache or database pytest or hypothesis cannot create
    # into an error at the session's end; the run must end with its summary line, and
    # the reports it names must be on the host afterwards.
    project = Path(tempfile.mkdtemp(prefix="isorun-fresh-"))
    elsewhere = Path(tempfile.mkdtemp(prefix="isorun-report-", dir="/var/tmp"))
    try:
        (project / "pyproject.toml").write_text(
            '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n'
        )
        (project / "test_conventions.py").write_text(CONVENTIONS_SUITE)
        for path in (project, elsewhere, *project.iterdir()):
            os.chown(path, caller.uid, caller.gid)
        project.chmod(0o755)
        outside = elsewhere / "junit.xml"
        start = [PYTHON, "-m", "isorun", "pytest"] if door == "front" else [
            PYTHON, "-m", "pytest", "--isorun"]  # fmt: skip
        # twice in the project: the second run finds the caller's file and keeps its owner
        for report in ("junit.xml", "junit.xml", str(outside)):
            text = caller.run([*start, "-q", f"--junitxml={report}"], project, elsewhere / "home")
            assert "2 passed" in text, text
            written = Path(project, report)
            assert written.read_text().startswith("<?xml"), text
            # the caller owns the report, as after a bare run (as root the sandbox wrote a
            # private copy: the file itself is never lent to uid 65534)
            assert written.stat().st_uid == caller.uid, text
        assert (project / ".pytest_cache").is_dir()
        assert (project / ".hypothesis").is_dir()
    finally:
        shutil.rmtree(project)
        shutil.rmtree(elsewhere)


FINDER = textwrap.dedent("""
    # as setuptools' finder-style editable install writes it: a module that maps
    # package names to source directories and installs a meta path finder
    import importlib.util
    import sys

    MAPPING = {{"edited": {src!r}}}


    class _Finder:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name not in MAPPING:
                return None
            return importlib.util.spec_from_file_location(
                name, MAPPING[name] + "/__init__.py", submodule_search_locations=[MAPPING[name]]
            )


    def install():
        sys.meta_path.append(_Finder)
""")

VENV_SUITE = textwrap.dedent("""
    import os, sys

    def test_project_interpreter_and_editable_install():
        import edited
        assert edited.VALUE == 42
        assert sys.prefix == {venv!r}
        assert not os.path.exists(os.path.expanduser("~/.ssh"))
""")


@pytest.mark.needs("root")
def test_front_door_runs_the_active_venv_with_its_pth_and_editable_installs(
    tmp_path: Path,
) -> None:
    # The project's venv is not isorun's: VIRTUAL_ENV chooses it. pytest reaches it
    # through a .pth path line, the package under test through a finder-style editable
    # install; both are read from the files (python -I -S), neither runs on the host.
    import subprocess
    import sysconfig

    tmp_path.chmod(0o755)
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    # isorun's venv's packages (pytest; isorun's own dist-info, whose pytest11 entry
    # point needs the checkout's src, an editable install there)
    import isorun

    (site / "with-pytest.pth").write_text(
        f"{sysconfig.get_paths()['purelib']}\n{Path(isorun.__file__).parents[1]}\n"
    )
    src = tmp_path / "checkout" / "src" / "edited"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("VALUE = 42\n")
    (site / "__editable___edited_finder.py").write_text(FINDER.format(src=str(src)))
    (site / "__editable__.edited-1.0.pth").write_text(
        "import __editable___edited_finder; __editable___edited_finder.install()\n"
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_venv.py").write_text(VENV_SUITE.format(venv=str(venv)))
    for path in (tmp_path / "checkout", tmp_path / "checkout" / "src", project):
        path.chmod(0o755)
    proc = run([PYTHON, "-m", "isorun", "pytest", "-q", "-p", "no:cacheprovider"],
               cwd=project, env={"VIRTUAL_ENV": str(venv)})  # fmt: skip
    assert proc.returncode == 0, output(proc)
    assert "1 passed" in proc.stdout, output(proc)


#: what pytest-cov does with the data file, without needing it installed: ``--cov``
#: starts it, and at the session's end coverage.py writes an SQLite database (with its
#: journal beside it) at $COVERAGE_FILE, else ``.coverage`` in the working directory
COV_STANDIN = textwrap.dedent("""
    import os
    import sqlite3

    def pytest_addoption(parser):
        parser.addoption("--cov", action="append", nargs="?", const=True, default=[])

    def pytest_sessionfinish(session):
        if not session.config.getoption("cov"):
            return
        db = sqlite3.connect(os.environ.get("COVERAGE_FILE", ".coverage"))
        with db:
            db.execute("create table if not exists arc (file text, n integer)")
            db.execute("insert into arc values ('mod.py', 2)")
        db.close()
""")


@pytest.mark.parametrize("door", ["front", "option"])
def test_coverage_data_lands_on_the_host(caller: Caller, door: str) -> None:
    # The project is read-only and SQLite needs the data file's directory writable (its
    # journal): the run writes in a private directory and the data is copied back.
    top = Path(tempfile.mkdtemp(prefix="isorun-coverage-", dir="/var/tmp"))
    project, site = top / "project", top / "site"
    try:
        project.mkdir()
        site.mkdir()
        (site / "cov_standin.py").write_text(COV_STANDIN)
        (project / "pyproject.toml").write_text(
            '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n'
        )
        (project / "test_ok.py").write_text(TEST_OK)
        for path in (top, project, site, *project.iterdir()):
            os.chown(path, caller.uid, caller.gid)
        start = [PYTHON, "-m", "isorun", "pytest"] if door == "front" else [
            PYTHON, "-m", "pytest", "--isorun"]  # fmt: skip
        # no:pytest_cov: where pytest-cov is installed, the stand-in takes its place
        argv = [*start, "-q", "-p", "no:pytest_cov", "-p", "cov_standin", "-p",
                "no:cacheprovider", "--cov"]  # fmt: skip
        for _ in range(2):  # the second run replaces the caller's file
            text = caller.run(argv, project, top / "home", [str(site)])
            assert "1 passed" in text, text
            data = project / ".coverage"
            assert data.stat().st_uid == caller.uid, text
            assert data.read_bytes().startswith(b"SQLite format 3"), text
        import sqlite3

        rows = sqlite3.connect(data).execute("select count(*) from arc").fetchone()
        # each run writes a fresh database, which replaces the host's
        assert rows == (1,), text
        assert not list(project.glob(".coverage-journal")), text
    finally:
        shutil.rmtree(top)


#: a module measured by pytest-cov, and a test that reads the host's data file through
#: the sandbox's view of the project: it must still hold what the caller left there
COV_MODULE = "def f():\n    return 1\n"
COV_TEST = textwrap.dedent("""
    import os
    import mod

    def test_host_data_untouched_until_the_sandbox_runs():
        if os.path.exists("expect-old-data"):
            with open(".coverage", "rb") as f:
                assert f.read() == b"OLD"
        assert mod.f() == 1
""")


def _cov_project(top: Path, caller: Caller, pyproject: str = "") -> Path:
    project = top / "project"
    project.mkdir()
    (project / "mod.py").write_text(COV_MODULE)
    (project / "test_mod.py").write_text(COV_TEST)
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n' + pyproject
    )
    for path in (top, project, *project.iterdir()):
        os.chown(path, caller.uid, caller.gid)
    return project


def _measured(data: Path) -> list[str]:
    from coverage import CoverageData

    found = CoverageData(basename=str(data))
    found.read()
    return sorted(os.path.basename(f) for f in found.measured_files())


@pytest.mark.needs("pytest_cov")
@pytest.mark.parametrize("door", ["front", "option"])
def test_pytest_cov_leaves_the_host_data_until_the_sandbox_replaces_it(
    caller: Caller, door: str
) -> None:
    # The outer pytest of `pytest --isorun` loaded pytest-cov, which erased .coverage
    # and started measuring on the host before the re-exec. The test inside reads the
    # host's file: still the caller's. After the run it holds the new data.
    top = Path(tempfile.mkdtemp(prefix="isorun-pytest-cov-", dir="/var/tmp"))
    try:
        project = _cov_project(top, caller)
        old = project / ".coverage"
        old.write_bytes(b"OLD")
        (project / "expect-old-data").touch()
        for path in (old, project / "expect-old-data"):
            os.chown(path, caller.uid, caller.gid)
        start = [PYTHON, "-m", "isorun", "pytest"] if door == "front" else [
            PYTHON, "-m", "pytest", "--isorun"]  # fmt: skip
        argv = [*start, "-q", "-p", "no:cacheprovider", "--cov=mod"]
        text = caller.run(argv, project, top / "home")
        assert "1 passed" in text, text
        assert old.read_bytes().startswith(b"SQLite format 3"), text
        assert old.stat().st_uid == caller.uid, text
        assert _measured(old) == ["mod.py"], text
        assert sorted(p.name for p in project.glob(".coverage*")) == [".coverage"], text
    finally:
        shutil.rmtree(top)


@pytest.mark.needs("pytest_cov")
@pytest.mark.parametrize("door", ["front", "option"])
def test_pytest_cov_data_goes_to_the_configured_data_file(caller: Caller, door: str) -> None:
    # [tool.coverage.run] data_file: the data ends there, not at .coverage.
    top = Path(tempfile.mkdtemp(prefix="isorun-pytest-cov-", dir="/var/tmp"))
    try:
        project = _cov_project(top, caller, '[tool.coverage.run]\ndata_file = "out/cov.db"\n')
        (project / "out").mkdir()
        os.chown(project / "out", caller.uid, caller.gid)
        start = [PYTHON, "-m", "isorun", "pytest"] if door == "front" else [
            PYTHON, "-m", "pytest", "--isorun"]  # fmt: skip
        text = caller.run([*start, "-q", "-p", "no:cacheprovider", "--cov=mod"], project,
                          top / "home")  # fmt: skip
        assert "1 passed" in text, text
        assert _measured(project / "out" / "cov.db") == ["mod.py"], text
        assert not (project / ".coverage").exists(), text
    finally:
        shutil.rmtree(top)


#: the attacker: a test that turns the configured data file's directory, in a path the
#: test profile binds writable (build), into a link to a host directory
SWAP_TEST = textwrap.dedent("""
    import os

    def test_swap():
        os.rename("build/sub", "build/old")
        os.symlink({outside!r}, "build/sub")
""")


@pytest.mark.parametrize("door", ["front", "option"])
def test_data_file_directory_swapped_for_a_link_during_the_run(caller: Caller, door: str) -> None:
    # The check before the run passed; the copy after it walks down from the project's
    # root without following links, so it lands nowhere rather than in OUTSIDE.
    top = Path(tempfile.mkdtemp(prefix="isorun-pytest-cov-", dir="/var/tmp"))
    project, site, outside = top / "project", top / "site", top / "outside"
    try:
        for path in (project, site, outside, project / "build", project / "build" / "sub"):
            path.mkdir()
        (site / "cov_standin.py").write_text(COV_STANDIN)
        (project / "test_swap.py").write_text(SWAP_TEST.format(outside=str(outside)))
        (project / "pyproject.toml").write_text(
            '[tool.coverage.run]\ndata_file = "build/sub/c.db"\n'
        )
        for path in (top, project, site, outside, *project.rglob("*"), *site.iterdir()):
            os.chown(path, caller.uid, caller.gid)
        # build is the sandbox's to write (uid 65534 when the caller is root)
        for path in (project / "build", project / "build" / "sub", outside):
            path.chmod(0o777)
        start = [PYTHON, "-m", "isorun", "pytest"] if door == "front" else [
            PYTHON, "-m", "pytest", "--isorun"]  # fmt: skip
        argv = [*start, "-q", "-p", "no:pytest_cov", "-p", "cov_standin", "-p",
                "no:cacheprovider", "--cov"]  # fmt: skip
        text = caller.run(argv, project, top / "home", [str(site)])
        assert "1 passed" in text, text
        assert (project / "build" / "sub").is_symlink(), text  # the swap happened
        assert list(outside.iterdir()) == [], text
        assert "could not copy the coverage data" in text, text
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("door", ["front", "option"])
def test_configured_data_file_outside_the_project_is_refused(door: str) -> None:
    # The configuration is the project's: it may not send the copy anywhere else.
    top = Path(tempfile.mkdtemp(prefix="isorun-pytest-cov-", dir="/var/tmp"))
    try:
        project = top / "project"
        project.mkdir()
        (project / "test_ok.py").write_text(TEST_OK)
        (project / ".coveragerc").write_text("[run]\ndata_file = ../stolen.db\n")
        start = [PYTHON, "-m", "isorun", "pytest"] if door == "front" else [
            PYTHON, "-m", "pytest", "--isorun"]  # fmt: skip
        # the stand-in, whether or not pytest-cov is installed: the refusal comes first
        plugin = ["-p", "no:pytest_cov", "-p", "cov_standin"]
        (top / "site").mkdir()
        (top / "site" / "cov_standin.py").write_text(COV_STANDIN)
        proc = run([*start, "-q", *plugin, "-p", "no:cacheprovider", "--cov"], cwd=project,
                   env={"HOME": str(top), "XDG_CACHE_HOME": str(top / ".cache"),
                        "PYTHONPATH": str(top / "site")})  # fmt: skip
        text = output(proc)
        assert proc.returncode == 2, text
        assert f"{project / '.coveragerc'}: [run] data_file = '../stolen.db' leads to" in text
        assert "hint: write data_file as a path inside the project" in text
        assert not (top / "stolen.db").exists(), text
        assert "passed" not in text, text
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("door", ["front", "option"])
def test_root_owned_hypothesis_database_left_by_a_bare_run(door: str) -> None:
    # A bare run as root leaves .hypothesis owned by root, read-only to the sandbox's
    # uid 65534: Hypothesis warned (an error under filterwarnings = error) and failed
    # the tests. Its database goes to the private /tmp instead; the host's is untouched.
    if os.geteuid() != 0:
        missing("root")
    top = Path(tempfile.mkdtemp(prefix="isorun-hypothesis-", dir="/var/tmp"))
    project = top / "project"
    try:
        project.mkdir()
        (project / "pyproject.toml").write_text(
            '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n'
        )
        (project / "test_conventions.py").write_text(CONVENTIONS_SUITE)
        (project / ".hypothesis").mkdir(0o755)
        start = [PYTHON, "-m", "isorun", "pytest"] if door == "front" else [
            PYTHON, "-m", "pytest", "--isorun"]  # fmt: skip
        proc = run([*start, "-q", "-p", "no:cacheprovider"], cwd=project,
                   env={"HOME": str(top), "XDG_CACHE_HOME": str(top / ".cache")})  # fmt: skip
        assert "2 passed" in proc.stdout, output(proc)
        assert list((project / ".hypothesis").iterdir()) == [], output(proc)
    finally:
        shutil.rmtree(top)
