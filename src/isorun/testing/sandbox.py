"""Per-test sandboxes for ``@pytest.mark.isorun``: a forked child confines itself with
the shim, then runs the test body and sends its result back.

The test body must run in the process that collected it (pytest items cannot be sent to a
fresh interpreter cheaply), so there is no execve. The plan is compiled once per session
and profile, like a launch's; per test only the writable paths and the working directory
are added. The child applies it to itself through the shim's ``isorun_apply`` (and,
after os.fork, ``isorun_apply_namespaces``; shim/child/apply.c): the same C, in the same order,
as a launch's child, minus clone and execve.

The process tree of one marked test, as a rule::

    pytest ── clone3(user, pid, net, mount, ...) ── the test's process: pid 1 of its
              (sandbox/pyfork.py)                   pid namespace; waits for the id maps,
                                                    then the new root (pivot_root), ids,
                                                    capabilities, no_new_privs, seccomp;
                                                    then the test body

Where clone3 cannot return into this Python (another thread in pytest, no clone3; see
pyfork.unusable), two forks instead, about 3 ms more per test here::

    pytest ── fork ── F: unshare(user, pid, net, mount, ...), waits for the id maps,
                         forks G and mirrors its exit
                      └─ G: pid 1 of the new pid namespace; the rest as above

F exists because unshare(CLONE_NEWPID) moves only later children into the namespace, and
the root's /proc must be mounted from inside it (shim/child/apply.c). A profile without a pid
namespace skips that fork.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from isorun.testing import environ as pytest_environ
from isorun.testing import plan as pytest_plan
from isorun.testing.fork import Forking, Pipes, child
from isorun.testing.outcome import (
    Exiting,
    Result,
    collect_result,
    release_child,
    setup_failure,
)


@dataclass(frozen=True, slots=True)
class Policy:
    """What one marked test gets: the marker's keywords, resolved."""

    #: the profile the sandbox is compiled from (and whose name the messages give)
    profile: str
    #: "none" (own network namespace, loopback only), "host", or None: the profile's
    network: str | None
    #: absolute paths the test may write (tmp_path is added by the plugin)
    writable: tuple[str, ...]
    #: file:line of the test, for messages
    where: str
    #: ${CWD} of the profile: where pytest was invoked (a test's own chdir does not move
    #: what the profile binds; its working directory must then be visible)
    cwd: str = ""
    #: what the sandbox's root shows of the host (mount destinations), for messages
    visible: tuple[str, ...] = ()
    #: where no user namespace can be made, run in landlock mode without the rules it
    #: lists (--isorun-allow-weaker) instead of refusing
    allow_weaker: bool = False
    #: pytest's per-test scratch directories among ``writable`` (tmp_path): as root they
    #: are lent to the sandbox's uid for the test (the marker's ``writable`` never are)
    scratch: tuple[str, ...] = ()


def _kept_fds(result_w: int) -> tuple[int, ...]:
    """Descriptors the test body keeps: the result pipe and pytest's capture files.

    Every other inherited descriptor is closed by the shim (a fixture's host socket or
    directory would lead out of the namespaces). sys.stdout is pytest's capture file
    under fd capture, whose descriptor is not 1; the parent reads what the child wrote
    there, as for an unsandboxed test.
    """
    fds = {result_w}
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        try:
            fds.add(stream.fileno())
        except (AttributeError, OSError, ValueError):
            continue  # capsys's in-memory files have no descriptor
    return tuple(sorted(fd for fd in fds if fd > 2))


