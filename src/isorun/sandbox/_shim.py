"""Typed wrappers around the compiled shim, so the untyped ``lib`` never leaks.

The module is loaded, and refused when its ABI differs from the header this package was
written against, by :func:`isorun.sandbox.shim_ffi.load_shim`. Starting a sandbox (the
spec's C struct, clone, the parent's steps) lives in :mod:`isorun.sandbox.parent`, which
both launch paths share and which must stay free of the imports this module makes;
here are the typed faces of it (:func:`spawn_child`, :func:`parse_failure`,
:func:`failure_error`) and of learn mode's supervisor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from isorun.errors import SandboxSetupError
from isorun.sandbox import parent, shim_ffi
from isorun.sandbox.failure import failure_error as record_failure_error
from isorun.sandbox.spec import ShimSpec, spec_record

#: the ABI this module speaks; must equal ISORUN_SHIM_ABI in isorun_shim.h
ABI = shim_ffi.ABI

#: every step name a SandboxSetupError from the native backend can carry, in launch order;
#: ShimSpec.step_index maps these to plan step indexes ("mount" and "rlimit" failures
#: carry the failing item's own ``step`` instead)
STEP_NAMES = (
    "clone", "setgroups", "gid_map", "uid_map", "cgroup", "die_with_parent", "setsid",
    "securebits", "setgroups", "ids", "stdio", "close_fds", "hostname", "loopback", "root",
    "mount", "pivot_root", "cwd", "rlimit", "caps", "no_new_privs", "init", "seccomp", "exec",
)  # fmt: skip

# At import: a module built for another ABI is refused before anything uses it.
_shim_c = shim_ffi.load_shim()
_ffi, _lib = _shim_c.ffi, _shim_c.lib

#: bytes of one failure record on the error pipe
FAILURE_SIZE = shim_ffi.FAILURE_SIZE


@dataclass(frozen=True, slots=True)
class ChildFds:
    """Descriptors the child uses, all numbered as in the parent (clone copies the table)."""

    #: what becomes 0, 1, 2 in the child; -1 inherits the parent's
    stdio: tuple[int, int, int]
    #: read end of the sync pipe (child) and its write end (parent, closed in the child)
    sync_fd: int
    sync_parent_fd: int
    #: write end of the CLOEXEC error pipe (child) and its read end (parent)
    err_fd: int
    err_parent_fd: int
    #: descriptors the command keeps, besides 0-2 (sorted, unique)
    keep_fds: tuple[int, ...]
    #: learn mode: the child's end of the unix socket the listener number comes over
    notify_fd: int = -1


@dataclass(frozen=True, slots=True)
class ChildFailure:
    """What a child reported before exiting: the step, the syscall, errno, plan index."""

    step: str
    syscall: str
    errno: int
    index: int

    @property
    def is_exec(self) -> bool:
        """execve failed: reported as exit status 126/127, like a shell, not as an error."""
        return self.step == "exec"


def abi_version() -> int:
    """ISORUN_SHIM_ABI as compiled into the loaded module."""
    return int(_lib.isorun_abi())


def spawn_child(spec: ShimSpec, fds: ChildFds) -> int:
    """clone(2) the sandbox child; it waits on ``fds.sync_fd`` for the parent. Returns its pid."""
    return parent.clone_in_parent(
        spec_record(spec), fds.stdio, (fds.sync_fd, fds.sync_parent_fd),
        (fds.err_fd, fds.err_parent_fd), fds.keep_fds, fds.notify_fd)  # fmt: skip


def parse_failure(data: bytes) -> ChildFailure | None:
    """The first failure record in what was read from the error pipe, if any."""
    failure = parent.parse_failure(data)
    return None if failure is None else ChildFailure(*failure)


def failure_error(spec: ShimSpec, failure: ChildFailure) -> SandboxSetupError:
    """The domain error for a failure, with the plan step index filled in when known."""
    return record_failure_error(
        spec_record(spec), (failure.step, failure.syscall, failure.errno, failure.index)
    )


#: ISORUN_MEM_* (isorun_shim.h): what memory the supervisor reads for a syscall
MEM_PATH = 1
MEM_SOCKADDR = 2


@dataclass(frozen=True, slots=True)
class SeenCall:
    """One distinct call the supervisor saw: AUDIT_ARCH_*, number, the key arguments (the
    others are 0) and how often."""

    arch: int
    nr: int
    args: tuple[int, ...]
    count: int


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """A path (NUL-free) or socket address read from a call's arguments, and how often."""

    nr: int
    data: bytes
    count: int


