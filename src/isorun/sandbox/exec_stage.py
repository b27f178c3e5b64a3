"""Build and find ``isorun-seccomp-exec`` (src/isorun/shim/stage/seccomp_exec.c).

Built once per source version with the host's C compiler into a cache directory that only
the caller can write (an exec stage someone else could replace would run inside every
sandbox, and on the host too: bwrap's launch runs it before bwrap to set the limits),
statically linked so it runs whatever libraries a sandbox shows. Used again only with
the tag it was built with (:func:`_authentic`), as the plan cache's entries are.

The compiler is the system's (``/usr/bin``, ``/bin``) with an environment of our own: the
caller's ``PATH`` often starts with a directory a sandbox could have written (a project's
``.venv/bin`` or ``node_modules/.bin``), and gcc takes its subprograms, headers and
temporary files from variables (``COMPILER_PATH``, ``GCC_EXEC_PREFIX``, ``C_INCLUDE_PATH``,
``TMPDIR``) that could name such a directory too.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from isorun.errors import HostError, os_failure

SHIM = Path(__file__).resolve().parent.parent / "shim"
SOURCE = SHIM / "stage" / "seccomp_exec.c"
#: compiled with SOURCE: its own parts, the native shim's Landlock code, so both apply one
#: ruleset logic, and its BPF evaluator (the refusal report's hand-over check)
SOURCES = (
    SOURCE, SHIM / "stage" / "seccomp_exec_input.c", SHIM / "stage" / "seccomp_exec_expect.c",
    SHIM / "stage" / "seccomp_exec_report.c", SHIM / "child" / "landlock.c",
    SHIM / "child" / "bpf_eval.c",
)
#: where its quoted #includes are found, besides the generated consts.h and tables.h
INCLUDE_DIRS = (SHIM, SHIM / "stage", SHIM / "child")
#: everything the build reads, so the cached binary's name changes with any of them: the
#: sources, and the Python definitions its consts.h and tables.h are generated from
INPUTS = (
    *SOURCES, SHIM / "stage" / "seccomp_exec.h", SHIM / "child" / "landlock.h",
    SHIM / "child" / "bpf_eval.h", SHIM / "isorun_shim.h",
    SHIM / "headers.py", SHIM / "abi.py", SHIM.parent / "kernel" / "abi.py",
    SHIM.parent / "sandbox" / "record.py",
)
NAME = "isorun-seccomp-exec"
#: the ``what`` of every HostError of this module
WHAT = "the exec stage (isorun-seccomp-exec)"
#: the fix when the built stage cannot be executed
NOEXEC_FIX = ("its cache directory must allow execution (not on a noexec mount): point "
              "XDG_CACHE_HOME at one that does, or use the native backend")
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion")


def cache_dir(uid: int | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Root's cache is system-wide and world-readable: a root caller's sandbox runs as
    another uid, and the bwrap launch execs the stage as that uid."""
    if (os.getuid() if uid is None else uid) == 0:
        return Path("/var/cache/isorun")
    # isorun.cache.files.cache_dir's directory, by its rule (a relative XDG_CACHE_HOME is
    # invalid and ignored; importing it from here would be an upward import, and
    # tests/escape/test_attack_host_trust.py keeps the two equal). A relative one put the
    # stage in the working directory, which build binds writable, and
    # cache.store.check_not_writable guards only the directory cache.files.cache_dir names.
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "isorun"


