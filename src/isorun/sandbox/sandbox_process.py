"""A started native sandbox: :class:`SandboxProcess`, a handle like
:class:`subprocess.Popen` that :func:`isorun.sandbox.process.spawn` returns.

Exit codes follow the shell: the command's own; 128+N when killed by signal N; 124 when
the wall-clock limit killed it; 126 not executable; 127 not found.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from types import TracebackType
from typing import IO

from isorun.errors import SandboxSetupError
from isorun.kernel.abi import CLONE_NEWPID, EXIT_WALL_TIME
from isorun.sandbox import parent
from isorun.sandbox.cgroup import (
    Cgroup,
)
from isorun.sandbox.spec import ShimSpec
from isorun.sandbox.wall_clock import start_wall_clock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from isorun.sandbox.parent import Record


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class SandboxProcess:
    """A running sandbox, like :class:`subprocess.Popen`. ``pid`` is the host pid of the
    sandbox's first process (its pid 1 when it has a pid namespace)."""

    def __init__(
        self,
        pid: int,
        pidfd: int,
        spec: ShimSpec | Record,
        pipes: list[int],
        cgroup: Cgroup | None,
        wall_time: float | None,
        exec_error: SandboxSetupError | None,
    ) -> None:
        if isinstance(spec, ShimSpec):
            spec = {"argv": spec.argv, "clone_flags": spec.clone_flags,
                    "new_session": spec.new_session}  # fmt: skip
        self.pid = pid
        self.args: tuple[bytes, ...] = spec["argv"]
        self.returncode: int | None = None
        #: the wall-clock limit killed the sandbox (returncode is then 124)
        self.timed_out = False
        #: why execve failed when returncode is 126 or 127
        self.exec_error = exec_error
        self.stdin: IO[bytes] | None = os.fdopen(pipes[0], "wb") if pipes[0] >= 0 else None
        self.stdout: IO[bytes] | None = os.fdopen(pipes[1], "rb") if pipes[1] >= 0 else None
        self.stderr: IO[bytes] | None = os.fdopen(pipes[2], "rb") if pipes[2] >= 0 else None
        self._pidfd = pidfd
        #: what wait() reaps: the sandbox itself here, isorun-launch in LaunchedProcess
        self._wait_pid, self._wait_fd = pid, pidfd
        self._clone_flags: int = spec["clone_flags"]
        self._new_session: bool = spec["new_session"]
        self._cgroup = cgroup
        self._lock = threading.Lock()
        #: the sandbox may have taken this process's terminal (spec.terminal_job): take
        #: it back once reaped (LaunchedProcess: isorun-launch does)
        self._reclaim_terminal = False
        #: what the cgroup's limits did (Cgroup.events_in_parent), once reaped
        self.limit_events: dict[str, int] = {}
        self._timer = start_wall_clock(wall_time, self._expire)

    def _expire(self) -> None:
        with self._lock:
            if self.returncode is None:
                self.timed_out = True
                self._kill_all()

    def _kill_all(self) -> None:
        # Caller holds the lock, so the pidfd is still open and the pid not yet reaped.
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        # Without a pid namespace, killing pid 1 of nothing takes no one else along:
        # the session (setsid made the child its leader) and the cgroup catch the rest.
        if not self._clone_flags & CLONE_NEWPID:
            if self._new_session:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
            if self._cgroup is not None:
                self._cgroup.kill_in_parent()

    def _reap(self, block: bool) -> int | None:
        while True:
            if block:
                self._wait_for_exit()
            with self._lock:
                if self.returncode is not None:
                    return self.returncode
                pid, status = os.waitpid(self._wait_pid, os.WNOHANG)
                if pid == 0:
                    if block:
                        continue  # woken, but not yet reapable: wait again
                    return None
                self.returncode = EXIT_WALL_TIME if self.timed_out else _exit_code(status)
                os.close(self._pidfd)
                if self._wait_fd != self._pidfd:
                    os.close(self._wait_fd)
                if self._timer is not None:
                    self._timer.cancel()
                self._cleanup()
                if self._reclaim_terminal:
                    parent.reclaim_terminal_in_parent()
                return self.returncode

    def _wait_for_exit(self) -> None:
        """Block until the process wait() reaps has ended, without the lock.

        Never a blocking waitpid under the lock: the CLI forwards signals with a handler
        that calls send_signal, which takes the lock, and a handler runs in the thread
        that is waiting, so it would wait for itself (a forwarded SIGTERM hung the
        launcher for good). A pidfd polls readable once its process has exited.
        """
        with self._lock:
            if self.returncode is not None:
                return
            fd = self._wait_fd
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        # Interrupted by a signal, poll is retried after the handler (PEP 475). If another
        # thread reaped meanwhile and closed fd, poll answers POLLNVAL at once and the
        # caller finds returncode set.
        poller.poll()

    def _cleanup(self) -> None:
        if self._cgroup is not None:
            self.limit_events = self._cgroup.events_in_parent()
            if not self._clone_flags & CLONE_NEWPID:
                self._cgroup.kill_in_parent()
            self._cgroup.remove_in_parent()

    def poll(self) -> int | None:
        """The exit code if the sandbox has exited, else None."""
        return self._reap(block=False)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the sandbox's pid 1; raises subprocess.TimeoutExpired on ``timeout``."""
        if self.returncode is not None:
            return self.returncode
        if timeout is not None:
            poller = select.poll()
            poller.register(self._wait_fd, select.POLLIN)
            deadline = time.monotonic() + timeout
            while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                if time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(list(self.args), timeout)
        code = self._reap(block=True)
        assert code is not None
        return code

    def send_signal(self, sig: int) -> None:
        """Signal the sandbox's pid 1, whose init forwards it to the command."""
        with self._lock:
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole sandbox (every process in it, not only pid 1)."""
        with self._lock:
            if self.returncode is None:
                self._kill_all()

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """Feed stdin, read stdout/stderr to EOF, wait. Like Popen.communicate."""
        out: list[bytes] = []
        err: list[bytes] = []
        threads = [
            threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
            for s, b in ((self.stdout, out), (self.stderr, err))
            if s is not None
        ]
        for thread in threads:
            thread.start()
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                if input:
                    self.stdin.write(input)
                self.stdin.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(list(self.args), timeout or 0.0)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return (out[0] if out else None, err[0] if err else None)

    def close(self) -> None:
        """Kill the sandbox if it still runs, reap it and close the pipes."""
        if self.returncode is None:
            self.kill()
            self.wait()
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Unlike Popen we do not wait forever: a sandbox outliving its block is killed.
        self.close()

    def __del__(self) -> None:
        if self.returncode is None and hasattr(self, "_pidfd"):
            with contextlib.suppress(Exception):
                self.kill()
                self.wait()
