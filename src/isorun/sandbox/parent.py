"""The parent side of starting a native sandbox, once, for both launch paths.

:func:`isorun.sandbox.process.spawn` (the API: pipes, cgroups, a wall-clock timer and
learn mode around it) and the warm CLI launch (:mod:`isorun.cache.record`: a cached spec from
the plan cache, stdio inherited) both start the child here. The warm launch is why this
module is plain: on this kind of machine ``import dataclasses`` (it pulls in ``inspect``)
costs more than bubblewrap takes to start a whole sandbox, so this module imports only
``os``, ``sys``, :mod:`isorun.sandbox.shim_ffi` (the compiled shim and the C struct) and
:mod:`isorun.sandbox.mounts` (the mounts resolved before the clone), which import no more,
and takes a spec as its *record*
(:func:`isorun.sandbox.spec.spec_record`: dicts, tuples, bytes and ints, which also
marshal into the plan cache). Errors (:mod:`isorun.sandbox.failure`) are imported when
something fails, when time no longer matters.

The sequence (:func:`spawn_in_parent`): the sync and error pipes; every bind source
resolved without following an untrusted link, cloned with open_tree(2) for a root caller;
the C struct; clone (the child blocks on the sync pipe); a pidfd; setgroups, gid_map,
uid_map; the caller's ``attach`` (a cgroup); release; the caller's ``on_release`` (learn
mode's listener); the error pipe read to EOF.
"""

from __future__ import annotations

import os
import sys

from isorun.kernel.abi import CLONE_NEWPID, CLONE_NEWUSER
from isorun.sandbox.mounts import resolve_mounts_in_parent
from isorun.sandbox.shim_ffi import FAILURE_SIZE, build_struct, check_record, load_shim

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeAlias


    #: ShimSpec as :func:`isorun.sandbox.spec.spec_record` flattens it
    Record: TypeAlias = dict[str, Any]
    #: (step, syscall, errno, plan step index) as the child reported it
    Failure: TypeAlias = tuple[str, str, int, int]

#: the layout of a record (see spec.spec_record); part of the plan cache key, so bump it
#: when the layout changes and cached records from before are never read
RECORD_FORMAT = 6

SIGKILL = 9
SIGTTOU = 22


def clone_in_parent(
    record: Record,
    stdio: tuple[int, int, int],
    sync: tuple[int, int],
    err: tuple[int, int],
    keep_fds: tuple[int, ...],
    notify_fd: int = -1,
) -> int:
    """clone(2) the child of ``record``; it waits on the sync pipe. Returns its pid.

    ``sync`` is (the child's read end, the parent's write end), ``err`` (the child's
    CLOEXEC write end, the parent's read end), all numbered as in the parent: clone copies
    the descriptor table.
    """
    shim = load_shim()
    check_record(record, shim.lib)
    alive: list[Any] = []
    c_spec = build_struct(shim, record, stdio, sync, err, keep_fds, notify_fd, alive)
    pid = int(shim.lib.isorun_spawn(c_spec))
    del alive  # the child has its own copy now
    if pid < 0:
        from isorun.sandbox.failure import setup_error

        raise setup_error(record, "clone", "clone", -pid, f"flags {record['clone_flags']:#x}")
    return pid



def _proc_write(pid: int, name: str, data: bytes, record: Record) -> None:
    try:
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            # One write: the kernel accepts a map only in a single write(2) call.
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as err:
        from isorun.sandbox.failure import setup_error

        raise setup_error(
            record, name, f"write({name})", err.errno or 0, data.decode(errors="replace").strip()
        ) from err



def write_id_maps_in_parent(pid: int, record: Record) -> None:
    """setgroups, then gid_map, then uid_map for the child's user namespace."""
    if not record["clone_flags"] & CLONE_NEWUSER:
        if record["uid_map"] or record["gid_map"]:
            from isorun.sandbox.shim_ffi import internal_error

            raise internal_error("uid_map/gid_map given without a new user namespace")
        return
    # "deny" must precede gid_map: unprivileged writers of gid_map are refused until
    # setgroups is denied (user_namespaces(7), CVE-2014-8989).
    if record["setgroups_deny"]:
        _proc_write(pid, "setgroups", b"deny", record)
    if record["gid_map"]:
        _proc_write(pid, "gid_map", record["gid_map"], record)
    if record["uid_map"]:
        _proc_write(pid, "uid_map", record["uid_map"], record)



def read_all(fd: int) -> bytes:
    """Everything until EOF."""
    chunks: list[bytes] = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)



def parse_failure(report: bytes) -> Failure | None:
    """The first ``struct isorun_failure`` in what was read from the error pipe, if any."""
    if len(report) < FAILURE_SIZE:
        return None
    # Native byte order, no padding (=ii32s32s).
    err = int.from_bytes(report[0:4], sys.byteorder, signed=True)
    index = int.from_bytes(report[4:8], sys.byteorder, signed=True)
    step = report[8:40].split(b"\0", 1)[0].decode()
    syscall = report[40:72].split(b"\0", 1)[0].decode()
    return step, syscall, err, index



def _quietly(
    errors: type[BaseException] | tuple[type[BaseException], ...],
    call: Callable[..., object],
    *args: object,
) -> None:
    """call(*args), ignoring ``errors``: contextlib.suppress without importing contextlib."""
    try:  # noqa: SIM105 - see docstring
        call(*args)
    except errors:
        pass



def signal_in_parent(pidfd: int, sig: int) -> None:
    """pidfd_send_signal(2), ignoring a child already gone. The signal module's wrapper
    imports enum (milliseconds); _signal is its C half."""
    import _signal  # type: ignore[import-not-found]

    _quietly(ProcessLookupError, _signal.pidfd_send_signal, pidfd, sig)



