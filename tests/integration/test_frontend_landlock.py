"""The C front end serves the landlock backend (issue 18): ``--backend landlock``, and
``auto`` where no user namespace can be made, launch from the index with no Python, print
every rule the run gives up, and never outlive the conditions of auto's choice.

No user namespace, for real: the launches run under a seccomp filter that refuses
unshare(2) and clone(2) with CLONE_NEWUSER, as a container engine's default profile does.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_frontend import (
    FRONTEND,
    PYTHON_CLI,
    _env,
    _index,
    _installed,  # noqa: F401 (an autouse fixture)
    _python_ran,
    _run,
    _traced,
    nobody_home,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.needs("userns", "shim")

WEAKER = ["--allow-weaker", "--profile", "strict", "--"]
HOSTNAME = ["/bin/uname", "-n"]
WARNING = "isorun: warning: backend landlock runs this profile WITHOUT:"

_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The working directory and cache of a test (a fresh cache: every test starts cold)."""
    (tmp_path / "work").mkdir()
    return tmp_path


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


# x86_64: unshare 272, clone 56 (flags in the first argument), clone3 435 (ENOSYS, so
# the C library falls back to clone); BPF_LD|W|ABS 0x20, JEQ 0x15, JSET 0x45, RET 0x06
_INSNS = [(0x20, 0, 0, 0), (0x15, 2, 0, 272), (0x15, 1, 0, 56), (0x15, 4, 3, 435),
          (0x20, 0, 0, 16), (0x45, 0, 1, 0x10000000), (0x06, 0, 0, 0x00050001),
          (0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, 0x00050026)]
_ARRAY = (_Filter * len(_INSNS))(*(_Filter(*i) for i in _INSNS))
_PROG = _Prog(len(_INSNS), _ARRAY)


def _no_userns() -> None:
    """preexec_fn: no_new_privs, then the filter (a confined process, as in a container)."""
    if _libc.prctl(38, 1, 0, 0, 0) != 0 or _libc.prctl(22, 2, ctypes.byref(_PROG)) != 0:
        os._exit(99)


def _nnp_only() -> None:
    """preexec_fn: no_new_privs alone: confined, but user namespaces can be made."""
    if _libc.prctl(38, 1, 0, 0, 0) != 0:
        os._exit(99)


def _confined(argv: list[str], home: Path, preexec: object = _no_userns
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=_env(home), cwd=home / "work", capture_output=True,
                          text=True, timeout=60, preexec_fn=preexec)  # type: ignore[arg-type]


def _traced_confined(argv: list[str], home: Path) -> tuple[subprocess.CompletedProcess[str],
                                                             list[str]]:
    import re
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("strace")
    trace = home / f"trace.{time.monotonic_ns()}"
    done = _confined(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), *argv],
                     home)
    return done, re.findall(r'execve\("([^"]*)"', trace.read_text())


def _warm(home: Path, run: object, argv: list[str], index: Path) -> None:
    """Launch until the index exists (files changed in the last 2 s get none)."""
    deadline = time.monotonic() + 20
    while True:
        done = run(argv, home)  # type: ignore[operator]
        assert done.returncode == 0, done.stderr
        if index.exists():
            return
        assert time.monotonic() < deadline, "no launch index after 20 s"
        time.sleep(0.3)


def test_landlock_backend_hit_starts_no_python_and_prints_each_loss(home: Path) -> None:
    from isorun.cache import index as cache_index

    # beside the native index, under a name that carries the backend
    index = _index(home).parent / cache_index.index_name(
        "strict", str(home / "work"), os.getuid(), "landlock")
    _warm(home, _run, [str(FRONTEND), "--backend", "landlock", *WEAKER, "/bin/true"], index)
    outside = Path("/var/tmp") / f"isorun-fl-{os.getpid()}"
    outside.mkdir(mode=0o777)
    outside.chmod(0o777)
    try:
        write = ["/bin/sh", "-c", f"echo x > {outside}/planted"]
        front, execs = _traced([str(FRONTEND), "--backend", "landlock", *WEAKER, *write], home)
        assert not _python_ran(execs), execs
        python = _run([*PYTHON_CLI, "--backend", "landlock", *WEAKER, *write], home)
        # the kernel refused the write (Landlock), and both CLIs said what the run loses
        assert front.returncode == python.returncode == 2, front.stderr
        assert not (outside / "planted").exists()
        assert front.stderr.startswith(WARNING) and "pid namespace" in front.stderr
        assert front.stderr.splitlines()[:-1] == python.stderr.splitlines()[:-1]
    finally:
        subprocess.run(["rm", "-rf", str(outside)], check=False)
    # without --allow-weaker the Python CLI refuses, as it does with no index
    refused, execs = _traced([str(FRONTEND), "--backend", "landlock", "--profile", "strict",
                              "--", "/bin/true"], home)
    assert refused.returncode == 125 and _python_ran(execs)
    assert "backend 'landlock' cannot enforce this profile" in refused.stderr


