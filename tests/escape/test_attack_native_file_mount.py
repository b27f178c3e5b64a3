"""A ``file`` mount whose destination lies in a writable bind: the path is the sandbox's.

An earlier run that could write the project leaves a FIFO where a later run's profile
writes a ``file`` (``dst = "${CWD}/conf"``). The shim opened it for writing with a plain
open(2), which blocks until a reader comes: the launch hung for good, set-up and all,
and SIGTERM did not end it. Now the open does not block (ENXIO), and anything but a
regular file is refused: exit 125, the launch named.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

UID = 1000

_API = """
import sys
from isorun import api
from isorun.errors import SandboxSetupError
plan = api.compile_plan(sys.argv[1])
try:
    done = api.run(sys.argv[2:], profile=plan, capture_output=True)
    sys.stdout.write(f"exit {done.returncode}\\n{done.stdout.decode()}")
except SandboxSetupError as err:
    sys.stdout.write(f"exit {err.exit_code}\\n{err.render()}\\n")
"""

_PROFILE = """
extends = ["strict"]

[[mounts]]
type = "rw-bind"
src = "${CWD}"
dst = "${CWD}"

[[mounts]]
type = "file"
dst = "${CWD}/conf"
content = "from the profile"
"""


@pytest.mark.needs("shim", "userns")
@pytest.mark.parametrize("as_user", [False, True], ids=["root", "user"])
def test_fifo_planted_at_a_file_mount_is_refused_not_waited_on(as_user: bool) -> None:
    if as_user and (os.geteuid() != 0 or shutil.which("setpriv") is None):
        pytest.skip("needs root and setpriv to run as uid 1000")
    base = Path(tempfile.mkdtemp(prefix="isorun-atk-fifo-", dir="/var/tmp"))
    project = base / "proj"
    project.mkdir()
    (base / "p.toml").write_text(_PROFILE)
    fifo = project / "conf"
    os.mkfifo(fifo)
    # Writable by the sandbox's uid: 65534 for a root caller.
    for path, mode in ((base, 0o755), (project, 0o777), (fifo, 0o666)):
        path.chmod(mode)
    argv = [sys.executable, "-c", _API, str(base / "p.toml"), "cat", "conf"]
    if as_user:
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(base)], check=True)
        argv = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *argv]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(base),
           "XDG_CACHE_HOME": str(base / "cache")}  # fmt: skip
    try:
        done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True,
                              timeout=30, check=False)  # fmt: skip
        out = done.stdout + done.stderr
        assert out.startswith("exit 125"), out
        assert "ENXIO" in out and "file" in out and "p.toml:" in out, out
        assert fifo.is_fifo()
    except subprocess.TimeoutExpired:
        pytest.fail("the launch hung on the planted FIFO")
    finally:
        # A launch still blocked in its open: a reader lets it go on and end.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        shutil.rmtree(base)
