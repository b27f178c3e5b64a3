"""The warm CLI launch in the foreground: a launch record started with stdio inherited,
the signals passed on, and the exit status reported as a shell does.

Imports at the top: ``os`` and builtin modules only (the warm launch path).
"""

from __future__ import annotations

import os

from isorun.kernel import abi
from isorun.shim import abi as shim_abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from isorun.sandbox.parent import Record

ENOENT = 2
SIGCHLD = 17
#: si_code of a signal the kernel sent (a terminal's ^C), as opposed to kill(2)'s SI_USER
SI_KERNEL = 0x80
#: signals the launcher passes on to the sandbox's pid 1 instead of dying of them
FORWARDED_SIGNALS = tuple(abi.FORWARDED_SIGNALS.values())


def exec_failure_message(command: str, errno: int) -> str:
    """The line a shell would print when execve failed (the exit code says 126 or 127)."""
    why = os.strerror(errno)
    if "/" not in command and errno == ENOENT:
        why = shim_abi.EXEC_NOT_FOUND
    return f"isorun: {command}: {why}\n"


def run(record: Record, argv: list[str]) -> int:
    """Launch with stdio inherited and wait; the exit code as a shell reports it (128+N
    for signal N, 126/127 when execve failed)."""
    import sys

    from isorun.sandbox import git_guard, parent

    # Before the sandbox can write: .git guards with nothing to guard yet (git_guard.py).
    guards = git_guard.missing_in_record(record["mounts"])
    walks = git_guard.all_in_record(record["mounts"])
    since = git_guard.since() if walks else 0
    try:
        return _run(record, argv, parent)
    finally:
        for note in git_guard.quarantine(guards) if guards else ():
            sys.stderr.write(note + "\n")
        for note in git_guard.walk_planted(walks, since) if walks else ():
            sys.stderr.write(note + "\n")


def _run(record: Record, argv: list[str], parent: Any) -> int:
    # _signal is the C half of signal.py, which imports enum (milliseconds).
    import _signal  # type: ignore[import-not-found]
    import sys

    # The sandbox shares our terminal's foreground group (spec.terminal_job): then the
    # signals are taken with sigwaitinfo, whose si_code tells the terminal's (which the
    # command got itself) from those sent with kill (to forward).
    foreground = bool(record.get("terminal_job")) and parent.foreground_in_parent()
    blocked = (*FORWARDED_SIGNALS, SIGCHLD) if foreground else FORWARDED_SIGNALS
    # Blocked from before the clone until the handlers below are in place: the command
    # can run (and someone signal us) before spawn_in_parent returns, and a SIGTERM in
    # that window would kill this launcher instead of reaching the command. The child
    # unblocks every signal before its execve (shim exec.c), so the command never
    # inherits this mask; a signal that came meanwhile is delivered at the unblock below.
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, blocked)
    opened: list[int] = []
    try:
        try:
            pid, pidfd, failure = parent.spawn_in_parent(record, opened)
        finally:
            for fd in opened:
                os.close(fd)
        if failure is not None:
            # The status says 126 or 127; the launcher says why, as attached.launch does.
            sys.stderr.write(exec_failure_message(argv[0], failure[2]))
        if foreground:
            try:
                status = wait_sharing_terminal(
                    lambda: os.waitpid(pid, os.WNOHANG),
                    lambda sig: parent.signal_in_parent(pidfd, sig), blocked)
            finally:
                os.close(pidfd)
                parent.reclaim_terminal_in_parent()
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code

        def forward(signum: int, frame: Any) -> None:
            parent.signal_in_parent(pidfd, signum)

        # The sandbox's pid 1 forwards these to the command; the launcher must survive
        # them to report the command's status instead of dying first.
        for sig in FORWARDED_SIGNALS:
            _signal.signal(sig, forward)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def wait_sharing_terminal(reap: Callable[[], tuple[int, int]], send: Callable[[int], None],
                          blocked: tuple[int, ...]) -> int:
    """Wait for a sandbox in our terminal's foreground group; its wait status.

    ``blocked`` (the forwarded signals and SIGCHLD) must be blocked since before the
    start. A signal the terminal sent (si_code SI_KERNEL: ^C, ^\\, a resize, a hangup)
    reached the command as it reached us and is not passed on again; one sent with kill
    is (``send``). ^Z is not taken here: it stops this launcher with the command, so the
    caller's shell gets the terminal back, and fg continues both. ``reap()`` is
    waitpid(..., WNOHANG) of our child.
    """
    import _signal

    while True:
        done, status = reap()
        if done:
            return status
        info = _signal.sigwaitinfo(blocked)
        if info.si_signo != SIGCHLD and info.si_code != SI_KERNEL:
            send(info.si_signo)
