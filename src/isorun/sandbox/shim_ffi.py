"""The compiled shim as the parent side calls it: the module (refused when its ABI is not
this package's), the ``struct isorun_spec`` built from a record, and the shim's walk of a
host path (isorun_resolve).

Loaded on the warm CLI launch with :mod:`isorun.sandbox.parent`, so it imports only ``os``
and the record's table (see that module's docstring); errors are imported when something
fails.
"""

from __future__ import annotations

from isorun.sandbox.record import FIELDS, MOUNT
from isorun.shim import abi as shim_abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from isorun.sandbox.parent import Record

#: the ABI this package speaks, which the build compiles into the shim as ISORUN_SHIM_ABI:
#: a module built from other sources reports another
ABI = shim_abi.SHIM_ABI
#: sizeof(struct isorun_failure): int err, int index, char step[32], char syscall[32]
FAILURE_SIZE = 72
#: PATH used when the spec's environment has none, as execvp(3) does
DEFAULT_PATH = b"/usr/bin:/bin"
#: the longest path the kernel resolves (PATH_MAX), with its NUL
PATH_MAX = 4096


def load_shim() -> Any:
    """The compiled shim module, refused (ShimAbiError) when its ABI is not :data:`ABI`."""
    try:
        from isorun import _shim_c
    except ImportError as err:
        from isorun.errors import ShimAbiError

        raise ShimAbiError(f"the native shim isorun._shim_c is not built ({err})") from err
    # Typed Any here: mypy sees the extension module only when it is built.
    shim: Any = _shim_c
    found = int(shim.lib.isorun_abi())
    if found != ABI:
        from isorun.errors import ShimAbiError

        raise ShimAbiError(f"the native shim speaks ABI {found}, this package needs {ABI}")
    if shim.ffi.sizeof("struct isorun_failure") != FAILURE_SIZE:
        from isorun.errors import ShimAbiError

        raise ShimAbiError("struct isorun_failure has an unexpected size")
    return shim


def internal_error(message: str) -> Exception:
    from isorun.errors import InternalError

    return InternalError(message)


def check_record(record: Record, lib: Any) -> None:
    """Refuse a spec the shim would misread; the planner never makes one (a bug if so)."""
    argv = record["argv"]
    if not argv or not argv[0]:
        raise internal_error("spec.argv is empty")
    root = record["root"]
    if root not in (b"", b"tmpfs") and not root.startswith(b"/"):
        raise internal_error(f"spec.root must be b'', b'tmpfs' or absolute, got {root!r}")
    needs_src = (lib.ISORUN_MOUNT_BIND, lib.ISORUN_MOUNT_DEV_BIND, lib.ISORUN_MOUNT_SYMLINK,
                 lib.ISORUN_MOUNT_OVERLAY)
    for mount in record["mounts"]:
        kind, dst, src, tree_fd = (mount[MOUNT.kind], mount[MOUNT.dst], mount[MOUNT.src],
                                   mount[MOUNT.tree_fd])  # fmt: skip
        if not dst.startswith(b"/"):
            raise internal_error(f"mount dst must be absolute, got {dst!r}")
        if kind == lib.ISORUN_MOUNT_TREE and tree_fd < 0:
            raise internal_error(f"mount {dst!r} (TREE) needs a tree_fd")
        if kind in needs_src and not src:
            from isorun.sandbox.spec import MountKind

            raise internal_error(f"mount {dst!r} ({MountKind(kind).name}) needs a src")
    if len(record["seccomp_bpf"]) % 8 or len(record["notify_bpf"]) % 8:
        raise internal_error("seccomp_bpf is not a whole number of 8-byte instructions")
    for cap in record["caps_keep"]:
        if not 0 <= cap < 64:
            raise internal_error(f"capability number out of range: {cap}")
    for path, port, _access, _optional in record["landlock_rules"]:
        if not (path.startswith(b"/") if path else 0 < port < 65536):
            raise internal_error(f"landlock rule needs an absolute path or a port: {path!r}")


class _Arena:
    """cffi allocations for one struct: each goes into ``alive``, which must outlive the
    clone (the child reads its copy-on-write copy of these bytes)."""

    __slots__ = ("alive", "ffi")

    def __init__(self, ffi: Any, alive: list[Any]) -> None:
        self.ffi, self.alive = ffi, alive

    def new(self, ctype: str, init: object) -> Any:
        obj = self.ffi.new(ctype, init)
        self.alive.append(obj)
        return obj

    def cstr(self, value: bytes, what: str) -> Any:
        # A C string stops at the first NUL: a path with one would silently name another file.
        if b"\0" in value:
            raise internal_error(f"{what} contains a NUL byte: {value!r}")
        return self.new("char[]", value)

    def cstr_array(self, values: tuple[bytes, ...], what: str) -> Any:
        return self.new("char *[]", [*(self.cstr(v, what) for v in values), self.ffi.NULL])

    def blob(self, data: bytes) -> Any:
        """``data`` as unsigned char[]; one NUL byte when empty (cffi has no empty array)."""
        return self.new("unsigned char[]", data or b"\0")


