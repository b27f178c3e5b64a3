"""The API's native sandbox through ``isorun-launch`` (src/isorun/shim/launcher/launch.c).

:func:`isorun.sandbox.process.spawn` clones this Python process; for a plan without a
cgroup, a wall-clock limit or learn mode, :func:`spawn_launched` has the small C program
do the parent side instead, started with posix_spawn, so nothing of this (large) process
is copied. :class:`LaunchedProcess` is the same handle as SandboxProcess.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field

from isorun.errors import InternalError, SandboxSetupError, ShimAbiError
from isorun.sandbox import parent, shim_ffi
from isorun.sandbox.failure import failure_error, setup_error
from isorun.sandbox.process import StdSpec, _child_stdio, _lift
from isorun.sandbox.sandbox_process import SandboxProcess, _exit_code

TYPE_CHECKING = False
if TYPE_CHECKING:
    from isorun.sandbox.parent import Record


#: isorun-launch as setup.py and ``make shim`` install it: next to the package's modules
LAUNCHER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "isorun-launch")  # fmt: skip
#: sizeof(struct isorun_failure) + the pid isorun-launch reports after it (launcher.h)
REPORT_SIZE = shim_ffi.FAILURE_SIZE + 4
#: one posix_spawn file action: (os.POSIX_SPAWN_DUP2, fd, new fd)
_Action = tuple[int, int, int]


def launcher_path() -> str | None:
    """isorun-launch, when it was built: next to the shim module this process loaded (the
    package's own, or ``make test-asan``'s sanitized pair in build/asan), else None."""
    # _shim imported it (at our import), refusing another ABI; a module's __file__ is
    # fixed once loaded, so this is one dict lookup.
    loaded = getattr(sys.modules.get("isorun._shim_c"), "__file__", None)
    path = os.path.join(os.path.dirname(loaded), "isorun-launch") if loaded else LAUNCHER
    return path if os.access(path, os.X_OK) else None


def _launch_error(record: Record, failure: parent.Failure) -> SandboxSetupError:
    """The error isorun-launch's failure record stands for, worded as spawn_in_parent words
    its own parent-side failures (the same steps, now taken in C)."""
    step, syscall, err, _index = failure
    if step in ("setgroups", "gid_map", "uid_map"):
        data: bytes = b"deny" if step == "setgroups" else record[step]
        return setup_error(record, step, syscall, err,
                                  data.decode(errors="replace").strip())  # fmt: skip
    if (step, syscall) == ("clone", "clone"):
        return setup_error(record, step, syscall, err,
                                  f"flags {record['clone_flags']:#x}")  # fmt: skip
    return failure_error(record, failure)


def spawn_launched(
    launcher: str,
    record: Record,
    blob: bytes,
    argv: tuple[bytes, ...],
    *,
    stdin: StdSpec = None,
    stdout: StdSpec = None,
    stderr: StdSpec = None,
    terminal: bool = False,
    refusals: bool = False,
) -> LaunchedProcess:
    """Start ``record`` for ``argv`` through isorun-launch: what :func:`spawn` does, but
    the clone happens in that small C program, not in this (large) process.

    ``blob`` is ``flat.encode(record)``. ``terminal``: the CLI's launch, which may make
    the sandbox the foreground job of this process's terminal (spec.terminal_job); an API
    caller keeps its terminal. The helper is started with posix_spawn (vfork:
    nothing of this process is copied), reads the record from a pipe, and reports on a
    unix socket: the failure record, the sandbox's pid and its pidfd (SCM_RIGHTS). Raises
    SandboxSetupError as :func:`spawn` does, leaving nothing behind (the helper kills and
    reaps the sandbox before it reports a failure, and is reaped here).
    """
    keep = _checked_keep(record, argv)
    st = _Spawning()
    try:
        actions = _stdio_actions(st, (stdin, stdout, stderr))
        flags = [*(["--terminal"] if terminal else []), *(["--refusals"] if refusals else [])]
        data, ancdata = _run_helper(st, launcher, blob, argv, keep, actions, flags)
        pid, pidfd, exec_error = _read_report(st, launcher, record, data, ancdata)
        for fd in st.parent_ends:
            if fd >= 0:
                st.opened.remove(fd)
        proc = LaunchedProcess(st.helper, os.pidfd_open(st.helper), pid, pidfd, record, argv,
                               st.parent_ends, exec_error)  # fmt: skip
        proc._signal_helper = refusals
        st.helper = -1
        return proc
    finally:
        if st.helper > 0:
            # Killed, the helper takes the sandbox along (PR_SET_PDEATHSIG of a
            # die_with_parent sandbox, or the sync pipe's EOF before release).
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.helper, signal.SIGKILL)
            _reap_helper(st.helper)
        for fd in st.opened:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class _Spawning:
    """What :func:`spawn_launched` must close or reap if it fails half-way."""

    #: descriptors opened here, closed on the way out (whatever happens)
    opened: list[int] = field(default_factory=list)
    #: the parent ends of stdio pipes, -1 where none (the process keeps them)
    parent_ends: list[int] = field(default_factory=list)
    #: isorun-launch's pid until a LaunchedProcess owns it
    helper: int = -1


def _checked_keep(record: Record, argv: tuple[bytes, ...]) -> list[int]:
    """The descriptors the record passes on besides stdio, each checked to be open."""
    if not argv or not argv[0]:
        raise InternalError("spec.argv is empty")  # api.Popen refuses that first
    for arg in argv:
        if b"\0" in arg:
            raise InternalError(f"argv contains a NUL byte: {arg!r}")
    keep = sorted({*record["keep_fds"]} - {0, 1, 2})
    for fd in keep:
        os.fstat(fd)  # EBADF now, not a silently missing descriptor in the command
    return keep


def _stdio_actions(st: _Spawning, stdio: tuple[StdSpec, StdSpec, StdSpec]) -> list[_Action]:
    """posix_spawn's dup2s of the helper's (and so the sandbox's) stdin, stdout, stderr."""
    actions: list[_Action] = []
    child_stdout = -1
    for index, value in enumerate(stdio):
        child_fd, parent_fd = _child_stdio(value, index, st.opened, child_stdout)
        child_fd = _lift(child_fd, index, st.opened)
        if index == 1:
            child_stdout = child_fd
        st.parent_ends.append(parent_fd)
        if child_fd >= 0:
            # dup2 onto itself too: glibc's posix_spawn then clears FD_CLOEXEC.
            actions.append((os.POSIX_SPAWN_DUP2, child_fd, index))
    return actions


def _run_helper(
    st: _Spawning,
    launcher: str,
    blob: bytes,
    argv: tuple[bytes, ...],
    keep: list[int],
    actions: list[_Action],
    flags: list[str],
) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """Start isorun-launch, write it the record, and read its report (data, ancillary)."""
    record_r, record_w = os.pipe2(os.O_CLOEXEC)
    st.opened.extend((record_r, record_w))
    # Above 2: a caller with stdio closed gets 0..2 from pipe2, which the stdio dup2s
    # above would then overwrite in the helper.
    record_r = _lift(record_r, -1, st.opened)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        with theirs:
            report = _lift(theirs.fileno(), -1, st.opened)
            # Only these reach the helper (all else is CLOEXEC, and the helper closes
            # whatever was inherited anyway): dup2 onto itself clears FD_CLOEXEC in
            # the child alone, where a set_inheritable here would leak them into every
            # process another thread starts meanwhile.
            for fd in (record_r, report, *keep):
                actions.append((os.POSIX_SPAWN_DUP2, fd, fd))
            args: list[str | bytes] = [launcher, "--record-fd", str(record_r),
                                       "--report-fd", str(report), *flags, "--", *argv]  # fmt: skip
            # An empty environment: the helper reads none (static, no loader), and
            # the command's comes from the record.
            st.helper = os.posix_spawn(launcher, args, {}, file_actions=actions)
            if report in st.opened:
                # Ours must all be closed before the recvmsg below: EOF is how a
                # helper that died without a report shows.
                os.close(report)
                st.opened.remove(report)
        os.close(record_r)
        st.opened.remove(record_r)
        _write_all(record_w, blob)
        os.close(record_w)
        st.opened.remove(record_w)
        data, ancdata, _flags, _addr = ours.recvmsg(REPORT_SIZE,
                                                    socket.CMSG_SPACE(4))  # fmt: skip
    return data, ancdata


def _read_report(
    st: _Spawning,
    launcher: str,
    record: Record,
    data: bytes,
    ancdata: list[tuple[int, int, bytes]],
) -> tuple[int, int, SandboxSetupError | None]:
    """(sandbox pid, its pidfd, the exec failure if the command did not start) from the
    helper's report; a set-up failure is raised, after the helper is reaped."""
    pidfd = -1
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            pidfd = int.from_bytes(payload[:4], "little")
    failure = parent.parse_failure(data)
    if failure is None or len(data) != REPORT_SIZE:
        raise InternalError(f"isorun-launch ended without a report "
                            f"(exit code {_reap_helper(st.helper)})")  # fmt: skip
    if failure[2] != 0 and failure[0] != "exec":
        _reap_helper(st.helper)
        st.helper = -1
        if failure[0] == "record":
            # Our encoder and its parser disagree: a stale build (ShimAbiError's hint
            # says how to rebuild); the parser's own message went to stderr.
            raise ShimAbiError(f"{launcher} refused the launch record (see its message"
                               " above)")  # fmt: skip
        raise _launch_error(record, failure)
    if pidfd < 0:
        raise InternalError("isorun-launch reported no pidfd")
    pid = int.from_bytes(data[shim_ffi.FAILURE_SIZE:], "little", signed=True)
    exec_error = None if failure[2] == 0 else failure_error(record, failure)
    return pid, pidfd, exec_error


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass  # the helper died: its report is missing, which says so


def _reap_helper(pid: int) -> int:
    with contextlib.suppress(ChildProcessError):
        return _exit_code(os.waitpid(pid, 0)[1])
    return -1


class LaunchedProcess(SandboxProcess):
    """A sandbox isorun-launch started (:func:`spawn_launched`), like SandboxProcess.

    ``pid`` and every signal are the sandbox's pid 1's, through the pidfd the helper
    passed back (never a pid that may be reused). wait() reaps the helper, which ends as
    the command's pid 1 did (its exit code, or death by the same signal), so returncode
    keeps the 128+N convention.
    """

    def __init__(
        self,
        helper: int,
        helper_pidfd: int,
        pid: int,
        pidfd: int,
        record: Record,
        argv: tuple[bytes, ...],
        pipes: list[int],
        exec_error: SandboxSetupError | None,
    ) -> None:
        spec = {"argv": argv, "clone_flags": record["clone_flags"],
                "new_session": record["new_session"]}  # fmt: skip
        super().__init__(pid, pidfd, spec, pipes, None, None, exec_error)
        self._wait_pid, self._wait_fd = helper, helper_pidfd
        #: signals go through isorun-launch, which passes them on (the same delivery) and
        #: so knows that a failure after one is not worth its refusal notes (--refusals)
        self._signal_helper = False

    def send_signal(self, sig: int) -> None:
        if not self._signal_helper or sig == signal.SIGKILL:
            super().send_signal(sig)
            return
        with self._lock:
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._wait_fd, sig)
