"""The compiled-plan cache: a profile compiled once, then launched without the compiler.

An entry holds the plan, its seccomp program (raw BPF) and, when the profile allows it,
the flat launch record :mod:`isorun.launch` hands to the shim. It lives in
``$XDG_CACHE_HOME/isorun`` (default ``~/.cache/isorun``), one file per key.

The key hashes every input that can change what the compiler produces:

- the entry format and the launch record's (``sandbox.parent.RECORD_FORMAT``), the isorun
  version, the Python version (marshal and pickle formats) and a stamp of every source
  and data file of the installed package, so an edited planner in a development tree
  never serves an old plan;
- the profile spec as given, and the caller's facts (uids, gids, uname, the userns sysctls);
- the resolved ``${NAME}`` variables (``${CWD}`` differs per directory).

Files reached through ``extends`` are only known after parsing, so they are not in the key
but in the entry: each as the path the loader opened, the path it resolved to, and a
SHA-256 of its bytes. A hit re-checks all three. The entry stores the variables it was
compiled with; a hit checks them too.

Fail closed: every doubt (a foreign or group/world-writable file, a bad checksum, an
input that changed, a compiler that grew an input this module does not know) means
recompile. A cache can make a launch faster, never its sandbox weaker.

This module is on the warm launch path, so it imports only ``os``, ``sys`` and builtin
modules at the top; the compiler is imported on a miss only.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from isorun.compile.plan import Plan
    from isorun.host.facts import HostFacts

#: bump when the entry layout changes; older entries are then ignored
FORMAT = 1
MAGIC = b"isorun-plan-cache\n"
_DIGEST_SIZE = 32

#: the ${NAME} variables this module knows how to key on (see :func:`variables`)
VARIABLE_NAMES = frozenset(
    {"HOME", "CWD", "TMPDIR", "UID", "GID", "USER", "PYTHON_PREFIX", "PYTHON_BASE_PREFIX"}
)
#: the HostFacts fields :func:`facts_key` covers
FACT_FIELDS = frozenset({"uid", "gid", "arch", "kernel", "userns"})
_USERNS_SYSCTLS = (
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/unprivileged_userns_clone",
)

#: (literal path as opened, real path, sha256 hex of its bytes)
Dep = tuple[str, str, str]


def _sha256(data: bytes) -> str:
    # hashlib loads OpenSSL (several ms on a cold start); the builtin _sha256 module is
    # what hashlib itself falls back to, and is enough for a content check.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # Python builds without it, or 3.12+ (renamed _sha2)
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def _warn(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(f"isorun: cache: {message}")


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/isorun``, or ``~/.cache/isorun``.

    The XDG base directory spec says a relative ``XDG_CACHE_HOME`` is invalid and must be
    ignored, so one set by a confused script cannot put the cache in the working directory.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "isorun")


def code_stamp() -> tuple[tuple[str, int, int, int], ...]:
    """(path, size, mtime_ns, inode) of every source, data and extension file of isorun.

    A version number does not change when someone edits the planner in an editable
    install; these stamps do. About 40 stat calls, well under a millisecond.
    """
    root = os.path.dirname(os.path.abspath(__file__))
    stamps: list[tuple[str, int, int, int]] = []
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name == "__pycache__" or entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.name.endswith((".py", ".json", ".toml", ".so")):
                    st = entry.stat()
                    stamps.append((entry.path, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(stamps))


def facts_key() -> tuple[object, ...]:
    """What :func:`isorun.host.facts.probe` reads, read raw (no platform/dataclasses import).

    A superset of the facts: if any differs, so may the plan. :func:`store` refuses to
    write when HostFacts grows a field not covered here.
    """
    sysctls: list[str | None] = []
    for path in _USERNS_SYSCTLS:
        try:
            with open(path) as f:
                sysctls.append(f.read())
        except OSError:
            sysctls.append(None)
    uname = os.uname()
    return (
        os.getuid(),
        os.getgid(),
        os.geteuid(),
        os.getegid(),
        uname.sysname,
        uname.release,
        uname.version,
        uname.machine,
        tuple(sysctls),
    )


def variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``${NAME}`` variables as :func:`isorun.host.facts.variables` resolves them.

    Kept cheap for the launch path. :func:`store` checks that both agree (and that
    facts.variables knows no other name) before writing, so a change there turns the
    cache off instead of serving plans resolved the old way.
    """
    env = os.environ if environ is None else environ
    uid = os.getuid()
    return {
        "HOME": os.path.realpath(env.get("HOME") or os.path.expanduser("~")),
        "CWD": os.path.realpath(os.getcwd()),
        "TMPDIR": os.path.realpath(env.get("TMPDIR") or "/tmp"),
        "UID": str(uid),
        "GID": str(os.getgid()),
        "USER": env.get("USER") or env.get("LOGNAME") or str(uid),
        "PYTHON_PREFIX": os.path.realpath(sys.prefix),
        "PYTHON_BASE_PREFIX": os.path.realpath(sys.base_prefix),
    }


