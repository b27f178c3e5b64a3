"""The API's native sandbox: :func:`spawn`, which returns a
:class:`isorun.sandbox.sandbox_process.SandboxProcess`.

The start itself (clone, id maps, release, the error pipe) is
:func:`isorun.sandbox.parent.spawn_in_parent`, shared with the warm CLI launch. Around
it, this module adds what the API needs: stdio pipes, the cgroup (created and entered
before the child is released), learn mode's listener, the wall-clock timer, and a handle
like :class:`subprocess.Popen`.

Exit codes follow the shell: the command's own; 128+N when killed by signal N; 124 when
the wall-clock limit killed it; 126 not executable; 127 not found. A failed set-up step
raises :class:`SandboxSetupError` from :func:`spawn` and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from isorun.errors import InternalError, SandboxSetupError
from isorun.sandbox import _shim, parent
from isorun.sandbox.cgroup import (
    Cgroup,
    CgroupPlan,
    create_cgroup_in_parent,
    plan_cgroup_in_parent,
)
from isorun.sandbox.failure import failure_error
from isorun.sandbox.sandbox_process import SandboxProcess
from isorun.sandbox.spec import ShimSpec, spec_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from isorun.sandbox.parent import Record

#: what may be given as stdin/stdout/stderr, as for subprocess.Popen
StdSpec = int | IO[Any] | None


def _child_stdio(value: StdSpec, index: int, opened: list[int],
                 stdout_fd: int = -1) -> tuple[int, int]:
    """(fd for the child, parent end of a pipe or -1); fds we open go into ``opened``.

    ``stdout_fd``: the child's stdout as this returned it for index 1, which
    ``stderr=subprocess.STDOUT`` shares (-1: this process's own stdout, descriptor 1)."""
    if value is None:
        return -1, -1
    if value == subprocess.STDOUT:
        if index != 2:
            raise ValueError("STDOUT is only valid as stderr, as for subprocess.Popen")
        return (stdout_fd if stdout_fd >= 0 else 1), -1
    if value == subprocess.PIPE:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        opened.extend((read_fd, write_fd))
        return (read_fd, write_fd) if index == 0 else (write_fd, read_fd)
    if value == subprocess.DEVNULL:
        fd = os.open(os.devnull, (os.O_RDONLY if index == 0 else os.O_WRONLY) | os.O_CLOEXEC)
        opened.append(fd)
        return fd, -1
    if isinstance(value, int):
        return value, -1
    return value.fileno(), -1


def _lift(fd: int, index: int, opened: list[int]) -> int:
    # The child dup2()s stdio in order 0, 1, 2; a source numbered below 3 (other than
    # its own slot) could be overwritten by an earlier dup2, so move it above 2.
    if fd < 0 or fd == index or fd > 2:
        return fd
    lifted = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    opened.append(lifted)
    return lifted


def spawn(
    spec: ShimSpec,
    *,
    stdin: StdSpec = None,
    stdout: StdSpec = None,
    stderr: StdSpec = None,
    wall_time: float | None = None,
    pass_fds: Iterable[int] = (),
    memory_max: int | None = None,
    pids_max: int | None = None,
    on_listener: Callable[[int], None] | None = None,
    terminal: bool = False,
    fallback_bpf: bytes = b"",
) -> SandboxProcess:
    """Start ``spec`` in a new sandbox.

    ``memory_max`` (bytes) and ``pids_max`` put the sandbox in a cgroup of its own (see
    :mod:`isorun.sandbox.cgroup`), as does a non-empty ``spec.cgroup``. ``wall_time`` kills
    the whole sandbox after that many seconds (exit code 124). ``pass_fds`` are kept open
    in the command in addition to ``spec.keep_fds``.

    The sandbox dies with the *thread* that called spawn when ``spec.die_with_parent``
    is set (PR_SET_PDEATHSIG follows the thread, prctl(2)): call it from a long-lived one.

    With ``spec.notify_bpf`` (learn mode), ``on_listener`` receives the seccomp listener
    (the caller owns it) before spawn waits for execve, and must start answering it at
    once: the command's execve is the first notified call. ``fallback_bpf`` (the refusal
    report, whose ``notify_bpf`` is the profile's program notifying its refusals): loaded
    instead where an outer listener holds the kernel's only place (shim/child/notify.c, EBUSY);
    ``on_listener`` is then never called.

    ``terminal``: the CLI's launch, which may make the sandbox the foreground job of this
    process's terminal (``spec.terminal_job``).
    """
    if bool(spec.notify_bpf) != (on_listener is not None):
        raise InternalError("spec.notify_bpf and on_listener go together")
    cgroup_plan = plan_cgroup_in_parent(memory_max, pids_max, spec.cgroup)
    record = _spawn_record(spec, terminal=terminal, fallback_bpf=fallback_bpf)
    opened: list[int] = []
    started: tuple[int, int] | None = None
    attach = None if cgroup_plan is None else _Attach(cgroup_plan)
    try:
        child_ends, parent_ends = _stdio_ends((stdin, stdout, stderr), opened)
        hand_over, notify_child = _listener_hand_over(spec, on_listener, opened)
        foreground = bool(record["terminal_job"]) and parent.foreground_in_parent()
        pid, pidfd, failure = parent.spawn_in_parent(
            record, opened, stdio=(child_ends[0], child_ends[1], child_ends[2]),
            pass_fds=pass_fds, child_ends={notify_child, *child_ends} - {-1, *parent_ends},
            notify_fd=notify_child, attach=attach, on_release=hand_over)  # fmt: skip
        started = pid, pidfd
        cgroup = None if attach is None else attach.cgroup
        proc = _handle(spec, record, started, failure, parent_ends, opened, cgroup, wall_time)
        proc._reclaim_terminal = foreground
        started = None
        return proc
    except BaseException:
        _undo_spawn(started, record, attach)
        raise
    finally:
        _close_quietly(opened)


def _close_quietly(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _handle(
    spec: ShimSpec,
    record: Record,
    started: tuple[int, int],
    failure: tuple[str, str, int, int] | None,
    parent_ends: list[int],
    opened: list[int],
    cgroup: Cgroup | None,
    wall_time: float | None,
) -> SandboxProcess:
    """The handle of the sandbox ``started`` (pid, pidfd): the pipes' parent ends leave
    ``opened`` and become its own; an exec failure is its to report."""
    exec_error = None if failure is None else failure_error(record, failure)
    for fd in parent_ends:
        if fd >= 0:
            opened.remove(fd)
    return SandboxProcess(*started, spec, parent_ends, cgroup, wall_time, exec_error)


def _undo_spawn(started: tuple[int, int] | None, record: Record, attach: _Attach | None) -> None:
    """Leave nothing behind of a spawn that failed half-way."""
    # spawn_in_parent leaves no process behind when it raises; once it returned, the
    # sandbox is ours to kill. The cgroup goes last: emptied, then removed.
    if started is not None:
        parent.abandon_in_parent(*started, record)
    if attach is not None and attach.cgroup is not None:
        attach.cgroup.kill_in_parent()
        attach.cgroup.remove_in_parent()


@dataclass
class _Attach:
    """spawn_in_parent's ``attach``: the sandbox's cgroup, made for its pid and joined
    before the child is released."""

    plan: CgroupPlan
    cgroup: Cgroup | None = None

    def __call__(self, pid: int) -> None:
        self.cgroup = create_cgroup_in_parent(self.plan, f"isorun-{pid}")
        self.cgroup.attach_in_parent(pid)


def _spawn_record(spec: ShimSpec, *, terminal: bool, fallback_bpf: bytes) -> Record:
    """``spec``'s launch record with what only this launch decides."""
    record = spec_record(spec)
    # Only the CLI's launch may hand the sandbox this process's terminal (see
    # spec.terminal_job); an API caller keeps it.
    record["terminal_job"] = terminal and spec.terminal_job
    if fallback_bpf:
        record["fallback_bpf"] = fallback_bpf
    return record


def _stdio_ends(
    stdio: tuple[StdSpec, StdSpec, StdSpec], opened: list[int]
) -> tuple[list[int], list[int]]:
    """(the sandbox's descriptors 0, 1, 2; our ends of their pipes, -1 where none)."""
    parent_ends: list[int] = []
    child_ends: list[int] = []
    for index, value in enumerate(stdio):
        stdout_fd = child_ends[1] if len(child_ends) > 1 else -1
        child_fd, parent_fd = _child_stdio(value, index, opened, stdout_fd)
        child_ends.append(_lift(child_fd, index, opened))
        parent_ends.append(parent_fd)
    return child_ends, parent_ends


def _listener_hand_over(
    spec: ShimSpec, on_listener: Callable[[int], None] | None, opened: list[int]
) -> tuple[Callable[[int, int], None] | None, int]:
    """(what spawn_in_parent calls on release, the child's end of the notify socket) in
    learn mode; (None, -1) otherwise."""
    if on_listener is None:
        return None, -1
    notify_parent, notify_child = _notify_socket(opened)

    def hand_over(pid: int, err_r: int) -> None:
        _hand_over_listener(notify_parent, spec, on_listener, err_r)

    return hand_over, notify_child


def _notify_socket(opened: list[int]) -> tuple[int, int]:
    """(parent end, child end) of the socket the command reports its listener number on.

    SOCK_SEQPACKET: one message or EOF, never half a number. SO_PASSCRED on our end makes
    the kernel attach the sender's pid translated into *our* pid namespace (unix(7)),
    which the command itself cannot know from inside its own.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    parent_fd, child_fd = ours.detach(), theirs.detach()
    opened.extend((parent_fd, child_fd))
    return parent_fd, child_fd


def _exec_or_failed(err_r: int) -> bool:
    """The error pipe is readable: the child exec'd (EOF, its end is close-on-exec) or
    wrote its failure record. Either way it loaded no listener that we could take."""
    return bool(select.select([err_r], [], [], 0)[0])


def _hand_over_listener(fd: int, spec: ShimSpec, on_listener: Callable[[int], None],
                        err_r: int) -> None:
    ucred = struct.Struct("=iII")
    with socket.socket(fileno=os.dup(fd)) as sock:
        data, ancdata, _flags, _addr = sock.recvmsg(64, socket.CMSG_SPACE(ucred.size))
        if not data:
            return  # the child failed before: its record is on the error pipe
        # EOF next: the command closed its end, so only seccomp(2) itself is left before
        # the listener exists.
        sock.recv(1)
    pid = -1
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = ucred.unpack_from(payload)[0]
    if pid <= 0 or len(data) != 4:
        raise InternalError(f"learn socket: bad message {data!r} (pid {pid})")
    number = struct.unpack("=i", data)[0]
    # The command cannot tell us when seccomp(2) returned (any call it makes from then on
    # waits for us), so EBADF means "not yet": retry for a while. ESRCH: it died (its
    # failure record is on the error pipe; the caller kills what is left).
    delay, deadline = 0.0001, time.monotonic() + 5.0
    while True:
        try:
            listener = _shim.take_listener(pid, number)
            break
        except OSError as err:
            # With a listener the command's execve waits for us, so the error pipe stays
            # open; readable, the child went on without one (an outer listener took the
            # place, and it loaded fallback_bpf, shim/child/notify.c), or failed: EBADFD is
            # then a descriptor the command opened since at that number (take_listener
            # checks that it is a listener), EBADF or ESRCH one not there (yet).
            if err.errno in (errno.EBADF, errno.EBADFD, errno.ESRCH) and \
                    _exec_or_failed(err_r):
                return
            if err.errno == errno.EBADF and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
                continue
            raise SandboxSetupError("seccomp", "pidfd_getfd", err.errno or 0,
                                    detail="taking the learn-mode listener",
                                    step_index=spec.step_index.get("seccomp", -1)) from err
    on_listener(listener)
