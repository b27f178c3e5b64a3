"""Overhead of learn mode on a syscall-heavy command; prints a Markdown table.

Every call of the command goes through the supervisor in ``learn`` mode (a round trip to
the launcher per syscall); ``widen`` notifies only what the base refuses, so it costs
about what a plain run costs. Usage: ``.venv/bin/python scripts/bench_learn.py [RUNS]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isorun import api
from isorun.learn import observe as learn
from isorun.learn import profile as learn_profile

#: about 200k stat calls plus python's start-up
HEAVY = ["/usr/bin/python3", "-c",
         "import os\nfor _ in range(200000):\n    os.stat('/usr')"]


def timed(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    obs = learn.observe(HEAVY, "strict", "learn", stdout=subprocess.DEVNULL, timeout=600)
    calls = obs.total
    with tempfile.TemporaryDirectory() as tmp:
        learned = Path(tmp) / "heavy.toml"
        learned.write_text(learn_profile.render_profile(obs, out_path=str(learned))[0])

        def plain() -> object:
            return api.run(HEAVY, profile="strict", capture_output=True, timeout=600)

        def learned_run() -> object:
            return api.run(HEAVY, profile=str(learned), capture_output=True, timeout=600)

        def learn_full() -> object:
            return learn.observe(HEAVY, "strict", "learn", stdout=subprocess.DEVNULL,
                                 timeout=600)

        def widen() -> object:
            return learn.observe(HEAVY, "strict", "widen", stdout=subprocess.DEVNULL,
                                 timeout=600)

        def check() -> object:
            return learn.observe(HEAVY, str(learned), "check", stdout=subprocess.DEVNULL,
                                 timeout=600)

        rows = [("run under strict", timed(plain, runs)),
                ("run under the learned profile", timed(learned_run, runs)),
                ("learn (every call notified)", timed(learn_full, runs)),
                ("learn --widen-only over strict", timed(widen, runs)),
                ("learn --check the learned profile", timed(check, runs))]
    base = rows[0][1]
    print(f"Command: python3 doing 200k stat(2); {calls} syscalls observed in learn mode;"
          f" median of {runs} runs.\n")
    print("| mode | wall time (s) | vs plain | per notified call |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in rows:
        per = (f"{(seconds - base) / calls * 1e6:.1f} µs" if "every call" in name else "")
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f}x | {per} |")


if __name__ == "__main__":
    main()
