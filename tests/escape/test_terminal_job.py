"""A terminal session works inside the sandbox, and the terminal stays safe.

When the command's stdin is the launcher's controlling terminal and the launcher is its
foreground job, the sandbox stays in the launcher's session and process group instead
of a new session: the native shim (exec.c, isorun_child_confine), bwrap without
--new-session, firejail without the exec stage's setsid (compile/render/invocation.py,
terminal_job_allowed). ``bash -i`` gets job control, ^C reaches the command once, ^Z
stops launcher and command together, and the caller's shell gets its terminal back
afterwards. The command keeps the terminal as its controlling terminal, so TIOCSTI and
TIOCLINUX must still be refused: by the seccomp hardening, checked here on a real pty,
on every backend. The terminal is also named inside, at /dev/console (the native shim's
mount_dev.c, bind_terminal; bwrap's --dev does the same), and nothing else of the host's
/dev/pts is.

firejail runs as uid 1000 only: it refuses a root caller's sandbox, which runs as nobody.
"""

from __future__ import annotations

import os
import pwd
import select
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.escape.test_tiocsti_pty import inject
from tests.integration.test_conformance import HOSTVIEW

pytestmark = pytest.mark.needs("shim", "userns")

BACKENDS = [
    pytest.param("native", id="native"),
    # bwrap shares the terminal only behind the stage's Landlock domain (compile/render/bwrap.py)
    pytest.param("bwrap", marks=pytest.mark.needs("bwrap", "gcc", "landlock"), id="bwrap"),
    pytest.param("firejail", marks=pytest.mark.needs("firejail", "gcc"), id="firejail"),
]
#: the unprivileged caller: uid 1000, which firejail admits (it refuses nobody)
USER_UID = 1000


def cases(backends: list[Any]) -> list[Any]:
    """(backend, who) pairs. firejail refuses a root caller's sandbox (it runs as
    nobody), so as root the uid 1000 case alone covers firejail: left out, not skipped."""
    return [pytest.param(b.values[0], who, marks=b.marks, id=f"{b.id}-{who}")
            for b in backends for who in ("caller", "user")
            if not (b.values[0] == "firejail" and who == "caller" and os.geteuid() == 0)]


def as_user() -> list[str]:
    """setpriv to uid 1000, or a skip when this process cannot switch."""
    try:
        user = pwd.getpwuid(USER_UID)
    except KeyError:
        pytest.skip(f"no user with uid {USER_UID}")
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("root and setpriv, to run as an unprivileged user")
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A working directory a root caller's sandbox (uid 65534) may enter."""
    path = Path(tempfile.mkdtemp(prefix="isorun-tty-"))
    path.chmod(0o777)  # the unprivileged run's plan cache goes in here too
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def launcher(backend: str, who: str, where: Path) -> list[str]:
    """The CLI on ``backend`` as ``who`` (the caller, or uid 1000), up to the command.
    strict on native and bwrap; firejail keeps the host's tree, so the host-view profile
    of the conformance tests (strict's filter, hardening included) runs there."""
    prefix = []
    if who == "user":
        prefix = as_user()
    profile = "strict"
    if backend == "firejail":
        path = where / "hostview.toml"
        path.write_text(HOSTVIEW)
        path.chmod(0o644)
        profile = str(path)
    return [*prefix, sys.executable, "-m", "isorun", "--backend", backend,
            "--profile", profile, "--"]


class Terminal:
    """``argv`` as the foreground job of a fresh pty (forkpty: a new session with the
    pty as its controlling terminal, as a login shell has)."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), "TERM": "dumb",
               "PS1": "$ "}
        self.pid, self.master = os.forkpty()
        if self.pid == 0:  # pragma: no cover - the child execs at once
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 20) -> bytes:
        end = time.monotonic() + timeout
        while text not in self.seen:
            left = end - time.monotonic()
            assert left > 0, f"waited for {text!r}, got {self.seen!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    break
        assert text in self.seen, f"waited for {text!r}, got {self.seen!r}"
        head, _, self.seen = self.seen.partition(text)
        return head

    def wait_for(self, text: bytes, timeout: float) -> bool:
        """expect(), answering whether ``text`` came instead of failing."""
        try:
            self.expect(text, timeout)
        except AssertionError:
            return False
        return True

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self, timeout: float = 20) -> int:
        """The exit status; -9 when it had to be killed after ``timeout``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.master)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.master)
        return -9


