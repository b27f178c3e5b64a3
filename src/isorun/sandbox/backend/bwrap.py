"""The bwrap backend: bubblewrap runs the plan as compile/render/bwrap.py renders it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from isorun.compile import plan as p
from isorun.compile.render.bwrap import file_mounts, render_bwrap
from isorun.errors import HostError, Lost
from isorun.host.probe import BackendFacts
from isorun.sandbox.backend.common import (
    DRY_RUN_FD,
    FRESH,
    Compiled,
    capabilities_of,
    data_fd,
    identity_missing,
    landlock_fd,
    landlock_here,
    program_fd,
    refusal_watch_for,
    render_lost,
    userns_allowed,
    which_tool,
    with_exec_stage,
)
from isorun.sandbox.backend.wrapper_run import SandboxRun, spawn_wrapper, started_pipe
from isorun.sandbox.wrapper_mounts import check_sources, unsafe_destination


class BwrapBackend:
    name = "bwrap"

    def capabilities(self) -> frozenset[str]:
        return capabilities_of(self.check)

    def unavailable(self, plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
        if facts.bwrap is None:
            return "bwrap is not installed", "apt-get install bubblewrap"
        # bwrap runs as the plan's host uid; unless that is root or bwrap is setuid, it
        # has no privilege but what a user namespace gives it.
        spawn_uid = next((m.host_uid for m in plan.find(p.MapIds)), facts.host.uid)
        if facts.bwrap.setuid and facts.no_new_privs and spawn_uid != 0 and \
                not facts.userns.allowed:
            return ("no_new_privs is set on this process, so setuid bwrap cannot gain root, "
                    f"and user namespaces are unavailable ({facts.userns.blocker})",
                    facts.userns.fix)
        if not facts.bwrap.setuid and spawn_uid != 0 and not facts.userns.allowed:
            return (f"bwrap is not setuid and user namespaces are disabled "
                    f"({facts.userns.blocker})", facts.userns.fix)
        missing = identity_missing(plan, facts, "bwrap")
        if missing[0]:
            return missing
        # Raises for a planted link (no backend may follow it); a destination bwrap
        # cannot make safely only rules bwrap out, so auto goes on to the next backend.
        return unsafe_destination(check_sources(plan, launch=False))

    def check(self, plan: p.Plan, facts: BackendFacts | None = None) -> list[Lost]:
        fds = range(DRY_RUN_FD, DRY_RUN_FD + len(file_mounts(plan)))
        # with a stage descriptor, as spawn renders: a plan the inner checks cannot run
        # in (no /proc) is lost here too, not only at launch
        return render_lost(lambda: render_bwrap(plan, [], {}, seccomp_fd=DRY_RUN_FD,
                                                file_fds=fds, allow_weaker=True,
                                                userns=userns_allowed(facts),
                                                stage_fd=DRY_RUN_FD - 1,
                                                landlock_fd=DRY_RUN_FD - 2,
                                                landlock=landlock_here()))

    def terminal_job(self, plan: p.Plan) -> bool:
        fds = range(DRY_RUN_FD, DRY_RUN_FD + len(file_mounts(plan)))
        return render_bwrap(plan, [], {}, seccomp_fd=DRY_RUN_FD, file_fds=fds,
                            allow_weaker=True, stage_fd=DRY_RUN_FD - 1, terminal=True,
                            landlock=landlock_here()).terminal_job

    def spawn(self, plan: p.Plan, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              allow_weaker: bool = False, facts: BackendFacts | None = None,
              terminal: bool = False, refusals: bool = False,
              compiled: Compiled | None = None,
              log: Callable[[str], None] | None = None) -> SandboxRun:
        from isorun.sandbox.exec_stage import open_stage

        caller = os.environ if env is None else env
        # Walked now, at launch, whatever selection saw: the identities the stage checks
        # inside must be those of this launch (sandbox/wrapper_mounts.py).
        checked = check_sources(plan)
        why, fix = unsafe_destination(checked)
        if why:
            raise HostError(f"profile {plan.profile} on backend bwrap", why, fix)
        plan = checked.plan
        with ExitStack() as stack:
            program = (compiled or FRESH).program(plan)
            seccomp_fd = program_fd(plan, program, stack)
            watch = refusal_watch_for(plan, program, refusals, stack)
            file_fds = [data_fd(data, stack) for data in file_mounts(plan)]
            stage_fd = open_stage("bwrap")
            stack.callback(os.close, stage_fd)
            started = started_pipe(stack)
            inv = render_bwrap(plan, argv, caller, seccomp_fd=seccomp_fd, file_fds=file_fds,
                               allow_weaker=allow_weaker, bwrap=which_tool("bwrap"),
                               userns=userns_allowed(facts), stage_fd=stage_fd,
                               identities=checked.identities, terminal=terminal,
                               landlock=landlock_here(),
                               landlock_fd=landlock_fd(plan, stack),
                               report_fds=None if watch is None else watch.child_fds,
                               started_fd=started[1])
            if watch is not None and "--report-fd" not in inv.argv:
                watch.abandon()  # bwrap loads the filter itself: no stage to hand it over
                watch = None
            inv = with_exec_stage(inv)
            # Everything between "bwrap" and the command goes through --args: it keeps
            # environment values and paths out of /proc/PID/cmdline (readable by every
            # host user) and long plans clear of ARG_MAX. bwrap closes the descriptor
            # after reading it.
            at = inv.argv.index(which_tool("bwrap"))
            end = inv.command_at - 1
            packed = b"".join(os.fsencode(a) + b"\0" for a in inv.argv[at + 1:end])
            args_fd = data_fd(packed, stack)
            inv = replace(inv, argv=(*inv.argv[:at + 1], "--args", str(args_fd),
                                     *inv.argv[end:]),
                          pass_fds=tuple(sorted({*inv.pass_fds, args_fd})))
            return spawn_wrapper(inv, plan, stdin, stdout, stderr, watch, started)
        raise AssertionError("unreachable")  # pragma: no cover
