"""The wrappers' running sandbox: :class:`SandboxRun`, which bwrap, firejail and the
landlock backend return, and :func:`spawn_wrapper`, which starts a rendered invocation.
The isorun parent enforces the wall-clock limit here, kills the whole tree, and tells a
wrapper's own failure from the command's (the exec stage's ``--started-fd``)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from typing import IO, TYPE_CHECKING, Any

from isorun.compile import plan as p
from isorun.compile.render.invocation import Invocation
from isorun.errors import HostError, Lost, SandboxSetupError, os_failure
from isorun.kernel.abi import EXIT_WALL_TIME
from isorun.sandbox.wall_clock import start_wall_clock

if TYPE_CHECKING:
    from isorun.sandbox.refusal_watch import RefusalWatch


class SandboxRun:
    """A sandbox started by a backend, like :class:`subprocess.Popen` (wait, poll,
    communicate, send_signal, kill). The wall-clock limit is enforced here: the whole
    sandbox is killed and ``returncode`` is 124."""

    def __init__(self, proc: Any, backend: str, lost: tuple[Lost, ...],
                 wall_time: float | None, terminal_job: bool = False,
                 refusals: RefusalWatch | None = None, started_fd: int | None = None) -> None:
        self._proc = proc
        #: the refusal report's supervisor (the wrapper backends' exec stage), or None
        self.refusals = refusals
        self.backend = backend
        self.lost = lost
        #: the command shares the caller's session, the terminal's foreground job
        self.terminal_job = terminal_job
        self.pid: int = proc.pid
        self.stdin: IO[bytes] | None = proc.stdin
        self.stdout: IO[bytes] | None = proc.stdout
        self.stderr: IO[bytes] | None = proc.stderr
        self.timed_out = False
        #: isorun-launch says the refusal report itself (the landlock backend's launch)
        self.reports_refusals = False
        #: the wrappers report no failed execve apart: the exec stage says it itself
        self.exec_error: SandboxSetupError | None = None
        #: once it has ended: whether the wrapper got as far as the exec stage inside
        #: (False: the exit status is the wrapper's own failure, not the command's);
        #: None where no stage runs inside to say so
        self.command_started: bool | None = None
        self._started_fd = started_fd
        self._timer = start_wall_clock(wall_time, self._expire)

    def _expire(self) -> None:
        if self._proc.poll() is None:
            self.timed_out = True
            kill_tree(self.pid)

    def _code(self, code: int | None) -> int | None:
        if code is None:
            return None
        if self._timer is not None:
            self._timer.cancel()
        if self.refusals is not None:
            self.refusals.finish()
        fd, self._started_fd = self._started_fd, None
        if fd is not None:
            self.command_started = read_started(fd)
        if self.timed_out:
            return EXIT_WALL_TIME
        # the shell's convention, as the native backend reports a signalled command
        return 128 - code if code < 0 else code

    @property
    def returncode(self) -> int | None:
        return self._code(self._proc.returncode)

    def poll(self) -> int | None:
        return self._code(self._proc.poll())

    def wait(self, timeout: float | None = None) -> int:
        code = self._code(self._proc.wait(timeout))
        assert code is not None
        return code

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[Any, Any]:
        out, err = self._proc.communicate(input, timeout)
        self._code(self._proc.returncode)
        return out, err

    def send_signal(self, sig: int) -> None:
        # To the command, as the native sandbox's pid 1 forwards it (see sandbox.forward);
        # to the wrapper only while the command does not exist yet.
        from isorun.sandbox.forward import command_pid

        target = command_pid(self.pid) if self._proc.poll() is None else None
        if target is None:
            self._proc.send_signal(sig)
            return
        with suppress(ProcessLookupError, PermissionError):
            os.kill(target, sig)

    def kill(self) -> None:
        kill_tree(self.pid)


def _children(pid: int) -> Iterator[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            yield kid
            yield from _children(kid)


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant, descendants first: killing the sandbox's
    pid 1 takes its whole pid namespace down even where the wrapper survives."""
    for kid in reversed(list(_children(pid))):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(kid, signal.SIGKILL)
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def started_pipe(stack: ExitStack) -> tuple[int, int]:
    """(read, write) ends of the pipe the exec stage's ``--started-fd`` writes its byte
    to; both are closed with ``stack``, and :func:`spawn_wrapper` keeps a copy of the read
    end for the run."""
    read, write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    stack.callback(os.close, read)
    stack.callback(os.close, write)
    return read, write


def read_started(fd: int) -> bool:
    """Whether the stage's byte arrived; closes ``fd``. Asked once the wrapper has
    ended, so a byte not there now never comes."""
    try:
        return os.read(fd, 1) == b"s"
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def spawn_wrapper(inv: Invocation, plan: p.Plan, stdin: Any, stdout: Any, stderr: Any,
                  watch: RefusalWatch | None = None,
                  started: tuple[int, int] | None = None) -> SandboxRun:
    user: dict[str, Any] = {}
    if inv.user is not None and inv.user != (os.getuid(), os.getgid()):
        if os.getuid() != 0:
            raise HostError("identity", f"{inv.backend} maps the uid that runs it "
                            f"({os.getuid()}) but the plan runs as host uid {inv.user[0]}",
                            "run isorun as that user, or as root")
        # setresgid/setgroups/setresuid happen in subprocess's C child, before exec
        user = {"user": inv.user[0], "group": inv.user[1], "extra_groups": []}
    wall = plan.find(p.WallTime)
    # close_fds with pass_fds: bwrap and the stage hand every inherited descriptor to the
    # command, so only those the plan keeps (and the renderer's own) may exist at exec.
    # No environment: bwrap builds the command's from --setenv, the stage from its fd.
    try:
        proc = subprocess.Popen(list(inv.argv), env={}, close_fds=True,
                                pass_fds=inv.pass_fds, stdin=stdin, stdout=stdout,
                                stderr=stderr, **user)
    except OSError as err:
        raise _start_failure(inv, err) from err
    if watch is not None:
        watch.started()
    # the stage says it started only where it runs inside: the renderer passed the fd on
    started_fd = os.dup(started[0]) if started and started[1] in inv.pass_fds else None
    return SandboxRun(proc, inv.backend, inv.lost, wall[0].seconds if wall else None,
                      inv.terminal_job, watch, started_fd)


def _start_failure(inv: Invocation, err: OSError) -> HostError:
    """The HostError of a wrapper (or the exec stage before it) that could not be started:
    which program, where, and the errno of execve (or of fork or the identity change
    before it, which subprocess reports without a file name)."""
    program = inv.argv[0]
    syscall = "execve" if err.filename is not None else "fork/setresuid"
    if os.path.basename(program).startswith("isorun-seccomp-exec"):
        tool = "the exec stage"
        from isorun.sandbox.exec_stage import NOEXEC_FIX

        fix = NOEXEC_FIX
    else:
        tool = os.path.basename(program)
        fix = (f"check that {program} (and its interpreter) can be executed by uid "
               f"{inv.user[0] if inv.user else os.getuid()}, or pick another backend "
               "(--backend)")
    return HostError(f"backend {inv.backend}",
                     f"cannot start {tool} ({program}): {os_failure(syscall, err)}", fix)