def entry_key(spec: str, resolved: Mapping[str, str]) -> str:
    """The hex key of ``spec`` compiled for this caller with ``resolved`` variables."""
    from isorun import __version__
    from isorun.sandbox.parent import RECORD_FORMAT

    material = (
        FORMAT,
        RECORD_FORMAT,
        __version__,
        sys.hexversion,
        sys.implementation.cache_tag,
        code_stamp(),
        spec,
        facts_key(),
        tuple(sorted(resolved.items())),
    )
    return _sha256(repr(material).encode())


def check_deps(deps: tuple[Dep, ...]) -> str | None:
    """None when every source file is still what was compiled; else what changed."""
    for literal, real, digest in deps:
        if os.path.realpath(literal) != real:
            return f"{literal} now resolves to another file"
        try:
            with open(literal, "rb") as f:
                data = f.read()
        except OSError as err:
            return f"{literal}: {err.strerror}"
        if _sha256(data) != digest:
            return f"{literal} changed"
    return None


def collect_deps(spec: str) -> tuple[Dep, ...]:
    """The files ``spec`` reads through ``extends``, hashed. Call before compiling.

    Walks the tree the way :func:`isorun.profile.includes.load` does (same ``resolve``),
    recording each file under the path the loader opens: an include is relative to that
    path's directory, so a symlink swapped anywhere on it shows up as a new real path.
    Hashing before the compile means a file edited during it is seen as changed later.
    Raises what the loader raises; the caller then compiles without caching.
    """
    import tomllib
    from pathlib import Path

    from isorun.profile import includes

    deps: list[Dep] = []
    seen: set[str] = set()

    def visit(literal: os.PathLike[str] | str) -> None:
        path = os.fspath(literal)
        with open(path, "rb") as f:
            data = f.read()
        real = os.path.realpath(path)
        deps.append((path, real, _sha256(data)))
        if real in seen:
            return  # a cycle: the loader reports it; do not loop here
        seen.add(real)
        # Only ``extends`` is needed, so the stdlib parser (a tenth of the loader's cost)
        # is enough; if it read the list differently from the loader, the file set would
        # differ from plan.sources and compile_entry would not cache (fail closed).
        extends = tomllib.loads(data.decode()).get("extends", [])
        for child in extends if isinstance(extends, list) else []:
            if isinstance(child, str):
                base, _ = includes.resolve(child, Path(path).parent, None)
                visit(base)

    top, _ = includes.resolve(spec, None, None)
    visit(top)
    return tuple(deps)


def _dir_usable(path: str, create: bool, log: Callable[[str], None] | None) -> bool:
    """The cache directory exists (or was made), is ours, and only we can write to it."""
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as err:
            _warn(log, f"cannot create {path}: {err.strerror}")
            return False
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        _warn(log, f"ignoring {path}: not a directory owned by uid {os.geteuid()}")
        return False
    if st.st_mode & 0o077:
        # Ours but readable or writable by others (an old umask, a copied home): someone
        # who can write here could plant a plan. Tighten it; the files are checked anyway.
        try:
            os.chmod(path, 0o700)
        except OSError:
            _warn(log, f"ignoring {path}: mode {st.st_mode & 0o777:#o} and cannot chmod")
            return False
    return True


