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
    _DUMMY_FD,
    FRESH,
    Compiled,
    SandboxRun,
    _capabilities,
    _identity_missing,
    _landlock_fd,
    _landlock_here,
    _memfd,
    _program_fd,
    _refusal_watch,
    _render_lost,
    _spawn,
    _userns,
    _which,
    _with_stage,
)
from isorun.sandbox.wrapper_mounts import check_sources, unsafe_destination


class BwrapBackend:
    name = "bwrap"

    def capabilities(self) -> frozenset[str]:
        return _capabilities(self.check)

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
        missing = _identity_missing(plan, facts, "bwrap")
        if missing[0]:
            return missing
        # Raises for a planted link (no backend may follow it); a destination bwrap
        # cannot make safely only rules bwrap out, so auto goes on to the next backend.
        return unsafe_destination(check_sources(plan, launch=False))

    def check(self, plan: p.Plan, facts: BackendFacts | None = None) -> list[Lost]:
        fds = range(_DUMMY_FD, _DUMMY_FD + len(file_mounts(plan)))
        # with a stage descriptor, as spawn renders: a plan the inner checks cannot run
        # in (no /proc) is lost here too, not only at launch
        return _render_lost(lambda: render_bwrap(plan, [], {}, seccomp_fd=_DUMMY_FD,
                                                 file_fds=fds, allow_weaker=True,
                                                 userns=_userns(facts),
                                                 stage_fd=_DUMMY_FD - 1,
                                                 landlock_fd=_DUMMY_FD - 2,
                                                 landlock=_landlock_here()))

    def terminal_job(self, plan: p.Plan) -> bool:
        fds = range(_DUMMY_FD, _DUMMY_FD + len(file_mounts(plan)))
        return render_bwrap(plan, [], {}, seccomp_fd=_DUMMY_FD, file_fds=fds,
                            allow_weaker=True, stage_fd=_DUMMY_FD - 1, terminal=True,
                            landlock=_landlock_here()).terminal_job

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
            seccomp_fd = _program_fd(plan, program, stack)
            watch = _refusal_watch(plan, program, refusals, stack)
            file_fds = [_memfd(data, stack) for data in file_mounts(plan)]
            stage_fd = open_stage()
            stack.callback(os.close, stage_fd)
            inv = render_bwrap(plan, argv, caller, seccomp_fd=seccomp_fd, file_fds=file_fds,
                               allow_weaker=allow_weaker, bwrap=_which("bwrap"),
                               userns=_userns(facts), stage_fd=stage_fd,
                               identities=checked.identities, terminal=terminal,
                               landlock=_landlock_here(),
                               landlock_fd=_landlock_fd(plan, stack),
                               report_fds=None if watch is None else watch.child_fds)
            if watch is not None and "--report-fd" not in inv.argv:
                watch.abandon()  # bwrap loads the filter itself: no stage to hand it over
                watch = None
            inv = _with_stage(inv)
            # Everything between "bwrap" and the command goes through --args: it keeps
            # environment values and paths out of /proc/PID/cmdline (readable by every
            # host user) and long plans clear of ARG_MAX. bwrap closes the descriptor
            # after reading it.
            at = inv.argv.index(_which("bwrap"))
            end = inv.command_at - 1
            packed = b"".join(os.fsencode(a) + b"\0" for a in inv.argv[at + 1:end])
            args_fd = _memfd(packed, stack)
            inv = replace(inv, argv=(*inv.argv[:at + 1], "--args", str(args_fd),
                                     *inv.argv[end:]),
                          pass_fds=tuple(sorted({*inv.pass_fds, args_fd})))
            return _spawn(inv, plan, stdin, stdout, stderr, watch)
        raise AssertionError("unreachable")  # pragma: no cover
