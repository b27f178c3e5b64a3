"""The Python API: what the CLI and the pytest plugin use.

``load_profile`` and ``compile_plan`` are pure; ``run``/``Popen`` start sandboxes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from isorun.compile.plan import Plan
from isorun.errors import Lost, SandboxSetupError
from isorun.host import facts as host_facts
from isorun.profile import includes
from isorun.profile.schema import Profile

if TYPE_CHECKING:
    from isorun.sandbox.backends import SandboxRun
    from isorun.sandbox.process import SandboxProcess


def load_profile(spec: str) -> Profile:
    """Load a profile by built-in name (``strict``) or path (``./web.toml``), extends merged."""
    return includes.load(spec)


def compile_plan(profile: Profile | str, facts: host_facts.HostFacts | None = None,
                 variables: dict[str, str] | None = None) -> Plan:
    """Resolve a profile into a plan for this host (or the facts given)."""
    from isorun.compile.planner import compile_plan as _compile

    if isinstance(profile, str):
        profile = load_profile(profile)
    facts = facts or host_facts.probe()
    if variables is None:
        variables = host_facts.variables(facts)
    return _compile(profile, facts, variables)


def builtin_profiles() -> list[tuple[str, str]]:
    """(name, description) of each built-in profile."""
    out = []
    for name in includes.builtin_names():
        out.append((name, load_profile(name).description))
    return out


def check_limits(plan: Plan) -> None:
    """Raise HostError naming the profile line when this host cannot enforce the plan's
    cgroup limits for this caller (the run would be refused the same way)."""
    from isorun.compile.plan import Cgroup
    from isorun.errors import HostError
    from isorun.sandbox.cgroup import check_enforceable_in_parent

    for step in plan.find(Cgroup):
        try:
            check_enforceable_in_parent(step.memory, step.pids)
        except HostError as err:
            asked = " and ".join(name for name, value in (("limits.memory", step.memory),
                                                          ("limits.pids", step.pids)) if value)
            raise HostError(f"{asked} ({step.loc.short()})", err.why, err.fix) from None


def seccomp_program(plan: Plan) -> bytes:
    """The compiled seccomp filter of ``plan`` (b"" when the plan loads none)."""
    from isorun.compile.plan import LoadSeccomp

    steps = plan.find(LoadSeccomp)
    if not steps:
        return b""
    from isorun.compile.seccomp import compile_seccomp

    return compile_seccomp(steps[0].policy).bpf


class Popen:
    """A sandboxed process, like :class:`subprocess.Popen`.

    ``stdin``/``stdout``/``stderr`` take what subprocess takes (None, PIPE, DEVNULL, a file
    object or a descriptor).
    """

    def __init__(self, argv: Sequence[str], *, profile: str | Profile | Plan = "strict",
                 stdin: Any = None, stdout: Any = None, stderr: Any = None,
                 env: Mapping[str, str] | None = None, text: bool = False,
                 backend: str | None = None, allow_weaker: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        import os

        from isorun.compile.plan import Cgroup, WallTime
        from isorun.compile.plan import Plan as _Plan
        from isorun.sandbox import launched, native, process

        if isinstance(argv, str | bytes):
            raise TypeError("argv must be a sequence of strings, not one string")
        plan = profile if isinstance(profile, _Plan) else _cached_plan(profile)
        self.plan = plan
        self.args = list(argv)
        self._text = text
        #: the backend that runs the sandbox, and the rules it does not enforce (only ever
        #: non-empty with allow_weaker)
        self.backend, self.lost = _choose_backend(plan, backend or plan.backend,
                                                  allow_weaker, log)
        #: why execve failed (exit code 126 or 127), None when the command started
        self.exec_error: SandboxSetupError | None = None
        self._proc: SandboxProcess | SandboxRun
        if self.backend != "native":
            from isorun.sandbox.backends import BACKENDS

            self._proc = BACKENDS[self.backend].spawn(
                plan, self.args, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                allow_weaker=allow_weaker)
        else:
            caller_env = os.environ if env is None else env
            wall = plan.find(WallTime)
            cgroups = plan.find(Cgroup)
            # isorun-launch does what the warm launch does (isorun.launch.make_record):
            # no cgroup, no wall-clock timer; learn mode never comes through here.
            launcher = None if wall or cgroups else launched.launcher_path()
            if launcher is None and not (wall or cgroups) and log is not None:
                log(f"isorun: {launched.LAUNCHER} is not built: cloning this process instead"
                    " (same sandbox, slower start; make shim or reinstall builds it)")
            try:
                if launcher is not None:
                    record, blob = _flat_record(plan, caller_env)
                    self._proc = launched.spawn_launched(
                        launcher, record, blob, tuple(os.fsencode(a) for a in self.args),
                        stdin=stdin, stdout=stdout, stderr=stderr)
                else:
                    spec = native.build_spec(plan, self.args, caller_env, cached_program(plan))
                    self._proc = process.spawn(
                        spec, stdin=stdin, stdout=stdout, stderr=stderr,
                        wall_time=wall[0].seconds if wall else None,
                        memory_max=cgroups[0].memory if cgroups else None,
                        pids_max=cgroups[0].pids if cgroups else None)
            except SandboxSetupError as err:
                raise locate_error(err, plan) from None
            self.exec_error = self._proc.exec_error
        self.pid: int = self._proc.pid
        self.stdin, self.stdout, self.stderr = _wrap_text(self._proc, text)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._proc.wait(timeout)

    def send_signal(self, sig: int) -> None:
        self._proc.send_signal(sig)

    def terminate(self) -> None:
        import signal

        self._proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self._proc.kill()

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        if self._text and isinstance(input, str):
            input = input.encode()
        out, err = self._proc.communicate(input, timeout)
        if self._text:
            return (None if out is None else out.decode(errors="replace"),
                    None if err is None else err.decode(errors="replace"))
        return out, err

    def __enter__(self) -> Popen:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.returncode is None:
            self.kill()
        self.wait()


def _choose_backend(plan: Plan, requested: str, allow_weaker: bool,
                    log: Callable[[str], None] | None) -> tuple[str, tuple[Lost, ...]]:
    """The backend for ``plan``: native straight away when it can run here (it enforces
    every step type by construction), else the full fail-closed selection, which probes
    bwrap and firejail and refuses or falls back with reasons."""
    from isorun.host.facts import probe

    facts = probe()
    if requested in ("auto", "native") and facts.userns and _shim_built():
        if log is not None:
            log(f"isorun: backend native: enforces every rule of {plan.profile}")
        return "native", ()
    from isorun.host.probe import probe_backends
    from isorun.sandbox.backends import describe_lost, select_backend

    chosen, lost = select_backend(plan, requested, probe_backends(facts), allow_weaker, log=log)
    if lost:
        import sys

        # --allow-weaker runs, but never quietly: every rule given up is printed.
        sys.stderr.write(describe_lost(chosen.name, lost) + "\n")
    return chosen.name, tuple(lost)


def _shim_built() -> bool:
    import sys

    # Imported already (any launch but the first): no finder walk over sys.path.
    if "isorun._shim_c" in sys.modules:
        return True
    import importlib.util

    return importlib.util.find_spec("isorun._shim_c") is not None


def locate_error(err: SandboxSetupError, plan: Plan) -> SandboxSetupError:
    """Name the profile line behind a failed step: the shim only knows the step index."""
    if err.loc is not None or not 0 <= err.step_index < len(plan.steps):
        return err
    return SandboxSetupError(err.step, err.syscall, err.errno, plan.steps[err.step_index].loc,
                             err.detail, err.step_index, err.hint)


@dataclass(frozen=True, slots=True)
class CompletedRun:
    """The result of :func:`run`, like :class:`subprocess.CompletedProcess`."""

    args: list[str]
    returncode: int
    stdout: Any = None
    stderr: Any = None

    def check_returncode(self) -> None:
        if self.returncode:
            import subprocess

            raise subprocess.CalledProcessError(self.returncode, self.args, self.stdout,
                                                self.stderr)


def run(argv: Sequence[str], *, profile: str | Profile | Plan = "strict", input: Any = None,
        capture_output: bool = False, timeout: float | None = None, check: bool = False,
        text: bool = False, **kwargs: Any) -> CompletedRun:
    """Run ``argv`` in a sandbox and wait for it, like :func:`subprocess.run`."""
    import subprocess

    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with Popen(argv, profile=profile, text=text, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        result = CompletedRun(list(argv), proc.wait(), out, err)
    if check:
        result.check_returncode()
    return result


def launch(argv: list[str], *, profile: str, backend: str | None = None,
           allow_weaker: bool = False, verbose: bool = False) -> int:
    """The CLI's launch: run ``argv`` attached to this terminal, return its exit code."""
    import signal
    import sys

    def note(message: str) -> None:
        sys.stderr.write(message + "\n")

    from isorun.launch import FORWARDED_SIGNALS, exec_failure_message

    plan = _cached_plan(profile, log=note if verbose else None)
    # The sandbox's pid 1 forwards these to the command; the launcher must survive them
    # to report the command's status instead of dying first. Blocked across the start,
    # so one arriving before the handlers exist waits for them instead of killing us
    # (and, through die_with_parent, the sandbox) with no status reported.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        proc = Popen(argv, profile=plan, backend=backend, allow_weaker=allow_weaker,
                     log=note if verbose else None)
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if proc.exec_error is not None:
        sys.stderr.write(exec_failure_message(argv[0], proc.exec_error.errno))
    return proc.wait()


