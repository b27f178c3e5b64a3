"""Escape tests: build the C prober once and run each case as root and unprivileged."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROBES = HERE.parent / "probes"

# The integration conftest holds the root/unprivileged machinery; both files are named
# conftest, so load it under a name of its own.
_spec = importlib.util.spec_from_file_location(
    "isorun_tests_integration_conftest", HERE.parent / "integration" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_integration = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _integration
_spec.loader.exec_module(_integration)
case_runner = _integration.case_runner
missing = _integration.missing
mode = _integration.mode


@pytest.fixture(scope="session", autouse=True)
def probe_binaries() -> Iterator[Path]:
    """tests/probes/bin/try_syscall, plus a setuid-root copy when we are root."""
    if shutil.which("gcc") is None:
        missing("gcc to build tests/probes/try_syscall.c")
    out = PROBES / "bin"
    out.mkdir(exist_ok=True)
    out.chmod(0o755)
    binary = out / "try_syscall"
    subprocess.run(
        [
            "gcc",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
            "-o",
            str(binary),
            str(PROBES / "try_syscall.c"),
        ],
        check=True,
        timeout=60,
    )
    if os.geteuid() == 0:
        suid = out / "try_syscall_suid"
        shutil.copy2(binary, suid)
        os.chown(suid, 0, 0)
        suid.chmod(0o4755)
    yield out


@pytest.fixture
def run_escape(mode: str) -> Callable[[str], None]:
    runner: Callable[[str], None] = case_runner(mode, HERE / "escape_cases.py")
    return runner
