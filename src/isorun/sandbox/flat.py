"""The launch record as bytes for ``isorun-launch`` (src/isorun/shim/launcher/launch.c).

:func:`encode` turns a record (:func:`isorun.sandbox.spec.spec_record`, without argv, which
comes from the helper's command line) into the flat form the helper parses into
``struct isorun_spec``. Imported on the warm launch path, so it imports only constants
(shim/abi.py, sandbox/record.py); errors are imported when something is wrong.

Format, version :data:`VERSION`. Integers are little-endian; ``i64`` is signed, ``u32``
unsigned. ``bytes`` is a u32 length then that many bytes; ``str`` is ``bytes`` that must
hold no NUL (the C side refuses one: a path cut at a NUL names another file).

==========  ===================================================================
magic       4 bytes ``b"IRLR"``
version     u32
clone_flags i64, CLONE_NEW* (the helper unshares the deferred ones as the shim does)
uid, gid    i64, i64: the ids inside the user namespace
flags       i64: 1 setgroups_deny, 2 loopback_up, 4 new_session, 8 die_with_parent,
            16 no_new_privs, 32 init, 64 terminal_job
caps_keep   i64: bit N keeps capability N
uid_map     bytes, written by the helper to /proc/PID/uid_map
gid_map     bytes, likewise gid_map
root        str: ``""``, ``"tmpfs"`` or an absolute directory
cwd         str
hostname    str
path        str: the PATH the command is searched in (the env's PATH, else the default)
env         u32 count, then count x str ``KEY=VALUE``
keep_fds    u32 count, then count x i64
mounts      u32 count, then per mount: kind i64, flags i64, mode i64, optional i64,
            step i64, dst str, src bytes (FILE content may hold NULs; a str otherwise),
            data str (the tmpfs ``mode=`` already added, as shim_ffi.build_struct does)
rlimits     u32 count, then per rlimit: resource i64, soft i64, hard i64, step i64
seccomp_bpf bytes: struct sock_filter[], 8 bytes each
landlock    abi i64 (0: none), handled fs, net and scoped masks i64 x 3, then u32
            count, per rule: port i64, access i64, optional i64, path str (``""`` for
            a port rule)
report      the refusal report (isorun.compile.refusals, version 5): report_bpf bytes
            (seccomp_bpf with ERRNO answers sent to the launcher; ``b""``: none), u32
            count, per refusal: syscall number i64 (< 4096), text str; then the text
            for other numbers str, and the notes said when the command fails str
step_index  u32 count, then per step: name str, index i64 (the plan step for messages)
==========  ===================================================================

Nothing may follow. Parent-side work the helper does not do (a cgroup, learn mode's
notify filter, open_tree descriptors of a root parent, which the helper makes itself) is
refused here rather than dropped.
"""

from __future__ import annotations

from isorun.sandbox.record import FLAG_BITS, LANDLOCK_RULE, MOUNT, MOUNT_KINDS, RLIMIT, SECTIONS
from isorun.shim import abi as shim_abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from isorun.sandbox.parent import Record

MAGIC = b"IRLR"
#: bump with any change of the layout above (in shim/abi.py); launch_record.c refuses any other
VERSION = shim_abi.RECORD_VERSION
#: PATH used when the spec's environment has none, as execvp(3) does (parent.DEFAULT_PATH)
DEFAULT_PATH = b"/usr/bin:/bin"
#: FILE content may hold NULs, TREE is the helper's own
MOUNT_FILE, MOUNT_TREE = MOUNT_KINDS["FILE"], MOUNT_KINDS["TREE"]


def _refuse(message: str) -> Exception:
    from isorun.errors import InternalError

    return InternalError(f"launch record: {message}")


def _i64(value: int) -> bytes:
    return int(value).to_bytes(8, "little", signed=True)


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def _bytes(value: bytes) -> bytes:
    return len(value).to_bytes(4, "little") + value


def _str(value: bytes, what: str) -> bytes:
    if b"\0" in value:
        raise _refuse(f"{what} contains a NUL byte: {value!r}")
    return len(value).to_bytes(4, "little") + value


def encode(record: Record) -> bytes:
    """``record`` (argv, if present, is ignored) in the format above: the magic, the
    version, then each section of :data:`isorun.sandbox.record.SECTIONS` in its order."""
    if record.get("cgroup") or record.get("notify_bpf"):
        raise _refuse("a cgroup or learn mode is not launched by isorun-launch")
    out = [MAGIC, _u32(VERSION)]
    out += (_ENCODERS[wire](record, name) for name, wire in SECTIONS)
    return b"".join(out)


def _flags(record: Record, _name: str) -> bytes:
    flags = 0
    for name, bit in FLAG_BITS:
        if record[name]:
            flags |= bit
    return _i64(flags)


