"""Which process of a bwrap or firejail sandbox a forwarded signal goes to.

The native sandbox's pid 1 (the shim) forwards signals to the command. bwrap's pid 1 and
firejail do not: a SIGTERM sent to the bwrap process that isorun started kills bwrap (and,
through --die-with-parent, the command with SIGKILL, no handler run), and a setuid
firejail cannot be signalled by its own user at all. So the signal goes to the command
itself: the top-most process below the wrapper that is not the wrapper program.
"""

from __future__ import annotations

import os
from collections import deque


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return kids


def _exe(pid: int) -> tuple[int, int] | None:
    """(device, inode) of the program ``pid`` runs; None when this caller may not look
    (a setuid firejail, as its user) or it is gone. stat follows the magic link to the
    file itself, so a process in another mount namespace compares equal all the same."""
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def command_pid(wrapper: int) -> int | None:
    """The top-most descendant of ``wrapper`` that runs another program than it, breadth
    first; None while there is none yet (the sandbox is starting, or gone)."""
    program = _exe(wrapper)
    queue = deque(_children(wrapper))
    while queue:
        pid = queue.popleft()
        exe = _exe(pid)
        if exe is None or exe == program:
            queue.extend(_children(pid))  # the wrapper's own processes: look below
            continue
        return pid
    return None
