"""Resolving a host path without following a symbolic link the sandbox's side could plant.

The wrapper backends (bwrap, firejail) resolve the paths of their mounts themselves, by
path, at a moment isorun does not choose. Before handing a path over, the runner walks it
here: one component at a time from "/", each opened ``O_PATH|O_NOFOLLOW``, so a link is
seen as itself. A link is followed only when nothing a sandbox runs could have made it and
the system put it there: owned by root, in a directory owned by root that neither group
nor others can write, inside the system's own trees (a merged-/usr ``/bin -> usr/bin``,
Debian's ``/etc/alternatives``). A root-owned project is not a system tree: a repository
cloned by root brings root-owned links. A sandbox never runs as
host root (a root caller's runs as the overflow uid), so it can neither create such a link
nor change such a directory. Any other link is refused with :class:`SymlinkRefused`.

The walk answers for the moment it ran. What the wrapper resolves later is checked again
inside the sandbox by the exec stage (``--expect``, compared by device and inode), and a
destination the wrapper creates below a directory someone else can change is refused
before launch (sandbox/backends.py): see docs/security.md, "bwrap and firejail".

The native backend has its own resolver in C (shim/resolve.c) with the same trust rule.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from isorun.errors import IsorunError
from isorun.shim import abi as shim_abi

#: as the kernel's own limit on nested links (path_resolution(7), MAXSYMLINKS)
LINKS_MAX = 40


class SymlinkRefused(IsorunError):
    """A mount path goes through a symbolic link the sandbox's side could have written.

    Exit 125, as every set-up refusal. ``what`` names the mount and its profile line.
    """

    def __init__(self, path: str, link: str, target: str, what: str = "") -> None:
        self.path, self.link, self.target, self.what = path, link, target, what
        where = f"{what}: " if what else ""
        way = "" if link == path else f" (on the way to {path})"
        super().__init__(f"{where}{link} is a symbolic link to {target!r}{way} that the "
                         f"sandbox's side could have written; isorun does not follow it")

    def with_what(self, what: str) -> SymlinkRefused:
        return SymlinkRefused(self.path, self.link, self.target, what)

    def render(self) -> str:
        return (f"isorun: error: {self}\n  hint: remove the link ({self.link}), or mount "
                f"its target explicitly with its own path in the profile")


@dataclass(frozen=True, slots=True)
class Resolved:
    """A path opened by :func:`walk`: the descriptor and what it names."""

    #: an ``O_PATH`` descriptor of the last component, close-on-exec; the caller closes it
    fd: int
    #: the same file's path with no link in it
    path: str
    dev: int
    ino: int
    mode: int
    uid: int


#: the system's own trees, where only the distribution's packages put links; shim/resolve.c
#: (the native backend's resolver) follows the same list. Not /opt, /srv, /home, /root or
#: /tmp: a root caller's project lives there, root-owned, and its links came with a
#: repository.
SYSTEM_TREES = shim_abi.SYSTEM_TREES


def in_system_tree(directory: str) -> bool:
    """Whether ``directory`` (a canonical path, "" for "/") lies in a system tree."""
    return directory == "" or any(directory == top or directory.startswith(top + "/")
                                  for top in SYSTEM_TREES)


def trusted_dir(st: os.stat_result) -> bool:
    """Whether only root can change the entries of the directory ``st`` describes."""
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == 0
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def walk(path: str) -> Resolved:
    """Open ``path`` (absolute) following only trusted links.

    Raises :class:`SymlinkRefused` at the first other link, ``FileNotFoundError`` (or
    another ``OSError``) when a component cannot be opened.
    """
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    todo = [c for c in path.split("/") if c not in ("", ".")]
    todo.reverse()
    stack: list[tuple[int, str]] = [(os.open("/", flags | os.O_DIRECTORY), "")]
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                # ".." of "/" is "/", as the kernel answers (path_resolution(7))
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            parent, parent_path = stack[-1]
            fd = os.open(name, flags, dir_fd=parent)
            st = os.fstat(fd)
            here = f"{parent_path}/{name}"
            if not stat.S_ISLNK(st.st_mode):
                stack.append((fd, here))
                continue
            try:
                # the link opened, not whatever bears its name by now (readlinkat(2) of
                # an O_PATH descriptor with an empty path)
                target = os.readlink("", dir_fd=fd)
                trusted = (st.st_uid == 0 and in_system_tree(parent_path)
                           and trusted_dir(os.fstat(parent)))
            finally:
                os.close(fd)
            links += 1
            if not trusted or links > LINKS_MAX:
                raise SymlinkRefused(path, here, target)
            parts = [c for c in target.split("/") if c not in ("", ".")]
            todo.extend(reversed(parts))
            if target.startswith("/"):
                while len(stack) > 1:
                    os.close(stack.pop()[0])
        fd, final = stack.pop()
    finally:
        for other, _ in stack:
            os.close(other)
    st = os.fstat(fd)
    return Resolved(fd, final or "/", st.st_dev, st.st_ino, st.st_mode, st.st_uid)


def probe(path: str) -> Resolved:
    """:func:`walk`, with the descriptor closed: what ``path`` is, and its real path."""
    found = walk(path)
    os.close(found.fd)
    return found
