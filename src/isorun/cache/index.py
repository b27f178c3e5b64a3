"""The launch index: what the C front end checks to launch a cached plan without Python.

The `isorun` command is a small C program (shim/launcher/frontend.c) so that a warm launch
starts no Python: on this kind of machine the interpreter alone takes
several times what bubblewrap takes to start a whole sandbox. C cannot re-derive the
cache key (repr of Python values, sha256 of marshal output), so next to an entry with
a launch record we write an index: every condition under which the entry's plan is the
one this CLI would compile, in a form C checks with a few syscalls, then the record
flattened for C (isorun.sandbox.flat). C compares each condition exactly; any
difference, or anything it cannot read, is a miss, and the Python CLI runs.

Layout (native byte order; the reader is the front end of the same installation):
  INDEX_MAGIC, u32 INDEX_FORMAT, u64 body length, the tag (32 bytes), body.
The tag is isorun.host.mac's keyed BLAKE2b of b"index", the file's name (index_name) and the
body, under the caller's key in the kernel keyring: the front end checks it before it
reads a field, so an index a sandbox wrote or relabelled (another profile's record
filed under this one's name or spec) is a miss.
The body is a fixed sequence of fields; "bytes" is a u32 length and the bytes:
  bytes spec, bytes cwd (getcwd), u32 uid gid euid egid,
  bytes bindir (where the interpreter that wrote this lives: the front end must sit
    in the same directory, so the Python it falls back to is this one),
  4 x bytes uname sysname release version machine,
  u32 n, n x (bytes path, u8 present, bytes content)   files read whole (userns sysctls)
  u32 n, n x (bytes name, u8 present, bytes value)     environment variables, exact
  u32 n, n x (bytes path, bytes realpath)              symlink resolutions
  u8 whole env, u32 n, n x bytes pattern, u32 m, m x (bytes name, bytes value)
                                                       the env projection launch.usable checks
  u32 n, n x (bytes path, u64 dev ino size mtime_ns ctime_ns, u32 mode)   stat(2) fingerprints
  bytes backend (the command line's --backend, "" without one), u8 mode (launch.MODE_*),
  u8 needs --allow-weaker, bytes the warning printed before the launch ("" none);
  with MODE_LANDLOCK_AUTO, the inputs of auto's choice (issue 18), each compared now:
    u8 no_new_privs, u8 PATH present, bytes PATH,
    u32 n, n x (bytes tool, bytes where PATH finds it or "", fingerprint when found)
    u32 n, n x (bytes path, u8 present, fingerprint when present)   launch.AUTO_FILES
    and the front end makes sure no user namespace can be made now
  bytes flat record
A fingerprint is u64 dev ino size mtime_ns ctime_ns, u32 mode.
Owner and mode are checked too (a file of another uid is never read), but they cannot
tell the caller's index from one a sandbox of the same uid wrote in a directory a later
launch names as its cache: only the tag can.
"""

from __future__ import annotations

import os
import sys

from isorun.cache import entry as cache_entry
from isorun.cache import files as cache_files
from isorun.host import mac, venv
from isorun.shim import abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

INDEX_MAGIC, INDEX_FORMAT, INDEX_ENV = abi.INDEX_MAGIC, abi.INDEX_FORMAT, abi.INDEX_ENV
#: a file whose ctime is this recent gets no index: see :func:`index_blob`
INDEX_SETTLE_NS = 2_000_000_000
_MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits: the index file's name, as shim/launcher/index_name.c computes it."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & _MASK64
    return h


def index_name(spec: str, cwd: str, uid: int, backend: str = "") -> str:
    """The index file's name for ``isorun --profile spec [--backend backend]`` run by
    ``uid`` in ``cwd``.

    Only a name: the file holds all its inputs and the reader compares them, so two
    launches whose names collide only miss each other's index.
    """
    material = os.fsencode(spec) + b"\0" + os.fsencode(cwd) + b"\0" + str(uid).encode()
    if backend:
        material += b"\0" + os.fsencode(backend)
    return f"{fnv1a64(material):016x}.launch"


def _fingerprint(st: os.stat_result) -> bytes:
    return (b"".join(_u64(n) for n in (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                        st.st_ctime_ns)) + _u32(st.st_mode))