def read_entry(path: str, log: Callable[[str], None] | None = None) -> dict[str, object] | None:
    """The entry in ``path`` when it is safe and intact, else None (with a note to ``log``).

    Safe: a regular file (no symlink followed), owned by the caller, not writable by
    group or others. Intact: magic, format and SHA-256 of the payload match.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        _warn(log, f"ignoring {path}: {err.strerror}")
        return None
    try:
        st = os.fstat(fd)
        # 0o100000 is S_IFREG; the stat module costs an import on the warm path.
        if st.st_mode & 0o170000 != 0o100000:
            _warn(log, f"ignoring {path}: not a regular file")
            return None
        if st.st_uid != os.geteuid():
            _warn(log, f"ignoring {path}: owned by uid {st.st_uid}, not {os.geteuid()}")
            return None
        if st.st_mode & 0o022:
            _warn(
                log, f"ignoring {path}: writable by group or others (mode {st.st_mode & 0o777:#o})"
            )
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    blob = b"".join(chunks)
    head = len(MAGIC) + 1 + _DIGEST_SIZE
    if (
        len(blob) < head
        or not blob.startswith(MAGIC)
        or blob[len(MAGIC)] != FORMAT
        or bytes.fromhex(_sha256(blob[head:])) != blob[len(MAGIC) + 1 : head]
    ):
        _warn(log, f"ignoring {path}: corrupt or from another version")
        return None
    try:
        entry = marshal.loads(blob[head:])
    except (ValueError, EOFError, TypeError):
        _warn(log, f"ignoring {path}: corrupt")
        return None
    if not isinstance(entry, dict):
        _warn(log, f"ignoring {path}: corrupt")
        return None
    return entry


def write_entry(
    directory: str, key: str, entry: dict[str, object], log: Callable[[str], None] | None = None
) -> bool:
    """Write ``entry`` atomically (see :func:`_write_file`)."""
    payload = marshal.dumps(entry)
    blob = MAGIC + bytes([FORMAT]) + bytes.fromhex(_sha256(payload)) + payload
    return _write_file(directory, key, blob, log)


def _write_file(
    directory: str, name: str, blob: bytes, log: Callable[[str], None] | None = None
) -> bool:
    """A private temporary file in the same directory, then rename(2) over the old one,
    so a reader sees the old file or the new, never half."""
    if not _dir_usable(directory, True, log):
        return False
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as err:
        _warn(log, f"cannot write {directory}: {err.strerror}")
        return False
    try:
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(directory, name))
    except OSError as err:
        _warn(log, f"cannot write {directory}: {err.strerror}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        return False
    return True


def lookup(
    spec: str, log: Callable[[str], None] | None = None, directory: str | None = None
) -> tuple[str, dict[str, object] | None]:
    """(key, entry) for ``spec`` as this caller would compile it now; entry None on a miss.

    Cheap enough for every launch: no compiler import, a few stat and read calls.
    """
    resolved = variables()
    key = entry_key(spec, resolved)
    directory = cache_dir() if directory is None else directory
    entry = read_entry(os.path.join(directory, key), log)
    if entry is None:
        return key, None
    if entry.get("key") != key or entry.get("variables") != tuple(sorted(resolved.items())):
        _warn(log, f"ignoring entry {key[:12]}: written for other inputs")
        return key, None
    deps = entry.get("deps")
    if not isinstance(deps, tuple) or not deps:
        return key, None
    changed = check_deps(deps)
    if changed is not None:
        _warn(log, f"recompiling {spec}: {changed}")
        return key, None
    return key, entry


def load_plan(entry: Mapping[str, object]) -> Plan:
    """The Plan of an entry. Imports the plan's dataclass modules (not the compiler)."""
    import pickle

    from isorun.compile.plan import Plan

    # pickle runs constructors named in its input, so it is only ever given files that
    # read_entry has checked are the caller's own and writable by no one else: the same
    # trust as the caller's ~/.bashrc. The payload checksum catches corruption first.
    plan = pickle.loads(entry["plan"])  # type: ignore[arg-type]
    if not isinstance(plan, Plan):
        raise TypeError("cache entry holds no Plan")
    return plan


def compile_entry(
    spec: str,
    log: Callable[[str], None] | None = None,
    launch_record: Callable[[Plan, bytes], dict[str, object] | None] | None = None,
) -> tuple[Plan, bytes, dict[str, object] | None]:
    """Compile ``spec`` and build its entry; the entry is None when it must not be cached.

    Raises ProfileError and friends exactly as :func:`isorun.api.compile_plan` does.
    """
    import pickle

    from isorun import api
    from isorun.host import facts as host_facts

    try:
        deps: tuple[Dep, ...] | None = collect_deps(spec)
    except Exception:
        deps = None  # the compile below reports the problem with its location
    facts = host_facts.probe()
    resolved = host_facts.variables(facts)
    plan = api.compile_plan(spec, facts, resolved)
    bpf = api.seccomp_program(plan)
    reason = _uncacheable(spec, facts, resolved, plan, deps)
    if reason is not None:
        _warn(log, f"not caching {spec}: {reason}")
        return plan, bpf, None
    assert deps is not None
    mine = variables()  # the key's variables: a superset of the compiler's (checked above)
    entry: dict[str, object] = {
        "key": entry_key(spec, mine),
        "spec": spec,
        "profile": plan.profile,
        "deps": deps,
        "variables": tuple(sorted(mine.items())),
        "plan": pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL),
        "bpf": bpf,
        "launch": launch_record(plan, bpf) if launch_record is not None else None,
    }
    return plan, bpf, entry


