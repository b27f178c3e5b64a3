"""The parent side of starting a native sandbox, once, for both launch paths.

:func:`isorun.sandbox.process.spawn` (the API: pipes, cgroups, a wall-clock timer and
learn mode around it) and the warm CLI launch (:mod:`isorun.cache.record`: a cached spec from
the plan cache, stdio inherited) both start the child here. The warm launch is why this
module is plain: on this kind of machine ``import dataclasses`` (it pulls in ``inspect``)
costs more than bubblewrap takes to start a whole sandbox, so this module imports only
``os``, ``sys`` and the compiled shim, and takes a spec as its *record*
(:func:`isorun.sandbox.spec.spec_record`: dicts, tuples, bytes and ints, which also
marshal into the plan cache). Errors are imported when something fails, when time no
longer matters.

The sequence (:func:`spawn_in_parent`): the sync and error pipes; every bind source
resolved without following an untrusted link, cloned with open_tree(2) for a root caller;
the C struct; clone (the child blocks on the sync pipe); a pidfd; setgroups, gid_map,
uid_map; the caller's ``attach`` (a cgroup); release; the caller's ``on_release`` (learn
mode's listener); the error pipe read to EOF.
"""

from __future__ import annotations

import os
import sys

from isorun.sandbox.record import FIELDS, MOUNT
from isorun.shim import abi as shim_abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeAlias

    from isorun.errors import SandboxSetupError

    #: ShimSpec as :func:`isorun.sandbox.spec.spec_record` flattens it
    Record: TypeAlias = dict[str, Any]
    #: (step, syscall, errno, plan step index) as the child reported it
    Failure: TypeAlias = tuple[str, str, int, int]

#: the ABI this package speaks, which the build compiles into the shim as ISORUN_SHIM_ABI:
#: a module built from other sources reports another
ABI = shim_abi.SHIM_ABI
#: the layout of a record (see spec.spec_record); part of the plan cache key, so bump it
#: when the layout changes and cached records from before are never read
RECORD_FORMAT = 6
#: PATH used when the spec's environment has none, as execvp(3) does
DEFAULT_PATH = b"/usr/bin:/bin"
#: sizeof(struct isorun_failure): int err, int index, char step[32], char syscall[32]
FAILURE_SIZE = 72

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
SIGKILL = 9
ENOENT, EACCES, ENOTDIR, ELOOP = 2, 13, 20, 40
#: the sandbox's user on the host when the caller is root (compile/planner.py NOBODY)
NOBODY = 65534
MS_RDONLY = 0x1
#: the longest path the kernel resolves (PATH_MAX), with its NUL
PATH_MAX = 4096
SIGTTOU = 22
#: open_tree(2) shares its number across architectures (the 5.2 unified syscall table)
SYS_OPEN_TREE = 428
OPEN_TREE_CLONE, AT_RECURSIVE, AT_EMPTY_PATH = 1, 0x8000, 0x1000


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


def _internal(message: str) -> Exception:
    from isorun.errors import InternalError

    return InternalError(message)


def setup_error(
    record: Record, step: str, syscall: str, errno: int, detail: str = ""
) -> SandboxSetupError:
    """A failed parent-side step, tied to its plan step through ``step_index``."""
    from isorun.errors import SandboxSetupError

    return SandboxSetupError(
        step, syscall, errno, detail=detail, step_index=record["step_index"].get(step, -1)
    )