def build_struct(
    shim: Any,
    record: Record,
    stdio: tuple[int, int, int],
    sync: tuple[int, int],
    err: tuple[int, int],
    keep_fds: tuple[int, ...],
    notify_fd: int,
    alive: list[Any],
) -> Any:
    """``struct isorun_spec`` for ``record``; every allocation goes into ``alive``, which
    must outlive the clone (the child reads its copy-on-write copy of these bytes)."""
    lib = shim.lib
    arena = _Arena(shim.ffi, alive)
    env = record["env"]
    c = arena.new("struct isorun_spec *", None)
    c.argv = arena.cstr_array(record["argv"], "argv")
    c.env = arena.cstr_array(env, "env")
    c.path = arena.cstr(next((e[5:] for e in env if e.startswith(b"PATH=")), DEFAULT_PATH),
                        "PATH")  # fmt: skip
    for name, how in FIELDS:
        if how == "scalar":  # a member of the same name, the value as is
            setattr(c, name, int(record[name]))
    c.root = arena.cstr(record["root"], "root")
    c.mounts, c.n_mounts = _mounts(arena, lib, record["mounts"])
    c.cwd = arena.cstr(record["cwd"], "cwd")
    c.hostname = arena.cstr(record["hostname"], "hostname")
    c.rlimits, c.n_rlimits = _rlimits(arena, record["rlimits"])
    c.new_session = (0 if not record["new_session"] else
                     lib.ISORUN_SESSION_TERMINAL_OK if record["terminal_job"] else 1)
    c.keep_fds = arena.new("int[]", list(keep_fds) or [-1])
    c.n_keep_fds = len(keep_fds)
    c.caps_keep = sum(1 << cap for cap in set(record["caps_keep"]))
    c.stdio = list(stdio)
    c.sync_fd, c.sync_parent_fd = sync
    c.err_fd, c.err_parent_fd = err
    _fill_seccomp(arena, c, record, notify_fd)
    c.landlock_rules, c.n_landlock_rules = _landlock_rules(arena, record["landlock_rules"])
    return c


def _mounts(arena: _Arena, lib: Any, mounts: tuple[tuple[Any, ...], ...]) -> tuple[Any, int]:
    """(struct isorun_mount[], count) for the record's mounts."""
    slots = arena.new("struct isorun_mount[]", max(len(mounts), 1))
    for slot, mount in zip(slots, mounts, strict=False):
        kind, src, data, mode = (mount[MOUNT.kind], mount[MOUNT.src], mount[MOUNT.data],
                                 mount[MOUNT.mode])  # fmt: skip
        slot.kind, slot.mode, slot.flags = kind, mode, mount[MOUNT.flags]
        slot.optional, slot.step = int(mount[MOUNT.optional]), mount[MOUNT.step]
        slot.dst = arena.cstr(mount[MOUNT.dst], "mount dst")
        # FILE content goes with its length and may hold NULs; every other src is a path.
        slot.src = (arena.new("char[]", src) if kind == lib.ISORUN_MOUNT_FILE else
                    arena.cstr(src, "src"))  # fmt: skip
        slot.src_len = len(src)
        if kind == lib.ISORUN_MOUNT_TMPFS and b"mode=" not in data:
            # The root of a tmpfs takes its mode from the mount options, not from a mkdir.
            data = (data + b"," if data else b"") + b"mode=%o" % mode
        slot.data = arena.cstr(data, "mount data") if data else arena.ffi.NULL
        slot.tree_fd = mount[MOUNT.tree_fd]
    return slots, len(mounts)


def _rlimits(arena: _Arena, rlimits: tuple[tuple[int, int, int, int], ...]) -> tuple[Any, int]:
    """(struct isorun_rlimit[], count) for the record's rlimits."""
    slots = arena.new("struct isorun_rlimit[]", max(len(rlimits), 1))
    for slot, (resource, soft, hard, step) in zip(slots, rlimits, strict=False):
        slot.resource, slot.step, slot.soft, slot.hard = resource, step, soft, hard
    return slots, len(rlimits)


def _fill_seccomp(arena: _Arena, c: Any, record: Record, notify_fd: int) -> None:
    """The seccomp programs of ``c``: the filter, learn mode's or the refusal report's
    notify program with its socket, and the fallback."""
    bpf = record["seccomp_bpf"]
    c.seccomp_bpf = arena.blob(bpf)
    c.seccomp_len = len(bpf)
    notify = record["notify_bpf"]
    if notify and notify_fd < 0:
        raise internal_error("spec.notify_bpf needs a notify socket (notify_fd)")
    c.notify_bpf = arena.blob(notify)
    c.notify_len = len(notify)
    c.notify_fd = notify_fd
    # the refusal report's: the plain program where an outer listener leaves no place
    # for notify_bpf's (shim/child/notify.c, EBUSY); learn mode has none and fails instead
    fallback = record.get("fallback_bpf", b"")
    c.fallback_bpf = arena.blob(fallback)
    c.fallback_len = len(fallback)


def _landlock_rules(
    arena: _Arena, rules: tuple[tuple[bytes, int, int, bool], ...]
) -> tuple[Any, int]:
    """(struct isorun_landlock_rule[], count) for the record's Landlock rules."""
    slots = arena.new("struct isorun_landlock_rule[]", max(len(rules), 1))
    for slot, (path, port, access, optional) in zip(slots, rules, strict=False):
        slot.path = arena.cstr(path, "landlock path")
        slot.port, slot.access, slot.optional = port, access, int(optional)
    return slots, len(rules)


def resolve_in_parent(shim: Any, path: bytes) -> tuple[int, bytes]:
    """(an O_PATH descriptor or -errno, the path with no link in it) for a host path,
    following only the links docs/security.md trusts (the shim's isorun_resolve). On
    -ELOOP the path is the refused link's own."""
    if b"\0" in path:
        raise internal_error(f"a mount path contains a NUL byte: {path!r}")
    out = shim.ffi.new("char[]", PATH_MAX)
    fd = int(shim.lib.isorun_resolve(path, 1, out, PATH_MAX))
    return fd, shim.ffi.string(out)
