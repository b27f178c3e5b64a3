"""TIOCSTI through a shared terminal (CVE-2019-10063 and the classic sandbox escape).

A command that shares the caller's terminal could push characters into the terminal's
input queue, to be read by the caller's shell after the sandbox exits. The profile below
shares the terminal (``new_session = false``), so only the seccomp hardening stands in
the way. The test checks the security property itself: nothing injected reaches the
terminal, with or without the high bits set on the request number (the kernel compares
only the low 32 bits of ioctl's cmd, which is what CVE-2019-10063 was about).
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import textwrap
import tty
from pathlib import Path

import pytest

PROBE = textwrap.dedent("""
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    byte = ctypes.c_char(b"Z")
    req = int(sys.argv[1], 0)
    # the raw syscall keeps all 64 bits of the request (glibc's ioctl() takes an
    # unsigned long too, but be explicit): x86_64 ioctl is syscall 16
    rc = libc.syscall(16, 0, ctypes.c_ulong(req), ctypes.byref(byte))
    err = ctypes.get_errno()
    # whether the terminal is still the controlling terminal (no new session)
    try:
        os.tcgetpgrp(0)
        ctty = "yes"
    except OSError:
        ctty = "no"
    print("rc", rc, "errno", err, "ctty", ctty, flush=True)
""")


def inject(tty_argv: list[str], request: int, cwd: str | None = None,
           env: dict[str, str] | None = None) -> tuple[str, bytes]:
    """Run the probe on a fresh pty whose slave is its controlling terminal.

    Returns the probe's output and what the pty's input queue received.
    """
    master, slave = os.openpty()
    # raw mode: a canonical-mode terminal would hold the injected byte until a newline
    tty.setraw(slave)
    try:
        proc = subprocess.run(
            # inside the sandbox, the system's python3 (the strict profile binds /usr)
            [*tty_argv, "python3" if tty_argv else sys.executable, "-c", PROBE, hex(request)],
            stdin=slave,
            capture_output=True,
            timeout=60,
            cwd=cwd,
            env=env,
            # the child makes the pty its controlling terminal, as a login shell would
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        # Anything injected sits in the input queue: read it back through the slave.
        os.set_blocking(slave, False)
        injected = b""
        if select.select([slave], [], [], 0.2)[0]:
            injected = os.read(slave, 100)
        return proc.stdout.decode() + proc.stderr.decode(), injected
    finally:
        os.close(master)
        os.close(slave)


@pytest.fixture
def shared_tty_profile(tmp_path: Path) -> str:
    path = tmp_path / "tty.toml"
    path.write_text(
        'extends = ["strict"]\noverride = ["process.new_session"]\n[process]\nnew_session = false\n'
    )
    return str(path)


@pytest.mark.needs("shim", "userns")
@pytest.mark.parametrize(
    "request_number", [0x5412, 0x1_0000_5412], ids=["tiocsti", "tiocsti-high-bits"]
)
def test_tiocsti_cve_2019_10063(shared_tty_profile: str, request_number: int) -> None:
    # The control: without a sandbox, the same probe does inject (the test is meaningful
    # only if TIOCSTI works on this kernel: dev.tty.legacy_tiocsti = 1, or root).
    out, injected = inject([], request_number)
    assert injected == b"Z", f"control run did not inject: {out}"
    isorun = [sys.executable, "-m", "isorun", "--profile", shared_tty_profile, "--"]
    out, injected = inject(isorun, request_number)
    assert injected == b"", f"the sandboxed command injected {injected!r} into the terminal"
    assert "rc -1 errno 1" in out, out
