"""``@pytest.mark.isorun``: the kernel's view of the environment holds no host token;
outcomes (xfail, xpass) as without the marker; as root, nothing pre-existing changes
owner."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import missing, unprivileged_user
from tests.plugin._helpers import PYTHON, output, run

pytestmark = pytest.mark.needs("userns", "shim")

TOKENS = {"AWS_SECRET_ACCESS_KEY": "aws-s3cr3t-value", "GITHUB_TOKEN": "ghp_s3cr3t-value"}

ENV_SUITE = textwrap.dedent("""
    import os, subprocess
    import pytest

    SECRETS = (b"AWS_SECRET_ACCESS_KEY", b"GITHUB_TOKEN", b"s3cr3t-value")

    @pytest.fixture
    def mine(monkeypatch):
        monkeypatch.setenv("SET_BY_FIXTURE", "x" * 6000)

    def kernel_view():
        try:
            with open("/proc/self/environ", "rb") as f:
                return f.read()
        except PermissionError:
            # A root caller's sandbox changed its uid to 65534, which makes it
            # non-dumpable: its own /proc files are not readable, nothing shows.
            assert os.getuid() == 65534
            return None

    @pytest.mark.isorun
    def test_marked_environ_block_has_no_token(mine):
        block = kernel_view()
        if block is not None:
            assert not [s for s in SECRETS if s in block], block
            names = {e.partition(b"=")[0] for e in block.split(b"\\0") if e}
            assert b"PATH" in names and b"SET_BY_FIXTURE" in names, names
            # exactly what os.environ says: nothing more, nothing less
            assert names == {k.encode() for k in os.environ}, (names, sorted(os.environ))
        # a child process gets libc's environment: the policy's too
        out = subprocess.run(["cat", "/proc/self/environ"], capture_output=True).stdout
        assert not [s for s in SECRETS if s in out], out
        assert b"SET_BY_FIXTURE=" + b"x" * 6000 in out

    def test_unmarked_sees_tokens():
        block = open("/proc/self/environ", "rb").read()
        assert b"s3cr3t-value" in block
""")

XFAIL_SUITE = textwrap.dedent("""
    import pytest

    class Custom(Exception):
        def __init__(self, a, b):
            super().__init__(a)

    @pytest.mark.isorun
    @pytest.mark.xfail(raises=ZeroDivisionError)
    def test_xfail_raises():
        1 / 0

    @pytest.mark.isorun
    @pytest.mark.xfail(raises=Custom)
    def test_xfail_raises_custom():
        raise Custom(1, 2)

    @pytest.mark.isorun
    @pytest.mark.xfail(raises=ZeroDivisionError)
    def test_xfail_other_exception():
        raise KeyError("other")

    @pytest.mark.isorun
    def test_xfail_call():
        pytest.xfail("not yet")

    @pytest.mark.isorun
    @pytest.mark.xfail
    def test_xpass():
        pass

    @pytest.mark.isorun
    @pytest.mark.xfail(strict=True)
    def test_xpass_strict():
        pass

    @pytest.mark.isorun
    def test_plain_failure():
        raise ValueError("shown in the summary")
""")


@pytest.fixture(params=["root", "user"])
def as_user(request: pytest.FixtureRequest) -> list[str]:
    """setpriv's prefix for the caller (empty for root)."""
    if request.param == "root":
        if os.geteuid() != 0:
            missing("root")
        return []
    user = unprivileged_user()
    if os.geteuid() != 0 or user is None or shutil.which("setpriv") is None:
        missing("root to switch to an unprivileged user with setpriv")
    assert user is not None
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


