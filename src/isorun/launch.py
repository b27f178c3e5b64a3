"""The warm launch: a cached flat record straight to the shim, in about the time of a clone.

On this kind of machine ``import dataclasses`` alone costs more than bubblewrap takes to
start a sandbox, and the regular path (:func:`isorun.api.Popen` -> ``native.build_spec``
-> ``process.spawn``) imports dataclasses, typing, enum, subprocess and threading. So a
cache entry may carry a *launch record*: the :class:`~isorun.sandbox.spec.ShimSpec` that
``native.build_spec`` produced at compile time, as plain tuples, and this module fills the
shim's ``struct isorun_spec`` from it and does the parent's part of
:func:`isorun.sandbox.process.spawn` for the one case the CLI needs (stdio inherited, no
cgroup, no wall-clock timer, no extra descriptors).

That mirrors code owned elsewhere, so it is guarded, fail closed, when the record is made
(:func:`make_record`, on a cache miss, where imports are free):

- the struct the record fills is compared field by field with the one ``_shim`` builds
  from the real ShimSpec; any difference (a new field, a changed conversion) means no
  record, and the launch takes the regular path;
- the record is refused when ShimSpec, the C struct or the shim ABI has a field this
  module does not know, and when the source of the parent-side functions it mirrors
  differs from the reviewed version pinned in :data:`PINNED_PARENT_SOURCE`
  (``tests/unit/test_cache.py`` fails then, so the change gets reviewed here);
- at launch, the caller's environment variables the profile keeps must equal those the
  record was built with, and argv must be representable as C strings.

Imports at the top: ``os`` and builtin modules only.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from isorun.compile.plan import Plan

#: the shim ABI the record and :func:`_fill` were written against
ABI = 3
RECORD_FORMAT = 1
#: ShimSpec fields the record carries (argv comes from the command line)
SPEC_FIELDS = (
    "env", "clone_flags", "uid_map", "gid_map", "setgroups_deny", "uid", "gid", "root",
    "mounts", "cwd", "hostname", "loopback_up", "rlimits", "new_session", "die_with_parent",
    "keep_fds", "caps_keep", "no_new_privs", "seccomp_bpf", "notify_bpf", "init", "cgroup",
    "step_index",
)  # fmt: skip
MOUNT_FIELDS = ("kind", "dst", "src", "flags", "data", "mode", "optional", "step", "tree_fd")
RLIMIT_FIELDS = ("resource", "soft", "hard", "step")
#: fields of struct isorun_spec that _fill sets
C_FIELDS = frozenset((
    "argv", "env", "path", "clone_flags", "uid", "gid", "setgroups_deny", "root", "mounts",
    "n_mounts", "cwd", "hostname", "loopback_up", "rlimits", "n_rlimits", "new_session",
    "die_with_parent", "keep_fds", "n_keep_fds", "caps_keep", "no_new_privs", "seccomp_bpf",
    "seccomp_len", "init", "stdio", "sync_fd", "sync_parent_fd", "err_fd", "err_parent_fd",
    "notify_bpf", "notify_len", "notify_fd",
))  # fmt: skip
#: sha256 of the reviewed source of the parent-side code this module mirrors
PINNED_PARENT_SOURCE = "8a5525d1c50584e9c5aaa7028bec17162537ac4eb97f398bad0f84e967e2517d"

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MOUNT_BIND, MOUNT_TREE = 1, 10
SYS_OPEN_TREE = 428  # the same number on every architecture (the 5.2 unified table)
OPEN_TREE_CLONE, AT_RECURSIVE, AT_FDCWD = 1, 0x8000, -100
SIGKILL = 9
ENOENT = 2
DEFAULT_PATH = b"/usr/bin:/bin"
#: sizeof(struct isorun_failure)
FAILURE_SIZE = 72
#: signals the launcher passes on to the sandbox's pid 1 instead of dying of them
FORWARDED_SIGNALS = (2, 15, 1, 3, 10, 12, 28)  # INT TERM HUP QUIT USR1 USR2 WINCH


def _pidfd_send_signal(pidfd: int, sig: int) -> None:
    # _signal is the C half of signal.py, which imports enum (milliseconds) to wrap it.
    import _signal  # type: ignore[import-not-found]

    _signal.pidfd_send_signal(pidfd, sig)


def _set_handler(sig: int, handler: Callable[[int, object], None]) -> None:
    import _signal

    _signal.signal(sig, handler)


def _mirrored_sources() -> list[Callable[..., Any]]:
    from isorun.sandbox import process, tree

    return [
        tree.clone_trees_in_parent,
        tree._open_tree,
        process.spawn,
        process.write_id_maps_in_parent,
        process._proc_write,
        process._exit_code,
        process._abandon,
    ]


def parent_source_digest() -> str:
    """sha256 of the functions of process.py that :func:`spawn_in_parent` mirrors."""
    import hashlib
    import inspect

    text = "\n".join(inspect.getsource(f) for f in _mirrored_sources())
    return hashlib.sha256(text.encode()).hexdigest()


def env_patterns(plan: Plan) -> tuple[str, ...] | None:
    """The caller's environment variables the plan reads: exact names, or ``PREFIX*``.

    None means the whole environment (no Environment step clearing it, or a pattern this
    module cannot match without fnmatch). A superset of what native.build_environment
    reads, so equal projections mean an equal environment for the command.
    """
    from isorun.compile.plan import Environment

    steps = plan.find(Environment)
    if not steps:
        # No Environment step: build_spec leaves ShimSpec.env at its default and reads
        # nothing of the caller's environment.
        return ()
    step = steps[0]
    if not step.clear:
        return None
    patterns: list[str] = []
    for pattern in step.keep:
        if pattern.endswith("*") and any(c in pattern[:-1] for c in "*?["):
            return None
        patterns.append(pattern)
    return tuple(patterns)


def env_projection(
    patterns: tuple[str, ...] | None, environ: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs of ``environ`` that ``patterns`` select, sorted."""
    env = os.environ if environ is None else environ
    if patterns is None:
        return tuple(sorted(env.items()))
    exact = {p for p in patterns if not p.endswith("*")}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    return tuple(
        sorted(
            (k, v) for k, v in env.items() if k in exact or (prefixes and k.startswith(prefixes))
        )
    )