@dataclass(frozen=True, slots=True)
class Supervised:
    """What :func:`supervise` recorded until the filter had no users (or was stopped)."""

    calls: tuple[SeenCall, ...]
    events: tuple[SeenEvent, ...]
    total: int
    #: notifications whose caller vanished before the answer (a signal or a kill)
    lost: int
    events_dropped: int
    #: the dedup table overflowed: the record is incomplete
    table_full: bool
    #: ended by ``stop_fd`` rather than by the last filtered process going away
    stopped: bool
    #: notifications answered with an errno (``evaluate``: the calls the profile refused)
    refused: int = 0


def take_listener(pid: int, fd: int) -> int:
    """Copy the seccomp listener ``fd`` out of process ``pid`` (pidfd_getfd(2))."""
    got = int(_lib.isorun_take_listener(pid, fd))
    if got < 0:
        raise OSError(-got, f"pidfd_getfd(pid {pid}, fd {fd}): {os.strerror(-got)}")
    return got


def supervise(listener: int, stop_fd: int, native_arch: int, argmask: bytes,
              mem: tuple[int, ...], seen_cap: int = 1 << 16,
              events_cap: int = 1 << 13, answer: tuple[int, ...] = (),
              answer_other: int = 0, evaluate: bytes = b"") -> Supervised:
    """Answer every notification on ``listener`` with CONTINUE, recording it; with
    ``answer`` (per native number, an errno or 0) refuse the calls it names instead; with
    ``evaluate`` (a seccomp program) answer what it answers, recording only refusals (the
    refusal report, shim/child/notify.c).

    Blocks until no process uses the filter or ``stop_fd`` is readable; cffi releases the
    GIL for the call, so run it in a thread of its own.
    """
    sup = _ffi.new("struct isorun_supervisor *")
    seen = _ffi.new("struct isorun_seen[]", seen_cap)
    events = _ffi.new("struct isorun_event[]", events_cap)
    c_mask = _ffi.new("unsigned char[]", argmask or b"\0")
    c_mem = _ffi.new("unsigned short[]", list(mem) or [0])
    sup.listener, sup.stop_fd, sup.native_arch = listener, stop_fd, native_arch
    sup.argmask, sup.n_argmask = c_mask, len(argmask)
    sup.mem, sup.n_mem = c_mem, len(mem)
    sup.seen, sup.seen_cap = seen, seen_cap
    sup.events, sup.events_cap = events, events_cap
    c_answer = _ffi.new("unsigned short[]", list(answer) or [0])
    sup.answer, sup.n_answer, sup.answer_other = c_answer, len(answer), answer_other
    c_eval = _ffi.new("unsigned char[]", evaluate or b"\0")
    sup.eval, sup.n_eval = c_eval, len(evaluate)
    rc = int(_lib.isorun_supervise(sup))
    if rc < 0:
        raise OSError(-rc, f"seccomp user notification: {os.strerror(-rc)}")
    calls = tuple(
        SeenCall(int(s.arch), int(s.nr), tuple(int(a) for a in s.args), int(s.count))
        for s in seen if s.used)
    found = tuple(
        SeenEvent(int(e.nr), bytes(_ffi.buffer(e.data, e.len)), int(e.count))
        for e in events if e.used)
    return Supervised(calls, found, int(sup.total), int(sup.lost), int(sup.events_dropped),
                      bool(sup.seen_full), rc == 1, int(sup.refused))


def planted_walk(root: str, since_ns: int) -> str:
    """planted.c's walk below ``root`` (a writable bind's source) once the sandbox has
    ended: nested .git the run created or changed moved aside, new .pth named; the
    messages, one per line, or "" (issue #13)."""
    out = _ffi.new("char[]", 8192)
    _lib.isorun_planted_walk(os.fsencode(root), since_ns // 1_000_000_000,
                             since_ns % 1_000_000_000, out, 8192)
    return str(_ffi.string(out).decode("utf-8", "replace"))