def run_in_child(
    policy: Policy,
    body: Callable[[Policy], tuple[str, str, str]],
    exiting: Exiting | None = None,
    session_env: Mapping[str, str] | None = None,
    forking: Forking | None = None,
) -> Result:
    """Fork, confine the child to ``policy``, run ``body`` there, return its result.

    A child that dies without reporting (segfault, os._exit) is a failed test, never a
    failed session. With ``exiting``, a child that reported is left to exit on its own
    and reaped later (:class:`Exiting`); without, it is reaped before returning.
    ``session_env``: the environment at the session's start; the body sees the profile's
    environment plus what changed since (monkeypatch.setenv), never the host's tokens.
    ``forking``: the session's choice between one clone3 and two forks (:class:`Forking`).
    """

    try:
        session = pytest_plan.compile_session(
            policy.profile,
            policy.network,
            policy.cwd or os.getcwd(),
            pytest_plan.import_paths(tuple(sys.path)),
            policy.allow_weaker,
        )
    except ValueError as err:
        from isorun.errors import IsorunError

        if isinstance(err, IsorunError):
            raise  # a ProfileError renders its own location
        raise ValueError(f"{err} ({policy.where})") from err
    policy = replace(policy, network=session.network, visible=session.visible)
    lent: tuple[str, ...] = ()
    if os.geteuid() == 0 and policy.scratch:
        lent = pytest_plan.hand_scratch_to_sandbox(policy.scratch, *pytest_plan.sandbox_ids())
    try:
        return _run_in_child(policy, session, body, exiting, session_env, bool(lent),
                             forking or Forking())
    finally:
        if lent:
            pytest_plan.hand_back(lent, pytest_plan.sandbox_ids()[0])


def _run_in_child(
    policy: Policy,
    session: pytest_plan.Session,
    body: Callable[[Policy], tuple[str, str, str]],
    exiting: Exiting | None,
    session_env: Mapping[str, str] | None,
    wait: bool,
    forking: Forking,
) -> Result:
    """run_in_child once the policy is compiled; ``wait``: reap the child before
    returning (its files are handed back then, and it must not make more)."""
    from isorun.sandbox import shim_ffi

    if exiting is not None:
        exiting.reap(block=False)
    shim = shim_ffi.load_shim()
    # No namespace to enter (landlock mode): os.fork is all it takes, and clone3 may be
    # refused by the very filter that refused the user namespace.
    one_fork = not session.landlock and forking.one_fork_unusable() is None
    pipes = _open_pipes(one_fork)
    pid, refused, record = _fork_child(
        policy, session, body, session_env, shim, pipes, one_fork, forking
    )
    if pid < 0:
        if refused is None:
            # No clone3 after all: this test and the rest of the session fork twice.
            import warnings

            warnings.warn(
                f"isorun: clone3 is unusable here ({forking.clone3_off}); marked tests fork "
                "twice, as sandboxed as before but about 3 ms slower each",
                RuntimeWarning,
                stacklevel=1,
            )
            return _run_in_child(policy, session, body, exiting, session_env, wait, forking)
        # clone3 refused the namespaces: what unshare would have refused in the child.
        refusal = ("clone", "clone3", refused.errno or errno.EINVAL, -1)
        return Result("failed", setup_failure(record, refusal, policy))
    failure = release_child(pid, record, pipes)
    if failure is not None:
        os.close(pipes.result_r)
        os.waitpid(pid, 0)
        return Result("failed", setup_failure(record, failure, policy))
    return collect_result(pid, pipes.result_r, policy, exiting, wait)


def _open_pipes(one_fork: bool) -> Pipes:
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    # After os.fork the child tells when its user namespace exists (see _child).
    ready_r, ready_w = (-1, -1) if one_fork else os.pipe2(os.O_CLOEXEC)
    return Pipes(ready_r, ready_w, go_r, go_w, err_w, err_r, result_r, result_w)


