"""The CLI's launch when no cached launch record serves it: compile (or take the plan from
the cache), start the sandbox attached to this terminal through :class:`isorun.api.Popen`,
pass the terminal's signals on, wait, and name the limit that stopped a failed command.

Above :mod:`isorun.api`: the names it uses from there are looked up on the module at call
time, so a test that replaces ``api.Popen`` replaces the sandbox of this launch too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from isorun import api
from isorun.cache.plans import cached_plan
from isorun.compile.exposure import root_write_notes
from isorun.compile.plan import Plan
from isorun.errors import Lost
from isorun.kernel.abi import EXIT_SETUP


def launch(argv: list[str], *, profile: str, backend: str | None = None,
           allow_weaker: bool = False, verbose: bool = False, quiet: bool = False) -> int:
    """The CLI's launch: run ``argv`` attached to this terminal, return its exit code.
    Unless ``quiet``, a limit that stopped the command is named with its line."""
    import resource
    import signal

    def note(message: str) -> None:
        sys.stderr.write(message + "\n")

    from isorun.sandbox.foreground import FORWARDED_SIGNALS, exec_failure_message

    plan = cached_plan(profile, log=note if verbose else None)
    for line in root_write_notes(plan):
        note(line)
    if _shares_terminal(plan):
        if _native_here(backend or plan.backend):
            return _launch_sharing_terminal(argv, plan, quiet, note if verbose else None,
                                            note)
        from isorun.sandbox.backends import BACKENDS

        # Chosen here, once: whether the backend keeps the command in this terminal's
        # foreground decides how the launcher takes signals, before the start.
        chosen = api._choose_backend(plan, backend or plan.backend, allow_weaker,
                                 note if verbose else None)
        if BACKENDS[chosen[0]].terminal_job(plan):
            return _launch_sharing_terminal(argv, plan, quiet, note if verbose else None,
                                            note, chosen, allow_weaker)
        backend, preset = chosen[0], chosen
    else:
        preset = None
    # Popen.send_signal reaches the command (the native sandbox's pid 1 forwards it; on
    # bwrap and firejail it is sent to the command itself); the launcher must survive
    # these to report the command's status instead of dying first. The handlers are in
    # place before the start, and one that arrives during it is sent once the sandbox
    # exists. Not blocked across the start, as isorun.sandbox.foreground.run does for the native
    # shim (which unblocks before execve): bwrap and firejail would inherit the mask, and
    # the command with them, deaf to Ctrl-C and kill.
    started: list[api.Popen] = []
    pending: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if started:
            started[0].send_signal(signum)
        else:
            pending.append(signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    proc = api.Popen(argv, profile=plan, backend=backend, allow_weaker=allow_weaker,
                 log=note if verbose else None, _chosen=preset, _refusals=not quiet)
    started.append(proc)
    for sig in pending:
        proc.send_signal(sig)
    if proc.exec_error is not None:
        sys.stderr.write(exec_failure_message(argv[0], proc.exec_error.errno))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    return _wait_and_report(plan, proc, before, quiet, note)


def _native_here(requested: str) -> bool:
    """Whether _choose_backend picks the native backend at once (no probing)."""
    from isorun.host.facts import probe

    facts = probe()
    return requested in ("auto", "native") and (facts.userns or facts.root) and api._shim_built()


def _shares_terminal(plan: Plan) -> bool:
    """Whether a native sandbox of ``plan`` started now would share this process's
    terminal (spec.terminal_job, decided the same way by the shim's isorun_spawn)."""
    from isorun.compile.render.invocation import terminal_job_allowed
    from isorun.sandbox.parent import foreground_in_parent

    return terminal_job_allowed(plan) and foreground_in_parent()


#: what a terminal sends its foreground group on ^C, ^\ and hangup (SIGINT, SIGQUIT, SIGHUP)
_TERMINAL_SIGNALS = (2, 3, 1)


def _launch_sharing_terminal(argv: list[str], plan: Plan, quiet: bool,
                             log: Callable[[str], None] | None,
                             note: Callable[[str], None],
                             chosen: tuple[str, tuple[Lost, ...]] = ("native", ()),
                             allow_weaker: bool = False) -> int:
    """attached.launch for a sandbox that shares this terminal (any backend whose
    terminal_job says so): the signals are taken with sigwaitinfo
    (isorun.sandbox.foreground.wait_sharing_terminal), so the terminal's own are not passed on
    twice. Blocked across the start: the native shim unblocks them in the child before
    execve, the wrappers' exec stage before it execs the command (seccomp_exec.c)."""
    import resource
    import signal

    from isorun.sandbox.foreground import (
        FORWARDED_SIGNALS,
        SIGCHLD,
        exec_failure_message,
        wait_sharing_terminal,
    )
    from isorun.sandbox.parent import reclaim_terminal_in_parent

    blocked = (*FORWARDED_SIGNALS, SIGCHLD)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    # bwrap and firejail unblock signals and are in the terminal's foreground group with
    # the command: a ^C would kill bwrap, and the command with it by SIGKILL
    # (--die-with-parent), before its own handler ran. Ignored here, they are ignored by
    # the wrapper, which keeps an ignored disposition across execve; the exec stage puts
    # the command back to defaults (seccomp_exec.c). Blocked, this process still takes
    # them with sigwaitinfo: the kernel drops an ignored signal only when unblocked.
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _TERMINAL_SIGNALS
               if chosen[0] != "native"}
    try:
        proc = api.Popen(argv, profile=plan, backend=chosen[0], allow_weaker=allow_weaker,
                     log=log, _terminal=True, _chosen=chosen, _refusals=not quiet)
        if proc.exec_error is not None:
            sys.stderr.write(exec_failure_message(argv[0], proc.exec_error.errno))
        try:
            wait_sharing_terminal(lambda: (0, 0) if proc.poll() is None else (1, 0),
                                  proc.send_signal, blocked)
        finally:
            # a shell in the sandbox may have left a job of its own in the foreground
            # (the native launchers take the terminal back themselves)
            reclaim_terminal_in_parent()
    finally:
        for sig, handler in ignored.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return _wait_and_report(plan, proc, before, quiet, note)


