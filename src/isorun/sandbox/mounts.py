"""Every path a mount names, resolved on the trusted side before the clone (issue #12).

Loaded on the warm CLI launch with :mod:`isorun.sandbox.parent` (see its docstring):
``os`` and the shim only; a refusal imports :mod:`isorun.sandbox.failure`.
"""

from __future__ import annotations

import os

from isorun.kernel.abi import CLONE_NEWUSER
from isorun.sandbox.record import MOUNT
from isorun.sandbox.shim_ffi import load_shim, resolve_in_parent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from isorun.sandbox.parent import Record

ENOENT, ENOTDIR, ELOOP = 2, 20, 40
#: open_tree(2) shares its number across architectures (the 5.2 unified syscall table)
SYS_OPEN_TREE = 428
OPEN_TREE_CLONE, AT_RECURSIVE, AT_EMPTY_PATH = 1, 0x8000, 0x1000


def resolve_mounts_in_parent(
    record: Record, opened: list[int], clone: Callable[[bytes], bool] | None = None
) -> Record:
    """``record`` with every bind source resolved on the trusted side (issue #12).

    Each BIND and DEV_BIND source is walked without following a link, except the ones
    docs/security.md trusts (:func:`resolve_in_parent`); any other link refuses the launch
    with the mount's profile line and where the link points (:func:`link_refused`). The
    source then becomes the path with no link left, which the child walks again with no
    link allowed at all and mounts from the descriptor it checked (mount.c), so a link
    swapped in after this check is refused there. A missing optional source is dropped.
    With no new root (``root`` b""), destinations are host paths: resolved likewise.

    As root, each bind becomes a tree cloned from the checked descriptor (open_tree(2),
    AT_EMPTY_PATH): a root caller's sandbox runs as the host's overflow uid (see
    planner._identity), which cannot walk the host's 0700 directories (/root/.pyenv).
    Nothing is granted that the profile did not name, and the child still applies the
    flags. ``clone(src)`` picks which binds (the pytest plugin's: only unreachable ones).
    Tree descriptors go into ``opened`` (CLOEXEC; the child's CloseFds closes them).

    A rootfs directory (``root`` a path) is resolved the same way; as root it is cloned
    and the record then asks for an empty tmpfs root with the tree attached over the whole
    of it, first of all mounts, which is the same view (the tmpfs underneath is never
    seen). The one difference is the nodev every TREE mount gets, which only takes away
    device nodes inside the rootfs that the sandbox's own /dev mount replaces anyway.
    """
    shim = load_shim()
    as_root = os.geteuid() == 0 and bool(record["clone_flags"] & CLONE_NEWUSER)
    open_tree = _open_tree() if as_root else None
    mounts = []
    for mount in record["mounts"]:
        resolved = _resolve_mount_in_parent(shim, record, mount, open_tree, clone, opened)
        if resolved is not None:
            mounts.append(resolved)
    if record["root"] in (b"", b"tmpfs"):
        return {**record, "mounts": tuple(mounts)}
    return _resolve_root_in_parent(shim, record, mounts, open_tree, clone, opened)



def _resolve_mount_in_parent(
    shim: Any,
    record: Record,
    mount: tuple[Any, ...],
    open_tree: Callable[[int], int] | None,
    clone: Callable[[bytes], bool] | None,
    opened: list[int],
) -> tuple[Any, ...] | None:
    """One mount of :func:`resolve_mounts_in_parent`: its destination resolved when there
    is no new root, a bind's source resolved (or cloned as a tree); None when its source
    is missing and the mount is optional."""
    bind, dev_bind, tree = (shim.lib.ISORUN_MOUNT_BIND, shim.lib.ISORUN_MOUNT_DEV_BIND,
                            shim.lib.ISORUN_MOUNT_TREE)  # fmt: skip
    kind, dst, src = mount[:3]
    if record["root"] == b"":
        fd, path = resolve_in_parent(shim, dst)
        if fd == -ELOOP:
            from isorun.sandbox.failure import link_refused

            raise link_refused(record, mount, path)
        if fd >= 0:
            os.close(fd)
            mount = _with(mount, dst=path)
    if kind not in (bind, dev_bind):
        return mount
    fd, path = resolve_in_parent(shim, src)
    if fd == -ELOOP:
        from isorun.sandbox.failure import link_refused

        raise link_refused(record, mount, path)
    if fd < 0:
        # ENOTDIR: a component is a file, so nothing is there (a .git guard of a file)
        if fd in (-ENOENT, -ENOTDIR) and mount[MOUNT.optional]:
            return None
        return mount  # the child fails on it again and reports it
    try:
        if open_tree is not None and kind == bind and (clone is None or clone(src)):
            cloned = open_tree(fd)
            if cloned >= 0:
                opened.append(cloned)
                return _with(mount, kind=tree, tree_fd=cloned)
        return _with(mount, src=path)
    finally:
        os.close(fd)



def _resolve_root_in_parent(
    shim: Any,
    record: Record,
    mounts: list[tuple[Any, ...]],
    open_tree: Callable[[int], int] | None,
    clone: Callable[[bytes], bool] | None,
    opened: list[int],
) -> Record:
    """``record`` with ``mounts`` and its rootfs directory resolved; as root, cloned as a
    tree over an empty tmpfs root (see :func:`resolve_mounts_in_parent`)."""
    tree = shim.lib.ISORUN_MOUNT_TREE
    root = record["root"]
    step = record["step_index"].get("root", -1)
    fd, path = resolve_in_parent(shim, root)
    if fd == -ELOOP:
        from isorun.sandbox.failure import link_refused

        raise link_refused(record, (tree, b"/", root, 0, b"", 0o755, False, step, -1), path)
    if fd < 0:
        return {**record, "mounts": tuple(mounts)}  # the child reports what fails
    try:
        if open_tree is not None and (clone is None or clone(root)):
            cloned = open_tree(fd)
            if cloned >= 0:
                opened.append(cloned)
                mounts.insert(0, (tree, b"/", root, 0, b"", 0o755, False, step, cloned))
                return {**record, "root": b"tmpfs", "mounts": tuple(mounts)}
        return {**record, "root": path, "mounts": tuple(mounts)}
    finally:
        os.close(fd)



def _with(mount: tuple[Any, ...], **values: Any) -> tuple[Any, ...]:
    """``mount`` with the fields named in ``values`` replaced (record.MOUNT positions)."""
    out = list(mount)
    for name, value in values.items():
        out[getattr(MOUNT, name)] = value
    return tuple(out)



def _open_tree() -> Callable[[int], int]:
    """open_tree(fd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE): a detached copy
    of the mount tree at a checked descriptor, or -1. Root only: os has no open_tree."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    flags = AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC

    def open_tree(fd: int) -> int:
        return int(libc.syscall(SYS_OPEN_TREE, fd, b"", flags))

    return open_tree