def make_record(
    plan: Plan, bpf: bytes, log: Callable[[str], None] | None = None
) -> dict[str, object] | None:
    """The launch record of ``plan``, or None when the fast launch cannot run it exactly."""
    from isorun.compile.plan import Cgroup, WallTime

    if plan.find(Cgroup) or plan.find(WallTime):
        return None  # parent-side timers and cgroups: process.spawn does those
    if plan.backend not in ("auto", "native"):
        return None  # another backend runs it (see api.Popen)
    import dataclasses

    from isorun.sandbox import _shim, native
    from isorun.sandbox.spec import Rlimit as ShimRlimit
    from isorun.sandbox.spec import ShimMount, ShimSpec

    def refuse(why: str) -> dict[str, object] | None:
        if log is not None:
            log(f"isorun: cache: no fast launch record: {why}")
        return None

    names = tuple(f.name for f in dataclasses.fields(ShimSpec))
    if set(names) != {"argv", *SPEC_FIELDS}:
        return refuse("ShimSpec has fields this launcher does not know")
    if (
        tuple(f.name for f in dataclasses.fields(ShimMount)) != MOUNT_FIELDS
        or tuple(f.name for f in dataclasses.fields(ShimRlimit)) != RLIMIT_FIELDS
    ):
        return refuse("ShimMount or Rlimit changed")
    from isorun.sandbox.spec import MountKind

    if int(MountKind.BIND) != MOUNT_BIND or int(MountKind.TREE) != MOUNT_TREE:
        return refuse("MountKind values changed")
    if _shim.ABI != ABI or {n for n, _ in _shim._ffi.typeof("struct isorun_spec").fields} != (
        C_FIELDS
    ):
        return refuse("the shim ABI changed")
    if parent_source_digest() != PINNED_PARENT_SOURCE:
        return refuse("process.spawn changed since this launcher was reviewed")
    patterns = env_patterns(plan)
    placeholder = ["/isorun-record-check", "arg"]
    spec = native.build_spec(plan, placeholder, os.environ, bpf)
    if spec.cgroup or spec.notify_bpf:
        return None  # a cgroup or learn mode's listener: process.spawn handles those
    flat: dict[str, object] = {}
    for name in SPEC_FIELDS:
        value = getattr(spec, name)
        if name == "mounts":
            value = tuple(
                tuple(int(m.kind) if f == "kind" else getattr(m, f) for f in MOUNT_FIELDS)
                for m in value
            )
        elif name == "rlimits":
            value = tuple(tuple(getattr(r, f) for f in RLIMIT_FIELDS) for r in value)
        elif name == "step_index":
            value = dict(value)
        flat[name] = value
    record: dict[str, object] = {
        "format": RECORD_FORMAT,
        "spec": flat,
        "env_patterns": patterns,
        "env": env_projection(patterns),
    }
    argv_b = tuple(os.fsencode(a) for a in placeholder)
    fds = _shim.ChildFds((-1, -1, -1), 10, 11, 12, 13, spec.keep_fds)
    arena = _shim._Arena()  # owns the strings theirs points to: keep it alive
    theirs = _shim._build(spec, fds, arena)
    ours, _alive = _fill(_shim._ffi, flat, argv_b, fds.stdio, 10, 11, 12, 13, spec.keep_fds)
    difference = _struct_difference(_shim._ffi, "struct isorun_spec", theirs, ours)
    del arena, _alive
    if difference:
        return refuse(f"record fills {difference} differently from _shim")
    return record


