"""The steps a plan is made of, each tagged with the phase it runs in and saying in a line
what it does; :mod:`isorun.compile.plan` holds their union and checks their order."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from isorun.errors import DEFAULT_LOC, Loc
from isorun.profile.schema import Seccomp


class Phase(enum.IntEnum):
    """When a step runs. Steps of a plan are sorted by phase."""

    PARENT_PRE_CLONE = 1  # checks and preparation in the launcher
    PARENT_POST_CLONE = 2  # id maps, cgroups, timers: need the child's pid
    CHILD_PRIVILEGED = 3  # mounts, pivot_root, hostname, network: need namespace caps
    CHILD_DROP = 4  # giving up what the command must not have
    CHILD_FINAL = 5  # seccomp, then execve


@dataclass(frozen=True, slots=True)
class Clone:
    """Create the namespaces (clone flags)."""

    namespaces: tuple[str, ...]
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.PARENT_PRE_CLONE

    def describe(self) -> str:
        return "new namespaces: " + (", ".join(self.namespaces) or "none")


@dataclass(frozen=True, slots=True)
class MapIds:
    """Write uid_map/gid_map of the new user namespace from the parent."""

    uid: int
    gid: int
    host_uid: int
    host_gid: int
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.PARENT_POST_CLONE

    def describe(self) -> str:
        return (f"uid {self.uid} inside = host uid {self.host_uid}, "
                f"gid {self.gid} inside = host gid {self.host_gid}")


@dataclass(frozen=True, slots=True)
class Cgroup:
    """Put the sandbox in a cgroup of its own with memory and pids limits."""

    memory: int | None
    pids: int | None
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.PARENT_POST_CLONE

    def describe(self) -> str:
        parts = [f"memory.max {self.memory}" if self.memory else "",
                 f"pids.max {self.pids}" if self.pids else ""]
        # What a cgroup covers that the rlimits do not: one budget for every process of
        # the sandbox together, page cache and tmpfs pages it writes included.
        return ("cgroup: " + ", ".join(p for p in parts if p)
                + " (the whole sandbox together, tmpfs and page cache included; needs "
                "cgroup v1 as root or a delegated cgroup v2, else the run is refused)")


@dataclass(frozen=True, slots=True)
class WallTime:
    """Kill the whole sandbox after this many seconds (exit code 124)."""

    seconds: float
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.PARENT_POST_CLONE

    def describe(self) -> str:
        return f"wall-clock limit {self.seconds:g}s"


@dataclass(frozen=True, slots=True)
class NewRoot:
    """Make the new root: ``tmpfs`` (an empty tree of ``size`` bytes, ``inodes`` inodes) or
    a rootfs directory to pivot into."""

    kind: str
    path: str = ""
    size: int | None = None
    inodes: int | None = None
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_PRIVILEGED

    def describe(self) -> str:
        if self.kind != "tmpfs":
            return f"new root: {self.path}"
        return f"new root: empty tmpfs (size {human_size(self.size)}, {self.inodes} inodes)"


def human_size(size: int | None) -> str:
    """A byte count as a profile writes it ("256m", "1g"), exact or left in bytes."""
    if size is None:
        return "None"
    for unit, factor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


@dataclass(frozen=True, slots=True)
class MountStep:
    """One mount of the file view. ``type`` is the profile's mount type."""

    type: str
    dst: str
    src: str = ""
    content: str = ""
    size: int | None = None
    mode: int | None = None
    optional: bool = False
    noexec: bool = False
    #: tmpfs, overlay and dev: the inode limit of the tmpfs (bounded with its size)
    inodes: int | None = None
    #: why the planner added this mount (a credential mask, .git kept read-only), or ""
    reason: str = ""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_PRIVILEGED

    def describe(self) -> str:
        extra = []
        if self.type in ("ro-bind", "rw-bind", "dev-bind", "overlay") and self.src != self.dst:
            extra.append(f"from {self.src}")
        if self.type == "symlink":
            extra.append(f"-> {self.src}")
        if self.size is not None:
            extra.append(f"size {human_size(self.size)}")
        if self.inodes is not None:
            extra.append(f"{self.inodes} inodes")
        if self.mode is not None:
            extra.append(f"mode {self.mode:#o}")
        if self.optional and self.type != "mask":  # a mask of nothing hides nothing
            extra.append("optional")
        if self.noexec:
            extra.append("noexec")
        if self.reason:
            extra.append(self.reason)
        return f"{self.type} {self.dst}" + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True, slots=True)