def _fork_child(
    policy: Policy,
    session: pytest_plan.Session,
    body: Callable[[Policy], tuple[str, str, str]],
    session_env: Mapping[str, str] | None,
    shim: Any,
    pipes: Pipes,
    one_fork: bool,
    forking: Forking,
) -> tuple[int, OSError | None, dict[str, Any]]:
    """Build the test's launch record and fork (clone3 into the namespaces when
    ``one_fork``). The child runs :func:`isorun.testing.fork.child` and never returns
    here. Returns (pid, clone3's refusal, record); pid -1: no child, and every pipe is
    closed."""
    p = pipes
    ours = [
        fd
        for fd in (p.go_r, p.go_w, p.err_r, p.err_w, p.result_r, p.result_w, p.ready_r, p.ready_w)
        if fd >= 0
    ]
    opened: list[int] = []
    refused: OSError | None = None
    mask: set[int | signal.Signals] | None = None
    pid = -1
    try:
        record = pytest_plan.per_test_record(session, policy.writable)
        record = pytest_plan.resolve_mounts(record, opened)
        c_spec = _struct(session, shim, record, (p.go_r, p.go_w), (p.err_w, p.err_r), p.result_w)
        env = _child_env(session.env, session_env)
        _add_hypothesis_env(env, policy)
        # Looked up here: cffi builds a function's wrapper on first access, and in the
        # child that work would be redone (and its pages copied) for every test.
        steps = (shim.lib.isorun_apply_namespaces, shim.lib.isorun_apply)
        libc = pytest_environ.libc()
        block = pytest_environ.environ_block(env)
        sys.stdout.flush()
        sys.stderr.flush()
        # Until the child is inside _child's try (which restores the mask), a signal
        # handler that raised there (KeyboardInterrupt) would carry the child on as a
        # second pytest; the parent's mask comes back right after the fork.
        mask = old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        pid, refused = _fork(record, one_fork, forking)
        if pid == 0:
            child(
                policy, body, steps, c_spec, record, env, pipes, one_fork, old_mask, (libc, block)
            )
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in opened:
            os.close(fd)
        if pid < 0:  # no child: an exception, or clone3 gave none
            for fd in ours:
                os.close(fd)
    return pid, refused, record


def _add_hypothesis_env(env: dict[str, str], policy: Policy) -> None:
    if "hypothesis" in sys.modules:
        from isorun.testing.session import hypothesis_environment

        env.update(hypothesis_environment(policy.cwd or os.getcwd()))


def _fork(
    record: dict[str, Any], one_fork: bool, forking: Forking
) -> tuple[int, OSError | None]:
    """(pid, clone3's refusal): clone3 straight into the namespaces when ``one_fork``
    (pid -1 when it cannot, and the session forks twice from then on), else os.fork."""
    from isorun.sandbox import pyfork

    if not one_fork:
        return os.fork(), None
    try:
        return pyfork.fork(record["clone_flags"]), None
    except pyfork.Unsupported as err:
        forking.clone3_off = str(err)
    except OSError as err:
        return -1, err
    return -1, None


def _struct(
    session: pytest_plan.Session,
    shim: Any,
    record: dict[str, Any],
    sync: tuple[int, int],
    err: tuple[int, int],
    result_w: int,
) -> Any:
    """``struct isorun_spec`` for this test, from shim_ffi's own checks and builder (the
    C struct of a launch, byte for byte), reused while its inputs stay the same."""
    from isorun.sandbox import shim_ffi

    keep = _kept_fds(result_w)
    key = (record["mounts"], record["cwd"], record["landlock_rules"], sync, err, keep)
    found = session.structs.get(key)
    if found is not None:
        return found[0]
    shim_ffi.check_record(record, shim.lib)
    alive: list[Any] = []
    c_spec = shim_ffi.build_struct(shim, record, (-1, -1, -1), sync, err, keep, -1, alive)
    if len(session.structs) >= 8:
        session.structs.clear()
    session.structs[key] = (c_spec, alive)
    return c_spec


def _child_env(
    profile_env: Mapping[str, str], session_env: Mapping[str, str] | None
) -> dict[str, str]:
    """The body's environment: the profile's, plus what the test's fixtures set."""
    env = dict(profile_env)
    if session_env is not None:
        env.update((k, v) for k, v in os.environ.items() if session_env.get(k) != v)
    return env