#: pointer fields and the field holding their element count (or byte length)
_LENGTHS = {
    "mounts": "n_mounts",
    "rlimits": "n_rlimits",
    "keep_fds": "n_keep_fds",
    "seccomp_bpf": "seccomp_len",
    "notify_bpf": "notify_len",
    "src": "src_len",
}


def _struct_difference(ffi: Any, ctype: str, a: Any, b: Any) -> str:
    """The first field where two cffi structs differ (following pointers), or ""."""
    for field_name, field in ffi.typeof(ctype).fields:
        name = str(field_name)
        x, y = getattr(a, name), getattr(b, name)
        kind = field.type.kind
        if kind == "primitive":
            if x != y:
                return name
        elif kind == "array":
            if list(x) != list(y):
                return name
        elif kind == "pointer":
            item = field.type.item
            if (x == ffi.NULL) != (y == ffi.NULL):
                return name
            if x == ffi.NULL:
                continue
            if name in _LENGTHS:
                count = getattr(a, _LENGTHS[name])
                if item.kind == "struct":
                    for i in range(count):
                        inner = _struct_difference(ffi, item.cname, x[i], y[i])
                        if inner:
                            return f"{name}[{i}].{inner}"
                elif item.kind == "primitive" and item.cname in ("char", "unsigned char"):
                    if ffi.buffer(x, count)[:] != ffi.buffer(y, count)[:]:
                        return name
                elif [x[i] for i in range(count)] != [y[i] for i in range(count)]:
                    return name
            elif item.kind == "primitive" and item.cname == "char":
                if ffi.string(x) != ffi.string(y):
                    return name
            elif item.kind == "pointer" and item.item.cname == "char":
                i = 0
                while True:
                    if (x[i] == ffi.NULL) != (y[i] == ffi.NULL):
                        return name
                    if x[i] == ffi.NULL:
                        break
                    if ffi.string(x[i]) != ffi.string(y[i]):
                        return name
                    i += 1
            else:
                return name  # a pointer this check cannot follow: unverified is different
        else:
            return name
    return ""


