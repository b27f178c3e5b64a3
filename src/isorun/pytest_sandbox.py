"""Per-test sandboxes for ``@pytest.mark.isorun``: a forked child confines itself, then
runs the test body and sends its result back.

The test body must run in the process that collected it (pytest items cannot be sent to a
fresh interpreter cheaply), so unlike a launch there is no execve, and the C shim, which
ends in execve, cannot be used. The child therefore applies a reduced plan to itself, in
the same order the shim does and for the same reasons: namespaces, ids, mounts, loopback,
capability drop, no_new_privs, then the profile's compiled seccomp filter last.
TODO(#6): move these steps into the shim as an entry point that applies a spec to the
current process, so the per-test sandbox shares the launcher's tested C path.

What it does not do, compared with a launch (docs/testing.md lists it too): no new root
(the host tree stays visible, read-only, minus a private /tmp and an empty $HOME) and no
pid namespace (the child must stay the process pytest forked).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import json
import os
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV = 0x1, 0x2, 0x4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 1 << 18
#: mount_setattr(2) shares its number across architectures (5.12 unified table)
SYS_MOUNT_SETATTR = 442
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
LINUX_CAPABILITY_VERSION_3 = 0x20080522
NOBODY = 65534
#: exit status of a child whose sandbox set-up failed (as the shim's ISORUN_EXIT_SETUP)
EXIT_SETUP = 125

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Policy:
    """What one marked test gets: the marker's keywords, resolved."""

    #: profile whose seccomp filter is loaded (and whose name the messages give)
    profile: str
    #: "none" (own network namespace, loopback only) or "host"
    network: str
    #: absolute paths the test may write (tmp_path is added by the plugin)
    writable: tuple[str, ...]
    #: file:line of the test, for messages
    where: str


@dataclass(frozen=True, slots=True)
class Result:
    """``outcome`` is passed, failed, skipped; ``text`` the report for the parent."""

    outcome: str
    text: str


@dataclass(frozen=True, slots=True)
class _View:
    """What the parent resolved for the child: ids, and the directories of its view."""

    uid: int
    gid: int
    #: the caller's $HOME, real path (covered by an empty 0700 tmpfs)
    home: str
    #: directories covered by an empty tmpfs, parents first
    covered: tuple[str, ...]
    #: the interpreter's directories under ``covered``, bound back read-only
    python: tuple[str, ...]
    #: /proc/sys/kernel/cap_last_cap
    last_cap: int


class SetupError(OSError):
    """A step of the child's sandbox failed; the test is reported as an error of isorun."""


def _check(rc: int, what: str) -> None:
    if rc < 0:
        err = ctypes.get_errno()
        raise SetupError(err, f"{what}: {os.strerror(err)}")