def foreground_in_parent() -> bool:
    """Whether this process is the foreground job of its controlling terminal (stdin):
    then a sandbox with ``terminal_job`` may take the terminal (shim ns.c)."""
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False



def reclaim_terminal_in_parent() -> None:
    """After a sandbox that shared this process's terminal (spec.terminal_job) ended: a
    shell in it may have left a job of its own in the foreground; take the terminal
    back, or this process's next read from it would stop with SIGTTIN. SIGTTOU blocked,
    since this process may be in the background then. The C launcher does the same
    (launch.c, reclaim_terminal)."""
    import _signal

    try:
        if os.tcgetpgrp(0) == os.getpgrp():
            return
    except OSError:
        return
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, (SIGTTOU,))
    try:
        os.tcsetpgrp(0, os.getpgrp())
    except OSError:
        pass  # the terminal is gone, or another job took it meanwhile: leave it
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)



def abandon_in_parent(pid: int, pidfd: int, record: Record) -> None:
    """Leave no process behind after a failed spawn: kill, then reap."""
    if pidfd >= 0:
        signal_in_parent(pidfd, SIGKILL)
        os.close(pidfd)
    else:
        _quietly(ProcessLookupError, os.kill, pid, SIGKILL)
    # Without a pid namespace, killing the child takes no one else along; its session
    # (setsid made it the leader) does.
    if not record["clone_flags"] & CLONE_NEWPID and record["new_session"]:
        _quietly((ProcessLookupError, PermissionError), os.killpg, pid, SIGKILL)
    _quietly(ChildProcessError, os.waitpid, pid, 0)



def spawn_in_parent(
    record: Record,
    opened: list[int],
    *,
    stdio: tuple[int, int, int] = (-1, -1, -1),
    pass_fds: Iterable[int] = (),
    child_ends: Iterable[int] = (),
    notify_fd: int = -1,
    attach: Callable[[int], None] | None = None,
    on_release: Callable[[int, int], None] | None = None,
) -> tuple[int, int, Failure | None]:
    """Start the sandbox of ``record``: (pid, pidfd, exec failure or None).

    ``stdio`` are what becomes 0, 1, 2 in the child (-1 inherits ours), ``pass_fds`` stay
    open in the command besides ``record["keep_fds"]``, and ``child_ends`` are descriptors
    in ``opened`` that only the child needs (closed here after the clone). ``attach(pid)``
    runs before the child is released (cgroups: nothing it runs may be outside them),
    ``on_release(pid, err_r)`` after (learn mode: the child's execve waits for an answer
    on the listener, so the error pipe ``err_r``'s EOF cannot come before it, unless the
    child loaded no listener: the refusal report's fallback, see process.spawn).

    The exec failure is the child's report that execve failed: the command's status is
    then 126 or 127, as in a shell, and the caller says why. Any other failure raises
    SandboxSetupError and leaves no process behind. Descriptors we open go into
    ``opened``; the caller closes what is left there.
    """
    keep = tuple(sorted({*record["keep_fds"], *pass_fds} - {0, 1, 2}))
    for fd in keep:
        os.fstat(fd)  # EBADF now, not a silently missing descriptor in the command
    pid = pidfd = -1
    try:
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        opened.extend((sync_r, sync_w, err_r, err_w))
        # Before the clone: the child inherits the tree descriptors.
        record = resolve_mounts_in_parent(record, opened)
        pid = clone_in_parent(record, stdio, (sync_r, sync_w), (err_w, err_r), keep, notify_fd)
        # Before anything can reap it: the pidfd pins this process, never a reused pid.
        pidfd = os.pidfd_open(pid)
        _close_in_parent(opened, {sync_r, err_w, *child_ends})
        write_id_maps_in_parent(pid, record)
        if attach is not None:
            attach(pid)
        os.write(sync_w, b"\0")
        _close_in_parent(opened, (sync_w,))
        failure = _verdict_in_parent(record, pid, pidfd, err_r, on_release)
        _close_in_parent(opened, (err_r,))
        if failure is not None and failure[0] != "exec":
            from isorun.sandbox.failure import failure_error

            raise failure_error(record, failure)
        started = pid, pidfd, failure
        pid = -1
        return started
    finally:
        if pid > 0:
            abandon_in_parent(pid, pidfd, record)



def _close_in_parent(opened: list[int], fds: Iterable[int]) -> None:
    """Close those of ``fds`` that are in ``opened``, and take them out of it."""
    for fd in fds:
        if fd in opened:
            os.close(fd)
            opened.remove(fd)


def _verdict_in_parent(
    record: Record,
    pid: int,
    pidfd: int,
    err_r: int,
    on_release: Callable[[int, int], None] | None,
) -> Failure | None:
    """Once the child is released: ``on_release``, then the child's failure record from
    the error pipe (None at EOF: it exec'd the command)."""
    if on_release is not None:
        try:
            on_release(pid, err_r)
        except Exception as err:
            from isorun.errors import SandboxSetupError

            if not isinstance(err, SandboxSetupError):
                raise
            # The child's own record, if it wrote one, says more than the hook's
            # error; killed first, so reading to EOF cannot wait on a blocked execve.
            signal_in_parent(pidfd, SIGKILL)
            failure = parse_failure(read_all(err_r))
            if failure is not None:
                from isorun.sandbox.failure import failure_error

                raise failure_error(record, failure) from err
            raise
    return parse_failure(read_all(err_r))

