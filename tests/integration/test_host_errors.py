"""An OSError of the host (a cache directory that cannot be written, an exec stage that
cannot be executed) reaches the person as a HostError naming the operation, the path and
the errno, with exit 125: never as "internal error, please report it".

Each case runs ``python -m isorun --backend bwrap --profile strict -- true`` as uid 1000
(root's exec stage lives in /var/cache/isorun whatever the environment says; a user's
follows XDG_CACHE_HOME), with the system's python3 and this package on PYTHONPATH, as
tests/integration/test_frontend.py does: the venv's interpreter may sit in root's home.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import isorun
from tests.integration.conftest import missing, userns_available

TIMEOUT = 120
LAUNCH = ["-m", "isorun", "--backend", "bwrap", "--profile", "strict", "--", "true"]


def _user() -> pwd.struct_passwd:
    python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}",
                          path="/usr/bin:/bin")  # fmt: skip
    if os.geteuid() != 0 or shutil.which("setpriv") is None or python is None:
        missing("root, setpriv and a system python3, to run as uid 1000")
    if shutil.which("bwrap") is None or not userns_available():
        missing("bwrap and user namespaces")
    try:
        return pwd.getpwuid(1000)
    except KeyError:
        missing("a user with uid 1000")
        raise


@pytest.fixture
def user_tmp() -> Iterator[Path]:
    """A directory uid 1000 can reach (pytest's tmp_path sits under root's 0700
    /tmp/pytest-of-root)."""
    path = Path(tempfile.mkdtemp(prefix="isorun-host-errors-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _launch_as_user(user: pwd.struct_passwd, base: Path, cache: Path,
                    wrap: list[str] | None = None, launch: list[str] = LAUNCH,
                    path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    """The launch as ``user`` in a project directory under ``base``, with its caches
    under ``cache``; ``wrap`` runs first (as root) and ends by exec'ing the rest."""
    base.chmod(0o755)
    project = base / "project"
    project.mkdir()
    os.chown(project, user.pw_uid, user.pw_gid)
    python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}",
                          path="/usr/bin:/bin")  # fmt: skip
    assert python is not None
    site = next(p for p in sys.path if p.endswith("site-packages"))
    package = str(Path(isorun.__file__).parent.parent)
    env = {"PATH": path, "LANG": "C", "HOME": str(base / "home"),
           "XDG_CACHE_HOME": str(cache), "PYTHONPATH": f"{package}:{site}"}  # fmt: skip
    argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
            "--clear-groups", python, *launch]  # fmt: skip
    return subprocess.run([*(wrap or []), *argv], env=env, cwd=project,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip


def test_unwritable_stage_cache_is_a_host_error(user_tmp: Path) -> None:
    user = _user()
    cache = user_tmp / "cache"
    cache.mkdir(mode=0o755)  # root's: uid 1000 cannot create isorun/ in it
    done = _launch_as_user(user, user_tmp, cache)
    assert done.returncode == 125, done
    assert done.stderr.startswith(
        "isorun: error: cannot enforce the exec stage (isorun-seccomp-exec): cannot build "
        f"it in {cache}/isorun: mkdir: EACCES (Permission denied)\n"
        f"  hint: let uid 1000 create and write {cache}/isorun"), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def test_stage_on_noexec_mount_is_a_host_error(user_tmp: Path) -> None:
    """The stage builds (gcc writes it) but cannot be executed: the tmpfs is noexec.
    isorun says so before bwrap would exec it inside the sandbox, where the refusal would
    be only bwrap's own message. The mount exists only in a mount namespace of the test's
    own (unshare -m)."""
    user = _user()
    if shutil.which("unshare") is None:
        missing("unshare, for a private noexec mount")
    cache = user_tmp / "cache"
    cache.mkdir()
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs -o noexec,mode=0700,uid={user.pw_uid},gid={user.pw_gid} '
            f'isorun-test "{cache}" && exec "$@"', "sh"]  # fmt: skip
    done = _launch_as_user(user, user_tmp, cache, wrap)
    assert done.returncode == 125, done
    first = done.stderr.splitlines()[0]
    assert first.startswith("isorun: error: cannot enforce backend bwrap: cannot start the "
                            f"exec stage ({cache}/isorun/isorun-seccomp-exec-"), first
    assert first.endswith("): execve: EACCES (Permission denied)"), first
    assert "hint: its cache directory must allow execution (not on a noexec mount)" in \
        done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


#: a wrapper that fails on its own, as bwrap does when the user's processes reach
#: RLIMIT_NPROC; it answers isorun's probe (--version) as the real one
FAILING_WRAPPER = """#!/bin/sh
case "$1" in --version) exec {real} "$@";; esac
echo "{tool}: Creating new namespace failed: Resource temporarily unavailable" >&2
exit 1
"""


@pytest.mark.parametrize("tool", ["bwrap", "firejail"])
def test_a_wrapper_failing_before_the_command_is_a_set_up_error(user_tmp: Path,
                                                                 tool: str) -> None:
    """The wrapper's own exit status is not the command's: the exec stage inside says
    with its first byte (--started-fd) that the command was reached. Without it isorun
    names the wrapper, exits 125, and prints none of its guesses about the command."""
    user = _user()
    real = shutil.which(tool)
    if real is None:
        missing(tool)
    launch = ["-m", "isorun", "--backend", tool, "--allow-weaker", "--profile", "strict",
              "--", "sh", "-c", "exit 3"]
    fake = user_tmp / "bin"
    fake.mkdir()
    (fake / tool).write_text(FAILING_WRAPPER.format(real=real, tool=tool))
    # setuid as the real firejail is, which isorun checks (the kernel ignores the bit
    # on a script)
    (fake / tool).chmod(0o4755)
    (user_tmp / "cache").mkdir()
    os.chown(user_tmp / "cache", user.pw_uid, user.pw_gid)
    done = _launch_as_user(user, user_tmp, user_tmp / "cache", launch=launch,
                           path=f"{fake}:/usr/bin:/bin")
    assert done.returncode == 125, done
    assert f"{tool}: Creating new namespace failed" in done.stderr
    assert (f"isorun: error: {tool} stopped before it started the command (its exit "
            "status 1; its own message is above)") in done.stderr, done.stderr
    assert "if it failed with" not in done.stderr
    # the real wrapper: the command's own status, and the guesses about it
    shutil.rmtree(user_tmp / "project")
    done = _launch_as_user(user, user_tmp, user_tmp / "cache", launch=launch)
    assert done.returncode == 3, done
    assert "stopped before" not in done.stderr
    assert "if it failed with" in done.stderr, done.stderr