def _caps(record: Record, name: str) -> bytes:
    caps = 0
    for cap in set(record[name]):
        if not 0 <= cap < 64:
            raise _refuse(f"capability number out of range: {cap}")
        caps |= 1 << cap
    return _i64(caps - (1 << 64) if caps >> 63 else caps)


def _path(record: Record, _name: str) -> bytes:
    env = record["env"]
    return _str(next((e[5:] for e in env if e.startswith(b"PATH=")), DEFAULT_PATH), "PATH")


def _strs(record: Record, name: str) -> bytes:
    values = record[name]
    return _u32(len(values)) + b"".join(_str(v, name) for v in values)


def _fds(record: Record, name: str) -> bytes:
    fds = record[name]
    return _u32(len(fds)) + b"".join(_i64(fd) for fd in fds)


def _mounts(record: Record, name: str) -> bytes:
    mounts = record[name]
    out = [_u32(len(mounts))]
    for mount in mounts:
        kind, dst, src, mode = (mount[MOUNT.kind], mount[MOUNT.dst], mount[MOUNT.src],
                                mount[MOUNT.mode])  # fmt: skip
        data = mount[MOUNT.data]
        if kind == MOUNT_TREE or mount[MOUNT.tree_fd] != -1:
            raise _refuse(f"mount {dst!r} carries a tree descriptor; the helper makes its own")
        if kind == MOUNT_KINDS["TMPFS"] and b"mode=" not in data:
            # The root of a tmpfs takes its mode from the mount options, not from a mkdir.
            data = (data + b"," if data else b"") + b"mode=%o" % mode
        out += (_i64(kind), _i64(mount[MOUNT.flags]), _i64(mode),
                _i64(int(mount[MOUNT.optional])), _i64(mount[MOUNT.step]),
                _str(dst, "mount dst"),
                _bytes(src) if kind == MOUNT_FILE else _str(src, "mount src"),
                _str(data, "mount data"))  # fmt: skip
    return b"".join(out)


def _rlimits(record: Record, name: str) -> bytes:
    rlimits = record[name]
    out = [_u32(len(rlimits))]
    for rlimit in rlimits:
        out += (_i64(rlimit[RLIMIT.resource]), _i64(rlimit[RLIMIT.soft]),
                _i64(rlimit[RLIMIT.hard]), _i64(rlimit[RLIMIT.step]))  # fmt: skip
    return b"".join(out)


def _bpf(record: Record, name: str) -> bytes:
    bpf = record[name]
    if len(bpf) % 8:
        raise _refuse(f"{name} is not a whole number of 8-byte instructions")
    return _bytes(bpf)


def _report(record: Record, _name: str) -> bytes:
    report = record.get("report_bpf", b"")
    if len(report) % 8 or (report and not record["seccomp_bpf"]):
        raise _refuse("report_bpf is not a BPF program beside seccomp_bpf")
    refusals = record.get("refusals", {})
    out = [_bytes(report), _u32(len(refusals))]
    for nr, text in sorted(refusals.items()):
        if not 0 <= nr < 4096:
            raise _refuse(f"refusal syscall number out of range: {nr}")
        out += (_i64(nr), _str(text.encode(), "refusal"))
    out += (_str(record.get("refusal_other", "").encode(), "refusal"),
            _str(record.get("notes", "").encode(), "notes"))  # fmt: skip
    return b"".join(out)


def _steps(record: Record, name: str) -> bytes:
    steps = record[name]
    out = [_u32(len(steps))]
    for step, index in steps.items():
        out += (_str(step.encode(), "step name"), _i64(index))
    return b"".join(out)


def landlock_section(fields: Record, _name: str = "landlock") -> bytes:
    """The landlock part of the format above, from a record's ``landlock_*`` fields; also
    what the wrapper backends' exec stage reads from its ``--landlock-fd``."""
    rules = fields["landlock_rules"]
    out = [_i64(fields["landlock_abi"]), _i64(fields["landlock_fs"]),
           _i64(fields["landlock_net"]), _i64(fields["landlock_scoped"]), _u32(len(rules))]
    for rule in rules:
        out += (_i64(rule[LANDLOCK_RULE.port]), _i64(rule[LANDLOCK_RULE.access]),
                _i64(int(rule[LANDLOCK_RULE.optional])),
                _str(rule[LANDLOCK_RULE.path], "landlock path"))  # fmt: skip
    return b"".join(out)


#: one encoder per wire type of record.SECTIONS
_ENCODERS: dict[str, Callable[[Record, str], bytes]] = {
    "i64": lambda record, name: _i64(record[name]),
    "flags": _flags, "caps": _caps,
    "bytes": lambda record, name: _bytes(record[name]),
    "str": lambda record, name: _str(record[name], name),
    "path": _path, "strs": _strs, "fds": _fds, "mounts": _mounts, "rlimits": _rlimits,
    "bpf": _bpf, "landlock": landlock_section, "report": _report, "steps": _steps,
}  # fmt: skip
