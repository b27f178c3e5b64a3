"""Parent-side cgroups: a cgroup of its own per sandbox with memory and pids limits.

cgroup v2 when a delegated hierarchy is writable and offers the controllers; otherwise the
cgroup v1 ``memory`` and ``pids`` hierarchies when running as root; otherwise fail closed
with :class:`HostError`. The cgroup is created and limited before the child is released,
so nothing the sandbox runs is ever outside the limits, and removed after it exits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from isorun.errors import HostError, SandboxSetupError

_WHAT = "cgroup limits"
_FIX = (
    "bound each process instead, which needs no cgroup: limits.data (RLIMIT_DATA) for "
    "memory, limits.nproc (RLIMIT_NPROC) for processes; or run as root (cgroup v1 memory "
    "and pids); or delegate a cgroup v2 subtree with the memory and pids controllers, e.g. "
    "systemd-run --user --scope -p Delegate=yes isorun ..."
)


def check_enforceable_in_parent(memory_max: int | None, pids_max: int | None,
                                mounts: Mounts | None = None) -> None:
    """Raise HostError when this caller on this host cannot make the cgroup a run with
    these limits needs: what ``isorun check`` and ``isorun doctor`` say before a run."""
    plan_cgroup_in_parent(memory_max, pids_max, b"", mounts)


@dataclass(frozen=True, slots=True)
class Mounts:
    """Where the hierarchies are mounted and where this process sits in each."""

    #: cgroup2 mount point and our cgroup in it, or None
    v2: tuple[Path, str] | None
    #: controller name -> (mount point, our cgroup) for cgroup v1
    v1: dict[str, tuple[Path, str]]


def read_mounts_in_parent(
    mountinfo: str = "/proc/self/mountinfo", cgroup: str = "/proc/self/cgroup"
) -> Mounts:
    """Parse mountinfo and /proc/self/cgroup (paths injectable for tests)."""
    own_v2 = ""
    own_v1: dict[str, str] = {}
    for line in Path(cgroup).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:
            own_v2 = path
        for name in controllers.split(","):
            if name:
                own_v1[name] = path
    v2: tuple[Path, str] | None = None
    v1: dict[str, tuple[Path, str]] = {}
    for line in Path(mountinfo).read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3]
        mountpoint = Path(fields[4])
        if fstype == "cgroup2" and v2 is None:
            v2 = (mountpoint, own_v2)
        elif fstype == "cgroup":
            for name in ("memory", "pids"):
                if name in options.split(",") and name in own_v1:
                    v1[name] = (mountpoint, own_v1[name])
    return Mounts(v2, v1)


def _under(mount: Path, own: str) -> Path:
    return mount / own.lstrip("/")


def _v2_usable(parent: Path, needed: set[str]) -> bool:
    if not os.access(parent, os.W_OK):
        return False
    try:
        offered = set((parent / "cgroup.controllers").read_text().split())
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
    except OSError:
        return False
    if not needed <= offered:
        return False
    missing = needed - enabled
    if not missing:
        return True
    try:
        (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
    except OSError:
        # EBUSY: the parent holds processes ("no internal processes" rule, cgroups(7)).
        return False
    return True


@dataclass(frozen=True, slots=True)
class CgroupPlan:
    """Where the sandbox's cgroup goes, decided before clone so a refusal leaves nothing."""

    #: parent directories to create one child cgroup in (one for v2, one per v1 controller)
    parents: tuple[Path, ...]
    version: int
    memory_max: int | None
    pids_max: int | None
    #: an explicit v2 directory from the spec, used as is
    explicit: Path | None = None


