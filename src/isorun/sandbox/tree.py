"""Bind sources resolved by a root parent: open_tree(2) clones the child attaches.

A root caller's sandbox runs as the host's overflow uid (see planner._identity), and that
uid cannot walk through the host's 0700 directories: a bind of /root/.pyenv/... (where a
root user's Python lives) fails with EACCES in the child. The parent is still root, so it
clones each bind source as a detached tree (OPEN_TREE_CLONE) and the child attaches the
tree with move_mount(2) instead of resolving the path itself. Nothing is granted that the
profile did not name: the tree is exactly the bind the profile asked for, and the child
still applies the same read-only/nosuid/nodev flags to it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os

from isorun.sandbox.spec import MountKind, ShimMount, ShimSpec

CLONE_NEWUSER = 0x10000000
#: open_tree(2) shares its number across architectures (the 5.2 unified syscall table)
SYS_OPEN_TREE = 428
OPEN_TREE_CLONE = 1
AT_RECURSIVE = 0x8000
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)


def _open_tree(path: bytes) -> int:
    fd = int(
        _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path, OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC)
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(path))
    return fd


def clone_trees_in_parent(spec: ShimSpec, opened: list[int]) -> ShimSpec:
    """``spec`` with each BIND turned into a TREE when the caller is root.

    Descriptors go into ``opened`` (the caller closes them after the clone; they are
    CLOEXEC and the child's CloseFds closes them before execve). A missing optional
    source is dropped; any other source the parent cannot clone stays a path bind, so the
    child reports it exactly as before.
    """
    if os.geteuid() != 0 or not spec.clone_flags & CLONE_NEWUSER:
        return spec
    mounts: list[ShimMount] = []
    for mount in spec.mounts:
        if mount.kind == MountKind.BIND:
            try:
                fd = _open_tree(mount.src)
            except OSError as err:
                # A missing optional source is skipped here, as the child would skip it;
                # the child could not even tell it is missing behind a 0700 directory
                # (its stat fails with EACCES, not ENOENT).
                if not (err.errno == errno.ENOENT and mount.optional):
                    mounts.append(mount)
                continue
            opened.append(fd)
            mount = dataclasses.replace(mount, kind=MountKind.TREE, tree_fd=fd)
        mounts.append(mount)
    return dataclasses.replace(spec, mounts=tuple(mounts))
