"""Build and find ``isorun-seccomp-exec`` (src/isorun/shim/seccomp_exec.c).

Built once per source version with the host's C compiler into a cache directory that only
the caller can write (an exec stage someone else could replace would run inside every
sandbox), statically linked so it runs whatever libraries a sandbox shows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from isorun.errors import HostError

SHIM = Path(__file__).resolve().parent.parent / "shim"
SOURCE = SHIM / "seccomp_exec.c"
#: compiled with SOURCE: the native shim's Landlock code, so both apply one ruleset logic
SOURCES = (SOURCE, SHIM / "landlock.c")
#: everything the build reads, so the cached binary's name changes with any of them
INPUTS = (*SOURCES, SHIM / "landlock.h", SHIM / "isorun_shim.h")
NAME = "isorun-seccomp-exec"
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion")


def cache_dir(uid: int | None = None, environ: dict[str, str] | None = None) -> Path:
    """Root's cache is system-wide and world-readable: a root caller's sandbox runs as
    another uid, and the bwrap launch execs the stage as that uid."""
    env = dict(os.environ) if environ is None else environ
    if (os.getuid() if uid is None else uid) == 0:
        return Path("/var/cache/isorun")
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "isorun"


def _trusted(path: Path) -> bool:
    """Owned by us and writable by nobody else, the directory and the file alike."""
    try:
        for item in (path.parent, path):
            st = item.stat()
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def exec_stage_path(directory: Path | None = None) -> str:
    """The built stage, building it on first use. Raises HostError without a compiler."""
    source = b"".join(path.read_bytes() for path in INPUTS)
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    directory = cache_dir() if directory is None else directory
    target = directory / f"{NAME}-{digest}"
    if _trusted(target):
        return str(target)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise HostError("the exec stage (isorun-seccomp-exec)",
                        "no C compiler to build it for the bwrap and firejail backends",
                        "apt-get install gcc libc6-dev (or use the native backend)")
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=f".{NAME}-", dir=directory)
    os.close(fd)
    try:
        for link in (("-static",), ()):  # static where libc.a exists, else dynamic
            done = subprocess.run([cc, *CFLAGS, *link, f"-I{SHIM}", "-o", tmp,
                                   *(str(path) for path in SOURCES)],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                break
        else:
            raise HostError("the exec stage (isorun-seccomp-exec)",
                            f"{cc} failed: {done.stderr.strip()[-500:]}",
                            "install a working C toolchain (apt-get install gcc libc6-dev)")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a concurrent launch sees the old or the new file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(target)