def _auto_inputs() -> list[bytes]:
    """What ``auto`` chose the landlock backend on, besides the missing user namespace
    (which the front end probes itself): whether no_new_privs is set (a setuid wrapper
    cannot gain root then), the wrappers PATH finds, and the files that decide whether
    firejail admits the plan's uid. A wrapper installed or made setuid since, or a PATH
    that finds another one, is a miss, and the Python CLI chooses again."""
    import shutil

    from isorun.cache import record as cache_record

    with open("/proc/self/status") as f:
        nnp = "\nNoNewPrivs:\t1" in f.read()
    path = os.environ.get("PATH")
    parts = [bytes([nnp]), bytes([path is not None]), _field(os.fsencode(path or ""))]
    parts.append(_u32(len(cache_record.AUTO_TOOLS)))
    for tool in cache_record.AUTO_TOOLS:
        found = shutil.which(tool) or ""
        parts.append(_field(tool.encode()) + _field(os.fsencode(found)))
        if found:
            parts.append(_fingerprint(os.stat(found)))
    parts.append(_u32(len(cache_record.AUTO_FILES)))
    for name in cache_record.AUTO_FILES:
        try:
            st: os.stat_result | None = os.stat(name)
        except OSError:
            st = None
        parts.append(_field(name.encode()) + bytes([st is not None]))
        if st is not None:
            parts.append(_fingerprint(st))
    return parts


def _u32(n: int) -> bytes:
    return n.to_bytes(4, sys.byteorder)


def _u64(n: int) -> bytes:
    return (n & _MASK64).to_bytes(8, sys.byteorder)


def _field(data: bytes) -> bytes:
    return _u32(len(data)) + data


def _index_stat_paths(entry: Mapping[str, object]) -> list[str]:
    """Every file the plan and the code that compiled it came from."""
    deps = entry.get("deps")
    assert isinstance(deps, tuple)
    paths = [literal for literal, _, _ in deps]
    paths += [path for path, _, _, _ in cache_entry.code_stamp()]
    # The interpreter: its version is in the key (marshal, pickle, bytecode formats);
    # pyvenv.cfg decides its sys.base_prefix (${PYTHON_BASE_PREFIX}).
    paths.append(sys.executable)
    # ${PASSWD_HOME} comes from the password database, which the front end does not
    # read: a changed /etc/passwd sends the launch through Python again.
    if os.path.exists("/etc/passwd"):
        paths.append("/etc/passwd")
    # A root caller's writable bind whose source is missing (web's ./data): made later,
    # root-owned, the sandbox (65534) could not write it, which only the Python path says
    # (launch.usable). Making it changes the nearest existing directory above it.
    from isorun.cache import record as cache_record

    record = entry.get("launch")
    spec = record.get("spec") if isinstance(record, dict) else None
    for src in cache_record.root_sandbox_binds(spec) if isinstance(spec, dict) else ():
        above = os.fsdecode(src)
        while not os.path.lexists(above) and above not in ("/", ""):
            above = os.path.dirname(above)
        if above != os.fsdecode(src) and above not in paths:
            paths.append(above)
    # The active virtual environment's pyvenv.cfg decides ${PYTHON_BASE_PREFIX} too.
    for prefix in sorted({sys.prefix, venv.active_venv(os.environ)} - {""}):
        cfg = os.path.join(prefix, "pyvenv.cfg")
        if os.path.exists(cfg):
            paths.append(cfg)
    return paths


