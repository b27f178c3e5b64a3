"""A real third-party suite from PyPI under ``pytest --isorun``: iniconfig's own tests.

iniconfig is small, pure Python and ships its test suite in the sdist. The scratch
virtual environment gets pytest (and iniconfig, its dependency) from PyPI and finds
isorun, with its pytest11 entry point, through a .pth file naming this checkout's
src and site-packages, so the test needs PyPI but no build of isorun.
"""

from __future__ import annotations

import site
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.plugin._helpers import PYTHON, ROOT, output, run

pytestmark = pytest.mark.needs("userns", "shim")

POLICY_TESTS = textwrap.dedent("""
    import os, socket
    from pathlib import Path

    def test_public_tcp_connection():
        socket.create_connection(("192.0.2.1", 443), timeout=3).close()

    def test_host_secret():
        Path(os.path.expanduser("~/.ssh/id_ed25519")).read_text()

    def test_write_into_project():
        Path("iniconfig-was-here.txt").write_text("x")

    def test_write_home_ssh_stays_private():
        ssh = Path(os.path.expanduser("~/.ssh"))
        ssh.mkdir(exist_ok=True)
        (ssh / "authorized_keys").write_text("attacker-key")
""")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of the scratch venv, unpacked iniconfig sdist)."""
    base = tmp_path_factory.mktemp("thirdparty")
    base.chmod(0o755)  # read by uid 65534 when the caller is root
    venv = base / "venv"
    proc = run([PYTHON, "-m", "venv", str(venv)], cwd=base)
    assert proc.returncode == 0, output(proc)
    python = venv / "bin" / "python"
    proc = run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "pytest"],
        cwd=base,
        timeout=180,
    )
    assert proc.returncode == 0, output(proc)
    proc = run(
        [
            str(python),
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(base / "dl"),
            "iniconfig",
        ],
        cwd=base,
        timeout=180,
    )
    assert proc.returncode == 0, output(proc)
    sdist = next((base / "dl").glob("iniconfig-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(base, filter="data")
    project = next(p for p in base.glob("iniconfig-*") if p.is_dir())
    # isorun and its dependencies from this checkout, after the venv's own packages.
    purelib = next(venv.glob("lib/python3*/site-packages"))
    (purelib / "isorun-checkout.pth").write_text(f"{ROOT / 'src'}\n{site.getsitepackages()[0]}\n")
    return python, project


def test_iniconfig_suite_passes_under_isorun(scratch: tuple[Path, Path]) -> None:
    python, project = scratch
    proc = run(
        [str(python), "-m", "pytest", "--isorun", "-q", "-p", "no:cacheprovider", "testing"],
        cwd=project,
    )
    assert proc.returncode == 0, output(proc)
    assert " passed" in proc.stdout and "failed" not in proc.stdout, output(proc)


def test_policy_violations_fail_with_rule(scratch: tuple[Path, Path], tmp_path: Path) -> None:
    python, project = scratch
    (project / "testing" / "test_isorun_policy.py").write_text(POLICY_TESTS)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("HOST-SECRET")
    (home / ".ssh" / "authorized_keys").write_text("mine")
    try:
        proc = run(
            [
                str(python),
                "-m",
                "pytest",
                "--isorun",
                "-q",
                "-rfE",
                "-p",
                "no:cacheprovider",
                "testing",
            ],
            cwd=project,
            env={"HOME": str(home)},
        )
    finally:
        (project / "testing" / "test_isorun_policy.py").unlink()
    text = output(proc)
    assert proc.returncode == 1, text
    assert "3 failed" in proc.stdout, text
    assert "connect() refused: network = none" in text
    assert "$HOME is an empty private directory" in text and "HOST-SECRET" not in text
    assert "read-only file system" in text
    assert not (project / "iniconfig-was-here.txt").exists()
    # the write to ~/.ssh succeeded, but into the sandbox's private home
    assert (home / ".ssh" / "authorized_keys").read_text() == "mine"
