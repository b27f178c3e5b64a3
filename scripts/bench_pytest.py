#!/usr/bin/env python3
"""Overhead of sandboxing a test suite; prints a Markdown table.

- session: wall time of a real suite (this project's tests/unit by default) bare and
  under ``pytest --isorun``, median of ``--runs`` runs; the goal is under 5% plus the
  one-time launch, which is measured on its own (``isorun --profile test -- true``);
- marker: per-test overhead of ``@pytest.mark.isorun`` on ``--tests`` trivial tests
  (marked minus unmarked, beyond a 1-test module, divided by the count); the goal is
  under 10 ms. The once-per-session part is its own row.
- split: the same per-test cost split into the fork of pytest and the sandbox, in a
  small pytest process and in a large one (a conftest that imports a few dozen standard
  modules and keeps ~100 MB of objects, as a real suite's session does). The fork alone
  is a plugin doing what the marker does minus the sandbox: the same clone3 into Python
  (sandbox/pyfork.py) without namespace flags, the test body in the child, a one-byte
  result on a pipe, the child reaped before the next test; sandbox = marked - fork.

Variants run interleaved and each figure is the best of ``--runs`` runs: on a shared VM
the load changes faster than a suite runs, and back-to-back blocks measured the load.

Usage: scripts/bench_pytest.py [--suite PATH] [--runs N] [--tests N]
[--parts session,marker,split]
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


def _walls(
    variants: dict[str, tuple[list[str], Path]],
    runs: int,
    extra: dict[str, str] | None = None,
    cpu: dict[str, float] | None = None,
) -> dict[str, tuple[float, int]]:
    """name -> (best wall time in seconds, exit code) of each (argv, cwd) variant.

    The variants run interleaved, one round after another, so a load change on the host
    (a 2-core VM shared with other jobs) hits all of them alike instead of whichever ran
    in that minute. The best of the runs, as timeit reports: other jobs only ever add
    time, and medians of 5 still moved by 0.3 s between identical invocations. The exit
    code must not change between runs. ``cpu`` receives the best CPU time (user + system,
    seconds) of each variant's process tree: what the load cannot inflate, as it does the
    hand-overs between pytest and a marked test's child on a busy machine.
    """
    import resource

    # PYTHONDONTWRITEBYTECODE: without bytecode on disk every run recompiles what it
    # imports (bench.py says the same of its own figures).
    drop = ("ISORUN_PYTEST_INNER", "PYTEST_ADDOPTS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop} | (extra or {})
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    codes: dict[str, set[int]] = {name: set() for name in variants}
    for _ in range(runs):
        for name, (argv, cwd) in variants.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            codes[name].add(proc.returncode)
    if cpu is not None:
        cpu.update((name, min(values)) for name, values in cpus.items())
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
    if "marker" in parts.split(","):
        rows += _marker(pytest, runs, tests, figures)
    if "split" in parts.split(","):
        rows += _split(pytest, runs, tests, figures)
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


#: a large pytest process, as on a real suite: many imported modules and a big heap of
#: small objects (the cyclic GC walks them, and writes to their pages after a fork)
BIG_CONFTEST = """\
import argparse, asyncio, concurrent.futures, dataclasses, decimal, email.mime.multipart
import http.server, inspect, json, multiprocessing, pydoc, sqlite3, typing, unittest.mock
import xml.etree.ElementTree

BALLAST = [{"n": i, "s": str(i)} for i in range(300_000)]
"""

#: the fork alone: what the marker does per test minus the sandbox (no namespace flags,
#: no plan, no mounts, no filter); loaded with -p from PYTHONPATH
FORK_PLUGIN = """\
import os

import pytest

from isorun.sandbox import pyfork

_exiting = []


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    # reaped without blocking before the next fork, as the marker's Exiting does
    _exiting[:] = [p for p in _exiting if os.waitpid(p, os.WNOHANG)[0] == 0]
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = pyfork.fork(0) if pyfork.unusable() is None else os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            pyfuncitem.obj()
            os.write(w, b"p")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    result = os.read(r, 1)
    os.close(r)
    _exiting.append(pid)
    assert result == b"p"
    return True