def index_blob(entry: Mapping[str, object], now_ns: int | None = None, backend: str = "",
               landlock: tuple[int, str, bool] | None = None) -> bytes | str:
    """The launch index of ``entry`` for this caller now, or why there is none.

    ``landlock``: (mode, warning, needs --allow-weaker) of launch.landlock_choice, for an
    index of the entry's landlock backend record launched with ``--backend backend``;
    None for its native record (which only a launch without --backend uses).

    Why a stat(2) fingerprint may stand in for the SHA-256 the Python path checks: the
    kernel sets a file's ctime to the current time on every change of its inode (write,
    truncate, chmod, link count, utimensat), and no unprivileged call can set it back
    (utimensat sets only atime and mtime); a file replaced by rename has another inode.
    So (dev, ino, size, mtime, ctime, mode) equal means unchanged, with one gap: ctime
    has the file system's granularity (a kernel tick on ext4 and tmpfs, 2 s on FAT), so
    a change in the same tick as our stat could keep all six. As git does with its
    "racily clean" entries, a file changed within INDEX_SETTLE_NS of now gets no index;
    any later change then lands in a later tick. The stats are taken first, then the
    content is checked against the entry's digests: a change between the two either
    shows in the digest or bumps ctime past the fingerprint. Only root can defeat this
    (set the clock back), and root can write the cache anyway.
    """
    import time

    record = entry.get("launch" if landlock is None else "launch_landlock")
    if not isinstance(record, dict):
        return "no launch record"
    secret = mac.key(create=True)
    if secret is None:
        return "no key in the kernel keyring (keyctl refused?) to tag it with"
    refused = _caller_refusal()
    if refused:
        return refused
    try:
        from isorun.sandbox import flat
    except ImportError:
        return "this build has no flat record encoder"
    stats = _stat_fingerprints(entry, time.time_ns() if now_ns is None else now_ns)
    if isinstance(stats, str):
        return stats
    # After the stats (see the docstring): the inputs are still those of the entry.
    changed = _entry_changed(entry, record)
    if changed:
        return changed
    flat_record = _flatten(flat, record)
    if isinstance(flat_record, str):
        return flat_record
    spec = str(entry["spec"])
    cwd = os.getcwd()
    parts = [*_caller_inputs(spec, cwd), *_environment_inputs(record, cwd)]
    parts.append(_u32(len(stats)))
    parts += stats
    backend_inputs = _backend_inputs(backend, landlock)
    if isinstance(backend_inputs, str):
        return backend_inputs
    parts += backend_inputs
    parts.append(_field(flat_record))
    body = b"".join(parts)
    name = index_name(spec, cwd, os.getuid(), backend)
    return (INDEX_MAGIC + _u32(INDEX_FORMAT) + _u64(len(body))
            + mac.tag(secret, b"index", name, body) + body)


def _caller_refusal() -> str:
    """Why this process may not write an index at all, or ""."""
    if not os.environ.get("HOME"):
        return "HOME is not set (the key would read the password database)"
    here = os.path.realpath(os.getcwd())
    # src/ (or site-packages): the directory above the isorun package
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if (
        not sys.flags.safe_path
        and sys.path
        and os.path.realpath(sys.path[0] or ".") == here
        and os.path.realpath(package_parent) == here
    ):
        # `python -m isorun` in a directory holding an isorun package imports that one;
        # the front end's Python (isorun-py, or -P) imports the installed one, whose
        # compiler may differ, so a plan from this one must not become the front end's.
        return "isorun was imported from the working directory"
    return ""


def _stat_fingerprints(entry: Mapping[str, object], now_ns: int) -> list[bytes] | str:
    """The (dev, ino, size, mtime, ctime, mode) of every file the entry depends on, or why
    one cannot stand in for its digest (see :func:`index_blob`)."""
    stats: list[bytes] = []
    for path in _index_stat_paths(entry):
        try:
            st = os.stat(path)
        except OSError as err:
            return f"{path}: {err.strerror}"
        if st.st_ctime_ns > now_ns - INDEX_SETTLE_NS:
            return f"{path} changed less than {INDEX_SETTLE_NS // 10**9} s ago"
        stats.append(
            _field(os.fsencode(path))
            + b"".join(_u64(n) for n in (st.st_dev, st.st_ino, st.st_size))
            + _u64(st.st_mtime_ns)
            + _u64(st.st_ctime_ns)
            + _u32(st.st_mode)
        )
    return stats


def _entry_changed(entry: Mapping[str, object], record: dict[str, Any]) -> str:
    """What changed since ``entry`` was written (its key's inputs, a dependency, a kept
    environment variable), or ""."""
    from isorun.cache import record as cache_record

    resolved = cache_entry.variables()
    if entry.get("key") != cache_entry.entry_key(str(entry["spec"]), resolved):
        return "the key's inputs changed since the entry was written"
    changed = cache_entry.check_deps(entry["deps"])  # type: ignore[arg-type]
    if changed is not None:
        return changed
    if cache_record.env_projection(record["env_patterns"]) != record["env"]:
        return "a kept environment variable changed since the entry was written"
    return ""


