"""The only user of the compiled shim's ``ffi`` and ``lib``.

Loads ``isorun._shim_c``, refuses it when its ABI differs from the header this package
was written against, turns a :class:`ShimSpec` into the flat C structs (the parent
allocates every byte; the child only reads its copy-on-write copy), and maps what a
failed child reports into :class:`SandboxSetupError`.
"""

from __future__ import annotations

import importlib
import os
import struct
from dataclasses import dataclass
from typing import Any

from isorun.errors import InternalError, SandboxSetupError, ShimAbiError
from isorun.sandbox.spec import MountKind, ShimSpec

#: the ABI this module speaks; must equal ISORUN_SHIM_ABI in isorun_shim.h
ABI = 3

#: PATH used when the spec's environment has none, as execvp(3) does
DEFAULT_PATH = b"/usr/bin:/bin"

#: every step name a SandboxSetupError from the native backend can carry, in launch order;
#: ShimSpec.step_index maps these to plan step indexes ("mount" and "rlimit" failures
#: carry the failing item's own ``step`` instead)
STEP_NAMES = (
    "clone", "setgroups", "gid_map", "uid_map", "cgroup", "die_with_parent", "setsid",
    "securebits", "setgroups", "ids", "stdio", "close_fds", "hostname", "loopback", "root",
    "mount", "pivot_root", "cwd", "rlimit", "caps", "no_new_privs", "init", "seccomp", "exec",
)  # fmt: skip

#: struct isorun_failure: int err, int index, char step[32], char syscall[32]
_FAILURE = struct.Struct("=ii32s32s")


def _load() -> tuple[Any, Any]:
    try:
        module = importlib.import_module("isorun._shim_c")
    except ImportError as err:
        raise ShimAbiError(f"the native shim isorun._shim_c is not built ({err})") from err
    found = int(module.lib.isorun_abi())
    if found != ABI:
        raise ShimAbiError(f"the native shim speaks ABI {found}, this package needs {ABI}")
    if module.ffi.sizeof("struct isorun_failure") != _FAILURE.size:
        raise ShimAbiError("struct isorun_failure has an unexpected size")
    return module.ffi, module.lib


_ffi, _lib = _load()

#: bytes of one failure record on the error pipe
FAILURE_SIZE = _FAILURE.size


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


def _cstr(value: bytes, what: str) -> bytes:
    # A C string stops at the first NUL: a path with one would silently name another file.
    if b"\0" in value:
        raise InternalError(f"{what} contains a NUL byte: {value!r}")
    return value


def _check_spec(spec: ShimSpec) -> None:
    if not spec.argv or not spec.argv[0]:
        raise InternalError("spec.argv is empty")
    if spec.root not in (b"", b"tmpfs") and not spec.root.startswith(b"/"):
        raise InternalError(f"spec.root must be b'', b'tmpfs' or absolute, got {spec.root!r}")
    for mount in spec.mounts:
        if not mount.dst.startswith(b"/"):
            raise InternalError(f"mount dst must be absolute, got {mount.dst!r}")
        if mount.kind == MountKind.TREE and mount.tree_fd < 0:
            raise InternalError(f"mount {mount.dst!r} (TREE) needs a tree_fd")
        needs_src = (MountKind.BIND, MountKind.DEV_BIND, MountKind.SYMLINK)
        if mount.kind in needs_src and not mount.src:
            raise InternalError(f"mount {mount.dst!r} ({mount.kind.name}) needs a src")
    if len(spec.seccomp_bpf) % 8 or len(spec.notify_bpf) % 8:
        raise InternalError("seccomp_bpf is not a whole number of 8-byte instructions")
    for cap in spec.caps_keep:
        if not 0 <= cap < 64:
            raise InternalError(f"capability number out of range: {cap}")


def _path_of(env: tuple[bytes, ...]) -> bytes:
    for entry in env:
        if entry.startswith(b"PATH="):
            return entry[5:]
    return DEFAULT_PATH


def _tmpfs_data(data: bytes, mode: int) -> bytes:
    # The root of a tmpfs takes its mode from the mount options, not from a mkdir.
    if b"mode=" in data:
        return data
    return (data + b"," if data else b"") + f"mode={mode:o}".encode()


class _Arena:
    """Keeps every cffi allocation alive until the clone has copied them."""

    def __init__(self) -> None:
        self.keep: list[Any] = []

    def new(self, ctype: str, init: Any) -> Any:
        obj = _ffi.new(ctype, init)
        self.keep.append(obj)
        return obj

    def cstr(self, value: bytes, what: str) -> Any:
        return self.new("char[]", _cstr(value, what))

    def cstr_array(self, values: tuple[bytes, ...], what: str) -> Any:
        items = [self.cstr(v, what) for v in values]
        return self.new("char *[]", [*items, _ffi.NULL])


