#!/usr/bin/env python3
"""Overhead of sandboxing a test suite; prints a Markdown table.

- session: wall time of a real suite (this project's tests/unit by default) bare and
  under ``pytest --isorun``, median of ``--runs`` runs; the goal is under 5% plus the
  one-time launch, which is measured on its own (``isorun --profile test -- true``);
- marker: per-test overhead of ``@pytest.mark.isorun`` on ``--tests`` trivial tests
  (marked minus unmarked, divided by the count); the goal is under 10 ms.

Usage: scripts/bench_pytest.py [--suite PATH] [--runs N] [--tests N]
``scripts/bench.py`` may import :func:`measure` and :func:`markdown`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _wall(argv: list[str], cwd: Path, runs: int) -> tuple[float, int]:
    """(median wall time in seconds, exit code); the code must not change between runs."""
    drop = ("ISORUN_PYTEST_INNER", "PYTEST_ADDOPTS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    times = []
    codes = set()
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        codes.add(proc.returncode)
    if len(codes) != 1:
        raise SystemExit(f"{' '.join(argv)}: exit codes differ between runs: {codes}")
    return statistics.median(times), codes.pop()


def _same(name: str, bare: int, boxed: int) -> None:
    # Sandboxed and bare runs must agree, or the timing compares different work.
    if bare != boxed:
        raise SystemExit(f"{name}: exit code {bare} bare but {boxed} sandboxed")


def _marker_suite(directory: Path, count: int, marked: bool) -> Path:
    path = directory / ("test_marked.py" if marked else "test_plain.py")
    head = "import pytest\n" + ("pytestmark = pytest.mark.isorun()\n" if marked else "")
    body = "".join(f"def test_{i}():\n    assert {i} == {i}\n" for i in range(count))
    path.write_text(head + body)
    return path


def measure(
    suite: str = "tests/unit", runs: int = 3, tests: int = 200
) -> list[tuple[str, str, str]]:
    """Rows of (measure, value, goal)."""
    pytest = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    launch, code = _wall(
        [PYTHON, "-m", "isorun", "--profile", "test", "--", "/bin/true"], ROOT, runs
    )
    _same("launch", 0, code)
    bare, bare_code = _wall([*pytest, suite], ROOT, runs)
    boxed, boxed_code = _wall([*pytest, "--isorun", suite], ROOT, runs)
    _same(suite, bare_code, boxed_code)
    with tempfile.TemporaryDirectory(prefix="isorun-bench-") as tmp:
        # The one-time cost of --isorun: a one-test session sandboxed minus bare (a second
        # interpreter and pytest start-up, plus the launch).
        directory = Path(tmp)
        directory.chmod(0o755)
        one = _marker_suite(directory, 1, marked=False)
        one_bare, _ = _wall([*pytest, str(one)], directory, runs)
        one_boxed, _ = _wall([*pytest, "--isorun", str(one)], directory, runs)
    once = one_boxed - one_bare
    extra = boxed - bare - once
    rows = [
        ("launch alone (`isorun --profile test -- true`)", f"{launch * 1000:.0f} ms", ""),
        ("one-time cost of `--isorun` (1-test session)", f"{once * 1000:.0f} ms", ""),
        (f"`pytest {suite}` bare", f"{bare:.2f} s", ""),
        (f"`pytest --isorun {suite}`", f"{boxed:.2f} s", ""),
        (
            "overhead beyond the one-time cost",
            f"{extra:+.2f} s ({extra / bare * 100:+.1f}%)",
            "< 5%",
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="isorun-bench-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)
        plain = _marker_suite(directory, tests, marked=False)
        marked = _marker_suite(directory, tests, marked=True)
        t_plain, plain_code = _wall([*pytest, str(plain)], directory, runs)
        t_marked, marked_code = _wall([*pytest, str(marked)], directory, runs)
        _same("marker suite", plain_code, marked_code)
    per_test = (t_marked - t_plain) / tests
    rows.append(
        (f"`@pytest.mark.isorun` per test ({tests} tests)", f"{per_test * 1000:.1f} ms", "< 10 ms")
    )
    return rows


def markdown(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| measure | value | goal |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {goal} |" for name, value, goal in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="tests/unit")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=200)
    args = parser.parse_args()
    sys.stdout.write(markdown(measure(args.suite, args.runs, args.tests)))


if __name__ == "__main__":
    main()