def test_auto_landlock_index_stands_only_while_no_user_namespace_can_be_made(
        home: Path) -> None:
    """auto chose the landlock backend under a filter refusing user namespaces; the front
    end serves that choice while the filter is there, and not once namespaces work again
    (the Python CLI then runs the native backend, with no warning)."""
    host = socket.gethostname()
    _warm(home, _confined, [*PYTHON_CLI, *WEAKER, *HOSTNAME], _index(home))
    _warm(home, _confined, [str(FRONTEND), *WEAKER, *HOSTNAME], _index(home))
    front, execs = _traced_confined([str(FRONTEND), *WEAKER, *HOSTNAME], home)
    assert not _python_ran(execs), execs
    assert front.returncode == 0 and front.stdout == f"{host}\n", front
    assert front.stderr.startswith(WARNING) and "uts namespace" in front.stderr
    # no_new_privs still set (one input of the choice), but namespaces can be made: a miss
    native = _confined([str(FRONTEND), *WEAKER, *HOSTNAME], home, _nnp_only)
    assert native.returncode == 0 and native.stdout == "sandbox\n", native
    assert WARNING not in native.stderr
    # and without --allow-weaker, under the filter: refused, naming the rules
    refused = _confined([str(FRONTEND), "--profile", "strict", "--", *HOSTNAME], home)
    assert refused.returncode == 125 and "cannot enforce" in refused.stderr, refused


def test_unprivileged_caller_auto_landlock_hit(nobody_home: Path) -> None:  # noqa: F811
    """The same as an unprivileged user: auto's landlock choice under the filter, then a
    warm launch with no Python, confined and warning."""
    import re
    import shutil
    import sys

    import isorun
    from isorun.cache import index as cache_index
    from tests.integration.conftest import unprivileged_user

    user = unprivileged_user()
    assert user is not None
    if shutil.which("strace") is None:
        pytest.skip("strace")
    home, work, bin_dir = nobody_home, nobody_home / "work", nobody_home / "bin"
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(home),
           "PYTHONPATH": f"{Path(isorun.__file__).parent.parent}:{site}"}

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *argv], env=env, cwd=work, capture_output=True,
                              text=True, timeout=60, preexec_fn=_no_userns)

    python = run([str(bin_dir / "python3"), "-m", "isorun", *WEAKER, *HOSTNAME])
    assert python.returncode == 0 and python.stderr.startswith(WARNING), python.stderr
    index = home / ".cache" / "isorun" / cache_index.index_name("strict", str(work),
                                                                  user.pw_uid)
    deadline = time.monotonic() + 20
    while not index.exists():
        assert time.monotonic() < deadline, "no launch index for the unprivileged user"
        time.sleep(0.3)
        run([str(bin_dir / "isorun"), *WEAKER, "/bin/true"])
    trace = home / "trace"
    front = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), *as_user,
         str(bin_dir / "isorun"), *WEAKER, *HOSTNAME],
        env=env, cwd=work, capture_output=True, text=True, timeout=60, preexec_fn=_no_userns)
    execs = re.findall(r'execve\("([^"]*)"', trace.read_text())
    assert not _python_ran(execs), execs
    assert (front.returncode, front.stdout) == (0, f"{socket.gethostname()}\n"), front
    assert front.stderr == python.stderr


def test_auto_landlock_index_misses_when_path_finds_another_wrapper(home: Path) -> None:
    """An input of auto's choice changed: PATH now finds another firejail first (here one
    that cannot run, so the Python CLI chooses the landlock backend again). The front end
    cannot tell what the Python CLI would choose, so it lets it choose: a miss."""
    import re
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("strace")
    _warm(home, _confined, [*PYTHON_CLI, *WEAKER, *HOSTNAME], _index(home))
    _warm(home, _confined, [str(FRONTEND), *WEAKER, *HOSTNAME], _index(home))
    shadow = home / "shadow"
    shadow.mkdir()
    (shadow / "firejail").write_text("#!/bin/sh\nexit 1\n")
    (shadow / "firejail").chmod(0o755)
    path = f"{shadow}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    trace = home / "trace.path"
    done = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), str(FRONTEND),
         *WEAKER, *HOSTNAME], env=_env(home, PATH=path), cwd=home / "work",
        capture_output=True, text=True, timeout=60, preexec_fn=_no_userns)
    execs = re.findall(r'execve\("([^"]*)"', trace.read_text())
    assert done.returncode == 0 and done.stdout == f"{socket.gethostname()}\n", done
    assert _python_ran(execs), "a changed PATH must not be served from the old choice"
