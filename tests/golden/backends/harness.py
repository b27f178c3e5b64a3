"""Golden argv of the wrapper backends: every built-in profile, rendered for bubblewrap and
firejail with fixed host facts, variables, caller environment and descriptor numbers.

Shared by tests/unit/test_bwrap_render.py, tests/unit/test_firejail_render.py and
scripts/golden.py (`make golden`, which rewrites the files; review the diff, never edit them).
Rendered with ``allow_weaker=True`` so a file also records, as ``# LOST`` lines, every rule
the backend refuses to enforce without that flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from isorun import api
from isorun.compile.plan import MountStep, Plan
from isorun.compile.render.bwrap import file_mounts, render_bwrap
from isorun.compile.render.bwrap_mounts import BINDS
from isorun.compile.render.firejail import render_firejail
from isorun.compile.render.invocation import Identity
from isorun.host.facts import HostFacts

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden" / "backends"
BACKENDS = ("bwrap", "firejail")
FACTS = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.1")
VARIABLES = {"HOME": "/home/user", "CWD": "/home/user/project", "TMPDIR": "/tmp",
             "UID": "1000", "GID": "1000", "USER": "user",
             "PYTHON_PREFIX": "/home/user/project/.venv", "PYTHON_BASE_PREFIX": "/usr"}
#: the caller's environment: kept names pass, the rest (SECRET_TOKEN) must not
CALLER_ENV = {"PATH": "/home/user/bin:/usr/bin:/bin", "TERM": "xterm-256color",
              "LANG": "C.UTF-8", "LC_ALL": "C", "HOME": "/home/user", "CI": "true",
              "SECRET_TOKEN": "hunter2", "PYTHONPATH": "/home/user/project/src"}
ARGV = ("python3", "-c", "print('hello')")
SECCOMP_FD, FIRST_DATA_FD, HELPER_FD, LANDLOCK_FD = 10, 11, 20, 21
#: the device every walked bind source is given; inodes count up from 100 in plan order
DEV, FIRST_INO = 2049, 100


def cases() -> Iterator[tuple[str, str, str, Path]]:
    """(case name, profile path, backend, expected file) for every golden case."""
    for path in sorted((ROOT / "profiles").glob("*.toml")):
        for backend in BACKENDS:
            yield (f"{path.stem}-{backend}", str(path), backend,
                   GOLDEN / path.stem / f"{backend}.argv")


def plan_of(profile: str) -> Plan:
    return api.compile_plan(api.load_profile(profile), FACTS, VARIABLES)


def identities(plan: Plan) -> dict[str, Identity]:
    """What the runner's walk would find at each bind source: the path itself (no link
    on it), on DEV, with a distinct inode."""
    sources = [s.src for s in plan.find(MountStep) if s.type in BINDS]
    return {src: (src, DEV, FIRST_INO + i) for i, src in enumerate(dict.fromkeys(sources))}


def render(profile: str, backend: str) -> str:
    plan = plan_of(profile)
    if backend == "bwrap":
        fds = range(FIRST_DATA_FD, FIRST_DATA_FD + len(file_mounts(plan)))
        inv = render_bwrap(plan, ARGV, CALLER_ENV, seccomp_fd=SECCOMP_FD, file_fds=fds,
                           allow_weaker=True, stage_fd=HELPER_FD,
                           identities=identities(plan), landlock_fd=LANDLOCK_FD,
                           landlock=True)
    else:
        inv = render_firejail(plan, ARGV, CALLER_ENV, seccomp_fd=SECCOMP_FD,
                              env_fd=FIRST_DATA_FD, helper_fd=HELPER_FD, allow_weaker=True,
                              identities=identities(plan), landlock_fd=LANDLOCK_FD)
    return inv.describe().replace(str(ROOT) + "/", "")
