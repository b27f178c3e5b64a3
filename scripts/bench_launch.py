"""Median launch time of /bin/true: isorun's native spawn() vs bwrap with equivalent flags.

Both run from this Python process: spawn() clones from C, bwrap is fork/exec'd through
subprocess. Prints a Markdown table. Not a test; run as root or as a normal user:

    .venv/bin/python scripts/bench_launch.py [-n RUNS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from isorun.sandbox.process import spawn
from isorun.sandbox.spec import MountKind, ShimMount, ShimSpec

#: user, pid, mnt, uts, ipc, net, cgroup
CLONE_FLAGS = 0x10000000 | 0x20000000 | 0x00020000 | 0x04000000 | 0x08000000 | 0x40000000
CLONE_FLAGS |= 0x02000000
MOUNTS = (
    ShimMount(MountKind.BIND, b"/usr", b"/usr", flags=1),
    ShimMount(MountKind.SYMLINK, b"/bin", b"usr/bin"),
    ShimMount(MountKind.SYMLINK, b"/lib", b"usr/lib"),
    ShimMount(MountKind.SYMLINK, b"/lib64", b"usr/lib64"),
    ShimMount(MountKind.PROC, b"/proc"),
    ShimMount(MountKind.DEV, b"/dev"),
    ShimMount(MountKind.TMPFS, b"/tmp", mode=0o1777),
)


def native_spec() -> ShimSpec:
    host = 100000 if os.getuid() == 0 else os.getuid()
    hgid = 100000 if os.getuid() == 0 else os.getgid()
    return ShimSpec(
        argv=(b"/bin/true",),
        env=(b"PATH=/usr/bin:/bin",),
        clone_flags=CLONE_FLAGS,
        uid_map=f"1000 {host} 1\n".encode(),
        gid_map=f"1000 {hgid} 1\n".encode(),
        uid=1000,
        gid=1000,
        mounts=MOUNTS,
        hostname=b"sandbox",
    )


def bwrap_argv() -> list[str]:
    return [
        "bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-net",
        "--unshare-uts", "--unshare-cgroup", "--uid", "1000", "--gid", "1000",
        "--hostname", "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib",
        "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "/bin/true",
    ]  # fmt: skip


def measure(run_once: Callable[[], int], runs: int) -> list[float]:
    run_once()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        code = run_once()
        times.append((time.perf_counter() - start) * 1000)
        if code != 0:
            raise SystemExit(f"launch failed with exit code {code}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=200)
    args = parser.parse_args()
    spec = native_spec()
    rows = [("isorun spawn()", measure(lambda: spawn(spec).wait(), args.runs))]
    if shutil.which("bwrap"):
        argv = bwrap_argv()
        rows.append(
            (
                "bwrap (fork/exec)",
                measure(lambda: subprocess.run(argv, check=False).returncode, args.runs),
            )
        )
    who = "root" if os.getuid() == 0 else f"uid {os.getuid()}"
    sys.stdout.write(f"/bin/true, {args.runs} runs, as {who}\n\n")
    sys.stdout.write("| launcher | median ms | p90 ms | min ms |\n|---|---:|---:|---:|\n")
    for name, times in rows:
        p90 = statistics.quantiles(times, n=10)[-1]
        sys.stdout.write(
            f"| {name} | {statistics.median(times):.2f} | {p90:.2f} | {min(times):.2f} |\n"
        )


if __name__ == "__main__":
    main()
