"""Attacks on the credential masks of the native backend (docs/security.md, "Safe by
default"): an empty read-only mount over each credential location a bind would show.

A mask is a mount on a *path*. When a writable bind shows a directory above a nested
credential location (a profile's rw-bind of ``~/.local`` shows
``~/.local/share/keyrings``), the sandbox cannot move the mask's mount point (EBUSY) nor
the bind's own root, but it can rename a directory between the two: ``mv
~/.local/share ~/.local/s2`` is allowed, and it moves the real ``keyrings`` on the host.
The next run masked ``~/.local/share/keyrings``, which was no longer there (nothing to
hide), and the sandbox read ``~/.local/s2/keyrings``. The shim now binds each directory
between a mask and its bind's root onto itself, so the rename fails (EBUSY).

Run as uid 1000, whose own ``~/.local`` a profile of its own binds writable. (A root
caller's sandbox runs as the overflow uid, which cannot write root's 0755 directories,
so it has no such rename to make.)
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
    out = done.stdout.decode() + done.stderr.decode()
    sys.stdout.write(f"exit {done.returncode}\\n{out}")
except SandboxSetupError as err:
    sys.stdout.write(f"exit {err.exit_code}\\n{err.render()}\\n")
"""

_PROFILE = """
extends = ["strict"]

[[mounts]]
type = "rw-bind"
src = "${HOME}/.local"
dst = "${HOME}/.local"
"""


def _as_user(home: Path, *command: str) -> str:
    done = subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", sys.executable,
         "-c", _API, str(home / "profile.toml"), *command],
        env={"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(home),
             "XDG_CACHE_HOME": str(home / ".cache")},
        cwd=home / "proj", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout + done.stderr


@pytest.mark.needs("shim", "userns")
def test_rename_above_a_nested_mask_shows_it_the_next_run() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as uid 1000")
    base = Path(tempfile.mkdtemp(prefix="isorun-atk-mask-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        home = base / "home"
        keyrings = home / ".local" / "share" / "keyrings"
        keyrings.mkdir(parents=True)
        (keyrings / "login.keyring").write_text("SECRET\n")
        (home / "proj").mkdir()
        (home / "profile.toml").write_text(_PROFILE)
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(home)], check=True)
        # Run 1: the mask holds (the control), and the rename above it goes through.
        first = _as_user(home, "sh", "-c", f"cat {keyrings}/login.keyring; "
                         f"mv {home}/.local/share {home}/.local/s2 && echo moved")  # fmt: skip
        assert "SECRET" not in first, first
        if "moved" not in first:
            return  # the rename was refused: the mask stays where it was
        # Run 2: the keyrings are still masked wherever they now are.
        second = _as_user(home, "sh", "-c", f"cat {home}/.local/s2/keyrings/login.keyring")
        assert "SECRET" not in second, second
    finally:
        shutil.rmtree(base)