def _fill(
    ffi: Any,
    spec: Mapping[str, Any],
    argv: tuple[bytes, ...],
    stdio: tuple[int, int, int],
    sync_fd: int,
    sync_parent_fd: int,
    err_fd: int,
    err_parent_fd: int,
    keep_fds: tuple[int, ...],
) -> tuple[Any, list[Any]]:
    """struct isorun_spec from a record, as _shim._build makes it from a ShimSpec.

    Returns the struct and the list keeping every allocation alive until the clone.
    """
    keep: list[Any] = []

    def new(ctype: str, init: object) -> Any:
        obj = ffi.new(ctype, init)
        keep.append(obj)
        return obj

    def strings(values: tuple[bytes, ...]) -> Any:
        return new("char *[]", [*(new("char[]", v) for v in values), ffi.NULL])

    env = spec["env"]
    c = new("struct isorun_spec *", None)
    c.argv = strings(argv)
    c.env = strings(env)
    c.path = new("char[]", next((e[5:] for e in env if e.startswith(b"PATH=")), DEFAULT_PATH))
    c.clone_flags = spec["clone_flags"]
    c.uid, c.gid = spec["uid"], spec["gid"]
    c.setgroups_deny = int(spec["setgroups_deny"])
    c.root = new("char[]", spec["root"])
    mounts = spec["mounts"]
    slots = new("struct isorun_mount[]", max(len(mounts), 1))
    for slot, (kind, dst, src, flags, data, mode, optional, step, tree_fd) in zip(
        slots, mounts, strict=False
    ):
        slot.kind, slot.optional, slot.step, slot.mode, slot.flags = (
            kind,
            int(optional),
            step,
            mode,
            flags,
        )
        slot.dst = new("char[]", dst)
        slot.src = new("char[]", src)
        slot.src_len = len(src)
        if kind == 2 and b"mode=" not in data:  # TMPFS: its root's mode is a mount option
            data = (data + b"," if data else b"") + f"mode={mode:o}".encode()
        slot.data = new("char[]", data) if data else ffi.NULL
        slot.tree_fd = tree_fd
    c.mounts, c.n_mounts = slots, len(mounts)
    c.cwd = new("char[]", spec["cwd"])
    c.hostname = new("char[]", spec["hostname"])
    c.loopback_up = int(spec["loopback_up"])
    rlimits = spec["rlimits"]
    rslots = new("struct isorun_rlimit[]", max(len(rlimits), 1))
    for slot, (resource, soft, hard, step) in zip(rslots, rlimits, strict=False):
        slot.resource, slot.step, slot.soft, slot.hard = resource, step, soft, hard
    c.rlimits, c.n_rlimits = rslots, len(rlimits)
    c.new_session = int(spec["new_session"])
    c.die_with_parent = int(spec["die_with_parent"])
    c.keep_fds = new("int[]", list(keep_fds) or [-1])
    c.n_keep_fds = len(keep_fds)
    c.caps_keep = sum(1 << cap for cap in set(spec["caps_keep"]))
    c.no_new_privs = int(spec["no_new_privs"])
    bpf = spec["seccomp_bpf"]
    c.seccomp_bpf = new("unsigned char[]", bpf or b"\0")
    c.seccomp_len = len(bpf)
    c.init = int(spec["init"])
    c.stdio = list(stdio)
    c.sync_fd, c.sync_parent_fd = sync_fd, sync_parent_fd
    c.err_fd, c.err_parent_fd = err_fd, err_parent_fd
    # No learn mode here (make_record refuses specs with a notify program).
    c.notify_bpf = new("unsigned char[]", b"\0")
    c.notify_len = 0
    c.notify_fd = -1
    return c, keep