def _uncacheable(
    spec: str,
    facts: HostFacts,
    resolved: Mapping[str, str],
    plan: Plan,
    deps: tuple[Dep, ...] | None,
) -> str | None:
    """Why this compile must not be cached, or None. Each check guards a key input."""
    import dataclasses

    if deps is None:
        return "could not list its source files"
    if {real for _, real, _ in deps} != set(plan.sources):
        return "its source files changed while compiling"
    fields = {f.name for f in dataclasses.fields(facts)}
    if fields != FACT_FIELDS:
        return f"host facts {sorted(fields - FACT_FIELDS)} are not in the cache key"
    if (facts.uid, facts.gid, facts.arch, facts.kernel) != (
        os.getuid(),
        os.getgid(),
        os.uname().machine,
        os.uname().release,
    ):
        return "host facts differ from what the cache key reads"
    # Every variable the compiler had must be in the key with the same value; names the
    # key has beyond those only make it more specific.
    ours = variables()
    if any(ours.get(name) != value for name, value in resolved.items()):
        return "variables resolve differently from what the cache key reads"
    return None


def store(
    entry: Mapping[str, object],
    log: Callable[[str], None] | None = None,
    directory: str | None = None,
) -> bool:
    """Write a compiled entry under its key, and its launch index when it has a record."""
    directory = cache_dir() if directory is None else directory
    if not write_entry(directory, str(entry["key"]), dict(entry), log):
        return False
    if entry.get("launch") is not None:
        write_index(entry, log, directory)
    return True


# The launch index. The `isorun` command is a small C program (shim/frontend.c) so that a
# warm launch starts no Python: on this kind of machine the interpreter alone takes
# several times what bubblewrap takes to start a whole sandbox. C cannot re-derive the
# cache key (repr of Python values, sha256 of marshal output), so next to an entry with
# a launch record we write an index: every condition under which the entry's plan is the
# one this CLI would compile, in a form C checks with a few syscalls, then the record
# flattened for C (isorun.sandbox.flat). C compares each condition exactly; any
# difference, or anything it cannot read, is a miss, and the Python CLI runs.
#
# Layout (native byte order; the reader is the front end of the same installation):
#   INDEX_MAGIC, u32 INDEX_FORMAT, u32 CRC-32 of the body, u64 body length, body.
# The body is a fixed sequence of fields; "bytes" is a u32 length and the bytes:
#   bytes spec, bytes cwd (getcwd), u32 uid gid euid egid,
#   bytes bindir (where the interpreter that wrote this lives: the front end must sit
#     in the same directory, so the Python it falls back to is this one),
#   4 x bytes uname sysname release version machine,
#   u32 n, n x (bytes path, u8 present, bytes content)   files read whole (userns sysctls)
#   u32 n, n x (bytes name, u8 present, bytes value)     environment variables, exact
#   u32 n, n x (bytes path, bytes realpath)              symlink resolutions
#   u8 whole env, u32 n, n x bytes pattern, u32 m, m x (bytes name, bytes value)
#                                                        the env projection launch.usable checks
#   u32 n, n x (bytes path, u64 dev ino size mtime_ns ctime_ns, u32 mode)   stat(2) fingerprints
#   bytes flat record
# The CRC only catches corruption (a torn disk block, a truncated copy): who may write
# the file is settled by its owner and mode, checked before it is read, as for entries.

INDEX_MAGIC = b"isorun-launch-index\n"
#: bump when the layout changes; frontend.c has the same number (a test compares them)
INDEX_FORMAT = 1
#: a file whose ctime is this recent gets no index: see :func:`index_blob`
INDEX_SETTLE_NS = 2_000_000_000
#: variables whose raw values the key reads (variables(), cache_dir()) or that change
#: which isorun package the Python CLI would import and so which compiler made the plan
INDEX_ENV = (
    "HOME", "TMPDIR", "USER", "LOGNAME", "XDG_CACHE_HOME",
    "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONPLATLIBDIR",
    "PYTHONSAFEPATH",
)  # fmt: skip
_MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits: the index file's name, which frontend.c computes the same way."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & _MASK64
    return h