def _mount(
    src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    _check(
        _libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {dst}",
    )


@functools.cache
def seccomp_filter(profile: str) -> bytes:
    """The compiled filter of ``profile``, compiled once per session in the parent."""
    from isorun import api

    return api.seccomp_program(api.compile_plan(profile))


def sandbox_ids() -> tuple[int, int]:
    """(uid, gid) the child runs as: the caller's, or 65534 for root (planner._identity)."""
    if os.geteuid() == 0:
        return NOBODY, NOBODY
    return os.getuid(), os.getgid()


class Exiting:
    """Children whose result has arrived and that may still be exiting.

    A child's exit tears down its copy of pytest's address space and its namespaces
    (about 1 ms); the parent need not wait for that before it reports the test. The plugin
    keeps one per session: reaped without blocking before each fork, and blocking at the
    session's end, so no zombie outlives the session.
    """

    __slots__ = ("pids",)

    def __init__(self) -> None:
        self.pids: list[int] = []

    def reap(self, block: bool) -> None:
        still = []
        for pid in self.pids:
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                continue  # reaped by someone else (a SIGCHLD handler of the test suite)
            if not done:
                still.append(pid)
        self.pids = still


#: the result record: a 4-byte big-endian length, then that many bytes of JSON
_HEADER = struct.Struct(">I")


def run_in_child(
    policy: Policy, body: Callable[[], tuple[str, str]], exiting: Exiting | None = None
) -> Result:
    """Fork, confine the child to ``policy``, run ``body`` there, return its result.

    A child that dies without reporting (segfault, os._exit) is a failed test, never a
    failed session. With ``exiting``, a child that reported is left to exit on its own
    and reaped later (:class:`Exiting`); without, it is reaped before returning.
    """
    if policy.network not in ("none", "host"):
        raise ValueError(
            f'network must be "none" or "host", got {policy.network!r} ({policy.where})'
        )
    bpf = seccomp_filter(policy.profile)
    uid, gid = sandbox_ids()
    if os.geteuid() == 0:
        _hand_scratch_to_sandbox(policy.writable, uid, gid)
    # In the parent: inside the new user namespace host root's files show as owned by
    # the overflow uid, which would make every 0700 directory look searchable.
    home = os.path.realpath(os.path.expanduser("~"))
    covered, python = _view(
        home, uid, gid, (sys.prefix, sys.base_prefix, os.getcwd()), tuple(sys.path)
    )
    view = _View(uid, gid, home, covered, python, _last_cap())
    if exiting is not None:
        exiting.reap(block=False)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        os.close(result_r)
        _child(policy, body, bpf, view, ready_w, go_r, result_w)
    os.close(ready_w)
    os.close(go_r)
    os.close(result_w)
    try:
        if os.read(ready_r, 1):
            _write_id_maps(pid, uid, gid)
        os.write(go_w, b"g")
    except OSError:
        pass  # the child died early; its report (or its exit status) says why
    finally:
        os.close(ready_r)
        os.close(go_w)
    try:
        record = _read_record(result_r)
    finally:
        os.close(result_r)
    if record is not None:
        if exiting is not None:
            exiting.pids.append(pid)
        else:
            os.waitpid(pid, 0)
        data = json.loads(record)
        return Result(str(data["outcome"]), str(data["text"]))
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return Result("failed", f"sandboxed test crashed: killed by {sig} ({policy.where})")
    return Result(
        "failed",
        f"sandboxed test exited with status {os.WEXITSTATUS(status)} "
        f"before reporting a result ({policy.where})",
    )


def _read_record(fd: int) -> bytes | None:
    """The child's result record, or None when it died before writing all of it.

    Framed, so the parent stops reading at the record's end instead of at EOF: EOF comes
    only when the child has exited, and later still when the test forked a process that
    kept the pipe open.
    """
    data = b""
    need = _HEADER.size
    while len(data) < need:
        chunk = os.read(fd, need - len(data))
        if not chunk:
            return None
        data += chunk
        if need == _HEADER.size and len(data) >= need:
            need += _HEADER.unpack_from(data)[0]
    return data[_HEADER.size : need]


def _hand_scratch_to_sandbox(paths: tuple[str, ...], uid: int, gid: int) -> None:
    """As root, give temporary scratch paths (tmp_path) to the sandbox's uid 65534.

    Only paths under the temp directory: they are pytest's throwaway directories. Host
    root is never mapped into the sandbox (a root-owned file it could chmod u+s would be
    a setuid-root file on the host), so ownership is the only way it can write there.
    """
    import tempfile

    tmp = os.path.realpath(tempfile.gettempdir()) + os.sep
    for path in paths:
        if not os.path.realpath(path).startswith(tmp) or not os.path.isdir(path):
            continue
        for top, dirs, files in os.walk(path):
            for name in (top, *(os.path.join(top, n) for n in dirs + files)):
                os.lchown(name, uid, gid)


def _write_id_maps(pid: int, uid: int, gid: int) -> None:
    # "deny" before gid_map: user_namespaces(7), CVE-2014-8989. One write per map.
    for name, data in (
        ("setgroups", "deny"),
        ("gid_map", f"{gid} {gid} 1\n"),
        ("uid_map", f"{uid} {uid} 1\n"),
    ):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)


def _child(
    policy: Policy,
    body: Callable[[], tuple[str, str]],
    bpf: bytes,
    view: _View,
    ready_w: int,
    go_r: int,
    result_w: int,
) -> None:
    code = EXIT_SETUP
    try:
        try:
            _enter(policy, bpf, view, ready_w, go_r)
        except OSError as err:
            report = {
                "outcome": "failed",
                "text": f"isorun: could not enter the sandbox ({policy.where}): {err}",
            }
        else:
            outcome, text = body()
            report = {"outcome": outcome, "text": text}
            code = 0
        record = json.dumps(report).encode()
        data = _HEADER.pack(len(record)) + record
        while data:
            data = data[os.write(result_w, data) :]
    except BaseException:
        traceback.print_exc()
    finally:
        # _exit: no atexit handlers, no flushing of buffers copied from pytest.
        os._exit(code)


