"""An anonymous file, for data handed to another program by descriptor (a launch record,
a BPF program, a file mount's content).

A memfd where the kernel gives one. Inside a sandbox whose memory bound refuses
memfd_create (strict and what extends it answer ENOSYS: compile/memory_bound.py), as when
isorun runs inside an isorun sandbox, an unnamed O_TMPFILE in /dev/shm or /tmp instead:
never a named file, which another process able to write the directory could open
between its creation and its unlinking, and change (a seccomp program goes through one).
System directories only, never $TMPDIR, which the caller's environment names.
"""

from __future__ import annotations

import errno
import os

#: where an unnamed file may go when memfds are refused (sized tmpfs in a sandbox)
TMPFILE_DIRS = ("/dev/shm", "/tmp")
#: the ``what`` of the HostErrors below
HANDED = "the descriptors handed to the sandbox"


def anon_file(name: str, *, inheritable: bool = False) -> int:
    """A new empty anonymous file, open for reading and writing; close-on-exec unless
    ``inheritable``. Raises the memfd_create error when no fallback directory takes one."""
    try:
        return os.memfd_create(name, 0 if inheritable else os.MFD_CLOEXEC)
    except OSError as err:
        if err.errno != errno.ENOSYS:
            raise
        refused = err
    for directory in TMPFILE_DIRS:
        try:
            # O_EXCL: the file can never be given a name (linkat) later
            fd = os.open(directory, os.O_RDWR | os.O_TMPFILE | os.O_EXCL, 0o600)
        except OSError:
            continue
        if inheritable:
            os.set_inheritable(fd, True)
        return fd
    raise refused


def handed_file(data: bytes) -> int:
    """An anonymous file (close-on-exec) holding ``data``, rewound for the program it is
    handed to; a HostError naming the call when the host refuses one (out of memory or
    descriptors, a full /dev/shm)."""
    try:
        fd = anon_file("isorun")
    except OSError as err:
        # imported only on failure: the warm launch path loads this module, and
        # isorun.errors (with dataclasses and inspect) costs it about 4 ms
        from isorun.errors import HostError, os_failure

        raise HostError(HANDED, f"cannot create an anonymous file: "
                        f"{os_failure('memfd_create', err)}",
                        "free memory or raise the limit on open files (ulimit -n)") from err
    try:
        fill_fd(fd, data)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fill_fd(fd: int, data: bytes) -> None:
    """Write ``data`` into the anonymous file ``fd`` and rewind it for its reader."""
    if not data:
        return
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as err:
        from isorun.errors import HostError, os_failure

        raise HostError(HANDED,
                        f"cannot write {len(data)} bytes to an anonymous file: "
                        f"{os_failure('write', err)}", "free memory (or space in /dev/shm)"
                        ) from err
