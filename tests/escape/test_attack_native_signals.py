"""SIGKILL the launcher while the sandbox sets up: nothing may outlive it.

``process.die_with_parent`` (on in every built-in profile) is a parent-death signal, and
the kernel clears that signal whenever a process changes its uid or gid (prctl(2)). The
child does, before its mounts, and set the signal again only at the end of its set-up:
a launcher killed in between (every mount, most of the set-up's time) sent no signal,
and the sandbox ran its command on, orphaned, with nobody to wait for it or stop it.
Measured on main: 81 of 150 launches of ``isorun --profile test`` killed at a random
moment in their first 10 ms left the command running.

Each launch here is killed once the sandbox's process exists, a random moment (up to
3 ms) later, so most kills land during its set-up.

Each command has an argument of its own, and afterwards no process with that argument
may exist; the host's mount table is unchanged (every mount was in the sandbox's own
namespace).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

UID = 1000
LAUNCHES = 40

_API = """
import sys
from isorun import api
api.run(sys.argv[1:], profile=api.compile_plan("test"))
"""


def _alive_with(arg: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmdline:
            found.append(int(pid))
    return found


def _descendants(pid: int) -> int:
    """How many processes descend from ``pid`` (its threads' children, recursively)."""
    count = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        count += sum(1 + _descendants(int(child)) for child in children)
    return count


def _mounts() -> int:
    return len(Path("/proc/self/mountinfo").read_text().splitlines())


@pytest.mark.needs("shim", "userns")
@pytest.mark.parametrize(("route", "as_user"), [("cli", False), ("api", False), ("api", True)],
                         ids=["root-cli", "root-api", "user-api"])  # fmt: skip
def test_sigkill_of_the_launcher_mid_setup_leaves_nothing_running(
    route: str, as_user: bool
) -> None:
    if as_user and (os.geteuid() != 0 or shutil.which("setpriv") is None):
        pytest.skip("needs root and setpriv to run as uid 1000")
    base = Path(tempfile.mkdtemp(prefix="isorun-atk-kill-", dir="/var/tmp"))
    project = base / "proj"
    (project / ".tox").mkdir(parents=True)
    (base / "cache").mkdir()
    if as_user:
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(base)], check=True)
    base.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(base),
           "XDG_CACHE_HOME": str(base / "cache")}  # fmt: skip
    if route == "cli":
        isorun = shutil.which("isorun", path=os.path.dirname(sys.executable))
        assert isorun is not None
        prefix = [isorun, "--profile", "test", "--"]
        depth = 1  # isorun, then the sandbox
    else:
        prefix = [sys.executable, "-c", _API]
        depth = 2  # python, isorun-launch, then the sandbox
    if as_user:
        prefix = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *prefix]
    # A first, complete run: the CLI's plan cache, so the others take the warm path.
    subprocess.run([*prefix, "true"], cwd=project, env=env, check=True, timeout=60)
    mounts = _mounts()
    tag = f"{random.randrange(10**6)}.{os.getpid()}"
    try:
        for i in range(LAUNCHES):
            arg = f"7{tag}{i}"
            proc = subprocess.Popen([*prefix, "sleep", arg], cwd=project, env=env,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            # Killed once the sandbox's process exists, at some point of its set-up.
            deadline = time.monotonic() + 30
            while _descendants(proc.pid) < depth and proc.poll() is None:
                assert time.monotonic() < deadline, "the sandbox never started"
            time.sleep(random.uniform(0, 0.003))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        time.sleep(0.5)
        survivors = [p for i in range(LAUNCHES) for p in _alive_with(f"7{tag}{i}")]
        assert survivors == [], f"{len(survivors)} sandboxes outlived their killed launcher"
        assert _mounts() == mounts
        assert sorted(os.listdir(project)) == [".tox"]
        assert os.listdir(project / ".tox") == []
    finally:
        for i in range(LAUNCHES):
            for pid in _alive_with(f"7{tag}{i}"):
                with contextlib.suppress(ProcessLookupError):  # gone since it was listed
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base)
