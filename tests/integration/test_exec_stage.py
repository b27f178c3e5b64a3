"""isorun-seccomp-exec fails closed: a bad input stops the launch before the command."""

from __future__ import annotations

import os
import subprocess

import pytest

from isorun.sandbox.exec_stage import exec_stage_path

pytestmark = pytest.mark.needs("gcc")


def stage(*args: str, pass_fds: tuple[int, ...] = (),
          unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    # as root, drop to nobody where the test needs a caller without CAP_SYS_RESOURCE
    user = 65534 if unprivileged and os.getuid() == 0 else None
    return subprocess.run([exec_stage_path(), *args], capture_output=True, text=True,
                          pass_fds=pass_fds, timeout=30, check=False, user=user, group=user,
                          extra_groups=[] if user is not None else None)


def memfd(data: bytes) -> int:
    fd = os.memfd_create("t")
    os.write(fd, data)
    return fd


def test_truncated_bpf_refuses_to_run_the_command() -> None:
    fd = memfd(b"\x06\x00\x00\x00\x00\x00")  # 6 bytes: not a whole instruction
    try:
        done = stage("--no-new-privs", "--seccomp-fd", str(fd), "--", "/bin/echo", "ran",
                     pass_fds=(fd,))
    finally:
        os.close(fd)
    assert done.returncode == 125
    assert done.stdout == ""
    assert done.stderr.startswith("isorun: error: seccomp: read:")


def test_raising_a_hard_limit_is_an_error_not_ignored() -> None:
    done = stage("--rlimit", "nofile=64", "--rlimit", "nofile=128", "--", "/bin/echo", "ran",
                 unprivileged=True)
    assert done.returncode == 125 and "setrlimit" in done.stderr


def test_environment_and_descriptors_are_exactly_given() -> None:
    env = memfd(b"A=1\0PATH=/usr/bin:/bin\0")
    extra = os.open("/dev/null", os.O_RDONLY)
    try:
        done = stage("--env-fd", str(env), "--keep-fd", str(extra), "--close-fds", "--",
                     "/bin/sh", "-c", "env | grep -v '^PWD='; ls /proc/self/fd",
                     pass_fds=(env, extra))
    finally:
        os.close(env)
        os.close(extra)
    lines = done.stdout.split()
    assert lines[:2] == ["A=1", "PATH=/usr/bin:/bin"]
    assert sorted(int(x) for x in lines[2:]) == sorted({0, 1, 2, 3, extra})


def test_unknown_command_exits_127() -> None:
    assert stage("--", "/nonexistent/cmd").returncode == 127


def test_reset_signals_gives_the_command_defaults_and_no_mask() -> None:
    # The CLI hands a wrapper SIGINT/SIGQUIT/SIGHUP ignored and its forwarded signals
    # blocked (attached._launch_sharing_terminal); only the inner stage's --reset-signals
    # takes both away, and the outer one (bwrap's rlimits) must pass them on unchanged.
    import signal

    def ignored_and_blocked() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        # and glibc's reserved signal 32 (SIGCANCEL), which its sigprocmask cannot
        # change: blocked by the raw call, as a caller's mask may have it
        import ctypes

        reserved = ctypes.c_uint64(1 << 31)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(14, 0, ctypes.byref(reserved), None, 8)
        # ... and ignored: the kernel's struct sigaction, handler SIG_IGN (1)
        ignore = (ctypes.c_uint64 * 4)(1, 0, 0, 0)
        libc.syscall(13, 32, ctypes.byref(ignore), None, 8)

    def status(*args: str) -> dict[str, str]:
        done = subprocess.run([exec_stage_path(), *args, "--", "grep", "-E",
                               "^Sig(Ign|Blk)", "/proc/self/status"],
                              capture_output=True, text=True, timeout=30, check=True,
                              preexec_fn=ignored_and_blocked)
        return dict(line.split(":\t") for line in done.stdout.splitlines())

    int_bit, term_bit = 1 << (signal.SIGINT - 1), 1 << (signal.SIGTERM - 1)
    kept = status()
    assert int(kept["SigIgn"], 16) & int_bit and int(kept["SigBlk"], 16) & term_bit
    # rt_sigprocmask is 14 and rt_sigaction 13 on x86_64
    assert int(kept["SigBlk"], 16) & (1 << 31) and int(kept["SigIgn"], 16) & (1 << 31), kept
    reset = status("--reset-signals")
    assert int(reset["SigIgn"], 16) == 0 and int(reset["SigBlk"], 16) == 0


def _ruleset(*rules: tuple[bytes, int]) -> bytes:
    """A Landlock ruleset as the stage reads it: every file right handled, a rule per
    (path, access) (isorun.sandbox.flat.landlock_section)."""
    from isorun.compile import landlock
    from isorun.sandbox.flat import landlock_section

    return landlock_section({
        "landlock_abi": 1, "landlock_fs": landlock.mask(
            [n for n, (_, abi) in landlock.ACCESS_FS.items() if abi == 1], landlock.ACCESS_FS),
        "landlock_net": 0, "landlock_scoped": 0,
        "landlock_rules": tuple((path, 0, access, False) for path, access in rules)})


@pytest.mark.needs("landlock")
def test_landlock_ruleset_refuses_a_write_outside_its_grants() -> None:
    """The stage applies the ruleset (shim/child/landlock.c) before the command: a path it only
    grants reading cannot be written; the control, with no ruleset, writes."""
    import shutil
    import tempfile

    from isorun.compile import landlock

    read = landlock.mask(("execute", "read_file", "read_dir"), landlock.ACCESS_FS)
    where = tempfile.mkdtemp(prefix="isorun-stage-", dir="/var/tmp")  # nobody may write
    os.chmod(where, 0o777)
    target = os.path.join(where, "planted")
    fd = memfd(_ruleset((b"/", read)))
    try:
        argv = ("--", "/bin/sh", "-c", f"echo x > {target}")
        done = stage("--no-new-privs", "--landlock-fd", str(fd), *argv, pass_fds=(fd,),
                     unprivileged=True)
        assert done.returncode == 2 and "Permission denied" in done.stderr, done
        assert not os.path.exists(target)
        assert stage("--no-new-privs", *argv, unprivileged=True).returncode == 0
        assert os.path.exists(target)
    finally:
        os.close(fd)
        shutil.rmtree(where)


def test_truncated_landlock_ruleset_refuses_to_run_the_command() -> None:
    fd = memfd(_ruleset((b"/usr", 1))[:-3])
    try:
        done = stage("--no-new-privs", "--landlock-fd", str(fd), "--", "/bin/echo", "ran",
                     pass_fds=(fd,))
    finally:
        os.close(fd)
    assert done.returncode == 125 and done.stdout == ""
    assert done.stderr.startswith("isorun: error: landlock: read:")
