"""The firejail backend: firejail runs the plan as compile/render/firejail.py renders it."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from isorun.compile import plan as p
from isorun.compile.render.firejail import render_firejail
from isorun.errors import Lost
from isorun.host.anonfile import fill_fd
from isorun.host.probe import BackendFacts
from isorun.kernel.abi import NOBODY
from isorun.sandbox.backend.common import (
    DRY_RUN_FD,
    FRESH,
    Compiled,
    capabilities_of,
    data_fd,
    identity_missing,
    landlock_fd,
    program_fd,
    refusal_watch_for,
    render_lost,
    userns_allowed,
    which_tool,
)
from isorun.sandbox.backend.wrapper_run import SandboxRun, spawn_wrapper, started_pipe
from isorun.sandbox.wrapper_mounts import check_sources


class FirejailBackend:
    name = "firejail"

    def capabilities(self) -> frozenset[str]:
        return capabilities_of(self.check)

    def unavailable(self, plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
        tool = facts.firejail
        if tool is None:
            return "firejail is not installed", "apt-get install firejail"
        if not tool.setuid and not facts.host.root:
            return "firejail is not setuid root", f"chmod u+s {tool.path}"
        if facts.no_new_privs and not facts.host.root:
            return ("no_new_privs is set on this process, so setuid firejail cannot gain "
                    "root", "run isorun where no_new_privs is not set")
        missing = identity_missing(plan, facts, "firejail")
        if missing[0]:
            return missing
        check_sources(plan, launch=False)  # raises for a planted link: no backend may follow it
        for step in plan.find(p.MapIds):
            if step.host_uid == NOBODY:
                return ("firejail refuses to run as nobody (uid 65534), the host identity "
                        "of a root caller's sandbox",
                        "run isorun as the user the sandbox should be, or use bwrap")
            try:
                name = pwd.getpwuid(step.host_uid).pw_name
            except KeyError:
                return (f"firejail needs a passwd entry for uid {step.host_uid}",
                        "run isorun as an existing user")
            if facts.firejail_users is not None and name not in facts.firejail_users:
                return (f"firejail admits only the users in /etc/firejail/firejail.users, "
                        f"not {name}", f"add {name} to /etc/firejail/firejail.users")
        return "", ""

    def check(self, plan: p.Plan, facts: BackendFacts | None = None) -> list[Lost]:
        return render_lost(lambda: render_firejail(plan, [], {}, seccomp_fd=DRY_RUN_FD,
                                                   env_fd=DRY_RUN_FD + 1,
                                                   helper_fd=DRY_RUN_FD + 2,
                                                   allow_weaker=True,
                                                   userns=userns_allowed(facts),
                                                   landlock_fd=DRY_RUN_FD + 3))

    def terminal_job(self, plan: p.Plan) -> bool:
        return render_firejail(plan, [], {}, seccomp_fd=DRY_RUN_FD, env_fd=DRY_RUN_FD + 1,
                               helper_fd=DRY_RUN_FD + 2, allow_weaker=True,
                               terminal=True).terminal_job

    def spawn(self, plan: p.Plan, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              allow_weaker: bool = False, facts: BackendFacts | None = None,
              terminal: bool = False, refusals: bool = False,
              compiled: Compiled | None = None,
              log: Callable[[str], None] | None = None) -> SandboxRun:
        from isorun.sandbox.exec_stage import open_stage

        caller = os.environ if env is None else env
        checked = check_sources(plan)
        plan = checked.plan
        with ExitStack() as stack:
            program = (compiled or FRESH).program(plan)
            seccomp_fd = program_fd(plan, program, stack)
            watch = refusal_watch_for(plan, program, refusals, stack)
            env_fd = data_fd(b"", stack)
            # The stage reaches the sandbox as a descriptor (exec'd as /proc/self/fd/N),
            # so no host path of it has to be visible inside.
            helper_fd = open_stage("firejail")
            stack.callback(os.close, helper_fd)
            started = started_pipe(stack)
            inv = render_firejail(plan, argv, caller, seccomp_fd=seccomp_fd, env_fd=env_fd,
                                  helper_fd=helper_fd, allow_weaker=allow_weaker,
                                  firejail=which_tool("firejail"), userns=userns_allowed(facts),
                                  identities=checked.identities, terminal=terminal,
                                  landlock_fd=landlock_fd(plan, stack),
                                  report_fds=None if watch is None else watch.child_fds,
                                  started_fd=started[1])
            for fd, data in inv.inputs:
                fill_fd(fd, data)
            return spawn_wrapper(inv, plan, stdin, stdout, stderr, watch, started)
        raise AssertionError("unreachable")  # pragma: no cover
