"""API launch of ``strict`` from one warm Python process: isorun-launch vs the in-process
clone vs bubblewrap (issue #7).

Three launchers of /bin/true, interleaved so machine load hits all alike; medians and
p10/p90 in ms, then back-to-back launches per second of each. bwrap gets the flags
closest to ``strict`` and the very BPF program isorun loads (scripts/bench.py's argv),
started with ``subprocess.run`` as a caller would. Not a test; run as root or as a
normal user:

    .venv/bin/python scripts/bench_launch.py [-n RUNS] [--rate-runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import bwrap_argv, strict_bpf

import isorun
from isorun.sandbox import launched


def in_process_clone() -> None:
    """isorun.run with isorun-launch hidden: the fallback, which clones this process."""
    found = launched.launcher_path
    launched.launcher_path = lambda: None  # type: ignore[assignment]
    try:
        isorun.run(["/bin/true"], profile="strict", check=True)
    finally:
        launched.launcher_path = found  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=300)
    parser.add_argument("--rate-runs", type=int, default=300)
    args = parser.parse_args()
    if launched.launcher_path() is None:
        raise SystemExit(f"{launched.LAUNCHER} is not built (make shim)")
    with tempfile.NamedTemporaryFile(prefix="isorun-bench-", suffix=".bpf") as bpf:
        bpf.write(strict_bpf())
        bpf.flush()
        fd = os.open(bpf.name, os.O_RDONLY)
        argv = bwrap_argv(fd)

        def bwrap() -> None:
            os.lseek(fd, 0, os.SEEK_SET)  # bwrap reads the program from the shared offset
            subprocess.run(argv, pass_fds=(fd,), check=True)

        launchers: list[tuple[str, Callable[[], None]]] = [
            ("isorun.run via isorun-launch", lambda: isorun.run(["/bin/true"], check=True)),
            ("isorun.run, in-process clone", in_process_clone),
        ]
        if shutil.which("bwrap"):
            launchers.append(("bwrap + seccomp via subprocess.run", bwrap))
        for _, launch in launchers:
            launch()
        samples: dict[str, list[float]] = {name: [] for name, _ in launchers}
        for _ in range(args.runs):
            for name, launch in launchers:
                start = time.perf_counter()
                launch()
                samples[name].append((time.perf_counter() - start) * 1000)
        # Back-to-back launches per second, in alternating blocks so that load (and the
        # kernel's deferred namespace teardown of the previous block) hits each alike.
        spent = dict.fromkeys(samples, 0.0)
        block = max(1, args.rate_runs // 6)
        for _ in range(6):
            for name, launch in launchers:
                start = time.perf_counter()
                for _ in range(block):
                    launch()
                spent[name] += time.perf_counter() - start
        rates = {name: 6 * block / seconds for name, seconds in spent.items()}
        os.close(fd)
    who = "root" if os.getuid() == 0 else f"uid {os.getuid()}"
    load = os.getloadavg()[0]
    sys.stdout.write(
        f"/bin/true under strict, {args.runs} interleaved runs, as {who}, load {load:.2f}\n\n"
    )
    sys.stdout.write(
        "| launcher | median ms | p10 ms | p90 ms | launches/s |\n|---|---:|---:|---:|---:|\n"
    )
    for name, times in samples.items():
        deciles = statistics.quantiles(times, n=10)
        sys.stdout.write(
            f"| {name} | {statistics.median(times):.2f} | {deciles[0]:.2f} |"
            f" {deciles[-1]:.2f} | {rates[name]:.0f} |\n"
        )
    bw = "bwrap + seccomp via subprocess.run"
    if bw in samples:
        for name in list(samples)[:2]:
            ratio = statistics.median(samples[name]) / statistics.median(samples[bw])
            sys.stdout.write(
                f"\n{name}: {ratio:.2f}x bwrap's launch time (goal <= 0.80), "
                f"{rates[name] / rates[bw]:.2f}x its launches/s (goal >= 1.25)"
            )
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
