"""``@pytest.mark.isorun``: one test's body in a forked, sandboxed child."""

from __future__ import annotations

import textwrap

import pytest

from tests.plugin._helpers import PYTHON, output, run

pytestmark = pytest.mark.needs("userns", "shim")

SUITE = textwrap.dedent("""
    import os, socket
    import pytest

    @pytest.fixture
    def listener():
        server = socket.create_server(("127.0.0.1", 0))
        yield server.getsockname()
        server.close()

    @pytest.mark.isorun(network="none")
    def test_marked_connect(listener):
        socket.create_connection(listener, timeout=3).close()

    def test_unmarked_connect(listener):
        socket.create_connection(listener, timeout=3).close()

    @pytest.mark.isorun()
    def test_segfault():
        import ctypes
        ctypes.string_at(0)

    @pytest.mark.isorun()
    def test_exit():
        os._exit(3)

    @pytest.mark.isorun()
    def test_write_project():
        open("written.txt", "w").write("x")

    @pytest.mark.isorun()
    def test_read_secret():
        open(os.path.expanduser("~/.ssh/id_rsa")).read()

    @pytest.mark.isorun()
    def test_tmp_path_is_writable(tmp_path):
        (tmp_path / "out").write_text("ok")
        assert (tmp_path / "out").read_text() == "ok"

    @pytest.mark.isorun()
    def test_plain_failure():
        assert 1 == 2

    def test_after_crashes_session_goes_on():
        pass
""")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    project = tmp_path_factory.mktemp("marker")
    project.chmod(0o755)
    (project / "test_suite.py").write_text(SUITE)
    home = project / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("SECRET")
    proc = run(
        [PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_suite.py"],
        cwd=project,
        env={"HOME": str(home)},
    )
    return proc.returncode, output(proc)


def _line(text: str, test: str) -> str:
    return next(
        (ln for ln in text.splitlines() if ln.endswith(f"::{test}") or f"::{test} " in ln), ""
    )


def test_marked_connect_to_host_loopback_fails_with_rule(report: tuple[int, str]) -> None:
    _, text = report
    assert _line(text, "test_marked_connect").startswith("FAILED"), text
    assert "connect() refused: network = none" in text


def test_same_connect_unmarked_passes(report: tuple[int, str]) -> None:
    assert _line(report[1], "test_unmarked_connect").startswith("PASSED"), report[1]


def test_crash_is_that_tests_failure(report: tuple[int, str]) -> None:
    code, text = report
    assert "killed by SIGSEGV" in text
    assert "exited with status 3" in text
    assert _line(text, "test_after_crashes_session_goes_on").startswith("PASSED"), text
    assert code == 1, text


def test_write_outside_writable_names_rule(report: tuple[int, str]) -> None:
    assert "read-only file system outside writable" in report[1]


def test_host_secret_hidden(report: tuple[int, str]) -> None:
    text = report[1]
    assert "$HOME is an empty private directory" in text
    assert "SECRET" not in text


def test_tmp_path_stays_writable(report: tuple[int, str]) -> None:
    assert _line(report[1], "test_tmp_path_is_writable").startswith("PASSED"), report[1]


def test_plain_failure_keeps_child_traceback(report: tuple[int, str]) -> None:
    assert "assert 1 == 2" in report[1]