def _wait_and_report(plan: Plan, proc: api.Popen, before: Any, quiet: bool,
                     note: Callable[[str], None]) -> int:
    """Wait for the command; when it failed, name the limits that stopped it. ``before``
    is getrusage(RUSAGE_CHILDREN) from before the launch: the launcher's only child is
    the sandbox, so the children's CPU time since then is the command's own."""
    import resource

    code = proc.wait()
    if 0 < code < 128 and proc.command_started is False and not proc.timed_out:
        # bwrap's or firejail's own failure (its message is above): a set-up error, not
        # the command's status, and none of the guesses below applies. A signal or the
        # wall-clock limit that stopped the wrapper keeps its own status.
        sys.stderr.write(f"isorun: error: {proc.backend} stopped before it started the "
                         f"command (its exit status {code}; its own message is above)\n")
        return EXIT_SETUP
    if code != 0 and not quiet:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        refused = proc.refusal_lines()
        for line in refused:
            note(line)
        lines = limit_report(plan, proc, code, cpu)
        for line in lines:
            note(line)
        # the notes are guesses: not after a refused syscall, a limit or a death by
        # signal (as isorun-launch)
        if not lines and not refused and not proc.reports_refusals and \
                proc.exec_error is None and code < 128:
            # isorun-launch said these itself; a limit explains the failure already
            from isorun.compile.refusals import failure_notes

            notes = failure_notes(plan)
            if notes:
                note(notes)
    return code


def limit_report(plan: Plan, proc: api.Popen, code: int, cpu_seconds: float) -> list[str]:
    """The limits that stopped the command, each with its profile line: what "Killed" or
    exit 124 alone does not say. ``cpu_seconds``: the CPU time the sandbox used."""
    from isorun.compile.plan import Cgroup, Rlimit, WallTime, human_size

    lines = []
    wall = plan.find(WallTime)
    if proc.timed_out and wall:
        lines.append(f"isorun: limits.wall_time = {wall[0].seconds:g} s "
                     f"({wall[0].loc.short()}) killed the command")
    events = proc.limit_events
    cgroups = plan.find(Cgroup)
    if cgroups and cgroups[0].memory and events.get("oom_kill"):
        lines.append(f"isorun: limits.memory = {human_size(cgroups[0].memory)} "
                     f"({cgroups[0].loc.short()}) killed {events['oom_kill']} process(es) "
                     "of the sandbox: out of memory")
    if cgroups and cgroups[0].pids and events.get("pids_max"):
        lines.append(f"isorun: limits.pids = {cgroups[0].pids} ({cgroups[0].loc.short()}) "
                     f"refused {events['pids_max']} fork(s)")
    cpu = [r for r in plan.find(Rlimit) if r.resource == "cpu"]
    # RLIMIT_CPU ends in SIGKILL (soft = hard) or SIGXCPU; the time used tells it from
    # another SIGKILL
    if cpu and code in (128 + 9, 128 + 24) and cpu_seconds >= cpu[0].value * 0.9:
        lines.append(f"isorun: limits.cpu = {cpu[0].value} s ({cpu[0].loc.short()}) killed "
                     f"the command after {cpu_seconds:.1f} s of CPU time")
    return lines