class ReadOnlyRoot:
    """Make the new root's own mount read-only once every mount is in place (mounts on it
    keep their flags)."""

    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    # After the last mount: a read-only root refuses the mount points the others need.
    phase = Phase.CHILD_PRIVILEGED

    def describe(self) -> str:
        return "remount the new root read-only (nothing can be created beside the mounts)"


@dataclass(frozen=True, slots=True)
class PivotRoot:
    """Switch to the new root and detach the old one."""

    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_PRIVILEGED

    def describe(self) -> str:
        return "pivot_root into the new root, detach the old root"


@dataclass(frozen=True, slots=True)
class Hostname:
    name: str
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_PRIVILEGED

    def describe(self) -> str:
        return f"hostname {self.name}"


@dataclass(frozen=True, slots=True)
class Loopback:
    """Bring ``lo`` up in the new network namespace (network = none)."""

    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_PRIVILEGED

    def describe(self) -> str:
        return "network: none (new network namespace, loopback up)"


#: what each rlimit covers and what it does not, as ``explain`` states it (setrlimit(2))
RLIMIT_COVERS = {
    "nproc": "RLIMIT_NPROC: processes and threads of the sandbox's uid, counted in its own "
             "user namespace (Linux 5.14+); fork and clone fail with EAGAIN beyond it",
    "data": "RLIMIT_DATA, per process: heap and private writable memory; not shared memory, "
            "tmpfs files or kernel memory; all processes together up to nproc times this",
    "address_space": "RLIMIT_AS, per process: every mapping, shared memory and "
                     "reservations included",
    "cpu": "RLIMIT_CPU, per process: CPU seconds, then SIGXCPU and SIGKILL",
    "fsize": "RLIMIT_FSIZE: the largest file a process may write (SIGXFSZ/EFBIG)",
    "nofile": "RLIMIT_NOFILE, per process: open descriptors",
    "core": "RLIMIT_CORE: 0 writes no core dumps",
    "stack": "RLIMIT_STACK, per process",
    "memlock": "RLIMIT_MEMLOCK: locked memory",
}


@dataclass(frozen=True, slots=True)
class Rlimit:
    """setrlimit(resource) to ``value`` for both soft and hard limits."""

    resource: str
    value: int
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    # Before the capability drop: raising a hard limit needs CAP_SYS_RESOURCE, and
    # lowering both here means the command can never raise them again.
    phase = Phase.CHILD_PRIVILEGED

    def describe(self) -> str:
        covers = RLIMIT_COVERS.get(self.resource, "")
        return f"rlimit {self.resource} = {self.value}" + (f" ({covers})" if covers else "")


@dataclass(frozen=True, slots=True)
class Chdir:
    path: str
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        return f"working directory {self.path}"


@dataclass(frozen=True, slots=True)
class NewSession:
    """setsid(): detach from the caller's terminal (TIOCSTI)."""

    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        return "new session (setsid)"


@dataclass(frozen=True, slots=True)
class DieWithParent:
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        return "die with parent (PR_SET_PDEATHSIG SIGKILL)"


@dataclass(frozen=True, slots=True)
class CloseFds:
    """Close every descriptor except 0, 1, 2 and ``keep``."""

    keep: tuple[int, ...]
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        kept = ", ".join(str(fd) for fd in self.keep)
        return "close descriptors above 2" + (f" except {kept}" if kept else "")