def index_name(spec: str, cwd: str, uid: int) -> str:
    """The index file's name for ``isorun --profile spec`` run by ``uid`` in ``cwd``.

    Only a name: the file holds all its inputs and the reader compares them, so two
    launches whose names collide only miss each other's index.
    """
    material = os.fsencode(spec) + b"\0" + os.fsencode(cwd) + b"\0" + str(uid).encode()
    return f"{fnv1a64(material):016x}.launch"


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
    paths += [path for path, _, _, _ in code_stamp()]
    # The interpreter: its version is in the key (marshal, pickle, bytecode formats);
    # pyvenv.cfg decides its sys.base_prefix (${PYTHON_BASE_PREFIX}).
    paths.append(sys.executable)
    cfg = os.path.join(sys.prefix, "pyvenv.cfg")
    if os.path.exists(cfg):
        paths.append(cfg)
    return paths


def index_blob(entry: Mapping[str, object], now_ns: int | None = None) -> bytes | str:
    """The launch index of ``entry`` for this caller now, or why there is none.

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
    import zlib

    from isorun import launch

    record = entry.get("launch")
    if not isinstance(record, dict):
        return "no launch record"
    if not os.environ.get("HOME"):
        return "HOME is not set (the key would read the password database)"
    here = os.path.realpath(os.getcwd())
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    try:
        from isorun.sandbox import flat
    except ImportError:
        return "this build has no flat record encoder"
    now_ns = time.time_ns() if now_ns is None else now_ns
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
    # After the stats (see the docstring): the inputs are still those of the entry.
    spec = str(entry["spec"])
    resolved = variables()
    if entry.get("key") != entry_key(spec, resolved):
        return "the key's inputs changed since the entry was written"
    changed = check_deps(entry["deps"])  # type: ignore[arg-type]
    if changed is not None:
        return changed
    patterns = record["env_patterns"]
    if launch.env_projection(patterns) != record["env"]:
        return "a kept environment variable changed since the entry was written"
    try:
        flat_record = flat.encode(record["spec"])
    except Exception as err:  # a record the C side cannot take: no index, Python runs
        return f"the launch record cannot be flattened ({err})"

    cwd = os.getcwd()
    uname = os.uname()
    parts = [
        _field(os.fsencode(spec)),
        _field(os.fsencode(cwd)),
        *(_u32(n) for n in (os.getuid(), os.getgid(), os.geteuid(), os.getegid())),
        _field(os.fsencode(os.path.realpath(os.path.dirname(sys.executable)))),
        *(_field(os.fsencode(v)) for v in (uname.sysname, uname.release, uname.version,
                                            uname.machine)),
        _u32(len(_USERNS_SYSCTLS)),
    ]  # fmt: skip
    for path in _USERNS_SYSCTLS:
        try:
            with open(path, "rb") as f:
                content: bytes | None = f.read()
        except OSError:
            content = None
        parts.append(_field(path.encode()) + bytes([content is not None]) + _field(content or b""))
    parts.append(_u32(len(INDEX_ENV)))
    for name in INDEX_ENV:
        value = os.environ.get(name)
        parts.append(
            _field(name.encode()) + bytes([value is not None]) + _field(os.fsencode(value or ""))
        )
    # The inputs of the realpath() calls in variables(): the same strings must still
    # resolve to the same places (a swapped symlink changes ${HOME} and friends).
    real = [os.environ["HOME"], cwd, os.environ.get("TMPDIR") or "/tmp", sys.prefix,
            sys.base_prefix]  # fmt: skip
    parts.append(_u32(len(real)))
    for path in real:
        parts.append(_field(os.fsencode(path)) + _field(os.fsencode(os.path.realpath(path))))
    parts.append(bytes([patterns is None]))
    parts.append(_u32(len(patterns or ())))
    parts += [_field(os.fsencode(p)) for p in patterns or ()]
    parts.append(_u32(len(record["env"])))
    parts += [_field(os.fsencode(k)) + _field(os.fsencode(v)) for k, v in record["env"]]
    parts.append(_u32(len(stats)))
    parts += stats
    parts.append(_field(flat_record))
    body = b"".join(parts)
    return INDEX_MAGIC + _u32(INDEX_FORMAT) + _u32(zlib.crc32(body)) + _u64(len(body)) + body


def write_index(
    entry: Mapping[str, object],
    log: Callable[[str], None] | None = None,
    directory: str | None = None,
) -> bool:
    """Write the launch index of ``entry`` for this caller, if it can have one."""
    blob = index_blob(entry)
    if isinstance(blob, str):
        _warn(log, f"no launch index: {blob}")
        return False
    directory = cache_dir() if directory is None else directory
    return _write_file(directory, index_name(str(entry["spec"]), os.getcwd(), os.getuid()),
                       blob, log)  # fmt: skip
