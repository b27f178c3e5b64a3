"""Attacks on the native backend's rootfs mode (``filesystem.root = "/path"``).

The read-only remount of the new root (``filesystem.root_read_only``, the default) only
changed the top mount: a filesystem the host mounted *inside* the rootfs directory came
along with the recursive bind and stayed writable, so the sandbox wrote to the host
through a root the profile declared read-only. Checked as root (the parent clones the
rootfs, ``TREE`` at "/") and as uid 1000 (the child binds it, ``bind_root``), through the
API (isorun-launch) and, as root, the ``isorun`` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
UID = 1000

#: run as the caller (root, or uid 1000 under setpriv): the API's route, isorun-launch
_API = """
import sys
from isorun import api
from isorun.errors import SandboxSetupError
plan = api.compile_plan(sys.argv[1])
try:
    done = api.run(sys.argv[2:], profile=plan, capture_output=True)
    sys.stdout.write(f"exit {done.returncode}\\n{done.stdout.decode()}{done.stderr.decode()}")
except SandboxSetupError as err:
    sys.stdout.write(f"exit {err.exit_code}\\n{err.render()}\\n")
"""

#: writes the submount, the rootfs top and the sandbox's own /tmp, and says which worked
_WRITE = "for p in /data/m /m /tmp/m; do echo x > $p && echo wrote $p; done; exit 0"


@pytest.fixture
def rootfs() -> Iterator[Path]:
    """A busybox rootfs whose /data is a host tmpfs mounted inside the rootfs directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount the host filesystem inside the rootfs")
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox for a rootfs without libraries")
    base = Path(tempfile.mkdtemp(prefix="isorun-atk-rootfs-", dir="/var/tmp"))
    root = base / "rootfs"
    for name in ("bin", "proc", "dev", "tmp", "data"):
        (root / name).mkdir(parents=True)
    shutil.copy2(os.path.realpath(BUSYBOX), root / "bin" / "busybox")
    for d in (base, root):
        d.chmod(0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=1m", "isorun-atk",
                    str(root / "data")], check=True)  # fmt: skip
    (base / "cache").mkdir()
    os.chown(base / "cache", UID, UID)
    (base / "rootfs.toml").write_text(f'''
[filesystem]
root = "{root}"
cwd = "/"

[[mounts]]
type = "proc"
dst = "/proc"

[[mounts]]
type = "dev"
dst = "/dev"

[[mounts]]
type = "tmpfs"
dst = "/tmp"

[seccomp]
allow = ["@docker-default"]
''')
    try:
        yield base
    finally:
        subprocess.run(["umount", "-l", str(root / "data")], check=False)
        shutil.rmtree(base)


def _launch(base: Path, route: str, as_user: bool) -> str:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(base),
           "XDG_CACHE_HOME": str(base / "cache")}  # fmt: skip
    command = ["/bin/busybox", "sh", "-c", _WRITE]
    if route == "cli":
        isorun = shutil.which("isorun", path=os.path.dirname(sys.executable))
        assert isorun is not None
        argv = [isorun, "--profile", str(base / "rootfs.toml"), "--", *command]
    else:
        argv = [sys.executable, "-c", _API, str(base / "rootfs.toml"), *command]
    if as_user:
        argv = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *argv]
    done = subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    return done.stdout + done.stderr


@pytest.mark.needs("shim", "userns")
@pytest.mark.parametrize(("route", "as_user"), [("api", False), ("cli", False), ("api", True)],
                         ids=["root-api", "root-cli", "user-api"])  # fmt: skip
def test_read_only_rootfs_keeps_its_submounts_read_only(
    rootfs: Path, route: str, as_user: bool
) -> None:
    if as_user and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run as uid 1000")
    data = rootfs / "rootfs" / "data"
    for _ in range(2):  # the CLI's second run is the warm one (the C fast path)
        out = _launch(rootfs, route, as_user)
        # The control: the sandbox ran, and its own /tmp is writable.
        assert "wrote /tmp/m" in out, out
        assert "wrote /m" not in out, out
        # The host filesystem mounted inside the read-only rootfs: untouched.
        assert "wrote /data/m" not in out, out
        assert os.listdir(data) == [], out
