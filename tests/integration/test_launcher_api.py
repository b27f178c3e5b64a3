"""isorun.Popen/run through isorun-launch: same sandbox, same answers, nothing left behind.

Each behaviour is compared with the in-process clone (the fallback when the program is
missing), which is what the API did before: exit codes, signals, set-up errors. The
unprivileged cases re-run this file under setpriv (``python test_launcher_api.py CASE``).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import isorun
from isorun import api
from isorun.errors import SandboxSetupError
from isorun.sandbox import launched, process

pytestmark = pytest.mark.needs("userns", "shim")

MISSING_SOURCE = "/nonexistent/isorun-launcher-test"
MISSING_BIND_PROFILE = (
    'extends = ["strict"]\n'
    "\n"
    "[[mounts]]\n"
    'type = "ro-bind"\n'
    'src = "' + MISSING_SOURCE + '"\n'
    'dst = "/data"\n'
)


def _require_launcher() -> str:
    path = launched.launcher_path()
    if path is None:
        pytest.fail(f"{launched.LAUNCHER} is not built: make shim")
    return path


def _in_process(call: Callable[[], object]) -> object:
    """``call()`` with isorun-launch hidden, so the API clones this process as before."""
    found = launched.launcher_path
    launched.launcher_path = lambda: None  # type: ignore[assignment]
    try:
        return call()
    finally:
        launched.launcher_path = found  # type: ignore[method-assign]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def _marked(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


# -- the cases, run as root in-process and as an unprivileged user through setpriv ----------


def case_helper_starts_strict() -> None:
    """The sandbox's parent is an isorun-launch process, not this Python process."""
    launcher = _require_launcher()
    with isorun.Popen(["/bin/sleep", "10"], profile="strict") as proc:
        assert isinstance(proc._proc._proc, launched.LaunchedProcess)
        parent = _ppid(proc.pid)
        assert parent != os.getpid()
        assert _ppid(parent) == os.getpid()
        assert os.readlink(f"/proc/{parent}/exe") == os.path.realpath(launcher)
        # And it is the sandbox: pid 1 of its own pid namespace.
        with open(f"/proc/{proc.pid}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()
        assert nspid[1:] == [str(proc.pid), "1"]
        proc.kill()
        assert proc.wait() == 128 + signal.SIGKILL


EXIT_CASES: list[tuple[list[str], int, int | None]] = [
    (["/bin/sh", "-c", "exit 3"], 3, None),
    (["/bin/sh", "-c", "exit 0"], 0, None),
    (["/bin/sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM, None),
    (["/bin/sh", "-c", "kill -SEGV $$"], 128 + signal.SIGSEGV, None),
    (["/bin/sh", "-c", "kill -KILL $$"], 128 + signal.SIGKILL, None),
    (["no-such-command"], 127, errno.ENOENT),
    # procfs is mounted noexec: EACCES whatever the file's mode
    (["/proc/version"], 126, errno.EACCES),
]


def case_exit_codes_mirrored() -> None:
    for argv, code, exec_errno in EXIT_CASES:
        with isorun.Popen(argv, profile="strict") as proc:
            assert isinstance(proc._proc._proc, launched.LaunchedProcess)
            assert proc.wait() == code, argv
            got = None if proc.exec_error is None else proc.exec_error.errno
            assert got == exec_errno, argv
        old = _in_process(lambda argv=argv: isorun.run(argv, profile="strict"))
        assert old.returncode == code, argv  # type: ignore[attr-defined]


def case_signals_reach_the_command() -> None:
    script = 'trap "exit 42" USR1; echo ready; while :; do sleep 0.01; done'
    for send, code in ((signal.SIGUSR1, 42), (signal.SIGTERM, 128 + signal.SIGTERM),
                       (signal.SIGKILL, 128 + signal.SIGKILL)):  # fmt: skip
        with isorun.Popen(["/bin/sh", "-c", script], profile="strict",
                          stdout=subprocess.PIPE) as proc:  # fmt: skip
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            assert proc.poll() is None
            if send == signal.SIGKILL:
                proc.kill()
            elif send == signal.SIGTERM:
                proc.terminate()
            else:
                proc.send_signal(send)
            assert proc.wait(timeout=10) == code, send
            # The sandbox is gone, not only its launcher.
            assert not os.path.exists(f"/proc/{proc.pid}/exe") or _ppid(proc.pid) != os.getpid()


def case_setup_failure_matches_the_old_path() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "missing.toml"
        path.write_text(MISSING_BIND_PROFILE)
        marker = f"isorun-test-{uuid.uuid4()}"
        errors = []
        for launch in (lambda: isorun.run(["/bin/true", marker], profile=str(path)),
                       lambda: _in_process(lambda: isorun.run(["/bin/true", marker],
                                                              profile=str(path)))):  # fmt: skip
            try:
                launch()
            except SandboxSetupError as err:
                errors.append(err)
            else:
                raise AssertionError("a missing bind source did not fail the launch")
        new, old = errors
        assert (new.step, new.syscall, new.errno, new.step_index, new.detail) == (
            old.step, old.syscall, old.errno, old.step_index, old.detail)  # fmt: skip
        assert new.render() == old.render()
        assert new.errno == errno.ENOENT and new.step == "mount"
        assert MISSING_SOURCE in new.render()
        # The [[mounts]] table that asked for it (line 3), named as the loader names it.
        assert new.loc is not None and new.loc.line == 3 and path.name in new.render()
        assert not _marked(marker)


def case_no_process_left_after_200_launches() -> None:
    marker = f"isorun-test-{uuid.uuid4()}"
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        done = isorun.run(["/bin/sh", "-c", "exit 0", marker], profile="strict")
        assert done.returncode == 0
    # The helpers carry the command line too: neither they nor a sandbox are left.
    assert not _marked(marker)
    assert len(os.listdir("/proc/self/fd")) == fds


def case_stdio_and_text() -> None:
    done = isorun.run(["/bin/sh", "-c", "cat; echo err >&2"], profile="strict", input="hi\n",
                      capture_output=True, text=True)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "err\n")


def case_pipes_close_with_the_command() -> None:
    """EOF when the command closes its stdout, not when the sandbox (or helper) ends."""
    start = time.monotonic()
    with isorun.Popen(["/bin/sh", "-c", "echo x; exec >&- 2>&-; sleep 5"], profile="strict",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read() == b"x\n"
        assert proc.stderr.read() == b""
        assert time.monotonic() - start < 4
        assert proc.poll() is None
        proc.kill()


def case_inherited_descriptor_not_held_by_the_helper() -> None:
    """posix_spawn closes nothing; the helper closes what it inherited by accident."""
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        with isorun.Popen(["/bin/sleep", "10"], profile="strict") as proc:
            helper = _ppid(proc.pid)
            targets = {os.readlink(f"/proc/{helper}/fd/{fd}")
                       for fd in os.listdir(f"/proc/{helper}/fd")}  # fmt: skip
            assert os.readlink(f"/proc/self/fd/{write_end}") not in targets
    finally:
        os.close(read_end)
        os.close(write_end)


CASES: dict[str, Callable[[], None]] = {
    "helper_starts_strict": case_helper_starts_strict,
    "exit_codes_mirrored": case_exit_codes_mirrored,
    "signals_reach_the_command": case_signals_reach_the_command,
    "setup_failure_matches_the_old_path": case_setup_failure_matches_the_old_path,
    "no_process_left_after_200_launches": case_no_process_left_after_200_launches,
    "stdio_and_text": case_stdio_and_text,
    "pipes_close_with_the_command": case_pipes_close_with_the_command,
    "inherited_descriptor_not_held_by_the_helper": case_inherited_descriptor_not_held_by_the_helper,
}


@pytest.fixture(params=["root", "user"])
def as_caller(request: pytest.FixtureRequest) -> Iterator[Callable[[str], None]]:
    from tests.integration.conftest import missing, unprivileged_user

    if request.param == "root":
        if os.geteuid() != 0:
            missing("root")
        yield lambda case: CASES[case]()
        return
    user = unprivileged_user()
    if os.geteuid() != 0 or user is None:
        missing("root to switch to an unprivileged user with setpriv")
    assert user is not None

    # A working directory of its own: strict refuses to bind /tmp itself (issue #13).
    work = tempfile.mkdtemp(prefix="isorun-launcher-")
    os.chmod(work, 0o755)

    def as_user(case: str) -> None:
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                "--clear-groups", sys.executable, __file__, case]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=work,
                              env={"PATH": "/usr/bin:/bin", "LANG": "C", "ISORUN_CACHE": "0"},
                              check=False)  # fmt: skip
        assert done.returncode == 0 and done.stdout.endswith("OK\n"), (
            f"case {case} failed as uid {user.pw_uid}:\n{done.stdout}\n{done.stderr}"
        )

    yield as_user
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_launcher_case(as_caller: Callable[[str], None], case: str) -> None:
    as_caller(case)


def test_helper_refuses_a_malformed_record() -> None:
    launcher = _require_launcher()
    plan = api._cached_plan("strict")
    record, blob = api.MEMO.launch_record(plan, os.environ)
    bad = {
        "bad magic": b"XXXX" + blob[4:],
        "other version": blob[:4] + (99).to_bytes(4, "little") + blob[8:],
        "truncated": blob[:-3],
        "trailing bytes": blob + b"\0",
        "CLONE_VM asked for": blob[:8]
        + (0x100 | record["clone_flags"]).to_bytes(8, "little")
        + blob[16:],
        "empty": b"",
    }
    for what, data in bad.items():
        read_end, write_end = os.pipe()
        report_r, report_w = os.pipe()
        os.write(write_end, data)
        os.close(write_end)
        marker = f"isorun-test-{uuid.uuid4()}"
        done = subprocess.run([launcher, "--record-fd", str(read_end), "--report-fd",
                               str(report_w), "--", "/bin/true", marker],
                              pass_fds=(read_end, report_w), capture_output=True, text=True,
                              timeout=30, check=False)  # fmt: skip
        os.close(read_end)
        os.close(report_w)
        report = os.read(report_r, 1024)
        os.close(report_r)
        assert done.returncode == 125, what
        assert "malformed launch record" in done.stderr, (what, done.stderr)
        assert report[8:14] == b"record", what
        assert not _marked(marker), what


def test_dump_round_trips_the_record() -> None:
    """What the C parser reads is what the Python record says (see test_flat.py too)."""
    from tests.unit.test_flat import dump, expected_dump

    plan = api._cached_plan("strict")
    record, blob = api.MEMO.launch_record(plan, os.environ)
    assert dump(blob) == expected_dump(record)


def test_missing_launcher_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launched, "launcher_path", lambda: None)
    said: list[str] = []
    with isorun.Popen(["/bin/true"], profile="strict", log=said.append) as proc:
        assert isinstance(proc._proc._proc, process.SandboxProcess)
        assert not isinstance(proc._proc._proc, launched.LaunchedProcess)
        assert proc.wait() == 0
    assert any("not built" in line for line in said)


