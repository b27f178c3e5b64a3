"""The landlock backend: the native shim without a user namespace
(sandbox/landlock_mode.py says what it loses)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from isorun.compile import plan as p
from isorun.errors import Lost, Unsupported
from isorun.host.probe import BackendFacts
from isorun.sandbox.backend.common import FRESH, Compiled, capabilities_of
from isorun.sandbox.backend.native import native_missing
from isorun.sandbox.backend.wrapper_run import SandboxRun


class LandlockBackend:
    """The native shim without a user namespace: Landlock, seccomp and process hygiene
    where namespaces are forbidden (sandbox/landlock_mode.py says what it loses)."""

    name = "landlock"

    def capabilities(self) -> frozenset[str]:
        return capabilities_of(self.check)

    def unavailable(self, plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
        missing = native_missing(facts)
        if missing:
            return missing, "rebuild it: pip install --no-deps -e . (make shim)"
        if facts.host.landlock < 1:
            return ("this kernel has no Landlock",
                    "boot Linux 5.13+ with landlock in lsm= (6.12+ for scoping)")
        if not plan.find(p.Landlock):
            return ("the profile turns Landlock off (landlock.enabled = false, or "
                    "no_new_privs off)", "remove landlock.enabled = false")
        return "", ""

    def check(self, plan: p.Plan, facts: BackendFacts | None = None) -> list[Lost]:
        from isorun.sandbox.landlock_mode import lost_rules

        return lost_rules(plan, None if facts is None else facts.host.landlock)

    def terminal_job(self, plan: p.Plan) -> bool:
        return False  # landlock_mode builds its own spec, always a new session

    def spawn(self, plan: p.Plan, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              allow_weaker: bool = False, facts: BackendFacts | None = None,
              terminal: bool = False, refusals: bool = False,
              compiled: Compiled | None = None,
              log: Callable[[str], None] | None = None) -> SandboxRun:
        from isorun.host.facts import probe
        from isorun.sandbox import flat, launched, process
        from isorun.sandbox.landlock_mode import build_mode_spec, check_grant_paths
        from isorun.sandbox.spec import spec_record

        abi = (facts.host if facts is not None else probe()).landlock
        lost = self.check(plan, facts)
        if lost and not allow_weaker:
            raise Unsupported(self.name, lost)
        check_grant_paths(plan)
        spec: Any = build_mode_spec(plan, argv, os.environ if env is None else env, abi,
                                    (compiled or FRESH).program)
        wall = plan.find(p.WallTime)
        launcher = None if wall else launched.launcher_path()
        proc: Any
        if launcher is not None:
            # As the native backend's API launches: isorun-launch clones and execs, no
            # Python between (the record is the same flat one, with no namespace).
            record = spec_record(spec)
            del record["argv"]
            if refusals:
                from isorun.compile.refusals import landlock_notes, report_fields
                from isorun.sandbox.landlock_mode import mode_plan

                record.update(report_fields(mode_plan(plan, abi), spec.seccomp_bpf,
                                            notes=landlock_notes(plan)))
            proc = launched.spawn_launched(launcher, record, flat.encode(record), spec.argv,
                                           stdin=stdin, stdout=stdout, stderr=stderr,
                                           refusals=refusals)
            reports = isinstance(proc, launched.LaunchedProcess) and refusals
        else:
            proc = process.spawn(spec, stdin=stdin, stdout=stdout, stderr=stderr,
                                 wall_time=wall[0].seconds if wall else None)
            reports = False
        run = SandboxRun(proc, self.name, tuple(lost), None)
        run.reports_refusals = reports
        return run