@dataclass(frozen=True, slots=True)
class Environment:
    """The command's whole environment. ``keep`` patterns are matched against the caller's
    environment at launch (values are the caller's, so they are not part of the plan)."""

    clear: bool
    keep: tuple[str, ...]
    set: tuple[tuple[str, str], ...]
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        start = "empty environment" if self.clear else "the caller's environment"
        parts = [start]
        if self.keep:
            parts.append("keep " + ", ".join(self.keep))
        if self.set:
            parts.append("set " + ", ".join(f"{k}={v}" for k, v in self.set))
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class DropCaps:
    """Drop every capability except ``keep`` from all five sets; lock securebits."""

    keep: tuple[str, ...]
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        return "drop all capabilities" + (f" except {', '.join(self.keep)}" if self.keep else "")


@dataclass(frozen=True, slots=True)
class NoNewPrivs:
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        return "no_new_privs (execve never gains privileges)"


@dataclass(frozen=True, slots=True)
class LandlockRule:
    """One rule of a :class:`Landlock` step: the rights granted beneath ``path`` (a file
    rule), or on TCP ``port``."""

    access: tuple[str, ...]
    path: str = ""
    port: int = 0
    #: a path that does not exist is skipped (its mount was optional)
    optional: bool = False
    #: the Landlock ABI these rights need
    abi: int = 1

    def describe(self) -> str:
        what = f"tcp port {self.port}" if self.port else self.path
        rights = ", ".join(self.access) or "nothing (rights this kernel lacks)"
        extra = ", optional" if self.optional else ""
        return f"{what}: {rights} (ABI {self.abi}{extra})"


@dataclass(frozen=True, slots=True)
class Landlock:
    """landlock_restrict_self(2): from here on the sandbox may only use ``handled_fs``
    rights where a rule grants them, TCP ``handled_net`` only on the ports of its rules,
    and nothing across ``scopes`` (compile/landlock.py builds it from the mounts)."""

    handled_fs: tuple[str, ...]
    handled_net: tuple[str, ...]
    scopes: tuple[str, ...]
    rules: tuple[LandlockRule, ...]
    #: the Landlock ABI the step is applied at (0: none on this kernel, nothing applied)
    abi: int
    #: what the host's ABI cannot enforce, one line per loss
    lost: tuple[str, ...] = ()
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    # After no_new_privs: without it (or CAP_SYS_ADMIN, dropped) the kernel refuses
    # landlock_restrict_self; after every mount, whose destinations the rules open.
    phase = Phase.CHILD_DROP

    def describe(self) -> str:
        if not self.abi:
            return "landlock: not applied (this kernel has no Landlock)"
        parts = [f"landlock ABI {self.abi}"]
        parts.append("files: only the rules below" if self.handled_fs else
                     "files: not restricted (the root is the host's or a writable rootfs)")
        if self.handled_net:
            parts.append(f"tcp: only the ports below for {', '.join(self.handled_net)}")
        if self.scopes:
            parts.append(f"scoped: {', '.join(self.scopes)}")
        return "; ".join(parts)

    def details(self) -> list[str]:
        """One line per rule, then per loss (explain prints them under the step)."""
        return ([f"rule {r.describe()}" for r in self.rules]
                + [f"LOST on this kernel: {line}" for line in self.lost])


@dataclass(frozen=True, slots=True)
class LoadSeccomp:
    """Load the seccomp filter compiled from ``policy``."""

    policy: Seccomp
    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_FINAL

    def describe(self) -> str:
        p = self.policy
        parts = [f"default {p.default_action}", f"unknown syscalls {p.unknown_action}"]
        if p.allow:
            parts.append(f"allow {', '.join(p.allow)}")
        if p.deny:
            parts.append(f"deny {', '.join(p.deny)} ({p.deny_action})")
        if p.rules:
            parts.append(f"{len(p.rules)} rule(s)")
        parts.append("architectures " + ", ".join(p.architectures))
        parts.append("hardening on" if p.hardening else "hardening OFF")
        return "seccomp: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Exec:
    """execve the command."""

    loc: Loc = field(default=DEFAULT_LOC, compare=False)
    phase = Phase.CHILD_FINAL

    def describe(self) -> str:
        return "execve the command"