def test_wall_time_keeps_the_in_process_path(tmp_path: Path) -> None:
    profile = tmp_path / "wall.toml"
    profile.write_text('extends = ["strict"]\n[limits]\nwall_time = 30\n')
    with isorun.Popen(["/bin/true"], profile=str(profile)) as proc:
        assert not isinstance(proc._proc._proc, launched.LaunchedProcess)
        assert proc.wait() == 0


TERMINAL_CALLER = r"""
import signal, subprocess, sys, isorun
from isorun.sandbox import launched
if sys.argv[1] == "in-process":
    launched.launcher_path = lambda: None
signal.signal(signal.SIGINT, signal.SIG_IGN)
script = "trap 'echo got-sigint' INT; echo ready; sleep 1; echo done"
proc = isorun.Popen(["/bin/sh", "-c", script], profile="strict", stdout=subprocess.PIPE)
sys.stdout.write(proc.stdout.readline().decode())
sys.stdout.flush()
print("command said", repr(proc.stdout.read().decode()), "exit", proc.wait(), flush=True)
"""


@pytest.mark.parametrize("path", ["helper", "in-process"])
def test_terminal_ctrl_c_is_not_passed_to_a_new_session(path: str) -> None:
    """^C at the caller's terminal: SIGINT to its foreground group, which the helper is
    in; the sandbox (a new session) did not get it from the in-process clone either."""
    import pty

    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(sys.executable, [sys.executable, "-c", TERMINAL_CALLER, path])
    out = b""
    try:
        while b"ready" not in out:
            out += os.read(master, 1024)
        os.write(master, b"\x03")  # the terminal's ^C
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the caller exited and closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.waitpid(pid, 0)
        os.close(master)
    assert "command said 'done\\n' exit 0" in out.decode(), out