def plan_cgroup_in_parent(
    memory_max: int | None, pids_max: int | None, path: bytes, mounts: Mounts | None = None
) -> CgroupPlan | None:
    """Pick the hierarchy, or raise HostError (fail closed). None when nothing is asked."""
    if not memory_max and not pids_max and not path:
        return None
    mounts = mounts if mounts is not None else read_mounts_in_parent()
    needed = {name for name, value in (("memory", memory_max), ("pids", pids_max)) if value}
    if path:
        explicit = Path(os.fsdecode(path))
        if _v2_usable(explicit.parent, needed):
            return CgroupPlan((explicit.parent,), 2, memory_max, pids_max, explicit)
        raise HostError(
            _WHAT,
            f"{explicit.parent} is not a writable cgroup v2 directory "
            f"offering {', '.join(sorted(needed)) or 'placement'}",
            _FIX,
        )
    if mounts.v2 is not None:
        parent = _under(*mounts.v2)
        if _v2_usable(parent, needed):
            return CgroupPlan((parent,), 2, memory_max, pids_max)
    if os.geteuid() == 0 and all(name in mounts.v1 for name in needed):
        parents = tuple(_under(*mounts.v1[name]) for name in sorted(needed))
        return CgroupPlan(parents, 1, memory_max, pids_max)
    raise HostError(
        _WHAT,
        "no writable cgroup v2 hierarchy with "
        f"{' and '.join(sorted(needed))}, and cgroup v1 needs root",
        _FIX,
    )


@dataclass(frozen=True, slots=True)
class Cgroup:
    """The sandbox's cgroup directories (one per v1 controller, or one v2 directory)."""

    dirs: tuple[Path, ...]
    version: int

    def attach_in_parent(self, pid: int) -> None:
        """Move ``pid`` in; its descendants inherit the cgroup at fork."""
        for directory in self.dirs:
            _write(directory / "cgroup.procs", str(pid), "cgroup", "write(cgroup.procs)")

    def kill_in_parent(self) -> None:
        """SIGKILL everything in the cgroup (stragglers outside a pid namespace)."""
        for directory in self.dirs:
            kill_file = directory / "cgroup.kill"
            if self.version == 2 and kill_file.exists():
                try:
                    kill_file.write_text("1")
                    continue
                except OSError:
                    pass
            for _ in range(10):
                try:
                    pids = [int(p) for p in (directory / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

    def remove_in_parent(self, timeout: float = 2.0) -> None:
        """rmdir every directory; retries while the last exiting tasks leave (EBUSY)."""
        deadline = time.monotonic() + timeout
        for directory in self.dirs:
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise SandboxSetupError(
                            "cgroup", "rmdir", err.errno or 0, detail=str(directory)
                        ) from err
                    self.kill_in_parent()
                    time.sleep(0.005)


def _write(path: Path, text: str, step: str, syscall: str) -> None:
    try:
        path.write_text(text)
    except OSError as err:
        raise SandboxSetupError(step, syscall, err.errno or 0, detail=str(path)) from err


def create_cgroup_in_parent(plan: CgroupPlan, name: str) -> Cgroup:
    """Create the cgroup directories and write the limits (before the child may run)."""
    dirs = (plan.explicit,) if plan.explicit is not None else tuple(p / name for p in plan.parents)
    made: list[Path] = []
    try:
        for directory in dirs:
            try:
                directory.mkdir()
            except OSError as err:
                raise SandboxSetupError(
                    "cgroup", "mkdir", err.errno or 0, detail=str(directory)
                ) from err
            made.append(directory)
        group = Cgroup(dirs, plan.version)
        for directory in dirs:
            if plan.version == 2:
                if plan.memory_max:
                    _write(
                        directory / "memory.max",
                        str(plan.memory_max),
                        "cgroup",
                        "write(memory.max)",
                    )
                    # Swap would let the sandbox exceed memory.max by paging out.
                    swap = directory / "memory.swap.max"
                    if swap.exists():
                        _write(swap, "0", "cgroup", "write(memory.swap.max)")
                if plan.pids_max:
                    _write(directory / "pids.max", str(plan.pids_max), "cgroup", "write(pids.max)")
            elif (directory / "memory.limit_in_bytes").exists() and plan.memory_max:
                _write(
                    directory / "memory.limit_in_bytes",
                    str(plan.memory_max),
                    "cgroup",
                    "write(memory.limit_in_bytes)",
                )
                # memsw >= limit is enforced by the kernel, so it goes after the limit.
                memsw = directory / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    _write(
                        memsw, str(plan.memory_max), "cgroup", "write(memory.memsw.limit_in_bytes)"
                    )
            elif (directory / "pids.max").exists() and plan.pids_max:
                _write(directory / "pids.max", str(plan.pids_max), "cgroup", "write(pids.max)")
        return group
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
