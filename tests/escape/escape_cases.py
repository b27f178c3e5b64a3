"""Each case tries one way out of a native sandbox and asserts it failed.

The prober (tests/probes/try_syscall.c) is bound read-only at /probe and prints "ok" or
"errno=N". Runs in-process as root or via setpriv as an unprivileged user.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from native_cases import INSIDE, make_spec, run  # type: ignore[import-not-found]  # noqa: E402

from isorun.sandbox.process import spawn  # noqa: E402
from isorun.sandbox.spec import MountKind, ShimMount  # noqa: E402

PROBE_DIR = HERE.parent / "probes" / "bin"
PROBE_MOUNT = ShimMount(MountKind.BIND, b"/probe", os.fsencode(PROBE_DIR), flags=1)


def probe(*args: str, **fields: object) -> str:
    spec = make_spec("/probe/try_syscall", *args, extra_mounts=(PROBE_MOUNT,), **fields)
    code, out, err = run(spec)
    assert code == 0, (code, out, err)
    return str(out).strip()


def expect_errno(out: str, *errnos: int) -> None:
    assert out in {f"errno={e}" for e in errnos}, out


def case_chroot_escape() -> None:
    expect_errno(probe("chroot"), errno.EPERM)


def case_proc_1_root_is_not_the_host() -> None:
    assert Path("/etc/hostname").exists()
    expect_errno(probe("proc1root"), errno.ENOENT, errno.EACCES)


def case_ptrace_and_kill_host_process() -> None:
    host_pid = str(os.getpid())
    expect_errno(probe("ptrace", host_pid), errno.ESRCH)
    expect_errno(probe("kill", host_pid), errno.ESRCH)
    # init is not dumpable and runs unfiltered: the command must not attach to it.
    expect_errno(probe("ptrace", "1"), errno.EPERM)


def case_setuid_binary_regains_nothing() -> None:
    suid = PROBE_DIR / "try_syscall_suid"
    assert suid.exists() and suid.stat().st_mode & 0o4000, "setuid probe not built (root)"
    spec = make_spec("/probe/try_syscall_suid", "ids", extra_mounts=(PROBE_MOUNT,))
    code, out, _ = run(spec)
    assert code == 0
    assert out.split() == [f"euid={INSIDE}", "CapPrm:", "0" * 16, "CapEff:", "0" * 16], out


def case_mount_umount_remount_refused() -> None:
    for what in ("mount", "umount", "remount"):
        expect_errno(probe(what), errno.EPERM)


def case_nested_userns_gains_no_host_powers() -> None:
    out = probe("nested_userns")
    # Either the nested namespace is refused, or it exists but owns nothing of ours:
    # the locked read-only /usr stays read-only and the UTS namespace stays ours.
    assert out in {"errno=1", "errno=28", "unshared remount-errno=1 errno=1"}, out


def case_sysctl_writes_refused() -> None:
    # EACCES when the file is owned by a host uid, EROFS from the read-only bind.
    expect_errno(probe("sysctl"), errno.EROFS, errno.EACCES)


def case_inherited_descriptors_closed() -> None:
    leaked = 50
    tmp = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.dup2(tmp, leaked, inheritable=True)
    os.close(tmp)
    try:
        expect_errno(probe("fd", str(leaked)), errno.EBADF)
    finally:
        os.close(leaked)


def _tiocsti_filter() -> bytes:
    # The project's own libseccomp binding (pyseccomp is not a dependency): allow all but
    # ioctl(fd, TIOCSTI), compared on the request's low 32 bits as the kernel reads an int.
    from isorun.compile import _libseccomp as scmp

    tiocsti = 0x5412
    lib = scmp.load()
    with scmp.Filter(lib, 0x7FFF0000) as flt:  # SCMP_ACT_ALLOW
        nr = flt.resolve(scmp.ARCH_TOKENS[scmp.native_arch(lib)], "ioctl")
        flt.add_rule(0x00050000 | errno.EPERM, nr,  # SCMP_ACT_ERRNO(EPERM)
                     [(1, "masked_eq", 0xFFFFFFFF, tiocsti)])
        return flt.export_bpf()


def case_tiocsti_cve_2019_10063() -> None:
    # The sandbox shares the launcher's session here (new_session = false), so the filter
    # is what must stop it pushing characters into the terminal's input queue.
    master, slave = os.openpty()
    try:
        spec = make_spec(
            "/probe/try_syscall",
            "tiocsti",
            extra_mounts=(PROBE_MOUNT,),
            new_session=False,
            seccomp_bpf=_tiocsti_filter(),
        )
        proc = spawn(spec, stdin=slave, stdout=subprocess.PIPE)
        with proc:
            out, _ = proc.communicate(timeout=20)
        expect_errno((out or b"").decode().strip(), errno.EPERM)
        status = probe_status(seccomp=True)
        assert status == "2", status
    finally:
        os.close(master)
        os.close(slave)


def probe_status(seccomp: bool) -> str:
    spec = make_spec(
        "sh",
        "-c",
        "grep ^Seccomp: /proc/self/status",
        seccomp_bpf=_tiocsti_filter() if seccomp else b"",
    )
    code, out, _ = run(spec)
    assert code == 0
    return str(out.split()[-1])


CASES: dict[str, Callable[[], None]] = {
    name[len("case_") :]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")
}

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    sys.stdout.write("OK\n")