@pytest.fixture
def project() -> Iterator[Path]:
    # Directly under /tmp and world-readable: an unprivileged run must read it.
    path = Path(tempfile.mkdtemp(prefix="isorun-marker-env-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize("fork", ["clone3", "os-fork"])
def test_marked_test_environ_block_has_no_host_token(
    as_user: list[str], project: Path, fork: str
) -> None:
    (project / "test_env.py").write_text(ENV_SUITE)
    # a home of its own beside the project: a working directory that is the home is
    # refused (#13), and an import path that shows it is not bound
    home = project.parent / (project.name + "-home")
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), **TOKENS}
    if fork == "os-fork":
        env["ISORUN_MARKER_FORK"] = "os"
    if as_user:
        env["PATH"] = "/usr/bin:/bin"
    try:
        proc = run([*as_user, PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider"],
                   cwd=project, env=env)  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, output(proc)
    assert "2 passed" in proc.stdout, output(proc)


def test_marker_reports_xfail_and_xpass_as_without_it(project: Path) -> None:
    (project / "test_xfail.py").write_text(XFAIL_SUITE)
    outcomes = []
    for plugin in ([], ["-p", "no:isorun"]):
        proc = run([PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *plugin],
                   cwd=project, env={"COLUMNS": "200"})  # fmt: skip
        outcomes.append(
            sorted(
                line.split(" - ")[0]
                for line in proc.stdout.splitlines()
                if line.startswith(("PASSED", "FAILED", "XFAIL", "XPASS", "ERROR"))
            )
        )
        assert proc.returncode == 1, output(proc)
        # the summary names the exception, not the test's first source line
        assert "FAILED test_xfail.py::test_plain_failure - " in proc.stdout, output(proc)
        assert "ValueError: shown in the summary" in _line(proc.stdout, "test_plain_failure")
    assert outcomes[0] == outcomes[1], outcomes
    assert "XFAIL test_xfail.py::test_xfail_raises_custom" in outcomes[0], outcomes


def _line(text: str, test: str) -> str:
    return next((ln for ln in text.splitlines() if f"::{test} - " in ln), "")


#: unittest.TestCase methods do not raise: pytest's result object keeps the failure on
#: the item, where the child's copy of it was lost (a failing method passed); dateutil's
#: suite has 42 such skips
UNITTEST_SUITE = textwrap.dedent("""
    import unittest
    import pytest

    @pytest.mark.isorun
    class TestCase(unittest.TestCase):
        def test_fails(self):
            self.assertEqual(1, 2)

        def test_errors(self):
            raise KeyError("boom")

        @unittest.skip("not here")
        def test_skipped(self):
            pass

        def test_skip_test(self):
            self.skipTest("at run time")

        @unittest.expectedFailure
        def test_expected_failure(self):
            self.assertEqual(1, 2)

        @unittest.expectedFailure
        def test_unexpected_success(self):
            pass

        def test_ok(self):
            pass

    @pytest.mark.isorun
    def test_function_raising_skiptest():
        raise unittest.SkipTest("raised")
""")


def test_marker_reports_unittest_outcomes_as_without_it(project: Path) -> None:
    (project / "test_unit.py").write_text(UNITTEST_SUITE)
    outcomes = []
    for plugin in ([], ["-p", "no:isorun"]):
        proc = run([PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *plugin],
                   cwd=project, env={"COLUMNS": "200"})  # fmt: skip
        outcomes.append(
            sorted(
                line.split(" - ")[0]
                for line in proc.stdout.splitlines()
                if line.startswith(("PASSED", "FAILED", "XFAIL", "XPASS", "ERROR"))
            )
        )
        assert proc.returncode == 1, output(proc)
        summary = proc.stdout.splitlines()[-1]
        assert "3 failed, 1 passed, 3 skipped, 1 xfailed" in summary, output(proc)
    assert outcomes[0] == outcomes[1], outcomes
    assert "FAILED test_unit.py::TestCase::test_fails" in outcomes[0], outcomes


ROOT_SUITE = textwrap.dedent("""
    import os, pytest

    WRITABLE = {writable!r}

    @pytest.fixture
    def prepared(tmp_path):
        (tmp_path / "from-fixture").write_text("root's")
        return tmp_path

    @pytest.mark.isorun(writable=[WRITABLE])
    def test_writable_root_owned_stays_root_owned():
        open(os.path.join(WRITABLE, "new"), "w").write("x")

    @pytest.mark.isorun
    def test_tmp_path_lent(prepared):
        (prepared / "made").write_text("x")
        os.mkdir(prepared / "sub")
        (prepared / "sub" / "deeper").write_text("y")
        # swap a directory for a link to a root-owned host path: the hand-back must
        # not follow it
        os.rename(prepared / "sub", prepared / "sub-moved")
        os.symlink({target!r}, prepared / "sub")
""")


@pytest.mark.needs("root")
def test_marker_as_root_changes_no_preexisting_owner(project: Path) -> None:
    writable = project / "writable"
    writable.mkdir()
    (writable / "old").write_text("root's")
    target = project / "target"
    target.mkdir()
    (target / "root-file").write_text("root's")
    (project / "test_root.py").write_text(
        ROOT_SUITE.format(writable=str(writable), target=str(target))
    )
    # Outside the project: its mount points are made in the sandbox's private /tmp, not
    # in the read-only project bind.
    basetemp = Path(tempfile.mkdtemp(prefix="isorun-basetemp-")) / "base"
    try:
        proc = run([PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
                    f"--basetemp={basetemp}"], cwd=project)  # fmt: skip
        _check_root_run(proc.stdout + proc.stderr, writable, target, basetemp)
    finally:
        shutil.rmtree(basetemp.parent)


def _check_root_run(text: str, writable: Path, target: Path, basetemp: Path) -> None:
    proc_stdout = text
    fails = _line(proc_stdout, "test_writable_root_owned_stays_root_owned")
    assert fails.startswith("FAILED"), text
    assert "is not writable by uid 65534" in text, text
    assert "hint: chown 65534" in text, text
    assert "PASSED test_root.py::test_tmp_path_lent" in text, text
    for path in (writable, writable / "old", target, target / "root-file"):
        assert path.stat().st_uid == 0, path
    # what the sandbox made in tmp_path is handed back; nothing stays 65534's
    for top, dirs, files in os.walk(basetemp):
        for name in (top, *(os.path.join(top, n) for n in dirs + files)):
            assert os.lstat(name).st_uid == 0, name


HYPOTHESIS_SUITE = textwrap.dedent("""
    import pytest
    from hypothesis import given, strategies as st

    @pytest.mark.isorun
    @given(st.integers())
    def test_marked_given(n):
        assert n == n
""")


def test_marked_hypothesis_test_without_a_writable_database(project: Path) -> None:
    # The marked child cannot make .hypothesis in the read-only project, and as root a
    # bare run's root-owned one is read-only to uid 65534: Hypothesis warned, an error
    # under filterwarnings = error. Its storage goes to the private /tmp instead.
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n'
    )
    (project / "test_hyp.py").write_text(HYPOTHESIS_SUITE)
    home = project.parent / (project.name + "-home")
    home.mkdir(exist_ok=True)
    try:
        # fresh: no .hypothesis (pytest's own process, unconfined, may then make one,
        # root-owned when the suite runs as root, as a bare run would)
        proc = run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                   cwd=project, env={"HOME": str(home)})  # fmt: skip
        assert proc.returncode == 0, output(proc)
        assert "1 passed" in proc.stdout, output(proc)
        (project / ".hypothesis").mkdir(exist_ok=True)
        proc = run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                   cwd=project, env={"HOME": str(home)})  # fmt: skip
        assert proc.returncode == 0, output(proc)
        assert "1 passed" in proc.stdout, output(proc)
    finally:
        shutil.rmtree(home, ignore_errors=True)
