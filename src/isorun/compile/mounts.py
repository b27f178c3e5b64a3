"""The mount steps of a plan from the profile's mounts: paths expanded and normalised,
every tmpfs sized, a shm for each /dev, repeats left out. compile/planner.py orders them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from isorun.compile import plan as p
from isorun.errors import Loc
from isorun.profile import schema

#: a tmpfs's pages are charged to no process, so the OOM killer never picks the sandbox
#: for them: every tmpfs gets a size. These are the defaults of a mount that names none.
TMPFS_SIZE = 64 << 20
#: /dev holds only mount points and symlinks; its shm is a mount of its own (Docker's
#: default size for /dev/shm)
DEV_SIZE, SHM_SIZE = 64 << 10, 64 << 20


def inodes(size: int) -> int:
    """The inode limit of a tmpfs of ``size`` bytes: one per 4 KiB, at least 64. Empty
    files cost no pages, only slab memory nothing else bounds (about 1 KiB each)."""
    return max(64, size // 4096)


def mount_step(mount: schema.Mount, expand: Callable[[str, Loc], str]) -> p.MountStep:
    dst = os.path.normpath(expand(mount.dst, mount.loc))
    if mount.type in ("ro-bind", "rw-bind", "dev-bind", "overlay"):
        src = os.path.normpath(expand(mount.src, mount.loc)) if mount.src else dst
    else:
        src = expand(mount.src, mount.loc)
    size = mount.size
    if mount.type in ("tmpfs", "overlay"):
        size = TMPFS_SIZE if size is None else size
    elif mount.type == "dev":
        size = DEV_SIZE
    return p.MountStep(type=mount.type, dst=dst, src=src, content=mount.content, size=size,
                       mode=mount.mode, optional=mount.optional, noexec=mount.noexec,
                       inodes=None if size is None else inodes(size), loc=mount.loc)


def shm_mounts(mounts: list[p.MountStep]) -> list[p.MountStep]:
    """A sized tmpfs at the shm of each ``dev`` mount the profile does not mount itself."""
    taken = {m.dst for m in mounts}
    return [p.MountStep(type="tmpfs", dst=os.path.join(m.dst, "shm"), size=SHM_SIZE,
                        mode=0o1777, inodes=inodes(SHM_SIZE), loc=m.loc)
            for m in mounts if m.type == "dev" and os.path.join(m.dst, "shm") not in taken]


def without_repeats(mounts: list[p.MountStep]) -> list[p.MountStep]:
    """``mounts`` (sorted by depth) without a mount that repeats the previous one at its
    destination: the same source, type and options mounted again on top shows nothing
    new and costs a mount per launch. Profiles meet this by layering: the pytest marker
    adds the interpreter's paths, which the test profile already binds as ${VENV} and
    ${CWD}. Only the previous mount *at the same destination* counts: after the depth
    sort everything between the two is at the same depth, so nothing can lie under or
    over the repeat. A repeat that is required makes the kept one required."""
    out: list[p.MountStep] = []
    last_at: dict[str, int] = {}
    for mount in mounts:
        at = last_at.get(mount.dst)
        if at is not None and replace(out[at], optional=mount.optional) == mount:
            if not mount.optional:
                out[at] = replace(out[at], optional=False)
            continue
        last_at[mount.dst] = len(out)
        out.append(mount)
    return out