def _build(spec: ShimSpec, fds: ChildFds, arena: _Arena) -> Any:
    c = arena.new("struct isorun_spec *", None)
    c.argv = arena.cstr_array(spec.argv, "argv")
    c.env = arena.cstr_array(spec.env, "env")
    c.path = arena.cstr(_path_of(spec.env), "PATH")
    c.clone_flags = spec.clone_flags
    c.uid, c.gid = spec.uid, spec.gid
    c.setgroups_deny = int(spec.setgroups_deny)
    c.root = arena.cstr(spec.root, "root")
    mounts = arena.new("struct isorun_mount[]", max(len(spec.mounts), 1))
    for slot, mount in zip(mounts, spec.mounts, strict=False):
        slot.kind = int(mount.kind)
        slot.optional = int(mount.optional)
        slot.step = mount.step
        slot.mode = mount.mode
        slot.flags = mount.flags
        slot.dst = arena.cstr(mount.dst, "mount dst")
        # FILE content goes with its length and may hold NULs; every other src is a path.
        src = mount.src if mount.kind == MountKind.FILE else _cstr(mount.src, "mount src")
        slot.src = arena.new("char[]", src)
        slot.src_len = len(src)
        data = (
            _tmpfs_data(mount.data, mount.mode) if mount.kind == MountKind.TMPFS else (mount.data)
        )
        slot.data = arena.cstr(data, "mount data") if data else _ffi.NULL
        slot.tree_fd = mount.tree_fd
    c.mounts, c.n_mounts = mounts, len(spec.mounts)
    c.cwd = arena.cstr(spec.cwd, "cwd")
    c.hostname = arena.cstr(spec.hostname, "hostname")
    c.loopback_up = int(spec.loopback_up)
    rlimits = arena.new("struct isorun_rlimit[]", max(len(spec.rlimits), 1))
    for slot, rl in zip(rlimits, spec.rlimits, strict=False):
        slot.resource, slot.step, slot.soft, slot.hard = rl.resource, rl.step, rl.soft, rl.hard
    c.rlimits, c.n_rlimits = rlimits, len(spec.rlimits)
    c.new_session = int(spec.new_session)
    c.die_with_parent = int(spec.die_with_parent)
    c.keep_fds = arena.new("int[]", list(fds.keep_fds) or [-1])
    c.n_keep_fds = len(fds.keep_fds)
    c.caps_keep = sum(1 << cap for cap in set(spec.caps_keep))
    c.no_new_privs = int(spec.no_new_privs)
    c.seccomp_bpf = arena.new("unsigned char[]", spec.seccomp_bpf or b"\0")
    c.seccomp_len = len(spec.seccomp_bpf)
    c.init = int(spec.init)
    c.stdio = list(fds.stdio)
    c.sync_fd, c.sync_parent_fd = fds.sync_fd, fds.sync_parent_fd
    c.err_fd, c.err_parent_fd = fds.err_fd, fds.err_parent_fd
    c.notify_bpf = arena.new("unsigned char[]", spec.notify_bpf or b"\0")
    c.notify_len = len(spec.notify_bpf)
    c.notify_fd = fds.notify_fd
    if spec.notify_bpf and fds.notify_fd < 0:
        raise InternalError("spec.notify_bpf needs a notify socket (ChildFds.notify_fd)")
    return c


def spawn_child(spec: ShimSpec, fds: ChildFds) -> int:
    """clone(2) the sandbox child; it waits on ``fds.sync_fd`` for the parent. Returns its pid."""
    _check_spec(spec)
    arena = _Arena()
    c_spec = _build(spec, fds, arena)
    pid = int(_lib.isorun_spawn(c_spec))
    if pid < 0:
        raise SandboxSetupError(
            "clone",
            "clone",
            -pid,
            step_index=spec.step_index.get("clone", -1),
            detail=f"flags {spec.clone_flags:#x}",
        )
    return pid


def parse_failure(data: bytes) -> ChildFailure | None:
    """The first failure record in what was read from the error pipe, if any."""
    if len(data) < _FAILURE.size:
        return None
    err, index, step, syscall = _FAILURE.unpack_from(data)
    return ChildFailure(
        step.split(b"\0", 1)[0].decode(), syscall.split(b"\0", 1)[0].decode(), err, index
    )


def failure_error(spec: ShimSpec, failure: ChildFailure) -> SandboxSetupError:
    """The domain error for a failure, with the plan step index filled in when known."""
    index = failure.index if failure.index >= 0 else spec.step_index.get(failure.step, -1)
    detail = ""
    if failure.step == "mount":
        for mount in spec.mounts:
            if mount.step == failure.index and failure.index >= 0:
                detail = f"{mount.kind.name.lower()} {os.fsdecode(mount.dst)}"
                if mount.src and mount.kind != MountKind.FILE:
                    detail += f" from {os.fsdecode(mount.src)}"
                break
    return SandboxSetupError(
        failure.step, failure.syscall, failure.errno, detail=detail, step_index=index
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


def take_listener(pid: int, fd: int) -> int:
    """Copy the seccomp listener ``fd`` out of process ``pid`` (pidfd_getfd(2))."""
    got = int(_lib.isorun_take_listener(pid, fd))
    if got < 0:
        raise OSError(-got, f"pidfd_getfd(pid {pid}, fd {fd}): {os.strerror(-got)}")
    return got


def supervise(listener: int, stop_fd: int, native_arch: int, argmask: bytes,
              mem: tuple[int, ...], seen_cap: int = 1 << 16,
              events_cap: int = 1 << 13) -> Supervised:
    """Answer every notification on ``listener`` with CONTINUE, recording it.

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
                      bool(sup.seen_full), rc == 1)
