"""The native backend: the C shim, through isorun-launch or a clone of this process."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from isorun.compile import plan as p
from isorun.compile.render.invocation import terminal_job_allowed
from isorun.errors import Lost, SandboxSetupError
from isorun.host.probe import BackendFacts
from isorun.sandbox.backend.common import FRESH, SAMPLES, Compiled, userns_missing

if TYPE_CHECKING:
    from isorun.sandbox.refusal_watch import RefusalWatch
    from isorun.sandbox.sandbox_process import SandboxProcess
    from isorun.sandbox.spec import ShimSpec


def native_missing(facts: BackendFacts) -> str:
    """Why the native shim cannot be used ("" when it can): the facts' answer when they
    carry one (tests inject it), else :meth:`NativeBackend.missing`."""
    if facts.native_missing is not None:
        return facts.native_missing
    return NativeBackend.missing()


class NativeBackend:
    """The C shim. Enforces every step type by construction (sandbox/native.py matches them
    all); only the host can make it unusable."""

    name = "native"

    @staticmethod
    def missing() -> str:
        """Why the native shim cannot be used here ("" when it can): it does not import,
        or does not match this package."""
        from isorun.errors import ShimAbiError

        try:
            from isorun.sandbox import _shim  # noqa: F401
        except (ImportError, ShimAbiError, OSError) as err:
            return f"the native shim does not load: {err}"
        return ""

    def capabilities(self) -> frozenset[str]:
        return frozenset(aspect for aspect, _ in SAMPLES)

    def unavailable(self, plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
        missing = native_missing(facts)
        if missing:
            return missing, "rebuild it: pip install --no-deps -e . (make shim)"
        return userns_missing(plan, facts)

    def check(self, plan: p.Plan, facts: BackendFacts | None = None) -> list[Lost]:
        return []

    def terminal_job(self, plan: p.Plan) -> bool:
        return terminal_job_allowed(plan)  # the shim decides the same (spec.terminal_job)

    def spawn(self, plan: p.Plan, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              allow_weaker: bool = False, facts: BackendFacts | None = None,
              terminal: bool = False, refusals: bool = False,
              compiled: Compiled | None = None,
              log: Callable[[str], None] | None = None) -> NativeRun:
        """Through isorun-launch when it is built and the plan needs nothing of the parent
        (as the warm launch, isorun.cache.record.make_record): no cgroup, no wall-clock timer;
        else this process clones. A failed step is raised naming its profile line."""
        from isorun.sandbox import launched, native, process

        compiled = compiled or FRESH
        caller_env = os.environ if env is None else env
        wall, cgroups = plan.find(p.WallTime), plan.find(p.Cgroup)
        launcher = None if wall or cgroups else launched.launcher_path()
        if launcher is None and not (wall or cgroups) and log is not None:
            log(f"isorun: {launched.LAUNCHER} is not built: cloning this process instead"
                " (same sandbox, slower start; make shim or reinstall builds it)")
        try:
            if launcher is not None:
                record, blob = compiled.launch_record(plan, caller_env)
                proc: SandboxProcess = launched.spawn_launched(
                    launcher, record, blob, tuple(os.fsencode(a) for a in argv),
                    stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal,
                    refusals=refusals)
                return NativeRun(proc, None, refusals)
            program = compiled.program(plan)
            spec = native.build_spec(plan, list(argv), caller_env, program)
            watch = _native_watch(plan, spec) if refusals else None
            if watch is not None:
                # the report's listener, taken as learn mode takes its own
                # (sandbox/refusal_watch.py); the plain program where an outer listener
                # leaves no place for it
                spec = replace(spec, seccomp_bpf=b"", notify_bpf=watch[1])
            proc = process.spawn(
                spec, stdin=stdin, stdout=stdout, stderr=stderr,
                wall_time=wall[0].seconds if wall else None,
                memory_max=cgroups[0].memory if cgroups else None,
                pids_max=cgroups[0].pids if cgroups else None, terminal=terminal,
                on_listener=None if watch is None else watch[0].on_listener,
                fallback_bpf=b"" if watch is None else program)
            return NativeRun(proc, None if watch is None else watch[0], False)
        except SandboxSetupError as err:
            raise p.locate_error(err, plan) from None


def _native_watch(plan: p.Plan, spec: ShimSpec) -> tuple[RefusalWatch, bytes] | None:
    """The refusal report for the native clone: the watch and the reporting filter (with
    the hand-over's execve head, see refusals.notify_execve_head); None when the spec
    loads no filter or it has no reporting form."""
    from isorun.compile.refusals import reporting_filter
    from isorun.sandbox.refusal_watch import RefusalWatch

    if not spec.seccomp_bpf or spec.notify_bpf:
        return None
    report_bpf = reporting_filter(spec.seccomp_bpf, os.uname().machine)
    if not report_bpf:
        return None
    return RefusalWatch(plan, spec.seccomp_bpf), report_bpf


class NativeRun:
    """A native sandbox (the shim's clone, or isorun-launch's), like
    :class:`subprocess.Popen`; its exit code is the shell's already (128+N, 124)."""

    def __init__(self, proc: SandboxProcess, refusals: RefusalWatch | None,
                 reports_refusals: bool) -> None:
        self._proc = proc
        #: the refusal report's supervisor when this process runs it (the clone)
        self.refusals = refusals
        #: isorun-launch says the refusal report itself when the command fails
        self.reports_refusals = reports_refusals
        self.backend, self.lost, self.terminal_job = "native", (), False
        self.pid: int = proc.pid
        self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr
        #: why execve failed (exit code 126 or 127), None when the command started
        self.exec_error = proc.exec_error

    @property
    def timed_out(self) -> bool:
        return self._proc.timed_out

    @property
    def limit_events(self) -> dict[str, int]:
        return self._proc.limit_events

    def _ended(self, code: int | None) -> int | None:
        if code is not None and self.refusals is not None:
            self.refusals.finish()
        return code

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def poll(self) -> int | None:
        return self._ended(self._proc.poll())

    def wait(self, timeout: float | None = None) -> int:
        code = self._proc.wait(timeout)
        self._ended(code)
        return code

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[Any, Any]:
        out, err = self._proc.communicate(input, timeout)
        self._ended(self._proc.returncode)
        return out, err

    def send_signal(self, sig: int) -> None:
        self._proc.send_signal(sig)

    def kill(self) -> None:
        self._proc.kill()