@pytest.mark.parametrize(("backend", "who"), cases(BACKENDS))
def test_bash_i_gets_job_control_and_ctrl_c(open_dir: Path, backend: str, who: str) -> None:
    # sh without job control in front: after isorun, it reads the terminal again, which
    # stops it (SIGTTIN) unless the launcher took the terminal back.
    script = ('"$@"; echo "isorun exited $?"; read line; echo "shell read $line"')
    term = Terminal(["/bin/sh", "-c", script, "sh", *launcher(backend, who, open_dir),
                     "bash", "--norc", "-i"], open_dir)
    try:
        banner = term.expect(b"$ ")
        assert b"no job control" not in banner and b"cannot set terminal" not in banner
        term.send(b"tty\n")
        assert b"/dev/" in term.expect(b"$ ")  # not "not a tty"
        term.send(b"sleep 100\n")
        term.expect(b"sleep 100")
        time.sleep(0.5)
        term.send(b"\x03")  # ^C: the terminal's SIGINT to the foreground group
        term.expect(b"$ ")
        term.send(b"echo status $?\n")
        term.expect(b"status 130")
        term.expect(b"$ ")
        term.send(b"sleep 100 &\n")
        term.expect(b"$ ")
        term.send(b"jobs\n")
        assert b"Running" in term.expect(b"$ ")
        term.send(b"fg\n")  # the background sleep back in front, then ^C ends it
        term.expect(b"sleep 100")
        time.sleep(0.5)
        term.send(b"\x03")
        term.expect(b"$ ")
        term.send(b"echo status $?; jobs | wc -l\n")
        term.expect(b"status 130\r\n0")
        term.expect(b"$ ")
        term.send(b"exit 3\n")
        term.expect(b"isorun exited 3")
        term.send(b"hello\n")
        term.expect(b"shell read hello")
    finally:
        code = term.close(timeout=5)
    assert code == 0


SIGINT_COUNTER = (
    "import signal, time\n"
    "seen = []\n"
    "signal.signal(signal.SIGINT, lambda *a: seen.append(1))\n"
    "print('ready', flush=True)\n"
    "time.sleep(2)\n"
    "print('sigints', len(seen), flush=True)\n"
)


@pytest.mark.parametrize(("backend", "who"), cases(BACKENDS))
def test_ctrl_c_reaches_the_command_once(open_dir: Path, backend: str, who: str) -> None:
    term = Terminal([*launcher(backend, who, open_dir), "python3", "-c", SIGINT_COUNTER],
                    open_dir)
    try:
        term.expect(b"ready")
        term.send(b"\x03")
        term.expect(b"sigints 1\r\n")
    finally:
        code = term.close(timeout=5)
    assert code == 0


@pytest.mark.parametrize(("backend", "who"), cases(BACKENDS))
@pytest.mark.parametrize(("request_number", "errno_text"),
                         [(0x5412, "errno 1"), (0x1_0000_5412, "errno 1"), (0x541C, "errno 1")],
                         ids=["tiocsti", "tiocsti-high-bits", "tioclinux"])
def test_terminal_job_still_refuses_tiocsti(open_dir: Path, backend: str, who: str,
                                            request_number: int, errno_text: str) -> None:
    # strict itself (new_session = true): on a terminal it now shares the session, so
    # only the filter stands between the command and the caller's input queue.
    env = {**os.environ, "XDG_CACHE_HOME": str(open_dir / ".cache")}
    out, injected = inject(launcher(backend, who, open_dir), request_number,
                           cwd=str(open_dir), env=env)
    assert injected == b"", f"the sandboxed command injected {injected!r} into the terminal"
    assert f"rc -1 {errno_text} ctty yes" in out, out  # refused, and not by a new session