#: (spec, variables, facts) -> (plan, the source files it was compiled from)
_PLANS: dict[tuple[object, ...], tuple[Plan, tuple[tuple[str, str, str], ...]]] = {}
#: seccomp policy -> BPF; arch and libseccomp do not change within a process
_PROGRAMS: dict[Any, bytes] = {}


def compiled(spec: str, log: Callable[[str], None] | None = None
             ) -> tuple[Plan, bytes, dict[str, object] | None]:
    """(plan, BPF, cache entry) for ``spec``: from the on-disk cache, else compiled and
    stored. ``ISORUN_CACHE=0`` in the environment skips the disk cache (reads and writes).
    """
    import os

    from isorun import cache
    from isorun import launch as fast

    use_disk = os.environ.get("ISORUN_CACHE", "1") != "0"
    if use_disk:
        _, entry = cache.lookup(spec, log)
        if entry is not None:
            try:
                return cache.load_plan(entry), entry["bpf"], entry  # type: ignore[return-value]
            except Exception as err:  # a well-formed file holding a bad pickle
                if log is not None:
                    log(f"isorun: cache: ignoring entry: {err}")

    def record(plan: Plan, bpf: bytes) -> dict[str, object] | None:
        return fast.make_record(plan, bpf, log)

    plan, bpf, entry = cache.compile_entry(spec, log, record)
    if entry is not None and use_disk:
        cache.store(entry, log)
    return plan, bpf, entry