def _check(record: Record, lib: Any) -> None:
    """Refuse a spec the shim would misread; the planner never makes one (a bug if so)."""
    argv = record["argv"]
    if not argv or not argv[0]:
        raise _internal("spec.argv is empty")
    root = record["root"]
    if root not in (b"", b"tmpfs") and not root.startswith(b"/"):
        raise _internal(f"spec.root must be b'', b'tmpfs' or absolute, got {root!r}")
    needs_src = (lib.ISORUN_MOUNT_BIND, lib.ISORUN_MOUNT_DEV_BIND, lib.ISORUN_MOUNT_SYMLINK,
                 lib.ISORUN_MOUNT_OVERLAY)
    for mount in record["mounts"]:
        kind, dst, src, tree_fd = (mount[MOUNT.kind], mount[MOUNT.dst], mount[MOUNT.src],
                                   mount[MOUNT.tree_fd])  # fmt: skip
        if not dst.startswith(b"/"):
            raise _internal(f"mount dst must be absolute, got {dst!r}")
        if kind == lib.ISORUN_MOUNT_TREE and tree_fd < 0:
            raise _internal(f"mount {dst!r} (TREE) needs a tree_fd")
        if kind in needs_src and not src:
            from isorun.sandbox.spec import MountKind

            raise _internal(f"mount {dst!r} ({MountKind(kind).name}) needs a src")
    if len(record["seccomp_bpf"]) % 8 or len(record["notify_bpf"]) % 8:
        raise _internal("seccomp_bpf is not a whole number of 8-byte instructions")
    for cap in record["caps_keep"]:
        if not 0 <= cap < 64:
            raise _internal(f"capability number out of range: {cap}")
    for path, port, _access, _optional in record["landlock_rules"]:
        if not (path.startswith(b"/") if path else 0 < port < 65536):
            raise _internal(f"landlock rule needs an absolute path or a port: {path!r}")