def _flatten(flat: Any, record: dict[str, Any]) -> bytes | str:
    """The flat launch record for the C launcher, or why it cannot have one."""
    from isorun.errors import InternalError

    try:
        return flat.encode(record["spec"])  # type: ignore[no-any-return]
    except (InternalError, OverflowError) as err:
        # a record the C side cannot take (flat refuses it, or a number does not fit its
        # field): no index, Python runs
        return f"the launch record cannot be flattened ({err})"


def _caller_inputs(spec: str, cwd: str) -> list[bytes]:
    """The index's fields for who launches where: the spec, the directory, the ids, the
    Python, the kernel, the user-namespace sysctls."""
    uname = os.uname()
    parts = [
        _field(os.fsencode(spec)),
        _field(os.fsencode(cwd)),
        *(_u32(n) for n in (os.getuid(), os.getgid(), os.geteuid(), os.getegid())),
        _field(os.fsencode(os.path.realpath(os.path.dirname(sys.executable)))),
        *(_field(os.fsencode(v)) for v in (uname.sysname, uname.release, uname.version,
                                            uname.machine)),
        _u32(len(cache_entry._USERNS_SYSCTLS)),
    ]  # fmt: skip
    for path in cache_entry._USERNS_SYSCTLS:
        try:
            with open(path, "rb") as f:
                content: bytes | None = f.read()
        except OSError:
            content = None
        parts.append(_field(path.encode()) + bytes([content is not None]) + _field(content or b""))
    return parts


def _environment_inputs(record: dict[str, Any], cwd: str) -> list[bytes]:
    """The index's fields for the environment: INDEX_ENV, the paths cache.variables()
    resolves, the record's kept patterns and the environment they kept."""
    parts = [_u32(len(INDEX_ENV))]
    for name in INDEX_ENV:
        value = os.environ.get(name)
        parts.append(
            _field(name.encode()) + bytes([value is not None]) + _field(os.fsencode(value or ""))
        )
    # The inputs of the realpath() calls in cache.variables(): the same strings must
    # resolve to the same places (a swapped symlink changes ${HOME} and friends).
    real = [os.environ["HOME"], cwd, os.environ.get("TMPDIR") or "/tmp",
            *venv.prefixes(os.environ)]  # fmt: skip
    parts.append(_u32(len(real)))
    for path in real:
        parts.append(_field(os.fsencode(path)) + _field(os.fsencode(os.path.realpath(path))))
    patterns = record["env_patterns"]
    parts.append(bytes([patterns is None]))
    parts.append(_u32(len(patterns or ())))
    parts += [_field(os.fsencode(p)) for p in patterns or ()]
    parts.append(_u32(len(record["env"])))
    parts += [_field(os.fsencode(k)) + _field(os.fsencode(v)) for k, v in record["env"]]
    return parts


def _backend_inputs(
    backend: str, landlock: tuple[int, str, bool] | None
) -> list[bytes] | str:
    """The index's fields for the backend choice (see :func:`index_blob`), or why auto's
    inputs cannot be read."""
    from isorun.cache import record as cache_record

    mode, warning, needs_weaker = (cache_record.MODE_NATIVE, "", False) if landlock is None \
        else landlock
    parts = [_field(os.fsencode(backend)), bytes([mode, needs_weaker]),
             _field(warning.encode())]
    if mode == cache_record.MODE_LANDLOCK_AUTO:
        try:
            parts += _auto_inputs()
        except OSError as err:
            return f"the inputs of auto's choice cannot be read ({err})"
    return parts


def write_index(
    entry: Mapping[str, object],
    log: Callable[[str], None] | None = None,
    directory: str | None = None,
    backend: str = "",
    landlock: tuple[int, str, bool] | None = None,
) -> bool:
    """Write the launch index of ``entry`` for this caller, if it can have one (see
    :func:`index_blob` for ``backend`` and ``landlock``)."""
    blob = index_blob(entry, backend=backend, landlock=landlock)
    if isinstance(blob, str):
        cache_files._warn(log, f"no launch index: {blob}")
        return False
    directory = cache_files.cache_dir() if directory is None else directory
    name = index_name(str(entry["spec"]), os.getcwd(), os.getuid(), backend)
    return cache_files._write_file(directory, name, blob, log)