def _enter(
    policy: Policy,
    bpf: bytes,
    view: _View,
    ready_w: int,
    go_r: int,
) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    if policy.network == "none":
        flags |= CLONE_NEWNET
    # The forked child is single-threaded, which unshare(CLONE_NEWUSER) requires.
    _check(_libc.unshare(flags), "unshare")
    os.write(ready_w, b"r")
    os.close(ready_w)
    # The parent writes the id maps: only it may map the sandbox's uid for a root caller.
    if os.read(go_r, 1) != b"g":
        raise SetupError(errno.EPIPE, "the parent did not write the id maps")
    os.close(go_r)
    # Before the uid change: still the caller, this process can walk to paths behind a
    # 0700 directory (a root user's pyenv under /root) that uid 65534 could not.
    keep = _open_kept(policy, view.python)
    # Ids before any mount, so the tmpfs roots below belong to the sandbox's user.
    os.setresgid(view.gid, view.gid, view.gid)
    os.setresuid(view.uid, view.uid, view.uid)
    _mount_view(view.home, view.covered, keep)
    if policy.network == "none":
        _loopback_up()
    _drop_capabilities(view.last_cap)
    # no_new_privs after the drop and before seccomp: setuid binaries stay inert, and an
    # unprivileged process may then load a filter.
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if bpf:
        _load_seccomp(bpf)


@functools.cache
def _view(
    home: str, uid: int, gid: int, roots: tuple[str, ...], path: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(covered, python): the directories an empty tmpfs covers, and the interpreter's
    directories under them that are bound back.

    Once per session and set of import paths, in the parent: the walk stats every parent
    of every import path (about 0.8 ms a test when it ran per test, half of it in the
    child). A stale answer can only cover more or bind back less, never show more.
    """
    visible = _visible_python(roots, path)
    covered = _covered_dirs(home, uid, gid, visible)
    python = tuple(p for p in visible if any(p == c or p.startswith(c + "/") for c in covered))
    return covered, python


def _visible_python(roots: tuple[str, ...], path: tuple[str, ...]) -> list[str]:
    """Directories the running interpreter imports from (``roots``: its prefixes and the
    working directory; ``path``: sys.path); they must survive a covered $HOME."""
    paths = {os.path.realpath(p) for p in roots}
    paths.update(os.path.realpath(p) for p in path if p and os.path.isdir(p))
    return sorted(paths)


def _blocked_at(path: str, uid: int, gid: int) -> str | None:
    """The first directory on the way to ``path`` that ``uid`` may not search, if any."""
    prefix = ""
    for part in path.strip("/").split("/"):
        prefix += "/" + part
        try:
            st = os.stat(prefix)
        except OSError:
            return None
        mode = st.st_mode
        if not (
            (st.st_uid == uid and mode & 0o100)
            or (st.st_gid == gid and mode & 0o010)
            or mode & 0o001
        ):
            return prefix
    return None


def _covered_dirs(home: str, uid: int, gid: int, visible: list[str]) -> tuple[str, ...]:
    """Directories replaced by an empty tmpfs: /tmp, $HOME, and every directory that
    would keep the sandbox's uid from the interpreter (a root user's 0700 /root holding
    pyenv); what the test needs from under them is bound back."""
    covered = {"/tmp"}
    if home != "/" and os.path.isdir(home):
        covered.add(home)
    for path in visible:
        blocked = _blocked_at(path, uid, gid)
        if blocked is not None:
            covered.add(blocked)
    # Parents first: a tmpfs mounted later on a parent would hide the child's.
    return tuple(sorted(covered, key=lambda c: c.count("/")))


def _open_kept(policy: Policy, python: tuple[str, ...]) -> list[tuple[int, str, bool]]:
    """O_PATH descriptors of what must be bound back after /tmp and $HOME are covered:
    the interpreter's directories under them, and every writable path."""
    keep: list[tuple[int, str, bool]] = []
    for path in python:
        keep.append((os.open(path, os.O_PATH | os.O_CLOEXEC), path, False))
    for path in policy.writable:
        if os.path.exists(path):
            keep.append((os.open(path, os.O_PATH | os.O_CLOEXEC), path, True))
    return keep