@pytest.mark.parametrize(("backend", "who"), cases(BACKENDS))
def test_ctrl_z_stops_the_launcher_with_the_command(open_dir: Path, backend: str,
                                                    who: str) -> None:
    # A job-control shell outside starts isorun as one of its jobs: ^Z must stop the job
    # (launcher and command together) and give the shell its terminal back; fg resumes
    # it, and ^C then ends it. A sandbox alone in the foreground would leave a launcher
    # that waits and a stopped command, the terminal lost.
    launchers = [" ".join(launcher(backend, who, open_dir))]
    frontend = Path(sys.executable).parent / "isorun"
    if frontend.is_file() and backend == "native" and who == "caller":
        launchers.append(f"{frontend} --profile strict --")
    for launcher_line in launchers:
        term = Terminal(["bash", "--norc", "--noprofile", "-i"], open_dir)
        try:
            term.expect(b"$ ")
            term.send(f"{launcher_line} sleep 100\n".encode())
            term.expect(b"sleep 100\r\n")
            time.sleep(1.0)
            term.send(b"\x1a")  # ^Z
            term.expect(b"$ ")
            term.send(b"jobs\n")
            assert b"Stopped" in term.expect(b"$ ")
            term.send(b"fg\n")
            term.expect(b"sleep 100")
            time.sleep(0.5)
            term.send(b"\x03")
            if not term.wait_for(b"$ ", timeout=10):
                # bash prints the job's command line before it hands the job the terminal
                # (tcsetpgrp) and continues it; on a loaded machine the ^C can come in
                # between and go to the shell. A second ^C, once the job surely runs in
                # the foreground, must end it.
                term.send(b"\x03")
                term.expect(b"$ ")
            term.send(b"echo status $?\n")
            term.expect(b"status 130")
            term.send(b"exit\n")
        finally:
            code = term.close(timeout=5)
        assert code == 0, launcher_line


NODE_PROBE = '''
import ctypes, functools, os, stat, sys
print = functools.partial(print, file=sys.stderr)  # stdout is the terminal
libc = ctypes.CDLL(None, use_errno=True)
other_rdev, own_index = int(sys.argv[1]), sys.argv[2]
name = os.ttyname(0)
mine, there = os.fstat(0), os.stat(name)
print("name", name, "same", (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino))
# no other terminal of the host under any name in /dev
others = []
for root, dirs, files in os.walk("/dev"):
    for entry in dirs + files:
        try:
            st = os.lstat(os.path.join(root, entry))
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in range(136, 144) \\
                and st.st_rdev != mine.st_rdev:
            others.append(os.path.join(root, entry))
print("others", others, "other_rdev_seen", any(
    os.lstat(p).st_rdev == other_rdev for p in others))
try:
    st = os.stat("/dev/pts/" + own_index)
    print("host_path", (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino))
except OSError:
    print("host_path absent")
# no other process of the sandbox (bwrap's pid 1, the native init: both unfiltered, in
# this terminal's session) has memory the command may write
writable = []
for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
    try:
        os.close(os.open(f"/proc/{pid}/mem", os.O_RDWR))
        writable.append(pid)
    except OSError:
        pass
print("writable_mem", writable)
try:
    fd = os.open(name, os.O_RDWR | os.O_NOCTTY)
except OSError as err:
    print("reopen errno", err.errno)
    sys.exit(0)
byte = ctypes.c_char(b"Z")
for label, req, arg in (("TIOCSTI", 0x5412, ctypes.byref(byte)),
                        ("TIOCLINUX", 0x541C, ctypes.byref(ctypes.c_char(b"\\x06"))),
                        ("TIOCCONS", 0x541D, None),
                        ("TIOCSCTTY", 0x540E, ctypes.c_ulong(1))):
    rc = libc.syscall(16, fd, ctypes.c_ulong(req), arg)
    print(label, rc, ctypes.get_errno())
'''


