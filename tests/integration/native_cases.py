"""Sandbox checks that run both as root and unprivileged.

Each case builds a ShimSpec directly, runs it through ``spawn`` and asserts. The tests
call a case in-process (root) or re-run this file under ``setpriv`` as an unprivileged
user (``python native_cases.py CASE``), so the same assertions hold for both callers.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isorun.errors import HostError, SandboxSetupError
from isorun.sandbox.process import spawn
from isorun.sandbox.sandbox_process import SandboxProcess
from isorun.sandbox.spec import MountKind, Rlimit, ShimMount, ShimSpec

NS_FLAGS = {
    "user": 0x10000000,
    "pid": 0x20000000,
    "mnt": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "cgroup": 0x02000000,
}
ALL_NS = sum(NS_FLAGS.values())
MS_RDONLY = 1
#: the uid and gid the command runs as inside the sandbox
INSIDE = 1000
#: host id a root caller maps INSIDE to (never host 0)
ROOT_HOST_ID = 100000
ENV = (b"PATH=/usr/bin:/bin", b"HOME=/tmp", b"LANG=C")

BASE_MOUNTS = (
    ShimMount(MountKind.BIND, b"/usr", b"/usr", flags=MS_RDONLY, step=1),
    ShimMount(MountKind.SYMLINK, b"/bin", b"usr/bin", step=2),
    ShimMount(MountKind.SYMLINK, b"/sbin", b"usr/sbin", step=3),
    ShimMount(MountKind.SYMLINK, b"/lib", b"usr/lib", step=4),
    ShimMount(MountKind.SYMLINK, b"/lib64", b"usr/lib64", step=5),
    ShimMount(MountKind.PROC, b"/proc", step=6),
    ShimMount(MountKind.DEV, b"/dev", step=7),
    ShimMount(MountKind.TMPFS, b"/tmp", mode=0o1777, step=8),
)


def host_id() -> int:
    return ROOT_HOST_ID if os.getuid() == 0 else os.getuid()


def make_spec(*argv: str, extra_mounts: tuple[ShimMount, ...] = (), **fields: object) -> ShimSpec:
    """A tmpfs-root sandbox with every namespace, /usr read-only, /proc, /dev and /tmp."""
    hid = host_id()
    hgid = ROOT_HOST_ID if os.getuid() == 0 else os.getgid()
    values: dict[str, object] = {
        "argv": tuple(a.encode() for a in argv),
        "env": ENV,
        "clone_flags": ALL_NS,
        "uid_map": f"{INSIDE} {hid} 1\n".encode(),
        "gid_map": f"{INSIDE} {hgid} 1\n".encode(),
        "uid": INSIDE,
        "gid": INSIDE,
        "mounts": BASE_MOUNTS + extra_mounts,
        "hostname": b"sandbox",
        "step_index": {"hostname": 9, "rlimit": 10, "exec": 11},
    }
    values.update(fields)
    return ShimSpec(**values)  # type: ignore[arg-type]


def run(spec: ShimSpec, timeout: float = 20, **kwargs: object) -> tuple[int, str, str]:
    proc = spawn(spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # type: ignore[arg-type]
    with proc:
        out, err = proc.communicate(timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, (out or b"").decode(), (err or b"").decode()


def sh(script: str) -> tuple[int, str, str]:
    return run(make_spec("sh", "-c", script))


def case_namespaces() -> None:
    script = "for n in " + " ".join(NS_FLAGS) + "; do readlink /proc/self/ns/$n; done"
    code, out, err = sh(script)
    assert code == 0, err
    inside = out.split()
    for name, link in zip(NS_FLAGS, inside, strict=True):
        assert link != os.readlink(f"/proc/self/ns/{name}"), f"{name} namespace is the host's"


def case_hostname() -> None:
    code, out, _ = sh("cat /proc/sys/kernel/hostname; uname -n")
    assert code == 0
    assert out.split() == ["sandbox", "sandbox"]


def case_file_view() -> None:
    with tempfile.TemporaryDirectory() as host_dir:
        os.chmod(host_dir, 0o777)
        (Path(host_dir) / "seen").write_text("host file\n")
        rw = ShimMount(MountKind.BIND, b"/data", os.fsencode(host_dir), step=20)
        ro = ShimMount(MountKind.BIND, b"/ro", os.fsencode(host_dir), flags=MS_RDONLY, step=21)
        spec = make_spec(
            "sh",
            "-c",
            "ls -A /; cat /data/seen; echo x > /ro/new || echo ro-refused; "
            "echo y > /data/written; echo z > /tmp/scratch; echo w > /usr/evil || echo usr-ro; "
            "test -e /etc/hostname || echo no-etc",
            extra_mounts=(rw, ro),
        )
        code, out, err = run(spec)
        assert code == 0, err
        lines = out.splitlines()
        top = set(lines[: lines.index("host file")])
        assert top == {"bin", "sbin", "lib", "lib64", "usr", "proc", "dev", "tmp", "data", "ro"}
        assert "ro-refused" in lines and "usr-ro" in lines and "no-etc" in lines
        assert err.count("Read-only file system") == 2, err
        assert (Path(host_dir) / "written").read_text() == "y\n"
        assert not (Path(host_dir) / "new").exists()
    assert not Path("/tmp/scratch").exists()


def case_proc_sys_readonly() -> None:
    code, out, err = sh(
        "echo sbx2 > /proc/sys/kernel/hostname || echo refused; cat /proc/sys/kernel/hostname"
    )
    assert code == 0
    assert out.split() == ["refused", "sandbox"]
    assert "Read-only file system" in err


def case_caps_and_nnp() -> None:
    code, out, _ = sh("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status")
    assert code == 0
    status = dict(line.split(":\t") for line in out.splitlines())
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, (key, status[key])
    assert status["NoNewPrivs"] == "1"


def case_fds_closed() -> None:
    # High numbers, so the descriptor ls opens for /proc/self/fd (the lowest free) differs.
    leaked, kept = 50, 60
    for fd, path in ((leaked, "/"), (kept, "/dev/null")):
        tmp = os.open(path, os.O_RDONLY)
        os.dup2(tmp, fd, inheritable=True)
        os.close(tmp)
    try:
        spec = make_spec("sh", "-c", "ls /proc/self/fd")
        proc = spawn(spec, stdout=subprocess.PIPE, pass_fds=(kept,))
        with proc:
            out, _ = proc.communicate(timeout=20)
        fds = {int(x) for x in (out or b"").split()}
        # 0-2, the kept fd, and the one ls opened on /proc/self/fd.
        assert fds == {0, 1, 2, 3, kept}, fds
    finally:
        os.close(leaked)
        os.close(kept)


def case_env_exact() -> None:
    code, out, _ = run(make_spec("env"))
    assert code == 0
    assert sorted(out.splitlines()) == sorted(e.decode() for e in ENV)


def case_pid_namespace() -> None:
    code, out, _ = sh("ls /proc | grep -E '^[0-9]+$'; echo self $$")
    assert code == 0
    lines = out.splitlines()
    pids = {int(x) for x in lines[:-1]}
    assert 1 in pids and max(pids) < 10, pids
    assert lines[-1] == "self 2"


def case_signal_forwarding() -> None:
    for sig, expected in ((signal.SIGTERM, 42), (signal.SIGUSR1, 43), (signal.SIGHUP, 44)):
        spec = make_spec(
            "sh",
            "-c",
            "trap 'exit 42' TERM; trap 'exit 43' USR1; trap 'exit 44' HUP; "
            "echo ready; while :; do sleep 0.05; done",
        )
        proc = spawn(spec, stdout=subprocess.PIPE)
        with proc:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == expected
    proc = spawn(make_spec("sleep", "30"))
    with proc:
        time.sleep(0.2)
        proc.terminate()
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM


def case_exit_codes() -> None:
    assert sh("exit 3")[0] == 3
    assert sh("kill -9 $$")[0] == 128 + 9
    assert sh("kill -TERM $$")[0] == 128 + 15
    proc = spawn(make_spec("no-such-command"))
    with proc:
        assert proc.wait(timeout=10) == 127
        assert proc.exec_error is not None and proc.exec_error.errno == errno.ENOENT
    script = ShimMount(MountKind.FILE, b"/noexec", b"#!/bin/sh\n", mode=0o644)
    assert run(make_spec("/noexec", extra_mounts=(script,)))[0] == 126
    assert run(make_spec("/tmp"))[0] == 126
    assert run(make_spec("true", init=False))[0] == 0
    assert run(make_spec("sh", "-c", "exit 7", init=False))[0] == 7


def case_wall_time() -> None:
    start = time.monotonic()
    spec = make_spec("sh", "-c", "sleep 30 & sleep 30")
    proc = spawn(spec, wall_time=0.5)
    with proc:
        assert proc.wait(timeout=10) == 124
        assert proc.timed_out
    assert time.monotonic() - start < 5


def case_rlimits() -> None:
    spec = make_spec("sh", "-c", "ulimit -n; ulimit -Hn", rlimits=(Rlimit(7, 64, 128, step=10),))
    code, out, _ = run(spec)
    assert code == 0
    assert out.split() == ["64", "128"]


def _needs_cgroup(fn: Callable[[], None]) -> None:
    """Root runs the limit; an unprivileged caller must be refused (fail closed)."""
    if os.geteuid() == 0:
        fn()
        return
    try:
        fn()
    except HostError as err:
        assert "cgroup" in str(err)
        return
    raise AssertionError("cgroup limits were accepted without a writable hierarchy")


def case_pids_limit() -> None:
    def check() -> None:
        script = (
            "import os, time\n"
            "n = 0\n"
            "for _ in range(60):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError as err:\n"
            "        print('refused', err.errno); break\n"
            "    if pid == 0:\n"
            "        time.sleep(5); os._exit(0)\n"
            "    n += 1\n"
            "print(n)\n"
        )
        code, out, err = run(make_spec("python3", "-c", script), pids_max=16)
        assert code == 0, err
        refused, forked = out.splitlines()
        assert refused == f"refused {errno.EAGAIN}", out
        # init and python itself take two of the 16.
        assert int(forked) <= 14, out

    _needs_cgroup(check)


def case_memory_limit() -> None:
    def check() -> None:
        script = "import sys; b = b'x' * (256 << 20); print(len(b))"
        code, out, _ = run(make_spec("python3", "-c", script), memory_max=64 << 20)
        # Either the allocation fails (MemoryError, exit 1) or the OOM killer ends it.
        assert code in (1, 128 + signal.SIGKILL), (code, out)
        assert "268435456" not in out

    _needs_cgroup(check)


def _mountinfo() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _children() -> list[int]:
    tasks = Path(f"/proc/{os.getpid()}/task")
    kids: list[int] = []
    for task in tasks.iterdir():
        kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def case_failed_step_leaves_nothing() -> None:
    before = _mountinfo()
    missing = ShimMount(MountKind.BIND, b"/data", b"/nonexistent/isorun-test", step=42)
    spec = make_spec("true", extra_mounts=(missing,))
    try:
        spawn(spec)
    except SandboxSetupError as err:
        assert (err.step, err.syscall, err.errno, err.step_index) == (
            "mount",
            "openat2",
            errno.ENOENT,
            42,
        ), (err.step, err.syscall, err.errno, err.step_index)
        assert "/nonexistent/isorun-test" in str(err)
    else:
        raise AssertionError("a missing bind source did not fail the launch")
    assert _children() == []
    assert _mountinfo() == before
    # An optional source that is missing is skipped instead.
    optional = ShimMount(MountKind.BIND, b"/data", b"/nonexistent/x", optional=True)
    assert run(make_spec("true", extra_mounts=(optional,)))[0] == 0


def case_failed_hostname_names_step() -> None:
    spec = make_spec("true", clone_flags=ALL_NS & ~NS_FLAGS["uts"])
    try:
        spawn(spec)
    except SandboxSetupError as err:
        assert (err.step, err.syscall, err.errno, err.step_index) == (
            "hostname",
            "sethostname",
            errno.EINVAL,
            9,
        )
    else:
        raise AssertionError("hostname without a UTS namespace was accepted")
    assert _children() == []


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def case_many_launches() -> None:
    count = int(os.environ.get("ISORUN_LAUNCHES", "1000"))
    spec = make_spec("true", mounts=BASE_MOUNTS[:5])
    proc: SandboxProcess = spawn(spec)
    proc.wait()
    fds, mounts = _fd_count(), _mountinfo()
    for _ in range(count):
        with spawn(spec) as proc:
            assert proc.wait(timeout=10) == 0
    assert _fd_count() == fds
    assert _mountinfo() == mounts
    assert _children() == []


CASES: dict[str, Callable[[], None]] = {
    name[len("case_") :]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")
}


if __name__ == "__main__":
    CASES[sys.argv[1]]()
    sys.stdout.write("OK\n")
