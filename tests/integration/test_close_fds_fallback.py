"""The child's descriptor sweep without close_range(2): the /proc/self/fd walk.

shim/child/fds.c falls back to getdents64 over /proc/self/fd when close_range fails
with ENOSYS (Linux < 5.9, or a seccomp filter that does not know the call). No test machine is that
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
import ctypes, errno, runpy, struct, sys
from isorun.compile import _libseccomp as scmp

# The project's own libseccomp binding builds the filter (pyseccomp is not a dependency);
# prctl(PR_SET_SECCOMP) loads it. no_new_privs first: loading without CAP_SYS_ADMIN needs it.
lib = scmp.load()
with scmp.Filter(lib, 0x7FFF0000) as f:  # SCMP_ACT_ALLOW
    nr = f.resolve(scmp.ARCH_TOKENS[scmp.native_arch(lib)], "close_range")
    f.add_rule(0x00050000 | errno.ENOSYS, nr, [])  # SCMP_ACT_ERRNO(ENOSYS)
    bpf = f.export_bpf()
libc = ctypes.CDLL(None, use_errno=True)
prog = ctypes.create_string_buffer(bpf)
fprog = struct.pack("HxxxxxxQ", len(bpf) // 8, ctypes.addressof(prog))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0, ctypes.get_errno()  # FILTER
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