def _mount_view(home: str, covered: tuple[str, ...], keep: list[tuple[int, str, bool]]) -> None:
    # Private first: the host's / is usually shared, and every mount below would
    # otherwise propagate back to the host.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    # The whole host tree read-only and nosuid, submounts included (a remount of "/"
    # alone would leave e.g. a separate /home writable).
    _check(
        _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, len(attr)),
        "mount_setattr /",
    )
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
    # Parents before children, tmpfs and binds alike: a bind of the project must not
    # cover a $HOME tmpfs inside it, nor a tmpfs hide a bind below it.
    steps: list[tuple[str, int, bool]] = [(path, -1, False) for path in covered]
    steps += [(path, fd, writable) for fd, path, writable in keep]
    for path, fd, writable in sorted(steps, key=lambda s: s[0].rstrip("/").count("/")):
        if fd < 0:
            os.makedirs(path, exist_ok=True)
            # /tmp for every user of the sandbox; $HOME and the others private, empty.
            mode = "1777" if path == "/tmp" else "0700" if path == home else "0755"
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size=256m")
            continue
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        elif not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
        # A bind copies the source's read-only flag; writable paths clear it again
        # (allowed: we set it, the host did not lock it).
        extra = 0 if writable else MS_RDONLY
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | extra)


def _loopback_up() -> None:
    # A new network namespace starts with lo down; tests' local servers need it up.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


@functools.cache
def _last_cap() -> int:
    """The highest capability this kernel knows (capabilities(7)); 63 if unreadable."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def _drop_capabilities(last_cap: int) -> None:
    # The uid change above does not clear capabilities here: host root is unmapped in
    # this namespace, so the kernel's "leaving uid 0" rule never fires. Drop explicitly:
    # bounding set, ambient set, then permitted/effective/inheritable. Only up to the
    # kernel's cap_last_cap: a higher number is no capability (EINVAL), and each prctl
    # through ctypes costs ~5 us.
    for cap in range(last_cap + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() != errno.EINVAL:
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(ambient)")
    header = struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = ctypes.create_string_buffer(24)
    _check(_libc.capset(header, data), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_seccomp(bpf: bytes) -> None:
    # Last: the filter must not have to allow the set-up above.
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(len(bpf) // 8, ctypes.cast(program, ctypes.c_void_p))
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
        "prctl(PR_SET_SECCOMP)",
    )


def network_mode() -> str:
    """ "none" when this process sees only loopback (a sandbox's network namespace)."""
    names = {name for _, name in socket.if_nameindex()}
    return "none" if names <= {"lo"} else "host"


_NETWORK_ERRNOS = {
    errno.ENETUNREACH,
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.EADDRNOTAVAIL,
    errno.ENETDOWN,
}


def explain(exc: BaseException, policy: Policy) -> str:
    """A line naming the sandbox rule behind ``exc`` (or its causes), or ""."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        rule = _rule_for(current, policy)
        if rule:
            return f"isorun: {rule} ({policy.profile} profile, marker at {policy.where})"
        current = current.__cause__ or current.__context__
    return ""


def _rule_for(exc: BaseException, policy: Policy) -> str:
    if isinstance(exc, socket.gaierror) and policy.network == "none":
        return "name resolution failed: network = none, the sandbox has only loopback"
    if not isinstance(exc, OSError) or exc.errno is None:
        return ""
    name = f" {exc.filename}" if exc.filename else ""
    home = os.path.realpath(os.path.expanduser("~"))
    if exc.errno in _NETWORK_ERRNOS and policy.network == "none":
        return "connect() refused: network = none, the sandbox has only loopback"
    if exc.errno == errno.EROFS:
        allowed = ", ".join(policy.writable) or "nothing"
        return (
            f"write{name} refused: read-only file system outside writable = "
            f"[{allowed}] and the private /tmp and $HOME"
        )
    if exc.errno == errno.ENOENT and exc.filename and str(exc.filename).startswith(home):
        return f"{exc.filename} not found: $HOME is an empty private directory (secrets hidden)"
    if exc.errno in (errno.EPERM, errno.EACCES):
        uid = sandbox_ids()[0]
        return (
            f"{errno.errorcode[exc.errno]}{name}: refused by the sandbox (seccomp filter, "
            f"no capabilities, running as uid {uid})"
        )
    return ""
