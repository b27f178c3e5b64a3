"""Shared by the plugin tests: run a command, with a timeout, and show its output on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def run(
    argv: Sequence[str], cwd: Path, timeout: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    merged = dict(os.environ)
    # This suite may itself run under --isorun; the children decide for themselves.
    merged.pop("ISORUN_PYTEST_INNER", None)
    merged.pop("PYTEST_ADDOPTS", None)
    merged.update(env or {})
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
