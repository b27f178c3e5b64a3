"""The plan cache's key, and what an entry was compiled from.

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

On the warm launch path: ``os``, ``sys`` and builtin modules only at the top.
"""

from __future__ import annotations

import os
import sys

from isorun.cache.files import FORMAT, _sha256
from isorun.kernel import abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from isorun.compile.plan import Plan

#: the ${NAME} variables this module knows how to key on (see :func:`variables`)
VARIABLE_NAMES = frozenset(
    {"HOME", "PASSWD_HOME", "CWD", "TMPDIR", "UID", "GID", "USER", "PYTHON_PREFIX",
     "PYTHON_BASE_PREFIX", "SSH_AUTH_SOCK"}
)
#: the HostFacts fields :func:`facts_key` covers. ``landlock`` through the kernel's
#: release and version: the kernel build decides its Landlock ABI (short of a changed
#: lsm= boot list, which the shim catches: it refuses a plan above the running ABI)
FACT_FIELDS = frozenset({"uid", "gid", "arch", "kernel", "userns", "landlock"})
_USERNS_SYSCTLS = abi.KEYED_USERNS_SYSCTLS
#: (literal path as opened, real path, sha256 hex of its bytes)
Dep = tuple[str, str, str]


def code_stamp() -> tuple[tuple[str, int, int, int], ...]:
    """(path, size, mtime_ns, inode) of every source, data and extension file of isorun.

    A version number does not change when someone edits the planner in an editable
    install; these stamps do. About 40 stat calls, well under a millisecond.
    """
    # the isorun package, this module's parent's directory
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    from isorun.host.home import passwd_home

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


class EntryInvalid(ValueError):
    """A well-formed, authentic entry whose plan does not load: a miss, never an error."""


#: what pickle.loads raises on data that is not a loadable pickle of this code's classes
#: (truncated, or naming a class or field that no longer exists)
_UNPICKLE_ERRORS = (EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError,
                    ValueError)


def load_plan(entry: Mapping[str, object]) -> Plan:
    """The Plan of an entry. Imports the plan's dataclass modules (not the compiler).
    Raises :class:`EntryInvalid` when it holds none."""
    import pickle

    from isorun.compile.plan import Plan

    # pickle runs constructors named in its input, so it is only ever given entries whose
    # tag read_entry checked: written by this user's isorun under this name, since no
    # sandbox can read the key (isorun.host.mac). Owner and mode alone cannot say that.
    try:
        plan = pickle.loads(entry["plan"])  # type: ignore[arg-type]
    except (pickle.UnpicklingError, *_UNPICKLE_ERRORS) as err:
        raise EntryInvalid(f"its plan does not load: {err}") from err
    if not isinstance(plan, Plan):
        raise EntryInvalid("it holds no Plan")
    return plan


#: what collect_deps raises on a profile tree it cannot read (ProfileError, tomli's
#: TOMLDecodeError and UnicodeDecodeError are ValueErrors; tomli recurses per nesting level,
#: so a file nested 100,000 deep is a RecursionError): the compile reports it
DEPS_ERRORS = (OSError, ValueError, RecursionError)
