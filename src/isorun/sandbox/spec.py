"""The flat spec the native shim walks: everything resolved, nothing left to decide in C.

The parent builds a :class:`ShimSpec` from a plan (absolute paths as bytes, flag integers,
the compiled seccomp program as bytes) so that the child, between clone and execve, only
makes syscalls in a fixed order. ``step`` indexes let a failure in the child be mapped
back to the plan step (and so to the profile line) that asked for it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from isorun.sandbox import record as table

if TYPE_CHECKING:
    from isorun.sandbox.parent import Record


class MountKind(enum.IntEnum):
    """What a :class:`ShimMount` makes; the values are sandbox/record.py's, part of the shim ABI."""

    #: bind src onto dst; flags may carry MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC
    BIND = table.MOUNT_KINDS["BIND"]
    #: tmpfs at dst; data holds "size=...,mode=..."
    TMPFS = table.MOUNT_KINDS["TMPFS"]
    #: a new procfs at dst (needs a new pid namespace); /proc/sys etc. made read-only
    PROC = table.MOUNT_KINDS["PROC"]
    #: a minimal /dev at dst: null zero full random urandom tty, pts/ptmx, shm
    DEV = table.MOUNT_KINDS["DEV"]
    #: symlink at dst pointing to src (the link text)
    SYMLINK = table.MOUNT_KINDS["SYMLINK"]
    #: regular file at dst holding src (the content), mode from ``mode``
    FILE = table.MOUNT_KINDS["FILE"]
    #: directory at dst with ``mode``
    DIR = table.MOUNT_KINDS["DIR"]
    #: bind src onto dst keeping device nodes usable (no MS_NODEV)
    DEV_BIND = table.MOUNT_KINDS["DEV_BIND"]
    #: a new mqueue fs at dst (with a new ipc namespace)
    MQUEUE = table.MOUNT_KINDS["MQUEUE"]
    #: attach the detached tree ``tree_fd`` at dst (a BIND resolved by a root parent)
    TREE = table.MOUNT_KINDS["TREE"]
    #: make the mount at dst read-only, not its submounts (the new root)
    REMOUNT_RO = table.MOUNT_KINDS["REMOUNT_RO"]
    #: overlayfs at dst: src the lower layer, changes on a tmpfs (data: its size)
    OVERLAY = table.MOUNT_KINDS["OVERLAY"]
    #: hide dst if it exists: an empty read-only tmpfs, or /dev/null over a file
    MASK = table.MOUNT_KINDS["MASK"]


@dataclass(frozen=True, slots=True)
class ShimMount:
    """One filesystem operation in the new root, in plan order."""

    kind: MountKind
    #: destination inside the sandbox, absolute
    dst: bytes
    #: host source path (BIND, DEV_BIND), link text (SYMLINK) or file content (FILE)
    src: bytes = b""
    #: MS_* flags applied by the read-only remount of a bind, or passed to mount(2)
    flags: int = 0
    #: mount(2) data, e.g. b"size=64m,mode=1777" for a tmpfs
    data: bytes = b""
    #: permission bits for FILE, DIR and TMPFS roots
    mode: int = 0o755
    #: a missing source is skipped instead of failing the launch
    optional: bool = False
    #: index of the plan step that asked for this mount, for error messages
    step: int = -1
    #: TREE: the parent's open_tree(OPEN_TREE_CLONE) descriptor, inherited by the child
    tree_fd: int = -1


@dataclass(frozen=True, slots=True)
class Rlimit:
    """setrlimit(resource, soft, hard); RLIM_INFINITY is -1 here and mapped in C."""

    resource: int
    soft: int
    hard: int
    step: int = -1


