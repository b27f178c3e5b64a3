"""An exported profile under a real engine (rootful podman + runc, offline busybox image).

Uses ``shared/tools`` (``ISORUN_SHARED``, default ``<repo>/../shared``): podman-setup.sh
prepares podman and the image, docker-seccomp-check.sh runs a command under a profile and
exits with the command's status (125: the engine refused the profile).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from isorun.compile.docker import export_docker
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("ISORUN_SHARED", ROOT.parent / "shared")) / "tools"
MUST = os.environ.get("CI") == "true"
CHECK = TOOLS / "docker-seccomp-check.sh"


@pytest.fixture(scope="module")
def engine() -> Path:
    problem = ""
    if not CHECK.exists():
        problem = f"{CHECK} missing"
    elif os.getuid() != 0:
        problem = "rootful podman needs root"
    elif shutil.which("podman") is None and shutil.which("apt-get") is None:
        problem = "no podman and no apt-get to install it"
    else:
        setup = subprocess.run(
            [str(TOOLS / "podman-setup.sh")], capture_output=True, text=True, timeout=600
        )
        if setup.returncode != 0:
            problem = f"podman-setup.sh failed: {setup.stderr[-500:]}"
    if problem:
        if MUST:
            pytest.fail(problem)
        pytest.skip(problem)
    return CHECK


def run(profile: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), str(profile), "--", *cmd], capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    policy = Seccomp(
        allow=("@system-service",),
        deny=("mkdir", "mkdirat"),
        rules=(SeccompRule(("getpriority",), Action("errno", 13), (ArgCond(0, "eq", 1),)),),
    )
    path = tmp_path_factory.mktemp("seccomp") / "isorun.json"
    path.write_text(export_docker(policy))
    return path


def test_denied_mkdir_fails_with_eperm(engine: Path, profile: Path) -> None:
    result = run(profile, "mkdir", "/tmp/x")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Operation not permitted" in result.stdout + result.stderr


def test_allowed_commands_still_work(engine: Path, profile: Path) -> None:
    result = run(profile, "sh", "-c", "echo hi > /tmp/f && cat /tmp/f")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hi" in result.stdout


def test_argument_rule_holds(engine: Path, profile: Path) -> None:
    denied = run(profile, "sysc", "getpriority", "1", "0")
    assert denied.returncode == 1 and "EACCES" in denied.stdout, denied.stdout
    allowed = run(profile, "sysc", "getpriority", "0", "0")
    assert allowed.returncode == 0, allowed.stdout


def test_hardening_personality_and_tiocsti(engine: Path, profile: Path) -> None:
    assert "EPERM" in run(profile, "sysc", "personality", "0x40000").stdout
    assert run(profile, "sysc", "personality", "0xffffffff").returncode == 0
    tiocsti = run(profile, "sysc", "ioctl", "0", "0x100005412", "s:x").stdout
    assert "EPERM" in tiocsti, tiocsti


def test_unknown_number_gets_enosys(engine: Path, profile: Path) -> None:
    assert "ENOSYS" in run(profile, "sysc", "1000").stdout


def test_malformed_profile_is_rejected(engine: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [')
    result = run(bad, "true")
    assert result.returncode == 125, result.stdout + result.stderr