def _authentic(path: Path) -> bool:
    """The stage's bytes carry the tag this user's isorun wrote beside them when it built
    them (``NAME-DIGEST.tag``, :mod:`isorun.host.mac`). Owner and mode cannot say so: a
    sandbox of an unprivileged caller writes files as that same uid, and a cache
    directory named later (``XDG_CACHE_HOME`` changed between runs) may be one an earlier
    sandbox could write. No key: not authentic, and the stage is built again."""
    from isorun.host import mac

    secret = mac.key()
    if secret is None:
        return False
    try:
        data = _read(path)
        tag = _read(path.with_name(path.name + ".tag"))
    except OSError:
        return False
    return mac.verify(secret, b"stage", path.name, data, tag)


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _write_tag(target: Path, built: str) -> None:
    """Tag the stage just built (its bytes as written to ``built``); without a key, none,
    and the next launch builds it again."""
    from isorun.host import mac

    secret = mac.key(create=True)
    if secret is None:
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{NAME}-tag-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(mac.tag(secret, b"stage", target.name, _read(Path(built))))
        os.replace(tmp, target.with_name(target.name + ".tag"))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _trusted(path: Path) -> bool:
    """Owned by us and writable by nobody else, the directory and the file alike, and
    neither a symbolic link: a link there would vouch for whatever file it points to."""
    try:
        for item, kind in ((path.parent, stat.S_ISDIR), (path, stat.S_ISREG)):
            st = item.lstat()
            if not kind(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


#: where the compiler is looked for: root-owned system directories only (see the module
#: docstring); the environment it runs with names nothing of the caller's
COMPILER_PATH = "/usr/bin:/bin"


def stage_name() -> str:
    """The built stage's file name: it changes with every input of the build."""
    source = b"".join(path.read_bytes() for path in INPUTS)
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    return f"{NAME}-{digest}"


def exec_stage_path(directory: Path | None = None) -> str:
    """The built stage, building it on first use. Raises HostError without a compiler."""
    directory = cache_dir() if directory is None else directory
    target = directory / stage_name()
    if _trusted(target) and _authentic(target):
        return str(target)
    cc = shutil.which("cc", path=COMPILER_PATH) or shutil.which("gcc", path=COMPILER_PATH)
    if cc is None:
        raise HostError(WHAT,
                        f"no C compiler (cc or gcc) in {COMPILER_PATH} to build it for the "
                        "bwrap and firejail backends (isorun runs no compiler from PATH: a "
                        "directory there may be one a sandbox could write)",
                        "apt-get install gcc libc6-dev (or use the native backend)")
    with _in_cache(directory, "mkdir"):
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    with _in_cache(directory, "chmod"):
        os.chmod(directory, 0o755)
    with _in_cache(directory, "open"):
        fd, tmp = tempfile.mkstemp(prefix=f".{NAME}-", dir=directory)
    os.close(fd)
    # gcc's temporary files go to this directory, which only we can write (the chmod
    # above succeeds for its owner only): in a shared TMPDIR an object file between
    # gcc's steps could be swapped.
    env = {"PATH": COMPILER_PATH, "LC_ALL": "C", "TMPDIR": str(directory)}
    gen = ""
    try:
        with _in_cache(directory, "mkdir"):
            gen = tempfile.mkdtemp(prefix=f".{NAME}-gen-", dir=directory)
        from isorun.shim import headers

        with _in_cache(directory, "write"):
            headers.write(Path(gen))
        _compile(cc, gen, tmp, env)
        with _in_cache(directory, "chmod"):
            os.chmod(tmp, 0o755)
        # The tag first: a launch between the two renames finds the old stage with the
        # new tag, a mismatch, and builds again (never the other way round).
        with _in_cache(directory, "write"):
            _write_tag(target, tmp)
        with _in_cache(directory, "rename"):
            os.replace(tmp, target)  # atomic: a concurrent launch sees the old or the new
    finally:
        if gen:
            shutil.rmtree(gen, ignore_errors=True)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(target)


def _compile(cc: str, gen: str, out: str, env: Mapping[str, str]) -> None:
    """Build the stage into ``out``: statically where libc.a exists, else dynamically."""
    for link in (("-static",), ()):
        includes = [f"-I{gen}", *(f"-I{d}" for d in INCLUDE_DIRS)]
        try:
            done = subprocess.run([cc, *CFLAGS, *link, *includes, "-o", out,
                                   *(str(path) for path in SOURCES)], env=env,
                                  capture_output=True, text=True, check=False)
        except OSError as err:
            raise HostError(WHAT, f"cannot start the C compiler ({cc}): "
                            f"{os_failure('execve', err)}",
                            "install a working C toolchain (apt-get install gcc libc6-dev)"
                            ) from err
        if done.returncode == 0:
            return
    raise HostError(WHAT, f"{cc} failed: {done.stderr.strip()[-500:]}",
                    "install a working C toolchain (apt-get install gcc libc6-dev)")


@contextmanager
def _in_cache(directory: Path, syscall: str) -> Iterator[None]:
    """An OSError of ``syscall`` on the stage's cache directory (or a file in it) as the
    HostError that names both: that directory cannot hold a new build."""
    try:
        yield
    except OSError as err:
        where = "" if err.filename in (None, str(directory)) else f" ({err.filename})"
        raise HostError(WHAT, f"cannot build it in {directory}{where}: "
                        f"{os_failure(syscall, err)}",
                        f"let uid {os.getuid()} create and write {directory}, or point "
                        "XDG_CACHE_HOME at a directory it can") from err


def open_stage(backend: str) -> int:
    """A read-only descriptor of the built stage (building it first), which the wrappers
    hand on so that no host path of it has to be visible in the sandbox.

    Checked executable here (access(2) answers EACCES on a noexec mount too): the
    wrapper execs it as /proc/self/fd/N inside the sandbox, where a refused execve would
    reach the caller only as the wrapper's own one-line message."""
    path = exec_stage_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise HostError(WHAT, f"cannot open {path}: {os_failure('open', err)}",
                        f"remove {path} so that the next launch builds it again") from err
    if not os.access(path, os.X_OK):
        os.close(fd)
        refused = OSError(errno.EACCES, os.strerror(errno.EACCES), path)
        raise HostError(f"backend {backend}", f"cannot start the exec stage ({path}): "
                        f"{os_failure('execve', refused)}", NOEXEC_FIX)
    return fd
