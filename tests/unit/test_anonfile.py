"""anon_file: a memfd, or inside a sandbox that refuses memfds an unnamed file."""

from __future__ import annotations

import os

from isorun.host.anonfile import anon_file


def test_anon_file_holds_data_and_has_no_name() -> None:
    # On the host this is a memfd; tests/plugin/test_session.py runs this module inside
    # the test profile, whose memory bound refuses memfd_create (ENOSYS): the O_TMPFILE
    # fallback then, which no directory lists and which can never be linked.
    fd = anon_file("isorun-test")
    try:
        os.write(fd, b"program")
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 16) == b"program"
        target = os.readlink(f"/proc/self/fd/{fd}")
        assert target.startswith("/memfd:isorun-test") or target.endswith("(deleted)"), target
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)
    fd = anon_file("isorun-test", inheritable=True)
    try:
        assert os.get_inheritable(fd)
    finally:
        os.close(fd)
