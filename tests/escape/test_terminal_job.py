"""A terminal session works inside the sandbox, and the terminal stays safe.

When the command's stdin is the launcher's controlling terminal and the launcher is its
foreground job, the native sandbox stays in the launcher's session and process group
instead of a new session (shim exec.c, isorun_child_confine): ``bash -i`` gets job
control, ^C reaches the command once, ^Z stops launcher and command together, and the
caller's shell gets its terminal back afterwards. It keeps the terminal as its
controlling terminal, so TIOCSTI and TIOCLINUX must still be refused: by the seccomp
hardening, checked here on a real pty.

bwrap and firejail are started with --new-session / their own session and are not
covered: TODO(#17).
"""

from __future__ import annotations

import os
import select
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.escape.test_tiocsti_pty import inject
from tests.integration.conftest import unprivileged_user

pytestmark = pytest.mark.needs("shim", "userns")

ISORUN = [sys.executable, "-m", "isorun", "--profile", "strict", "--"]


@pytest.fixture(params=["caller", "user"])
def isorun_argv(request: pytest.FixtureRequest) -> list[str]:
    """The CLI as this process's user, and (when root) as an unprivileged one."""
    if request.param == "caller":
        return ISORUN
    user = unprivileged_user()
    if os.geteuid() != 0 or user is None or shutil.which("setpriv") is None:
        pytest.skip("root and setpriv, to run as an unprivileged user")
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            *ISORUN]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A working directory a root caller's sandbox (uid 65534) may enter."""
    path = Path(tempfile.mkdtemp(prefix="isorun-tty-"))
    path.chmod(0o777)  # the unprivileged run's plan cache goes in here too
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


def test_bash_i_gets_job_control_and_ctrl_c(open_dir: Path, isorun_argv: list[str]) -> None:
    # sh without job control in front: after isorun, it reads the terminal again, which
    # stops it (SIGTTIN) unless the launcher took the terminal back.
    script = ('"$@"; echo "isorun exited $?"; read line; echo "shell read $line"')
    term = Terminal(["/bin/sh", "-c", script, "sh", *isorun_argv, "bash", "--norc", "-i"],
                    open_dir)
    try:
        banner = term.expect(b"$ ")
        assert b"no job control" not in banner and b"cannot set terminal" not in banner
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
        term.send(b"kill %1; exit 3\n")
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


def test_ctrl_c_reaches_the_command_once(open_dir: Path, isorun_argv: list[str]) -> None:
    term = Terminal([*isorun_argv, "python3", "-c", SIGINT_COUNTER], open_dir)
    try:
        term.expect(b"ready")
        term.send(b"\x03")
        term.expect(b"sigints 1\r\n")
    finally:
        code = term.close(timeout=5)
    assert code == 0


@pytest.mark.parametrize(("request_number", "errno_text"),
                         [(0x5412, "errno 1"), (0x1_0000_5412, "errno 1"), (0x541C, "errno 1")],
                         ids=["tiocsti", "tiocsti-high-bits", "tioclinux"])
def test_terminal_job_still_refuses_tiocsti(request_number: int, errno_text: str) -> None:
    # strict itself (new_session = true): on a terminal it now shares the session, so
    # only the filter stands between the command and the caller's input queue.
    isorun = [sys.executable, "-m", "isorun", "--profile", "strict", "--"]
    out, injected = inject(isorun, request_number)
    assert injected == b"", f"the sandboxed command injected {injected!r} into the terminal"
    assert f"rc -1 {errno_text}" in out, out


def test_ctrl_z_stops_the_launcher_with_the_command(open_dir: Path) -> None:
    # A job-control shell outside starts isorun as one of its jobs: ^Z must stop the job
    # (launcher and command together) and give the shell its terminal back; fg resumes
    # it, and ^C then ends it. A sandbox alone in the foreground would leave a launcher
    # that waits and a stopped command, the terminal lost.
    frontend = Path(sys.executable).parent / "isorun"
    launchers = [" ".join(ISORUN)]
    if frontend.is_file():
        launchers.append(f"{frontend} --profile strict --")
    for launcher in launchers:
        term = Terminal(["bash", "--norc", "--noprofile", "-i"], open_dir)
        try:
            term.expect(b"$ ")
            term.send(f"{launcher} sleep 100\n".encode())
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
            term.expect(b"$ ")
            term.send(b"echo status $?\n")
            term.expect(b"status 130")
            term.send(b"exit\n")
        finally:
            code = term.close(timeout=5)
        assert code == 0, launcher