def usable(record: object, argv: list[str]) -> Mapping[str, Any] | None:
    """The record's spec when it can launch ``argv`` for this caller now, else None."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    if not argv or not argv[0] or any("\0" in a for a in argv):
        return None  # the regular path reports these properly
    if env_projection(record["env_patterns"]) != record["env"]:
        return None  # a kept variable changed: the command's environment would differ
    spec: Mapping[str, Any] = record["spec"]
    return spec


def exec_failure_message(command: str, errno: int) -> str:
    """The line a shell would print when execve failed (the exit code says 126 or 127)."""
    why = os.strerror(errno)
    if "/" not in command and errno == ENOENT:
        why = "command not found in the sandbox's PATH"
    return f"isorun: {command}: {why}\n"


def _setup_error(
    spec: Mapping[str, Any], name: str, syscall: str, errno: int, detail: str = ""
) -> Exception:
    from isorun.errors import SandboxSetupError

    return SandboxSetupError(
        name, syscall, errno, detail=detail, step_index=spec["step_index"].get(name, -1)
    )


def _quietly(
    errors: type[BaseException] | tuple[type[BaseException], ...],
    call: Callable[..., object],
    *args: object,
) -> None:
    """call(*args), ignoring ``errors``: contextlib.suppress without importing contextlib
    on the warm path."""
    try:  # noqa: SIM105 - see docstring
        call(*args)
    except errors:
        pass


def _as_shim_spec(spec: Mapping[str, Any], argv: list[str]) -> Any:
    """The real ShimSpec of a record, for error reporting (imports are free by then)."""
    from isorun.sandbox.spec import MountKind, Rlimit, ShimMount, ShimSpec

    fields = dict(spec)
    mounts = []
    for values in spec["mounts"]:
        mount = dict(zip(MOUNT_FIELDS, values, strict=True))
        mount["kind"] = MountKind(mount["kind"])
        mounts.append(ShimMount(**mount))
    fields["mounts"] = tuple(mounts)
    fields["rlimits"] = tuple(
        Rlimit(**dict(zip(RLIMIT_FIELDS, r, strict=True))) for r in spec["rlimits"]
    )
    return ShimSpec(argv=tuple(os.fsencode(a) for a in argv), **fields)


def _write_proc(pid: int, name: str, data: bytes, spec: Mapping[str, Any]) -> None:
    try:
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            # One write: the kernel accepts a map only in a single write(2) call.
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as err:
        raise _setup_error(
            spec, name, f"write({name})", err.errno or 0, data.decode(errors="replace").strip()
        ) from err


def _write_id_maps(pid: int, spec: Mapping[str, Any]) -> None:
    if not spec["clone_flags"] & CLONE_NEWUSER:
        if spec["uid_map"] or spec["gid_map"]:
            from isorun.errors import InternalError

            raise InternalError("uid_map/gid_map given without a new user namespace")
        return
    # "deny" before gid_map: unprivileged writers of gid_map are refused until setgroups
    # is denied (user_namespaces(7), CVE-2014-8989).
    if spec["setgroups_deny"]:
        _write_proc(pid, "setgroups", b"deny", spec)
    if spec["gid_map"]:
        _write_proc(pid, "gid_map", spec["gid_map"], spec)
    if spec["uid_map"]:
        _write_proc(pid, "uid_map", spec["uid_map"], spec)


def spawn_in_parent(spec: Mapping[str, Any], argv: list[str]) -> tuple[int, int]:
    """Start the sandbox as process.spawn does with stdio inherited. Returns (pid, pidfd).

    Raises SandboxSetupError when a set-up step fails, leaving nothing behind.
    """
    from isorun import _shim_c

    if int(_shim_c.lib.isorun_abi()) != ABI:
        from isorun.errors import ShimAbiError

        raise ShimAbiError(
            f"the native shim speaks ABI {_shim_c.lib.isorun_abi()}, this package needs {ABI}"
        )
    keep = tuple(sorted(set(spec["keep_fds"]) - {0, 1, 2}))
    for fd in keep:
        os.fstat(fd)
    opened: list[int] = []
    pid = pidfd = -1
    try:
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        opened.extend((sync_r, sync_w, err_r, err_w))
        # Before the clone: the child inherits the tree descriptors (as process.spawn).
        spec = _clone_trees(spec, opened)
        c_spec, _alive = _fill(
            _shim_c.ffi,
            spec,
            tuple(os.fsencode(a) for a in argv),
            (-1, -1, -1),
            sync_r,
            sync_w,
            err_w,
            err_r,
            keep,
        )
        pid = int(_shim_c.lib.isorun_spawn(c_spec))
        if pid < 0:
            error = _setup_error(spec, "clone", "clone", -pid, f"flags {spec['clone_flags']:#x}")
            pid = -1
            raise error
        # Before anything can reap it: the pidfd pins this process, never a reused pid.
        pidfd = os.pidfd_open(pid)
        for fd in (sync_r, err_w):
            os.close(fd)
            opened.remove(fd)
        _write_id_maps(pid, spec)
        os.write(sync_w, b"\0")
        os.close(sync_w)
        opened.remove(sync_w)
        chunks = []
        while chunk := os.read(err_r, 4096):
            chunks.append(chunk)
        report = b"".join(chunks)
        if len(report) >= FAILURE_SIZE and not report[8:40].startswith(b"exec\0"):
            from isorun.sandbox import _shim

            failure = _shim.parse_failure(report)
            assert failure is not None
            raise _shim.failure_error(_as_shim_spec(spec, argv), failure)
        if len(report) >= FAILURE_SIZE:
            # An exec failure is the command's exit status (126/127), as in process.spawn;
            # the launcher says why, as api.launch does.
            errno = int.from_bytes(report[0:4], sys.byteorder, signed=True)
            sys.stderr.write(exec_failure_message(argv[0], errno))
        started = pid, pidfd
        pid = -1
        return started
    finally:
        if pid > 0:
            _abandon(pid, pidfd, spec)
        for fd in opened:
            _quietly(OSError, os.close, fd)


def _clone_trees(spec: Mapping[str, Any], opened: list[int]) -> Mapping[str, Any]:
    """sandbox/tree.py's clone_trees_in_parent on a record: as root, each BIND becomes a TREE
    the parent cloned with open_tree(2), because the sandbox's overflow uid cannot walk
    the host's 0700 directories to reach the source itself."""
    if os.geteuid() != 0 or not spec["clone_flags"] & CLONE_NEWUSER:
        return spec
    import ctypes  # root only; os has no open_tree

    libc = ctypes.CDLL(None, use_errno=True)
    mounts = []
    for mount in spec["mounts"]:
        if mount[0] == MOUNT_BIND:
            flags = OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC
            fd = int(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, mount[2], flags))
            if fd >= 0:
                opened.append(fd)
                mount = (MOUNT_TREE, *mount[1:8], fd)
            # else: stays a path bind; the child reports it or skips it when optional
        mounts.append(mount)
    return {**spec, "mounts": tuple(mounts)}


def _abandon(pid: int, pidfd: int, spec: Mapping[str, Any]) -> None:
    """Leave nothing behind after a failed spawn: kill and reap."""
    _quietly(ProcessLookupError, _pidfd_send_signal, pidfd, SIGKILL)
    os.close(pidfd)
    # Without a pid namespace, killing the child takes no one else along; its session
    # (setsid made it the leader) does.
    if not spec["clone_flags"] & CLONE_NEWPID and spec["new_session"]:
        _quietly((ProcessLookupError, PermissionError), os.killpg, pid, SIGKILL)
    _quietly(ChildProcessError, os.waitpid, pid, 0)


def run(spec: Mapping[str, Any], argv: list[str]) -> int:
    """Launch and wait; the exit code as a shell reports it (128+N for signal N)."""
    pid, pidfd = spawn_in_parent(spec, argv)

    def forward(signum: int, frame: object) -> None:
        _quietly(ProcessLookupError, _pidfd_send_signal, pidfd, signum)

    # The sandbox's pid 1 forwards these to the command; the launcher must survive them
    # to report the command's status instead of dying first.
    for sig in FORWARDED_SIGNALS:
        _set_handler(sig, forward)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
