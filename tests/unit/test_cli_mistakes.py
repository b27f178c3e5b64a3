"""User mistakes end in a message and an exit code of the README's table, never in
"internal error" (125) or a traceback; --debug works before and after a subcommand.

The cases run the Python CLI as a user does (``python -m isorun``, a process of its own:
a deleted working directory, a closed stderr and a closed pipe are properties of the
process). None of them starts a sandbox; tests/integration/test_api_subprocess.py has the
ones that do.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: exit codes the README documents for the CLI's own outcomes (no command ran)
DOCUMENTED = {0, 1, 2, 124, 141}
#: a file root cannot read either: sysctl files check their mode bits even for root
UNREADABLE = "/proc/sys/vm/compact_memory"


def isorun(*args: str, cwd: Path | str | None = None, **kwargs: Any
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(Path(cwd or ".").resolve() / ".cache")}
    env.pop("ISORUN_DEBUG", None)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "isorun", *args], cwd=cwd, env=env,
                          text=True, timeout=120, check=False, **kwargs)


def assert_clean(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    """Exit ``code``, each fragment in stderr, and no traceback or internal error."""
    text = done.stdout + done.stderr
    assert done.returncode == code, text
    assert "Traceback" not in text and "internal error, please report" not in text, text
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_deleted_working_directory_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    # rmdir from inside: the process keeps a working directory that no longer exists
    script = ("import os, runpy, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
              "sys.argv[1:] = sys.argv[2:]; runpy.run_module('isorun', run_name='__main__')")
    for args in (["--profile", "strict", "--", "true"], ["explain", "strict"]):
        done = subprocess.run([sys.executable, "-c", script, str(gone), *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert_clean(done, 2, "the working directory no longer exists",
                     "hint: cd to an existing directory")
        gone.mkdir()


@pytest.mark.skipif(not os.path.exists(UNREADABLE), reason="no /proc/sys/vm/compact_memory")
def test_unreadable_profile_is_a_profile_error(tmp_path: Path) -> None:
    for args in (["--profile", UNREADABLE, "--", "true"], ["check", UNREADABLE]):
        done = isorun(*args, cwd=tmp_path)
        assert_clean(done, 2, f"{UNREADABLE}: error: cannot read profile: Permission denied")


def test_directory_as_profile(tmp_path: Path) -> None:
    done = isorun("--profile", str(tmp_path), "--", "true", cwd=tmp_path)
    assert_clean(done, 2, f"profile {tmp_path} is a directory, not a file",
                 f"hint: name a .toml file in it, e.g. {tmp_path}/NAME.toml")


def test_symlink_loop_as_profile(tmp_path: Path) -> None:
    (tmp_path / "loop.toml").symlink_to("loop.toml")
    done = isorun("check", "./loop.toml", cwd=tmp_path)
    assert_clean(done, 2, "profile path is a symlink loop: ./loop.toml")


def test_builtin_name_with_toml_suffix_suggests_the_builtin(tmp_path: Path) -> None:
    done = isorun("--profile", "strict.toml", "--", "true", cwd=tmp_path)
    assert_clean(done, 2, "profile file not found: strict.toml",
                 "did you mean the built-in profile 'strict' (no .toml)?")


def test_empty_command_name_is_a_usage_error(tmp_path: Path) -> None:
    done = isorun("--profile", "strict", "--", "", cwd=tmp_path)
    assert_clean(done, 2, "the command name is empty")


def test_closed_pipe_ends_like_sigpipe(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = isorun("explain", "strict", cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert done.returncode == 128 + signal.SIGPIPE and done.stderr == ""


def test_closed_stderr_keeps_the_exit_code(tmp_path: Path) -> None:
    for args in (["--profile", "nope", "--", "true"], ["check", "nope"]):
        done = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m",
                               "isorun", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2, done


@pytest.mark.parametrize("args", [["--debug", "check", "strict"], ["check", "--debug", "strict"],
                                  ["--debug", "explain", "--debug", "strict"]])
def test_debug_before_and_after_the_subcommand(tmp_path: Path, args: list[str]) -> None:
    done = isorun(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_debug_keeps_the_documented_exit_code(tmp_path: Path) -> None:
    for args in (["--debug", "check", "nope"], ["check", "nope", "--debug"]):
        done = isorun(*args, cwd=tmp_path)
        assert done.returncode == 2
        assert "no built-in profile named 'nope'" in done.stderr
        assert "Traceback" in done.stderr  # what --debug is for


@pytest.mark.parametrize("args", [["run", "--help"], ["--profile", "strict", "--help"],
                                  ["--debug", "run", "-h"]])
def test_launch_help_explains_backend_and_allow_weaker(tmp_path: Path, args: list[str]) -> None:
    done = isorun(*args, cwd=tmp_path)
    assert done.returncode == 0
    assert "--backend B" in done.stdout and "--allow-weaker" in done.stdout
    assert "native, bwrap, firejail" in done.stdout


# -- fuzz: any argument list ends in a documented exit code and no traceback ---------------

WORDS = ["strict", "build", "web", "test", "nope", "strict.toml", "./p.toml", "./bad.toml",
         "./loop.toml", "./dir", UNREADABLE, "explain", "check", "profiles", "export", "import",
         "diff", "run", "docker", "oci", "pfc", "bpf", "-o", "out.json", "--json", "--debug",
         "--profile", "-p", "--profile=strict", "--backend", "--backend=", "bwrap", "native",
         "auto", "firejail", "weird", "--allow-weaker", "-v", "--verbose", "--", "-h",
         "--help", "--version", "true", "", "-x", "\udcff", "=", "sh", "syscalls", "@clock",
         "openat"]
WORD = st.one_of(st.sampled_from(WORDS), st.text(max_size=6))
#: the launch grammar's shape with any words in it, which plain lists rarely hit
LAUNCH = st.builds(
    lambda lead, profile, backend, flags, dash, command: [
        *lead, *profile, *backend, *flags, *dash, *command],
    st.lists(st.sampled_from(["--debug", "run"]), max_size=2),
    st.one_of(st.just([]), st.tuples(st.sampled_from(["--profile", "-p"]), WORD).map(list),
              WORD.map(lambda w: [f"--profile={w}"])),
    st.one_of(st.just([]), st.tuples(st.just("--backend"), WORD).map(list)),
    st.lists(st.sampled_from(["--allow-weaker", "-v", "--debug", "-x", "--help"]), max_size=2),
    st.sampled_from([[], ["--"]]),
    st.lists(WORD, max_size=3))
ARGS = st.one_of(st.lists(WORD, max_size=7), LAUNCH)


class _FakeLaunch:
    """Stands for the sandbox in the fuzz: everything up to the spawn is real (profile,
    compile, backend choice, argv checks), so only the start itself is skipped."""

    exec_error = None

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        from isorun import api

        api._command(argv, False)
        api._choose_backend(kwargs["profile"], kwargs["backend"] or kwargs["profile"].backend,
                            kwargs["allow_weaker"], None)

    def send_signal(self, sig: int) -> None:
        raise AssertionError("no signal is sent in the fuzz")

    def wait(self) -> int:
        return 0


@contextlib.contextmanager
def _captured() -> Iterator[tuple[io.TextIOWrapper, io.TextIOWrapper]]:
    out = io.TextIOWrapper(io.BytesIO(), errors="surrogateescape")
    err = io.TextIOWrapper(io.BytesIO(), errors="surrogateescape")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


@pytest.fixture
def fuzz_dir(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
             monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "p.toml").write_text('extends = ["strict"]\n')
    (tmp_path / "bad.toml").write_text("[namespaces]\nusr = 1\n")
    (tmp_path / "loop.toml").symlink_to("loop.toml")
    (tmp_path / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    # The cache outside the working directory: build's writable ${CWD} over it is refused
    # (exit 125, the plan cache is code the host runs), a refusal this fuzz is not about.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("fuzz-cache")))
    monkeypatch.delenv("ISORUN_DEBUG", raising=False)
    from isorun import api
    from isorun.cli import launch as entry

    monkeypatch.setattr(api, "Popen", _FakeLaunch)
    monkeypatch.setattr(entry, "_launch_cached", lambda *a, **k: None)
    # attached.launch installs forwarding handlers: not in the test process
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    return tmp_path


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(args=ARGS)
def test_fuzz_cli_arguments(fuzz_dir: Path, args: list[str]) -> None:
    from isorun.__main__ import main

    if args[:1] in (["learn"], ["doctor"]):
        return  # they start sandboxes and probes; covered by their own tests
    with _captured() as (out, err):
        try:
            main(list(args))
            code: Any = 0
        except SystemExit as done:
            code = done.code
        out.flush()
        err.flush()
        text = (out.buffer.getvalue() + err.buffer.getvalue()).decode(errors="replace")  # type: ignore[attr-defined]
    code = 0 if code is None else code
    assert isinstance(code, int) and code in DOCUMENTED, (args, code, text)
    assert "Traceback" not in text or "--debug" in args, (args, text)
    assert "internal error, please report" not in text, (args, text)
    if code not in (0, 1):
        assert text.strip(), (args, "an error exit with no message")
