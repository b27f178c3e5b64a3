"""The test profile and ``pytest --isorun`` on real sandboxes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.plugin._helpers import PYTHON, ROOT, output, run

pytestmark = pytest.mark.needs("userns", "shim")

SUITE = textwrap.dedent("""
    import os, socket

    def test_inside():
        assert os.environ["ISORUN_PYTEST_INNER"] == "test"

    def test_fails():
        assert 1 == 2

    def test_public_address():
        socket.create_connection(("192.0.2.1", 80), timeout=3).close()

    def test_loopback_server_works():
        server = socket.create_server(("127.0.0.1", 0))
        socket.create_connection(server.getsockname(), timeout=3).close()
        server.close()
""")


def _project(tmp_path: Path) -> Path:
    # pytest makes tmp_path 0700; as root the sandbox is uid 65534 and must be able to
    # read the project (docs/testing.md, "Running as root").
    tmp_path.chmod(0o755)
    (tmp_path / "test_suite.py").write_text(SUITE)
    return tmp_path


def test_project_unit_subset_passes_under_test_profile() -> None:
    proc = run(
        [
            PYTHON,
            "-m",
            "isorun",
            "--profile",
            "test",
            "--",
            PYTHON,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/test_loader.py",
            "tests/unit/test_extends.py",
        ],
        cwd=ROOT,
    )
    assert proc.returncode == 0, output(proc)
    assert " passed" in proc.stdout


def test_isorun_option_keeps_selection_and_exit_code(tmp_path: Path) -> None:
    _project(tmp_path)
    proc = run(
        [
            PYTHON,
            "-m",
            "pytest",
            "--isorun",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "inside or loopback",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, output(proc)
    assert "2 passed, 2 deselected" in proc.stdout
    proc = run(
        [
            PYTHON,
            "-m",
            "pytest",
            "--isorun=test",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "test_suite.py",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, output(proc)
    # -x stops at the first failure, as without the sandbox
    assert "1 failed, 1 passed" in proc.stdout, output(proc)


def test_isorun_names_the_network_rule(tmp_path: Path) -> None:
    _project(tmp_path)
    proc = run(
        [PYTHON, "-m", "pytest", "--isorun", "-q", "-p", "no:cacheprovider", "-k", "public"],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, output(proc)
    assert "connect() refused: network = none" in proc.stdout, output(proc)


def test_bare_isorun_does_not_swallow_a_path(tmp_path: Path) -> None:
    _project(tmp_path)
    proc = run(
        [
            PYTHON,
            "-m",
            "pytest",
            "--isorun",
            "test_suite.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "inside",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, output(proc)


def test_unknown_profile_fails_closed(tmp_path: Path) -> None:
    _project(tmp_path)
    proc = run([PYTHON, "-m", "pytest", "--isorun=no-such-profile", "-q"], cwd=tmp_path)
    assert proc.returncode != 0, output(proc)
    assert "passed" not in proc.stdout