def test_caller_without_stdio() -> None:
    """pipe2 hands a caller with 0..2 closed those numbers; they must not reach the helper
    as the record or report descriptors, where the stdio dup2s would overwrite them."""
    code = (
        "import os, isorun\n"
        "os.close(0)\n"
        "done = isorun.run(['/bin/sh', '-c', 'echo out; exit 5'], capture_output=True)\n"
        "os.write(1, repr((done.returncode, done.stdout)).encode())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "(5, b'out\\n')"), done.stderr


def test_cached_plan_rehashes_only_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from isorun.cache import entry as cache_entry
    from isorun.compile.plan import Hostname

    profile = tmp_path / "p.toml"
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "one"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(api.MEMO, "settled_ns", 0)  # the file counts as settled at once
    first = api._cached_plan("./p.toml")
    assert api._cached_plan("./p.toml") is first  # hashed: the signature is recorded
    hashed = cache_entry.check_deps
    monkeypatch.setattr(cache_entry, "check_deps", lambda deps: pytest.fail("hashed again"))
    assert api._cached_plan("./p.toml") is first
    monkeypatch.setattr(cache_entry, "check_deps", hashed)
    # Same size, a moment later: ctime (and mtime) move, so it is hashed and recompiled.
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "two"\n')
    second = api._cached_plan("./p.toml")
    assert second is not first
    assert second.find(Hostname)[0].name == "two"


def test_cached_plan_trusts_no_signature_of_a_fresh_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written just now (within Memo.settled_ns): hashed on every call, never stat-trusted."""
    from isorun.cache import entry as cache_entry

    profile = tmp_path / "p.toml"
    profile.write_text('extends = ["strict"]\n')
    monkeypatch.chdir(tmp_path)
    api._cached_plan("./p.toml")
    calls: list[object] = []
    hashed = cache_entry.check_deps
    monkeypatch.setattr(cache_entry, "check_deps", lambda deps: calls.append(deps) or hashed(deps))
    api._cached_plan("./p.toml")
    api._cached_plan("./p.toml")
    assert len(calls) == 2


def test_repeated_launches_reuse_the_encoded_record() -> None:
    plan = api._cached_plan("strict")
    first = api.MEMO.launch_record(plan, os.environ)
    assert api.MEMO.launch_record(plan, os.environ) is first
    other = dict(os.environ, TERM="isorun-test-term")
    assert api.MEMO.launch_record(plan, other) is not first
    assert b"TERM=isorun-test-term" in api.MEMO.launch_record(plan, other)[1]


if __name__ == "__main__":
    CASES[sys.argv[1]]()
    sys.stdout.write("OK\n")
