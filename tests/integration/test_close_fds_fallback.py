"""The child's descriptor sweep without close_range(2): the /proc/self/fd walk.

exec.c falls back to getdents64 over /proc/self/fd when close_range fails with ENOSYS
(Linux < 5.9, or a seccomp filter that does not know the call). No test machine is that
old, so the fallback only runs when a filter in the launcher fakes the ENOSYS; the child
inherits it across clone. This is the only test that reaches that code, under
``make test-asan`` too (the launcher process inherits the sanitized shim's environment).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SCRIPT = """
import ctypes, errno, runpy, sys
import pyseccomp as seccomp

# no_new_privs: loading a filter without CAP_SYS_ADMIN needs it (seccomp(2)).
ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(errno.ENOSYS), "close_range")
f.load()
sys.path.insert(0, sys.argv[1])
runpy.run_path(sys.argv[1] + "/native_cases.py")["CASES"]["fds_closed"]()
print("OK")
"""


@pytest.mark.needs("userns", "shim")
def test_fds_closed_without_close_range() -> None:
    # A process of its own: the filter cannot be unloaded and must not reach pytest.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(HERE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.endswith("OK\n"), result.stderr
