"""Fixtures for native sandbox tests: run a case as root and as an unprivileged user.

A case that cannot run because the host lacks a feature skips locally, and fails when
``CI=true`` or ``ISORUN_MUST_SANDBOX=1`` (a skipped sandbox test in CI hides a regression).
"""

from __future__ import annotations

import os
import pwd
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "native_cases.py"
#: unprivileged users to try, first that exists wins
UNPRIVILEGED = ("nobody", "cloudsdk")


def must_sandbox() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("ISORUN_MUST_SANDBOX") == "1"


def missing(feature: str) -> None:
    """Skip, or fail in CI, because ``feature`` is not available here."""
    if must_sandbox():
        pytest.fail(f"required feature missing: {feature}")
    pytest.skip(f"feature missing: {feature}")


def unprivileged_user() -> pwd.struct_passwd | None:
    for name in UNPRIVILEGED:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def userns_available() -> bool:
    path = Path("/proc/sys/user/max_user_namespaces")
    return path.exists() and int(path.read_text()) > 0


@pytest.fixture(params=["root", "user"])
def mode(request: pytest.FixtureRequest) -> str:
    """Who launches the sandbox: the root test process, or an unprivileged user."""
    value: str = request.param
    if not userns_available():
        missing("user namespaces (sysctl user.max_user_namespaces)")
    if value == "root" and os.geteuid() != 0:
        missing("root")
    if value == "user" and (
        os.geteuid() != 0 or unprivileged_user() is None or shutil.which("setpriv") is None
    ):
        missing("root to switch to an unprivileged user with setpriv")
    return value


def run_as_user(
    case: str, timeout: float = 300, cases_file: Path = CASES_FILE,
    user: pwd.struct_passwd | None = None,
) -> subprocess.CompletedProcess[str]:
    """Re-run ``cases_file CASE`` through setpriv as ``user`` (the unprivileged user)."""
    user = unprivileged_user() if user is None else user
    assert user is not None
    env = {"PATH": "/usr/bin:/bin", "LANG": "C"}
    for key in ("ISORUN_LAUNCHES",):
        if key in os.environ:
            env[key] = os.environ[key]
    argv = [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        sys.executable,
        str(cases_file),
        case,
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", check=False
    )


def root_or_uid1000_runner(mode: str, cases_file: Path) -> Callable[[str], None]:
    """:func:`case_runner` as root, or as uid 1000 through setpriv (firejail admits uid
    1000 where it refuses nobody): the test fails in CI, or skips, naming what is missing."""
    if os.geteuid() != 0:
        missing("root (to run as root and, through setpriv, as uid 1000)")
    try:
        user = pwd.getpwuid(1000)
    except KeyError:
        missing("a user with uid 1000")
    if mode == "uid1000" and shutil.which("setpriv") is None:
        missing("setpriv")
    return case_runner(mode, cases_file, user)


def case_runner(mode: str, cases_file: Path,
                user: pwd.struct_passwd | None = None) -> Callable[[str], None]:
    """A function running one case of ``cases_file`` (a module with a CASES dict); not
    as root, as ``user`` (the unprivileged user)."""

    def runner(case: str) -> None:
        if mode == "root":
            module: dict[str, Any] = runpy.run_path(str(cases_file))
            module["CASES"][case]()
            return
        result = run_as_user(case, cases_file=cases_file, user=user)
        assert result.returncode == 0 and result.stdout.endswith("OK\n"), (
            f"case {case} failed as an unprivileged user:\n{result.stdout}\n{result.stderr}"
        )

    return runner


@pytest.fixture
def run_case(mode: str) -> Callable[[str], None]:
    """Run a case from native_cases.py as the current mode's caller; assert it passed."""
    return case_runner(mode, CASES_FILE)


@pytest.fixture
def run_landlock_case(mode: str) -> Callable[[str], None]:
    """Run a case from landlock_cases.py as the current mode's caller (needs Landlock
    ABI 6: scoping is what several cases check)."""
    from isorun.host.facts import probe

    abi = probe().landlock
    if abi < 6:
        missing(f"Landlock ABI 6 (this kernel has {abi})")
    return case_runner(mode, HERE / "landlock_cases.py")