def _cached_plan(profile: str | Profile, log: Callable[[str], None] | None = None) -> Plan:
    """Compile once per process: the API is used in loops by test harnesses.

    Keyed by the spec, the variables it resolves with (the working directory changes
    ${CWD}) and the caller's facts; each call checks that the source files are unchanged
    (:func:`_deps_unchanged`: by stat, else by hash), so an edited profile is recompiled.
    The first use in a process reads the on-disk cache (see :mod:`isorun.cache`).
    """
    from isorun import cache

    if not isinstance(profile, str):
        return compile_plan(profile)
    key = (profile, tuple(sorted(cache.variables().items())), cache.facts_key())
    hit = _PLANS.get(key)
    if hit is not None and _deps_unchanged(hit[1]):
        return hit[0]
    plan, bpf, entry = compiled(profile, log)
    _PROGRAMS[_policy_of(plan)] = bpf
    if entry is not None:
        _PLANS[key] = (plan, entry["deps"])  # type: ignore[assignment]
    return plan


#: source files (cache.Dep tuples) -> their stat signature when their hashes last matched
_VERIFIED: dict[tuple[Any, ...], tuple[tuple[int, ...], ...]] = {}
#: how old a file's last change must be before its stat signature stands for its hash:
#: a change within the same timestamp tick as an earlier one would leave it as it was
_SETTLED_NS = 2_000_000_000