def _struct(
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
    ffi, lib = shim.ffi, shim.lib

    def new(ctype: str, init: object) -> Any:
        obj = ffi.new(ctype, init)
        alive.append(obj)
        return obj

    def cstr(value: bytes, what: str) -> Any:
        # A C string stops at the first NUL: a path with one would silently name another file.
        if b"\0" in value:
            raise _internal(f"{what} contains a NUL byte: {value!r}")
        return new("char[]", value)

    def cstr_array(values: tuple[bytes, ...], what: str) -> Any:
        return new("char *[]", [*(cstr(v, what) for v in values), ffi.NULL])

    env = record["env"]
    c = new("struct isorun_spec *", None)
    c.argv = cstr_array(record["argv"], "argv")
    c.env = cstr_array(env, "env")
    c.path = cstr(next((e[5:] for e in env if e.startswith(b"PATH=")), DEFAULT_PATH), "PATH")
    for name, how in FIELDS:
        if how == "scalar":  # a member of the same name, the value as is
            setattr(c, name, int(record[name]))
    c.root = cstr(record["root"], "root")
    mounts = record["mounts"]
    slots = new("struct isorun_mount[]", max(len(mounts), 1))
    for slot, mount in zip(slots, mounts, strict=False):
        kind, src, data, mode = (mount[MOUNT.kind], mount[MOUNT.src], mount[MOUNT.data],
                                 mount[MOUNT.mode])  # fmt: skip
        slot.kind, slot.mode, slot.flags = kind, mode, mount[MOUNT.flags]
        slot.optional, slot.step = int(mount[MOUNT.optional]), mount[MOUNT.step]
        slot.dst = cstr(mount[MOUNT.dst], "mount dst")
        # FILE content goes with its length and may hold NULs; every other src is a path.
        slot.src = new("char[]", src) if kind == lib.ISORUN_MOUNT_FILE else cstr(src, "src")
        slot.src_len = len(src)
        if kind == lib.ISORUN_MOUNT_TMPFS and b"mode=" not in data:
            # The root of a tmpfs takes its mode from the mount options, not from a mkdir.
            data = (data + b"," if data else b"") + b"mode=%o" % mode
        slot.data = cstr(data, "mount data") if data else ffi.NULL
        slot.tree_fd = mount[MOUNT.tree_fd]
    c.mounts, c.n_mounts = slots, len(mounts)
    c.cwd = cstr(record["cwd"], "cwd")
    c.hostname = cstr(record["hostname"], "hostname")
    rlimits = record["rlimits"]
    rslots = new("struct isorun_rlimit[]", max(len(rlimits), 1))
    for slot, (resource, soft, hard, step) in zip(rslots, rlimits, strict=False):
        slot.resource, slot.step, slot.soft, slot.hard = resource, step, soft, hard
    c.rlimits, c.n_rlimits = rslots, len(rlimits)
    c.new_session = (0 if not record["new_session"] else
                     lib.ISORUN_SESSION_TERMINAL_OK if record["terminal_job"] else 1)
    c.keep_fds = new("int[]", list(keep_fds) or [-1])
    c.n_keep_fds = len(keep_fds)
    c.caps_keep = sum(1 << cap for cap in set(record["caps_keep"]))
    bpf = record["seccomp_bpf"]
    c.seccomp_bpf = new("unsigned char[]", bpf or b"\0")
    c.seccomp_len = len(bpf)
    c.stdio = list(stdio)
    c.sync_fd, c.sync_parent_fd = sync
    c.err_fd, c.err_parent_fd = err
    notify = record["notify_bpf"]
    if notify and notify_fd < 0:
        raise _internal("spec.notify_bpf needs a notify socket (notify_fd)")
    c.notify_bpf = new("unsigned char[]", notify or b"\0")
    c.notify_len = len(notify)
    c.notify_fd = notify_fd
    # the refusal report's: the plain program where an outer listener leaves no place
    # for notify_bpf's (shim/child/notify.c, EBUSY); learn mode has none and fails instead
    fallback = record.get("fallback_bpf", b"")
    c.fallback_bpf = new("unsigned char[]", fallback or b"\0")
    c.fallback_len = len(fallback)
    rules = record["landlock_rules"]
    lslots = new("struct isorun_landlock_rule[]", max(len(rules), 1))
    for slot, (path, port, access, optional) in zip(lslots, rules, strict=False):
        slot.path = cstr(path, "landlock path")
        slot.port, slot.access, slot.optional = port, access, int(optional)
    c.landlock_rules, c.n_landlock_rules = lslots, len(rules)
    return c


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
    _check(record, shim.lib)
    alive: list[Any] = []
    c_spec = _struct(shim, record, stdio, sync, err, keep_fds, notify_fd, alive)
    pid = int(shim.lib.isorun_spawn(c_spec))
    del alive  # the child has its own copy now
    if pid < 0:
        raise setup_error(record, "clone", "clone", -pid, f"flags {record['clone_flags']:#x}")
    return pid


def resolve_in_parent(shim: Any, path: bytes) -> tuple[int, bytes]:
    """(an O_PATH descriptor or -errno, the path with no link in it) for a host path,
    following only the links docs/security.md trusts (the shim's isorun_resolve). On
    -ELOOP the path is the refused link's own."""
    if b"\0" in path:
        raise _internal(f"a mount path contains a NUL byte: {path!r}")
    out = shim.ffi.new("char[]", PATH_MAX)
    fd = int(shim.lib.isorun_resolve(path, 1, out, PATH_MAX))
    return fd, shim.ffi.string(out)


def mount_name(kind: int, flags: int) -> str:
    """The profile's word for a mount of the record (ro-bind, rw-bind, ...)."""
    from isorun.sandbox.spec import MountKind

    if kind in (MountKind.BIND, MountKind.TREE):
        return "ro-bind" if flags & MS_RDONLY else "rw-bind"
    return MountKind(kind).name.lower().replace("_", "-")


def link_refused(record: Record, mount: tuple[Any, ...], link: bytes) -> SandboxSetupError:
    """The refusal of a mount whose path goes through ``link``, a symbolic link that the
    sandbox's side could have written: what, which link, where it points, how to fix."""
    try:
        target = f" (to {os.fsdecode(os.readlink(link))})"
    except OSError:
        target = ""  # gone again: the message still names it
    kind, dst, src, flags = mount[:4]
    # The rootfs directory (filesystem.root) travels as a mount of src at "/".
    step = "root" if dst == b"/" and src == record["root"] else "mount"
    what = ("root" if step == "root" else
            f"{mount_name(kind, flags)} {os.fsdecode(dst)}"
            + (f" from {os.fsdecode(src)}" if src != dst else ""))  # fmt: skip
    detail = (f"{what}: {os.fsdecode(link)} is a symbolic link{target}, which isorun does"
              " not follow (docs/security.md)")  # fmt: skip
    err = setup_error(record, step, "openat", ELOOP, detail)
    err.step_index = mount[MOUNT.step]
    err.hint = "remove the link, or bind its target explicitly"
    return err


def resolve_mounts_in_parent(
    record: Record, opened: list[int], clone: Callable[[bytes], bool] | None = None
) -> Record:
    """``record`` with every bind source resolved on the trusted side (issue #12).

    Each BIND and DEV_BIND source is walked without following a link, except the ones
    docs/security.md trusts (:func:`resolve_in_parent`); any other link refuses the launch
    with the mount's profile line and where the link points (:func:`link_refused`). The
    source then becomes the path with no link left, which the child walks again with no
    link allowed at all and mounts from the descriptor it checked (mount.c), so a link
    swapped in after this check is refused there. A missing optional source is dropped.
    With no new root (``root`` b""), destinations are host paths: resolved likewise.

    As root, each bind becomes a tree cloned from the checked descriptor (open_tree(2),
    AT_EMPTY_PATH): a root caller's sandbox runs as the host's overflow uid (see
    planner._identity), which cannot walk the host's 0700 directories (/root/.pyenv).
    Nothing is granted that the profile did not name, and the child still applies the
    flags. ``clone(src)`` picks which binds (the pytest plugin's: only unreachable ones).
    Tree descriptors go into ``opened`` (CLOEXEC; the child's CloseFds closes them).

    A rootfs directory (``root`` a path) is resolved the same way; as root it is cloned
    and the record then asks for an empty tmpfs root with the tree attached over the whole
    of it, first of all mounts, which is the same view (the tmpfs underneath is never
    seen). The one difference is the nodev every TREE mount gets, which only takes away
    device nodes inside the rootfs that the sandbox's own /dev mount replaces anyway.
    """
    shim = load_shim()
    as_root = os.geteuid() == 0 and bool(record["clone_flags"] & CLONE_NEWUSER)
    open_tree = _open_tree() if as_root else None
    mounts = []
    for mount in record["mounts"]:
        resolved = _resolve_mount_in_parent(shim, record, mount, open_tree, clone, opened)
        if resolved is not None:
            mounts.append(resolved)
    if record["root"] in (b"", b"tmpfs"):
        return {**record, "mounts": tuple(mounts)}
    return _resolve_root_in_parent(shim, record, mounts, open_tree, clone, opened)


def _resolve_mount_in_parent(
    shim: Any,
    record: Record,
    mount: tuple[Any, ...],
    open_tree: Callable[[int], int] | None,
    clone: Callable[[bytes], bool] | None,
    opened: list[int],
) -> tuple[Any, ...] | None:
    """One mount of :func:`resolve_mounts_in_parent`: its destination resolved when there
    is no new root, a bind's source resolved (or cloned as a tree); None when its source
    is missing and the mount is optional."""
    bind, dev_bind, tree = (shim.lib.ISORUN_MOUNT_BIND, shim.lib.ISORUN_MOUNT_DEV_BIND,
                            shim.lib.ISORUN_MOUNT_TREE)  # fmt: skip
    kind, dst, src = mount[:3]
    if record["root"] == b"":
        fd, path = resolve_in_parent(shim, dst)
        if fd == -ELOOP:
            raise link_refused(record, mount, path)
        if fd >= 0:
            os.close(fd)
            mount = _with(mount, dst=path)
    if kind not in (bind, dev_bind):
        return mount
    fd, path = resolve_in_parent(shim, src)
    if fd == -ELOOP:
        raise link_refused(record, mount, path)
    if fd < 0:
        # ENOTDIR: a component is a file, so nothing is there (a .git guard of a file)
        if fd in (-ENOENT, -ENOTDIR) and mount[MOUNT.optional]:
            return None
        return mount  # the child fails on it again and reports it
    try:
        if open_tree is not None and kind == bind and (clone is None or clone(src)):
            cloned = open_tree(fd)
            if cloned >= 0:
                opened.append(cloned)
                return _with(mount, kind=tree, tree_fd=cloned)
        return _with(mount, src=path)
    finally:
        os.close(fd)


def _resolve_root_in_parent(
    shim: Any,
    record: Record,
    mounts: list[tuple[Any, ...]],
    open_tree: Callable[[int], int] | None,
    clone: Callable[[bytes], bool] | None,
    opened: list[int],
) -> Record:
    """``record`` with ``mounts`` and its rootfs directory resolved; as root, cloned as a
    tree over an empty tmpfs root (see :func:`resolve_mounts_in_parent`)."""
    tree = shim.lib.ISORUN_MOUNT_TREE
    root = record["root"]
    step = record["step_index"].get("root", -1)
    fd, path = resolve_in_parent(shim, root)
    if fd == -ELOOP:
        raise link_refused(record, (tree, b"/", root, 0, b"", 0o755, False, step, -1), path)
    if fd < 0:
        return {**record, "mounts": tuple(mounts)}  # the child reports what fails
    try:
        if open_tree is not None and (clone is None or clone(root)):
            cloned = open_tree(fd)
            if cloned >= 0:
                opened.append(cloned)
                mounts.insert(0, (tree, b"/", root, 0, b"", 0o755, False, step, cloned))
                return {**record, "root": b"tmpfs", "mounts": tuple(mounts)}
        return {**record, "root": path, "mounts": tuple(mounts)}
    finally:
        os.close(fd)


def _with(mount: tuple[Any, ...], **values: Any) -> tuple[Any, ...]:
    """``mount`` with the fields named in ``values`` replaced (record.MOUNT positions)."""
    out = list(mount)
    for name, value in values.items():
        out[getattr(MOUNT, name)] = value
    return tuple(out)


def _open_tree() -> Callable[[int], int]:
    """open_tree(fd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE): a detached copy
    of the mount tree at a checked descriptor, or -1. Root only: os has no open_tree."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    flags = AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC

    def open_tree(fd: int) -> int:
        return int(libc.syscall(SYS_OPEN_TREE, fd, b"", flags))

    return open_tree


def _proc_write(pid: int, name: str, data: bytes, record: Record) -> None:
    try:
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            # One write: the kernel accepts a map only in a single write(2) call.
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as err:
        raise setup_error(
            record, name, f"write({name})", err.errno or 0, data.decode(errors="replace").strip()
        ) from err


def write_id_maps_in_parent(pid: int, record: Record) -> None:
    """setgroups, then gid_map, then uid_map for the child's user namespace."""
    if not record["clone_flags"] & CLONE_NEWUSER:
        if record["uid_map"] or record["gid_map"]:
            raise _internal("uid_map/gid_map given without a new user namespace")
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


def failure_error(record: Record, failure: Failure) -> SandboxSetupError:
    """The domain error for a child's failure, with its plan step index when known."""
    from isorun.errors import SandboxSetupError
    from isorun.sandbox.spec import MountKind

    step, syscall, errno, index = failure
    if index < 0:
        index = record["step_index"].get(step, -1)
    if step == "root" and errno == ELOOP and record["root"] not in (b"", b"tmpfs"):
        fd, path = resolve_in_parent(load_shim(), record["root"])
        if fd >= 0:
            os.close(fd)
        else:
            root = (MountKind.BIND, b"/", record["root"], 0, b"", 0o755, False, index, -1)
            return link_refused(record, root, path)
    detail = ""
    if step == "mount" and index >= 0:
        for mount in record["mounts"]:
            kind, dst, src, mount_step = (mount[MOUNT.kind], mount[MOUNT.dst],
                                          mount[MOUNT.src], mount[MOUNT.step])  # fmt: skip
            if mount_step == index and errno == ELOOP:
                return _link_error(record, mount)
            if mount_step == index:
                detail = f"{MountKind(kind).name.lower()} {os.fsdecode(dst)}"
                if src and kind != MountKind.FILE:
                    detail += f" from {os.fsdecode(src)}"
                if errno == EACCES:
                    hint = closed_to_sandbox_hint(os.fsdecode(dst))
                    if hint:
                        return SandboxSetupError(step, syscall, errno, detail=detail,
                                                 step_index=index, hint=hint)  # fmt: skip
                break
    return SandboxSetupError(step, syscall, errno, detail=detail, step_index=index)


def closed_to_sandbox_hint(dst: str) -> str:
    """As root, the hint for a mount point the sandbox cannot reach: its user is uid
    65534 (host root is never mapped in), and a root-owned directory on the way that
    others may not search (tox makes ``.tox`` 0700) stops the mkdir or walk; "" when
    no such directory is found."""
    if os.geteuid() != 0:
        return ""
    path = os.path.dirname(dst.rstrip("/")) or "/"
    closed = ""
    while True:
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and st.st_uid != NOBODY and not st.st_mode & 0o001:
            # The innermost: a closed directory above the binds the launcher resolves as
            # root; one inside a bound tree (.tox under the project) the sandbox walks.
            closed = path
            break
        if path == "/":
            break
        path = os.path.dirname(path)
    if not closed:
        return ""
    return (f"{closed} is mode {os.stat(closed).st_mode & 0o777:04o}: the sandbox runs as "
            "uid 65534 when you are root (host root is never mapped in) and cannot walk "
            f"it to mount {dst}; allow it with `chmod o+x {closed}` (tox creates .tox "
            "0700), or run isorun as the user who owns the project")  # fmt: skip


def _link_error(record: Record, mount: tuple[Any, ...]) -> SandboxSetupError:
    """The child met a link in a mount's path (mount.c refuses every one): say which.
    Either the source has one the parent refuses too (planted after its check), or the
    link is in the destination, inside a directory an earlier mount of this sandbox
    brought in from the host."""
    from isorun.sandbox.spec import MountKind

    kind, dst, src, flags = mount[:4]
    if kind in (MountKind.BIND, MountKind.DEV_BIND, MountKind.TREE):
        fd, path = resolve_in_parent(load_shim(), src)
        if fd >= 0:
            os.close(fd)
        elif fd == -ELOOP:
            return link_refused(record, mount, path)
    err = setup_error(record, "mount", "openat", ELOOP,
                      f"{mount_name(kind, flags)} {os.fsdecode(dst)}: a symbolic link in"
                      f" {os.fsdecode(dst)} inside the sandbox, which isorun does not follow"
                      " (docs/security.md)")  # fmt: skip
    err.step_index = mount[MOUNT.step]
    err.hint = ("remove the link (it lies in a directory an earlier mount brought in), or"
                " mount at the path it points to")
    return err


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
        for fd in {sync_r, err_w, *child_ends}:
            if fd in opened:
                os.close(fd)
                opened.remove(fd)
        write_id_maps_in_parent(pid, record)
        if attach is not None:
            attach(pid)
        os.write(sync_w, b"\0")
        os.close(sync_w)
        opened.remove(sync_w)
        failure = _verdict_in_parent(record, pid, pidfd, err_r, on_release)
        os.close(err_r)
        opened.remove(err_r)
        if failure is not None and failure[0] != "exec":
            raise failure_error(record, failure)
        started = pid, pidfd, failure
        pid = -1
        return started
    finally:
        if pid > 0:
            abandon_in_parent(pid, pidfd, record)


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
                raise failure_error(record, failure) from err
            raise
    return parse_failure(read_all(err_r))
