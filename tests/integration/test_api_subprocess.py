"""isorun.Popen and isorun.run behave as subprocess does where users notice: cwd=,
shell=, stderr=STDOUT, env= (with the policy's drops named), timeout=, check=, and a
grace period for SIGTERM before SIGKILL when a with block ends. Plus the CLI mistakes
that need a real sandbox (a non-UTF-8 kept variable, learn --timeout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import isorun
from isorun.api import DroppedEnvWarning
from isorun.errors import UsageError

pytestmark = pytest.mark.needs("userns", "shim")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the sandbox's user may enter and read: a root caller's sandbox runs as
    65534, which pytest's own tmp_path (mode 0700) keeps out."""
    path = Path(tempfile.mkdtemp(prefix="isorun-api-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_dir_and_all_export_run_and_popen() -> None:
    assert {"run", "Popen"} <= set(dir(isorun)) and {"run", "Popen"} <= set(isorun.__all__)


def test_cwd_runs_there_with_its_mounts(open_dir: Path) -> None:
    tmp_path = open_dir
    (tmp_path / "data.txt").write_text("here\n")
    result = isorun.run(["sh", "-c", "pwd; cat data.txt"], profile="strict", cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{tmp_path.resolve()}\nhere\n"


def test_cwd_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        isorun.Popen(["true"], cwd=tmp_path / "missing")
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        isorun.Popen(["true"], cwd=tmp_path / "f")


def test_stderr_to_stdout_interleaves() -> None:
    result = isorun.run(["sh", "-c", "echo out; echo err >&2; echo out2"], profile="strict",
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert result.stdout == b"out\nerr\nout2\n" and result.stderr is None


def test_shell_runs_sh_c() -> None:
    result = isorun.run("echo $((6 * 7))", shell=True, profile="strict", capture_output=True,
                        timeout=60)
    assert result.stdout == b"42\n" and result.args == "echo $((6 * 7))"


def test_env_keeps_what_the_policy_keeps_and_names_each_drop() -> None:
    with pytest.warns(DroppedEnvWarning) as caught:
        result = isorun.run(["sh", "-c", 'echo "$LANG/${FOO-unset}/${BAR-unset}"'],
                            profile="strict", env={"LANG": "C.UTF-8", "FOO": "1", "BAR": "2"},
                            capture_output=True, text=True, timeout=60)
    assert result.stdout == "C.UTF-8/unset/unset\n"
    message = str(caught[0].message)
    assert "does not pass on BAR, FOO from env=" in message
    assert "environment.keep at <builtin>/strict.toml:" in message


def test_timeout_kills_and_raises() -> None:
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        isorun.run(["sleep", "30"], profile="strict", timeout=0.5)
    assert time.monotonic() - start < 10 and caught.value.cmd == ["sleep", "30"]


def test_check_raises_called_process_error() -> None:
    with pytest.raises(subprocess.CalledProcessError) as caught:
        isorun.run(["sh", "-c", "exit 3"], profile="strict", check=True, timeout=60)
    assert caught.value.returncode == 3


@pytest.mark.parametrize("argv", [[], [""], "true"])
def test_bad_argv_is_a_value_error(argv: list[str] | str) -> None:
    with pytest.raises((ValueError, TypeError)):
        isorun.Popen(argv, profile="strict")
    if argv != "true":
        with pytest.raises(UsageError):
            isorun.Popen(argv, profile="strict")


def test_exit_gives_sigterm_handler_its_grace_period() -> None:
    script = "trap 'exit 3' TERM; echo ready; sleep 60 & wait"
    with isorun.Popen(["sh", "-c", script], profile="strict", stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        out = proc.stdout
    # the handler ran and chose its exit status: not 137 (SIGKILL at once)
    assert proc.returncode == 3
    assert out.closed


def test_exit_kills_after_the_grace_period() -> None:
    start = time.monotonic()
    script = "trap '' TERM; echo ready; sleep 60"
    with isorun.Popen(["sh", "-c", script], profile="strict", stdout=subprocess.PIPE,
                      grace_period=0.5) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    assert proc.returncode == 137 and time.monotonic() - start < 10


# -- CLI cases that need a sandbox ----------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path
         ) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, "XDG_CACHE_HOME": str(cwd / ".cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "isorun", *args], env=full, cwd=cwd,
                          capture_output=True, timeout=120, check=False)


def test_kept_variable_with_non_utf8_bytes_reaches_the_command(open_dir: Path) -> None:
    tmp_path = open_dir
    env = os.environ.copy()
    os_env = {k: v for k, v in env.items() if k != "TERM"}
    os_env["XDG_CACHE_HOME"] = str(tmp_path / ".cache")
    done = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"isorun", b"--profile", b"strict", b"--",
         b"sh", b"-c", b'printf %s "$TERM"'],
        env={**{os.fsencode(k): os.fsencode(v) for k, v in os_env.items()},
             b"TERM": b"vt\xff\xfe"},
        cwd=tmp_path, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"vt\xff\xfe"


@pytest.mark.needs("bwrap")
def test_kept_variable_with_non_utf8_bytes_on_bwrap(open_dir: Path) -> None:
    tmp_path = open_dir
    os_env = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items() if k != "TERM"}
    os_env[b"XDG_CACHE_HOME"] = os.fsencode(tmp_path / ".cache")
    done = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"isorun", b"--backend", b"bwrap", b"--profile",
         b"strict", b"--", b"sh", b"-c", b'printf %s "$TERM"'],
        env={**os_env, b"TERM": b"vt\xff"}, cwd=tmp_path, capture_output=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"vt\xff"


def test_learn_timeout_kills_and_still_learns(open_dir: Path) -> None:
    tmp_path = open_dir
    start = time.monotonic()
    done = _cli("learn", "--timeout", "1", "--", "sleep", "30", cwd=tmp_path)
    # learn passes the command's status on (124: the limit killed it), and still writes
    # what it learned until then
    assert done.returncode == 124, done.stderr
    assert b"the command exited 124" in done.stderr and b"#   sleep 30" in done.stdout
    assert b"Traceback" not in done.stderr and time.monotonic() - start < 25
