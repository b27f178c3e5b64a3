"""The compiled-plan cache: a profile compiled once, then launched without the compiler.

An entry holds the plan, its seccomp program (raw BPF) and, when the profile allows it,
the flat launch record :mod:`isorun.launch` hands to the shim. It lives in
``$XDG_CACHE_HOME/isorun`` (default ``~/.cache/isorun``), one file per key. Next to an
entry with a launch record, :mod:`isorun.launch_index` writes what the C front end checks.

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

Authenticated: an entry's header holds a tag (:mod:`isorun.host.mac`, a keyed BLAKE2b under
the caller's key in the kernel keyring) of its file name and its payload, checked before
anything in it is decoded. Owner and mode cannot tell the caller's files from ones a
sandbox of the same uid wrote into a directory a later launch names as its cache; the
tag can (no sandbox can read the key). No key: a miss, and nothing is stored.

Fail closed: every doubt (a foreign or group/world-writable file, a tag that does not
match, an input that changed, a compiler that grew an input this module does not know)
means recompile. A cache can make a launch faster, never its sandbox weaker.

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
#: (2: the header's SHA-256 became the tag of isorun.host.mac)
FORMAT = 2
MAGIC = b"isorun-plan-cache\n"

#: the ${NAME} variables this module knows how to key on (see :func:`variables`)
VARIABLE_NAMES = frozenset(
    {"HOME", "PASSWD_HOME", "CWD", "TMPDIR", "UID", "GID", "USER", "PYTHON_PREFIX",
     "PYTHON_BASE_PREFIX", "SSH_AUTH_SOCK"}
)
#: the HostFacts fields :func:`facts_key` covers. ``landlock`` through the kernel's
#: release and version: the kernel build decides its Landlock ABI (short of a changed
#: lsm= boot list, which the shim catches: it refuses a plan above the running ABI)
FACT_FIELDS = frozenset({"uid", "gid", "arch", "kernel", "userns", "landlock"})
_USERNS_SYSCTLS = (  # shim/launch_index.c has this list too, in this order
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


def check_not_writable(plan: Plan, directory: str | None = None) -> None:
    """Refuse ``plan`` when its sandbox could write the plan cache ``directory``, or the
    installation this isorun runs from.

    An entry holds a pickle, which runs constructors named in it, and a launch record the
    shim applies as it stands; both are trusted only with a tag no sandbox can forge
    (:func:`read_entry`, :mod:`isorun.host.mac`). A writable mount over the cache
    (``XDG_CACHE_HOME`` inside the project with build's writable ``${CWD}``, a profile
    binding ``~/.cache``) is refused all the same: the sandbox could delete entries or
    put back older ones of its choosing, and whatever else lives there (the exec stage,
    pytest session profiles) is not tagged. The same holds for
    isorun's own installation: its package, and the Python environments it runs in
    (``sys.prefix``: a ``.pth`` file in its site-packages runs at every interpreter start,
    its bin holds the ``isorun`` program; ``sys.base_prefix``: the standard library), a
    virtual environment inside the project being the usual case. Checked on every compile
    for a launch, so a plan refused here is never stored for a warm launch either.
    """
    from isorun.compile import plan as p
    from isorun.errors import HostError

    real = os.path.realpath(cache_dir() if directory is None else directory)
    guarded = [(real, f"isorun's plan cache {real}", "rewrite the plans that later launches "
                "load and run on the host",
                "set XDG_CACHE_HOME to a directory outside every writable mount (unset, "
                "the cache is ~/.cache/isorun), or make the mount read-only")]
    package = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    install_fix = ("install isorun (its virtual environment) outside every writable mount, "
                   "e.g. python3 -m venv ~/.venvs/NAME, or make the mount read-only")
    guarded.append((package, f"the isorun package {package}", "rewrite the code that every "
                    "later launch runs on the host", install_fix))
    for prefix in dict.fromkeys(os.path.realpath(x) for x in (sys.prefix, sys.base_prefix)):
        guarded.append((prefix, f"the Python environment {prefix} that isorun runs in",
                        "plant modules and .pth files that every later start of isorun "
                        "runs on the host", install_fix))
    for step in plan.find(p.MountStep):
        if step.type not in ("rw-bind", "dev-bind") or not step.src:
            continue
        top = step.src.rstrip("/")
        for path, what, harm, fix in guarded:
            if path == step.src or not top or path.startswith(top + "/"):
                raise HostError(f"{step.loc.short()}: {step.describe()}",
                                f"{what} lies inside this writable mount: the sandbox could "
                                f"{harm}", fix)


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


def variables(environ: Mapping[str, str] | None = None,
              cwd: str | None = None) -> dict[str, str]:
    """The ``${NAME}`` variables as :func:`isorun.host.facts.variables` resolves them.

    Kept cheap for the launch path. :func:`store` checks that both agree (and that
    facts.variables knows no other name) before writing, so a change there turns the
    cache off instead of serving plans resolved the old way.
    """
    from isorun.host import venv
    from isorun.host.facts import passwd_home

    env = os.environ if environ is None else environ
    uid = os.getuid()
    prefix, base_prefix = venv.prefixes(env)
    return {
        "HOME": os.path.realpath(env.get("HOME") or os.path.expanduser("~")),
        "PASSWD_HOME": passwd_home(uid),
        "CWD": os.path.realpath(os.getcwd() if cwd is None else cwd),
        "TMPDIR": os.path.realpath(env.get("TMPDIR") or "/tmp"),
        "UID": str(uid),
        "GID": str(os.getgid()),
        "USER": env.get("USER") or env.get("LOGNAME") or str(uid),
        "PYTHON_PREFIX": os.path.realpath(prefix),
        "PYTHON_BASE_PREFIX": os.path.realpath(base_prefix),
        "SSH_AUTH_SOCK": env.get("SSH_AUTH_SOCK", ""),
    }


def entry_key(spec: str, resolved: Mapping[str, str]) -> str:
    """The hex key of ``spec`` compiled for this caller with ``resolved`` variables."""
    from isorun import version
    from isorun.sandbox.parent import RECORD_FORMAT

    material = (
        FORMAT,
        RECORD_FORMAT,
        version.__version__,
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
    from pathlib import Path

    import tomli

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
        # Only ``extends`` is needed, so the parser alone (a tenth of the loader's cost) is
        # enough; if it read the list differently from the loader, the file set would
        # differ from plan.sources and compile_entry would not cache (fail closed). The
        # loader's parser, not 3.11's tomllib: that one takes time quadratic in a dotted
        # key's parts (200,000 of them, 400 KB: about 20 minutes), tomli stops at 1,000.
        extends = tomli.loads(data.decode()).get("extends", [])
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
    """The entry in ``path`` when it is safe and authentic, else None (with a note to ``log``).

    Safe: a regular file (no symlink followed), owned by the caller, not writable by
    group or others. Authentic: magic and format match, and the header's tag is the
    caller's key's tag of this file name and the payload (:mod:`isorun.host.mac`), checked
    before the payload is decoded. No key (none made yet, keyctl refused): None.
    """
    from isorun.host import mac

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
    head = len(MAGIC) + 1 + mac.TAG_SIZE
    if len(blob) < head or not blob.startswith(MAGIC) or blob[len(MAGIC)] != FORMAT:
        _warn(log, f"ignoring {path}: corrupt or from another version")
        return None
    secret = mac.key()
    if secret is None:
        _warn(log, f"ignoring {path}: no cache key in the kernel keyring to check it with")
        return None
    payload = memoryview(blob)[head:]
    if not mac.verify(secret, b"entry", os.path.basename(path), payload,
                      blob[len(MAGIC) + 1 : head]):
        _warn(log, f"ignoring {path}: corrupt, or not written by this user's isorun under "
                   "this name (its tag does not match)")
        return None
    try:
        entry = marshal.loads(payload)
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
    """Write ``entry`` atomically (see :func:`_write_file`), tagged under the caller's key
    (made now if there is none); without a key, nothing is written."""
    from isorun.host import mac

    secret = mac.key(create=True)
    if secret is None:
        _warn(log, "not caching: no key in the kernel keyring (keyctl refused?) to tag "
                   "entries with")
        return False
    payload = marshal.dumps(entry)
    blob = MAGIC + bytes([FORMAT]) + mac.tag(secret, b"entry", key, payload) + payload
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

    # pickle runs constructors named in its input, so it is only ever given entries whose
    # tag read_entry checked: written by this user's isorun under this name, since no
    # sandbox can read the key (isorun.host.mac). Owner and mode alone cannot say that.
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

    from isorun.compile.pipeline import compile_plan, seccomp_program
    from isorun.host import facts as host_facts

    try:
        deps: tuple[Dep, ...] | None = collect_deps(spec)
    except Exception:
        deps = None  # the compile below reports the problem with its location
    facts = host_facts.probe()
    resolved = host_facts.variables(facts)
    plan = compile_plan(spec, facts, resolved)
    check_not_writable(plan)
    bpf = seccomp_program(plan)
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
        from isorun import launch_index

        launch_index.write_index(entry, log, directory)
    return True