@pytest.mark.parametrize(("backend", "who"), cases([p for p in BACKENDS if p.id != "firejail"]))
def test_terminal_node_is_the_callers_alone(open_dir: Path, backend: str, who: str) -> None:
    # The attacker's view of the terminal named inside (/dev/console): it is exactly the
    # inherited one; no other terminal of the host (one held open here) has a name in the
    # sandbox's /dev, nor has the caller's own host path; reopening it brings no ioctl
    # back that the inherited descriptor lacks; and no unfiltered process sharing the
    # terminal (bwrap's pid 1: the stage's Landlock domain) can be written into.
    # firejail is left out: its profile keeps the host's /dev, so every host terminal is
    # there by the profile's choice (and its processes inside are root's).
    import fcntl
    import subprocess
    import termios
    import tty

    argv = launcher(backend, who, open_dir)
    master, slave = os.openpty()
    other_master, other_slave = os.openpty()  # another terminal of the host
    if who == "user":
        os.fchown(slave, USER_UID, -1)  # the user's own terminal, as login makes it
    tty.setraw(slave)
    try:
        proc = subprocess.run(
            [*argv, "python3", "-c", NODE_PROBE, str(os.fstat(other_slave).st_rdev),
             os.ttyname(slave).rsplit("/", 1)[1]],
            # stdout too: bwrap names the terminal of its stdout (ttyname(1))
            stdin=slave, stdout=slave, stderr=subprocess.PIPE, timeout=60, cwd=open_dir,
            env={**os.environ, "XDG_CACHE_HOME": str(open_dir / ".cache")},
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.set_blocking(slave, False)
        injected = os.read(slave, 100) if select.select([slave], [], [], 0.2)[0] else b""
    finally:
        for fd in (master, slave, other_master, other_slave):
            os.close(fd)
    out = proc.stderr.decode()
    assert proc.returncode == 0, out
    assert "name /dev/console same True" in out
    assert "others [] other_rdev_seen False" in out
    assert "host_path absent" in out or "host_path False" in out
    assert "writable_mem []" in out, out
    assert injected == b""
    if who == "caller" and os.geteuid() == 0:
        # root's sandbox runs as nobody: root's terminal (0620) is not its to open
        assert "reopen errno 13" in out, out
        return
    for label in ("TIOCSTI", "TIOCLINUX", "TIOCCONS", "TIOCSCTTY"):
        assert f"{label} -1 1\n" in out, out  # EPERM each


MEM_PROBE = '''
import os
writable = []
for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
    try:
        os.close(os.open(f"/proc/{pid}/mem", os.O_RDWR))
        writable.append(pid)
    except OSError:
        pass
print("writable_mem", writable)
'''


@pytest.mark.needs("bwrap", "gcc", "landlock")
@pytest.mark.parametrize("who", ["caller", "user"])
def test_bwrap_pid1_proc_mem_write(open_dir: Path, who: str) -> None:
    # bwrap's pid 1 runs unfiltered as the command's uid and is dumpable: writing code
    # into its /proc/1/mem would run every syscall the filter refuses. Without a
    # terminal (a new session), as the API and pipelines run: the stage's Landlock
    # domain keeps pid 1 out of reach there too.
    import subprocess

    argv = launcher("bwrap", who, open_dir)
    proc = subprocess.run([*argv, "python3", "-c", MEM_PROBE], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, cwd=open_dir,
                          env={**os.environ, "XDG_CACHE_HOME": str(open_dir / ".cache")})
    assert proc.returncode == 0, proc.stderr
    assert "writable_mem []" in proc.stdout, proc.stdout
