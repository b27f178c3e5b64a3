"""The CLI names the limit that stopped a command, with its profile line (the limits part
of issue #17's refusal report): exit 124 or 137 alone does not say which rule did it.
``--quiet`` turns it off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs("userns", "shim")


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="isorun-limits-"))
    path.chmod(0o755)  # a root caller's sandbox (65534) must enter it
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run(work: Path, limits: str, *command: str, quiet: bool = False
         ) -> subprocess.CompletedProcess[str]:
    (work / "p.toml").write_text(f'extends = ["strict"]\n\n[limits]\n{limits}\n')
    env = {**os.environ, "XDG_CACHE_HOME": str(work / ".cache")}
    flags = ["--quiet"] if quiet else []
    return subprocess.run([sys.executable, "-m", "isorun", *flags, "--profile", "./p.toml", "--",
                           *command], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_wall_time_is_named(work: Path) -> None:
    done = _run(work, "wall_time = 1", "sleep", "30")
    assert done.returncode == 124
    assert "isorun: limits.wall_time = 1 s (p.toml:4) killed the command" in done.stderr
    done = _run(work, "wall_time = 1", "sleep", "30", quiet=True)
    assert done.returncode == 124 and "limits." not in done.stderr


def test_cpu_time_is_named(work: Path) -> None:
    done = _run(work, "cpu = 1", "sh", "-c", "while :; do :; done")
    assert done.returncode == 137
    assert "isorun: limits.cpu = 1 s (p.toml:4) killed the command after" in done.stderr


@pytest.mark.needs("root")  # memory and pids need a writable cgroup (v1 here: root)
def test_memory_limit_is_named(work: Path) -> None:
    done = _run(work, 'memory = "32m"', "python3", "-c", "x = bytearray(256 << 20)")
    assert done.returncode == 137
    assert ("isorun: limits.memory = 32m (p.toml:4) killed 1 process(es) of the sandbox: "
            "out of memory") in done.stderr


@pytest.mark.needs("root")
def test_pids_limit_is_named(work: Path) -> None:
    done = _run(work, "pids = 8", "sh", "-c", "for i in $(seq 20); do sleep 1 & done; exit 3")
    assert done.returncode == 2 and "Cannot fork" in done.stderr  # sh gives up at once
    assert "isorun: limits.pids = 8 (p.toml:4) refused " in done.stderr


def test_a_plain_failure_names_no_limit(work: Path) -> None:
    done = _run(work, "wall_time = 30\ncpu = 30", "sh", "-c", "exit 9")
    assert done.returncode == 9 and "limits." not in done.stderr
