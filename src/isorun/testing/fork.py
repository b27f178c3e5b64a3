"""The child side of a marked test: how its process is made (one clone3 or two forks)
and what it runs, confining itself, running the test body and writing the result record
its parent (isorun.testing.sandbox) reads."""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from isorun.kernel.abi import CLONE_NEWPID, EXIT_SETUP
from isorun.testing import environ as pytest_environ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from isorun.testing.sandbox import Policy



#: the result record: a 4-byte big-endian length, then that many bytes of JSON
HEADER = struct.Struct(">I")


#: "os" makes every marked test fork twice (os.fork), as where clone3 is unusable
FORK_ENV = "ISORUN_MARKER_FORK"


class Forking:
    """How a session's marked tests get their process: one clone3 into their namespaces
    (sandbox/pyfork.py), or two forks where clone3 is unusable. The plugin keeps one per
    session (config.stash): once clone3 failed, the rest of the session forks twice."""

    __slots__ = ("clone3_off",)

    def __init__(self) -> None:
        #: why clone3 was given up for the rest of the session (pyfork.Unsupported)
        self.clone3_off: str | None = None

    def one_fork_unusable(self) -> str | None:
        """Why a marked test's child cannot come from one clone3, if so."""
        if os.environ.get(FORK_ENV) == "os":
            return f"{FORK_ENV}=os"
        if self.clone3_off is not None:
            return self.clone3_off
        from isorun.sandbox import pyfork

        return pyfork.unusable()


def hypothesis_storage(env: Mapping[str, str]) -> None:
    """Hypothesis reads HYPOTHESIS_STORAGE_DIRECTORY once and keeps the answer: pytest's
    process, which the child is a copy of, already chose ``.hypothesis``."""
    where = env.get("HYPOTHESIS_STORAGE_DIRECTORY")
    configuration = sys.modules.get("hypothesis.configuration")
    if where and configuration is not None:
        configuration.set_hypothesis_home_dir(where)


def set_environ(env: dict[str, str]) -> None:
    # Only what differs: every change is a putenv/unsetenv and a write to pages still
    # shared with pytest.
    for name in [n for n in os.environ if n not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@dataclass(frozen=True, slots=True)
class Pipes:
    """The descriptors of one marked test's child (parent.py names the protocol)."""

    ready_r: int  # os.fork only: one byte once the child's namespaces exist
    ready_w: int
    go_r: int  # the child waits here until the parent wrote its id maps
    go_w: int
    err_w: int  # a set-up failure; EOF once the body is about to run
    err_r: int
    result_r: int  # the result record (outcome.read_record)
    result_w: int


def child(
    policy: Policy,
    body: Callable[[Policy], tuple[str, str, str]],
    steps: tuple[Any, Any],
    c_spec: Any,
    record: dict[str, Any],
    env: dict[str, str],
    pipes: Pipes,
    cloned: bool,
    mask: set[int | signal.Signals],
    environ: tuple[Any, pytest_environ.EnvironBlock],
) -> None:
    """The test's process: confine, run the body, report; never returns."""
    code = EXIT_SETUP
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(pipes.result_r)
        if pipes.ready_r >= 0:
            os.close(pipes.ready_r)
        if cloned:
            # clone3 made the namespaces and this process is pid 1 already; drop the
            # parent's pipe ends as isorun_apply_namespaces would (a dead parent must
            # give EOF).
            os.close(pipes.go_w)
            os.close(pipes.err_r)
        else:
            # Closes ready_w and the parent's pipe ends; the parent now writes the id maps.
            steps[0](c_spec, pipes.ready_w)
            if record["clone_flags"] & CLONE_NEWPID:
                fork_into_pid_namespace(pipes.go_r, pipes.err_w, pipes.result_w)
        # Before the plan's seccomp filter, which need not allow prctl(PR_SET_MM).
        set_environ(env)
        hypothesis_storage(env)
        pytest_environ.replace_environ_block(environ[1], environ[0])
        # Waits for the id maps, then the rest of the plan, seccomp last; on failure it
        # reports on err_w and exits.
        steps[1](c_spec)
        # EOF on the error pipe tells the parent the sandbox is complete.
        os.close(pipes.err_w)
        refresh_faulthandler()
        outcome, text, exc_type = body(policy)
        # Before the result: os._exit below drops what Python still buffers (with -s,
        # sys.stdout is the real, block-buffered stdout), and the parent reports at once.
        flush_stdio()
        record_bytes = json.dumps(
            {"outcome": outcome, "text": text, "exc_type": exc_type}
        ).encode()
        data = HEADER.pack(len(record_bytes)) + record_bytes
        while data:
            data = data[os.write(pipes.result_w, data) :]
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        # _exit: no atexit handlers, no flushing of buffers copied from pytest.
        os._exit(code)


def refresh_faulthandler() -> None:
    """Point pytest's faulthandler at fd 2 again: the shim closed the duplicate of stderr
    it wrote to, and a crash would otherwise write its traceback to whatever file the
    test opened under that number. fd 2 is pytest's capture file (or the terminal), so a
    crash's traceback shows in the test's report."""
    import faulthandler

    if faulthandler.is_enabled():
        faulthandler.enable(file=2)


def flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            continue  # closed or replaced by the test; nothing more to save


def fork_into_pid_namespace(go_r: int, err_w: int, result_w: int) -> None:
    """Fork the test's process, pid 1 of the new pid namespace; this one (F) only waits.

    F returns never: it mirrors the child's end (a signal as that signal, so the parent
    reports "killed by SIGSEGV" as for any crash). It holds no pipe end the parent waits on.
    """
    pid = os.fork()
    if pid == 0:
        return
    for fd in (go_r, err_w, result_w):
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        import faulthandler

        sig = os.WTERMSIG(status)
        faulthandler.disable()
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else EXIT_SETUP)
