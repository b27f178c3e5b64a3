#!/usr/bin/env python3
"""Overhead of sandboxing a test suite; prints a Markdown table.

- session: wall time of a real suite (this project's tests/unit by default) bare and
  under ``pytest --isorun``, median of ``--runs`` runs; the goal is under 5% plus the
  one-time launch, which is measured on its own (``isorun --profile test -- true``);
- marker: per-test overhead of ``@pytest.mark.isorun`` on ``--tests`` trivial tests
  (marked minus unmarked, beyond a 1-test module, divided by the count); the goal is
  under 10 ms. The once-per-session part is its own row.

Variants run interleaved and each figure is the best of ``--runs`` runs: on a shared VM
the load changes faster than a suite runs, and back-to-back blocks measured the load.

Usage: scripts/bench_pytest.py [--suite PATH] [--runs N] [--tests N] [--parts session,marker]
``scripts/bench.py`` may import :func:`measure` and :func:`markdown`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _walls(variants: dict[str, tuple[list[str], Path]], runs: int) -> dict[str, tuple[float, int]]:
    """name -> (best wall time in seconds, exit code) of each (argv, cwd) variant.

    The variants run interleaved, one round after another, so a load change on the host
    (a 2-core VM shared with other jobs) hits all of them alike instead of whichever ran
    in that minute. The best of the runs, as timeit reports: other jobs only ever add
    time, and medians of 5 still moved by 0.3 s between identical invocations. The exit
    code must not change between runs.
    """
    drop = ("ISORUN_PYTEST_INNER", "PYTEST_ADDOPTS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    times: dict[str, list[float]] = {name: [] for name in variants}
    codes: dict[str, set[int]] = {name: set() for name in variants}
    for _ in range(runs):
        for name, (argv, cwd) in variants.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
            codes[name].add(proc.returncode)
    out = {}
    for name, (argv, _) in variants.items():
        if len(codes[name]) != 1:
            raise SystemExit(f"{' '.join(argv)}: exit codes differ between runs: {codes[name]}")
        out[name] = (min(times[name]), codes[name].pop())
    return out


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
    suite: str = "tests/unit",
    runs: int = 5,
    tests: int = 200,
    parts: str = "session,marker",
    figures: dict[str, float] | None = None,
) -> list[tuple[str, str, str]]:
    """Rows of (measure, value, goal). ``figures`` receives the goals' numbers:
    "session_overhead_pct" and "marker_ms_per_test"."""
    pytest = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    rows: list[tuple[str, str, str]] = []
    figures = {} if figures is None else figures
    if "session" in parts:
        rows += _session(pytest, suite, runs, figures)
    if "marker" in parts:
        rows += _marker(pytest, runs, tests, figures)
    return rows


def _session(
    pytest: list[str], suite: str, runs: int, figures: dict[str, float]
) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory(prefix="isorun-bench-") as tmp:
        # The one-time cost of --isorun: a one-test session sandboxed minus bare (a second
        # interpreter and pytest start-up, plus the launch).
        directory = Path(tmp)
        directory.chmod(0o755)
        one = str(_marker_suite(directory, 1, marked=False))
        t = _walls(
            {
                "launch": ([PYTHON, "-m", "isorun", "--profile", "test", "--", "/bin/true"], ROOT),
                "bare": ([*pytest, suite], ROOT),
                "boxed": ([*pytest, "--isorun", suite], ROOT),
                "one_bare": ([*pytest, one], directory),
                "one_boxed": ([*pytest, "--isorun", one], directory),
            },
            runs,
        )
    _same("launch", 0, t["launch"][1])
    _same(suite, t["bare"][1], t["boxed"][1])
    bare, boxed = t["bare"][0], t["boxed"][0]
    once = t["one_boxed"][0] - t["one_bare"][0]
    extra = boxed - bare - once
    figures["session_overhead_pct"] = extra / bare * 100
    return [
        ("launch alone (`isorun --profile test -- true`)", f"{t['launch'][0] * 1000:.0f} ms", ""),
        ("one-time cost of `--isorun` (1-test session)", f"{once * 1000:.0f} ms", ""),
        (f"`pytest {suite}` bare", f"{bare:.2f} s", ""),
        (f"`pytest --isorun {suite}`", f"{boxed:.2f} s", ""),
        (
            "overhead beyond the one-time cost",
            f"{extra:+.2f} s ({extra / bare * 100:+.1f}%)",
            "< 5%",
        ),
    ]


def _marker(
    pytest: list[str], runs: int, tests: int, figures: dict[str, float]
) -> list[tuple[str, str, str]]:
    # Per test: the difference between a 1-test and a ``tests``-test module, marked minus
    # unmarked, so the once-per-session work (importing isorun, compiling the filter) is
    # its own row instead of being spread over the tests.
    with tempfile.TemporaryDirectory(prefix="isorun-bench-") as tmp:
        directory = Path(tmp)
        variants = {}
        for count in (1, tests):
            for marked in (False, True):
                sub = directory / f"{'marked' if marked else 'plain'}{count}"
                sub.mkdir()
                sub.chmod(0o755)
                path = _marker_suite(sub, count, marked)
                variants[f"{marked}{count}"] = ([*pytest, str(path)], sub)
        directory.chmod(0o755)
        t = _walls(variants, runs)
    _same("marker suite", t[f"False{tests}"][1], t[f"True{tests}"][1])
    once = t["True1"][0] - t["False1"][0]
    per_test = (
        (t[f"True{tests}"][0] - t["True1"][0]) - (t[f"False{tests}"][0] - t["False1"][0])
    ) / (tests - 1)
    figures["marker_ms_per_test"] = per_test * 1000
    return [
        ("one-time cost of `@pytest.mark.isorun` (1-test module)", f"{once * 1000:.0f} ms", ""),
        (f"`@pytest.mark.isorun` per test ({tests} tests)", f"{per_test * 1000:.1f} ms", "< 10 ms"),
    ]


def markdown(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| measure | value | goal |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {goal} |" for name, value, goal in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="tests/unit")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument(
        "--parts", default="session,marker", help="session, marker, or both (comma-separated)"
    )
    args = parser.parse_args()
    sys.stdout.write(markdown(measure(args.suite, args.runs, args.tests, args.parts)))


if __name__ == "__main__":
    main()