def pytest_sessionfinish():
    for pid in _exiting:
        os.waitpid(pid, 0)
    path = os.environ.get("ISORUN_BENCH_RSS")
    if path:
        with open("/proc/self/status") as f:
            rss = [line.split()[1] for line in f if line.startswith("VmRSS:")][0]
        with open(path, "w") as f:
            f.write(rss)
"""


def _split(
    pytest: list[str], runs: int, tests: int, figures: dict[str, float]
) -> list[tuple[str, str, str]]:
    """The marker's per-test cost as fork + sandbox, in a small and a large process."""
    with tempfile.TemporaryDirectory(prefix="isorun-bench-") as tmp:
        directory = Path(tmp)
        (directory / "isorun_bench_fork.py").write_text(FORK_PLUGIN)
        variants: dict[str, tuple[list[str], Path]] = {}
        for size in ("small", "large"):
            for mode in ("plain", "fork", "marked"):
                for count in (1, tests):
                    sub = directory / f"{size}-{mode}{count}"
                    sub.mkdir()
                    path = _marker_suite(sub, count, mode == "marked")
                    if size == "large":
                        (sub / "conftest.py").write_text(BIG_CONFTEST)
                    plugin = ["-p", "isorun_bench_fork"] if mode == "fork" else []
                    variants[f"{size}-{mode}{count}"] = ([*pytest, *plugin, str(path)], sub)
        for path in (directory, *directory.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        rss = {}
        for size in ("small", "large"):
            argv, cwd = variants[f"{size}-fork{tests}"]
            out = directory / f"rss-{size}"
            env = {**os.environ, "PYTHONPATH": str(directory), "ISORUN_BENCH_RSS": str(out)}
            subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
            rss[size] = int(out.read_text()) / 1024
        cpu: dict[str, float] = {}
        t = _walls(variants, runs, {"PYTHONPATH": str(directory)}, cpu)
    rows: list[tuple[str, str, str]] = []
    for size in ("small", "large"):

        def per_test(mode: str, size: str = size, cpu_time: bool = False) -> float:
            def of(name: str) -> float:
                return cpu[name] if cpu_time else t[name][0]

            ran = of(f"{size}-{mode}{tests}") - of(f"{size}-{mode}1")
            bare = of(f"{size}-plain{tests}") - of(f"{size}-plain1")
            return (ran - bare) / (tests - 1) * 1000

        _same(f"{size} marker suite", t[f"{size}-plain{tests}"][1], t[f"{size}-marked{tests}"][1])
        _same(f"{size} fork suite", t[f"{size}-plain{tests}"][1], t[f"{size}-fork{tests}"][1])
        marked, fork = per_test("marked"), per_test("fork")
        marked_cpu, fork_cpu = per_test("marked", cpu_time=True), per_test("fork", cpu_time=True)
        figures[f"split_{size}_marked_ms"] = marked
        figures[f"split_{size}_fork_ms"] = fork
        figures[f"split_{size}_rss_mib"] = rss[size]
        what = "trivial module" if size == "small" else "conftest with ~100 MB of objects"
        label = f"{what}, pytest at {rss[size]:.0f} MiB RSS"
        rows += [
            (f"marked test, per test ({label})",
             f"{marked:.1f} ms wall, {marked_cpu:.1f} ms CPU", ""),
            ("of which the fork alone (clone3 without namespaces, body, exit)",
             f"{fork:.1f} ms wall, {fork_cpu:.1f} ms CPU", ""),
            ("of which the sandbox (marked - fork)",
             f"{marked - fork:.1f} ms wall, {marked_cpu - fork_cpu:.1f} ms CPU", ""),
        ]  # fmt: skip
    return rows


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
        "--parts", default="session,marker", help="session, marker, split (comma-separated)"
    )
    args = parser.parse_args()
    sys.stdout.write(markdown(measure(args.suite, args.runs, args.tests, args.parts)))


if __name__ == "__main__":
    main()