def _deps_unchanged(deps: tuple[Any, ...]) -> bool:
    """``cache.check_deps(deps) is None``, without reading and hashing every file again
    when none changed since the last time it held (about 60 us a launch, for strict).

    Changed means another file (device, inode: a replaced file, or a path that now
    resolves elsewhere), another size, mtime or ctime; ctime moves on every write, rename
    or utime and cannot be set back. Only a signature taken when every file had been
    still for :data:`_SETTLED_NS` is trusted, so that an edit in the same timestamp tick
    as the hash cannot go unseen; anything else is hashed as before.
    """
    import os
    import time

    from isorun import cache

    try:
        now = [os.stat(literal) for literal, _real, _digest in deps]
        sig = tuple((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    for st in now)  # fmt: skip
    except OSError:
        return cache.check_deps(deps) is None
    if _VERIFIED.get(deps) == sig:
        return True
    if cache.check_deps(deps) is not None:
        return False
    settled = time.time_ns() - _SETTLED_NS
    if all(max(mtime, ctime) < settled for *_, mtime, ctime in sig):
        _VERIFIED[deps] = sig
    return True


#: id(plan) -> (plan, (exact names, name prefixes) or None for the whole environment,
#: {what the plan reads of an environment: (record, flat record)}); the plan is kept so
#: its id stays its own
_FLAT: dict[int, tuple[Plan, tuple[tuple[str, ...], tuple[str, ...]] | None,
                       dict[Any, tuple[Any, bytes]]]] = {}  # fmt: skip
#: bounds on _FLAT: plans a process launches, environments per plan
_FLAT_PLANS, _FLAT_ENVS = 32, 16


def _flat_record(plan: Plan, caller_env: Mapping[str, str]) -> tuple[dict[str, Any], bytes]:
    """(record, flat.encode(record)) of ``plan`` for this caller's environment, built once.

    The environment is the only per-launch input of native.build_spec; keyed by the part
    of it the plan reads (the names and prefixes of isorun.launch.env_patterns, a superset
    of what build_environment reads), so an equal key means an equal record. The key is
    taken name by name rather than with launch.env_projection: decoding every variable of
    os.environ costs more than the rest of this function.
    """
    import os

    entry = _FLAT.get(id(plan))
    if entry is None or entry[0] is not plan:
        from isorun import launch

        if len(_FLAT) >= _FLAT_PLANS:
            del _FLAT[next(iter(_FLAT))]
        patterns = launch.env_patterns(plan)
        names = None if patterns is None else (
            tuple(p for p in patterns if not p.endswith("*")),
            tuple(p[:-1] for p in patterns if p.endswith("*")))  # fmt: skip
        entry = _FLAT[id(plan)] = (plan, names, {})
    split: tuple[tuple[Any, ...], tuple[Any, ...]] | None = entry[1]
    env: Mapping[Any, Any] = caller_env
    if caller_env is os.environ:
        # The bytes os.environ keeps (and decodes on every access); its own key space.
        env = os.environ._data  # type: ignore[attr-defined]
        if split is not None:
            split = (tuple(os.fsencode(n) for n in split[0]),
                     tuple(os.fsencode(n) for n in split[1]))  # fmt: skip
    if split is None:
        key: Any = tuple(sorted(env.items()))
    else:
        exact, prefixes = split
        key = tuple(env.get(name) for name in exact)
        if prefixes:
            key += tuple(sorted((name, env[name]) for name in env
                                if name.startswith(prefixes)))  # fmt: skip
    hit = entry[2].get(key)
    if hit is None:
        from isorun.sandbox import flat, native
        from isorun.sandbox.spec import spec_record

        spec = native.build_spec(plan, [], caller_env, cached_program(plan))
        record = spec_record(spec)
        del record["argv"]
        if len(entry[2]) >= _FLAT_ENVS:
            del entry[2][next(iter(entry[2]))]
        hit = entry[2][key] = (record, flat.encode(record))
    return hit


def _policy_of(plan: Plan) -> Any:
    from isorun.compile.plan import LoadSeccomp

    steps = plan.find(LoadSeccomp)
    return steps[0].policy if steps else None


def cached_program(plan: Plan) -> bytes:
    """Keyed by the seccomp policy itself (a frozen, hashable dataclass)."""
    key = _policy_of(plan)
    program = _PROGRAMS.get(key)
    if program is None:
        program = _PROGRAMS[key] = seccomp_program(plan)
    return program


def _wrap_text(proc: Any, text: bool) -> tuple[Any, Any, Any]:
    if not text:
        return proc.stdin, proc.stdout, proc.stderr
    import io

    def wrap(stream: Any, write: bool) -> Any:
        if stream is None:
            return None
        return io.TextIOWrapper(stream, write_through=write)

    return wrap(proc.stdin, True), wrap(proc.stdout, False), wrap(proc.stderr, False)
