"""The parent's side of a marked test once its child is forked: let the child go on,
read the set-up's verdict and the body's result, and say what went wrong when there is
none (see :mod:`isorun.testing.sandbox`)."""

from __future__ import annotations

import errno
import json
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from isorun.testing.fork import HEADER, Pipes

if TYPE_CHECKING:
    from isorun.testing.sandbox import Policy


@dataclass(frozen=True, slots=True)
class Result:
    """``outcome`` is passed, failed, skipped or xfailed; ``text`` the report for the
    parent; ``exc_type`` the failure's exception class as ``module:qualname``, so that
    ``xfail(raises=...)`` can judge it."""

    outcome: str
    text: str
    exc_type: str = ""


class Exiting:
    """Children whose result has arrived and that may still be exiting.

    A child's exit tears down its copy of pytest's address space and its namespaces
    (about 1 ms); the parent need not wait for that before it reports the test. The plugin
    keeps one per session: reaped without blocking before each fork, and blocking at the
    session's end, so no zombie outlives the session.
    """

    __slots__ = ("pids",)

    def __init__(self) -> None:
        self.pids: list[int] = []

    def reap(self, block: bool) -> None:
        still = []
        for pid in self.pids:
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                continue  # reaped by someone else (a SIGCHLD handler of the test suite)
            if not done:
                still.append(pid)
        self.pids = still


def release_child(
    pid: int, record: dict[str, Any], pipes: Pipes
) -> tuple[str, str, int, int] | None:
    """Write the child's id maps once its user namespace exists, let it go on, and wait
    for the set-up's verdict: the failure it reported, or None."""
    from isorun.sandbox import parent

    for fd in (pipes.ready_w, pipes.go_r, pipes.err_w, pipes.result_w):
        if fd >= 0:
            os.close(fd)
    try:
        # With clone3 the user namespace exists as the call returns; otherwise once the
        # child's unshare is done (one byte; EOF if it failed and exited).
        if pipes.ready_r < 0 or os.read(pipes.ready_r, 1):
            parent.write_id_maps_in_parent(pid, record)
        os.write(pipes.go_w, b"g")
    except OSError:
        pass  # the child died early; its report (or its exit status) says why
    finally:
        if pipes.ready_r >= 0:
            os.close(pipes.ready_r)
        os.close(pipes.go_w)
    try:
        # EOF once the body is about to run (or the child is gone): the set-up's verdict.
        return parent.parse_failure(parent.read_all(pipes.err_r))
    finally:
        os.close(pipes.err_r)


def collect_result(
    pid: int, result_r: int, policy: Policy, exiting: Exiting | None, wait: bool
) -> Result:
    """The body's result record, or what its exit status says when it wrote none."""
    try:
        record_bytes = read_record(result_r)
    finally:
        os.close(result_r)
    if record_bytes is not None:
        if exiting is not None and not wait:
            exiting.pids.append(pid)
        else:
            os.waitpid(pid, 0)
        data = json.loads(record_bytes)
        return Result(str(data["outcome"]), str(data["text"]), str(data.get("exc_type", "")))
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return Result("failed", f"sandboxed test crashed: killed by {sig} ({policy.where})")
    return Result(
        "failed",
        f"sandboxed test exited with status {os.WEXITSTATUS(status)} "
        f"before reporting a result ({policy.where})",
    )


def setup_failure(
    record: dict[str, Any], failure: tuple[str, str, int, int], policy: Policy
) -> str:
    """The message of a test whose sandbox could not be built: what, where, how to fix."""
    from isorun.sandbox.failure import failure_error

    err = failure_error(record, failure)
    text = f"isorun: could not enter the sandbox ({policy.profile} profile, {policy.where}): {err}"
    step, _, code, _ = failure
    if step == "cwd":
        text += (
            f"\n  hint: the test's working directory {os.getcwd()} is not in the "
            "sandbox's root; add it to writable=[...] or to the profile's mounts"
        )
    elif step == "clone" and code in (errno.EPERM, errno.ENOSPC, errno.EINVAL):
        text += (
            "\n  hint: user namespaces must be allowed (sysctl "
            "kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0); "
            "inside pytest --isorun the session's sandbox already refuses them"
        )
    return text


def read_record(fd: int) -> bytes | None:
    """The child's result record, or None when it died before writing all of it.

    Framed, so the parent stops reading at the record's end instead of at EOF: EOF comes
    only when the child has exited, and later still when the test forked a process that
    kept the pipe open.
    """
    data = b""
    need = HEADER.size
    while len(data) < need:
        chunk = os.read(fd, need - len(data))
        if not chunk:
            return None
        data += chunk
        if need == HEADER.size and len(data) >= need:
            need += HEADER.unpack_from(data)[0]
    return data[HEADER.size : need]
