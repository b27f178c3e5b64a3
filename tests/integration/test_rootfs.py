"""filesystem.root = a directory: the rootfs becomes / by pivot_root, with no way back."""

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


@pytest.fixture
def rootfs_profile() -> Iterator[Path]:
    # Directly under /tmp, not in pytest's 0700 tmp_path: the sandbox's host uid (65534
    # for a root caller) must be able to reach the rootfs, as for any bind source the
    # child mounts itself.
    base = Path(tempfile.mkdtemp(prefix="isorun-rootfs-"))
    try:
        yield _make_rootfs(base)
    finally:
        shutil.rmtree(base)


def _make_rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    # a static busybox needs no libraries: the rootfs holds nothing of the host
    shutil.copy2(os.path.realpath(BUSYBOX), root / "bin" / "busybox")
    for name in ("proc", "dev", "tmp", "etc"):
        (root / name).mkdir()
    (root / "etc" / "marker").write_text("inside\n")
    root.chmod(0o755)
    tmp_path.chmod(0o755)
    profile = tmp_path / "rootfs.toml"
    profile.write_text(f'''
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

[environment]
set = {{ PATH = "/bin" }}
''')
    return profile


def isorun(profile: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isorun", "--profile", str(profile), "--",
                           "/bin/busybox", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.needs("shim", "userns")
def test_rootfs_is_the_whole_view(rootfs_profile: Path) -> None:
    result = isorun(rootfs_profile, "/bin/busybox ls /; /bin/busybox cat /etc/marker; "
                    "/bin/busybox ls /..")
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split()
    assert listing[:6] == ["bin", "dev", "etc", "proc", "tmp", "inside"]
    # / has no parent: ".." of the new root is the root itself, not the host directory
    assert listing[6:] == ["bin", "dev", "etc", "proc", "tmp"]


@pytest.mark.needs("shim", "userns")
def test_chroot_escape_from_rootfs_is_refused(rootfs_profile: Path) -> None:
    # The classic escape: chroot into a subdirectory while keeping a descriptor (or cwd)
    # outside it, then walk up. It needs CAP_SYS_CHROOT, which the sandbox does not keep;
    # and pivot_root (unlike chroot) left no host tree above / to walk up to.
    script = ("/bin/busybox mkdir -p /tmp/jail && cd / && "
              "/bin/busybox chroot /tmp/jail /bin/busybox true; echo chroot=$?; "
              "cd /../../.. && /bin/busybox ls")
    result = isorun(rootfs_profile, script)
    assert "chroot=0" not in result.stdout, result.stdout + result.stderr
    assert "Operation not permitted" in result.stderr
    assert result.stdout.split()[1:] == ["bin", "dev", "etc", "proc", "tmp"]


@pytest.mark.needs("shim", "userns")
def test_host_files_are_not_reachable(rootfs_profile: Path) -> None:
    # /proc/1/root is the classic way back out of a chroot. pid 1 here is isorun's init,
    # which made itself non-dumpable, so its /proc entries are closed to the command; and
    # the command's own /proc/self/root is the rootfs (the host tree was detached).
    result = isorun(rootfs_profile, "/bin/busybox ls /proc/1/root/; echo ls=$?; "
                    "/bin/busybox ls /proc/self/root/")
    lines = result.stdout.split()
    assert lines[0] == "ls=1" and "Permission denied" in result.stderr, result.stderr
    assert lines[1:] == ["bin", "dev", "etc", "proc", "tmp"], result.stdout


@pytest.mark.needs("shim", "userns", "root")
@pytest.mark.parametrize("how", ["cli", "api"])
def test_root_caller_reaches_a_rootfs_behind_a_0700_directory(how: str) -> None:
    # A root caller's sandbox runs as uid 65534, which cannot walk /root or any other 0700
    # directory; the parent (still root) clones the rootfs with open_tree and the child
    # attaches that tree, as it does for bind sources. Before, this failed with EACCES.
    base = Path(tempfile.mkdtemp(prefix="isorun-rootfs-"))
    try:
        profile = _make_rootfs(base / "private")
        (base / "private").chmod(0o700)
        base.chmod(0o700)
        script = "/bin/busybox cat /etc/marker; /bin/busybox ls /"
        if how == "cli":
            result = isorun(profile, script)
            code, out, err = result.returncode, result.stdout, result.stderr
        else:
            import isorun as api

            run = api.run(["/bin/busybox", "sh", "-c", script], profile=str(profile),
                          capture_output=True)  # fmt: skip
            code, out, err = run.returncode, run.stdout.decode(), run.stderr.decode()
        assert code == 0, err
        assert out.split() == ["inside", "bin", "dev", "etc", "proc", "tmp"]
    finally:
        shutil.rmtree(base)