@dataclass(frozen=True, slots=True)
class ShimSpec:
    """Everything the child does between clone and execve, in the order the shim fixes."""

    #: the program and its arguments; ``argv[0]`` is looked up in PATH from ``env`` in C
    argv: tuple[bytes, ...]
    #: the whole environment of the command, ``KEY=VALUE``
    env: tuple[bytes, ...] = ()
    #: CLONE_NEW* flags for clone(2)
    clone_flags: int = 0
    #: contents for /proc/PID/uid_map and gid_map, written by the parent after clone
    uid_map: bytes = b""
    gid_map: bytes = b""
    #: write "deny" to /proc/PID/setgroups before gid_map (required unprivileged, see
    #: user_namespaces(7): a process without CAP_SETGID in the parent ns must deny it)
    setgroups_deny: bool = True
    #: ids the command runs as, inside the user namespace
    uid: int = 0
    gid: int = 0
    #: b"" keeps the host root (no mount namespace); otherwise "tmpfs" builds a new root on a
    #: tmpfs from ``mounts``, or an absolute rootfs directory to pivot into
    root: bytes = b"tmpfs"
    mounts: tuple[ShimMount, ...] = ()
    #: directory to chdir into after the new root is in place
    cwd: bytes = b"/"
    hostname: bytes = b""
    #: bring ``lo`` up in a new network namespace
    loopback_up: bool = True
    rlimits: tuple[Rlimit, ...] = ()
    #: setsid(2); when false the command shares the terminal and the seccomp program
    #: must deny TIOCSTI/TIOCLINUX (the planner checks this)
    new_session: bool = True
    #: with new_session, when the command's stdin is the launcher's controlling terminal
    #: and the launcher its foreground job (the CLI): stay in the launcher's session and
    #: process group instead of setsid, so a shell gets job control, ^C and ^Z (shim
    #: exec.c, isorun_child_confine). Only when the filter refuses TIOCSTI/TIOCLINUX.
    terminal_job: bool = False
    #: PR_SET_PDEATHSIG(SIGKILL) so the sandbox dies with the launcher
    die_with_parent: bool = True
    #: descriptors that stay open (besides 0, 1, 2); all others are closed
    keep_fds: tuple[int, ...] = ()
    #: capability numbers kept in bounding/permitted/effective/inheritable/ambient
    caps_keep: tuple[int, ...] = ()
    no_new_privs: bool = True
    #: the seccomp program as raw ``struct sock_filter`` array (8 bytes per instruction);
    #: b"" loads no filter
    seccomp_bpf: bytes = b""
    #: learn mode: a second program whose SECCOMP_RET_USER_NOTIF answers go to a listener
    #: the launcher takes over (see shim/child/notify.c); b"" for none
    notify_bpf: bytes = b""
    #: Landlock (shim/child/landlock.c): the ABI the rules were planned for (0: no Landlock),
    #: the handled file and TCP rights and the scopes as the kernel's bit masks, and the
    #: rules as (path, port, access mask, optional): a path rule when path is not b""
    landlock_abi: int = 0
    landlock_fs: int = 0
    landlock_net: int = 0
    landlock_scoped: int = 0
    landlock_rules: tuple[tuple[bytes, int, int, bool], ...] = ()
    #: run a pid-1 in the new pid namespace that reaps orphans and forwards signals
    init: bool = True
    #: cgroup directory (absolute host path) the child is moved into before it runs;
    #: b"" for none. The parent creates it and writes the limits.
    cgroup: bytes = b""
    #: step index for each fixed step name, for error mapping (e.g. "hostname": 7)
    step_index: dict[str, int] = field(default_factory=dict, compare=False, hash=False)


def spec_record(spec: ShimSpec) -> Record:
    """``spec`` as plain data for :mod:`isorun.sandbox.parent`, which starts every sandbox.

    Every field of :data:`isorun.sandbox.record.FIELDS` under its own name (a unit test
    holds ShimSpec's fields to that table); mounts and rlimits become tuples in the order
    of MOUNT_FIELDS and RLIMIT_FIELDS, a MountKind its int. Only bytes, ints, bools,
    tuples and a dict of ints, so a record marshals into the plan cache and the warm
    launch needs neither dataclasses nor enum to read it. Changing this layout means
    bumping ``parent.RECORD_FORMAT``.
    """
    record = {name: getattr(spec, name) for name, _how in table.FIELDS}
    record["mounts"] = tuple(
        tuple(int(getattr(m, name)) if name == "kind" else getattr(m, name)
              for name in table.MOUNT_FIELDS)
        for m in spec.mounts
    )  # fmt: skip
    record["rlimits"] = tuple(tuple(getattr(r, name) for name in table.RLIMIT_FIELDS)
                              for r in spec.rlimits)  # fmt: skip
    record["step_index"] = dict(spec.step_index)
    return record
