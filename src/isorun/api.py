"""The Python API: what the CLI and the pytest plugin use.

``load_profile`` and ``compile_plan`` are pure; ``run``/``Popen`` start sandboxes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from isorun.cache.plans import MEMO as MEMO
from isorun.cache.plans import cached_plan as _cached_plan
from isorun.cache.plans import cached_program as cached_program
from isorun.cache.plans import compiled as compiled
from isorun.compile.exposure import root_write_notes
from isorun.compile.pipeline import compile_plan, load_profile, seccomp_program
from isorun.compile.plan import Plan, locate_error, missing_source_hint
from isorun.errors import Lost, SandboxSetupError
from isorun.profile import includes
from isorun.profile.schema import Profile

if TYPE_CHECKING:
    from isorun.sandbox.backends import NativeRun, SandboxRun

#: the compiler's public names, defined in compile/ (the cache and the backends use them
#: from there, below this module)
__all__ = ["CompletedRun", "DroppedEnvWarning", "Popen", "builtin_profiles", "check_limits",
           "compile_plan", "load_profile", "locate_error",
           "missing_source_hint", "root_write_notes", "run", "seccomp_program"]


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


#: seconds ``Popen.__exit__`` gives a command after SIGTERM before it sends SIGKILL
GRACE_PERIOD = 5.0


class DroppedEnvWarning(UserWarning):
    """``env=`` named variables the profile's ``[environment]`` policy does not pass on."""


class Popen:
    """A sandboxed process, like :class:`subprocess.Popen`.

    ``stdin``/``stdout``/``stderr`` take what subprocess takes (None, PIPE, DEVNULL, a file
    object or a descriptor, and ``stderr=STDOUT``). ``cwd=`` runs the command as if isorun
    were started there: the profile is compiled with ``${CWD}`` set to it (so its mounts
    follow), which is why it takes a profile, not a Plan. ``env=`` is the caller's
    environment the profile's ``[environment]`` policy applies to, as ``os.environ`` is
    otherwise; each variable the policy drops is named in a :class:`DroppedEnvWarning`.
    ``shell=True`` runs ``/bin/sh -c argv`` in the sandbox. Leaving a ``with`` block with
    the command still running sends SIGTERM, then SIGKILL after ``grace_period`` seconds:
    unlike subprocess, a sandbox is never left running. The sandbox is a new session: it
    never takes the caller's terminal (the CLI's launch does, see spec.terminal_job).
    """

    def __init__(self, argv: Sequence[str] | str, *, profile: str | Profile | Plan = "strict",
                 stdin: Any = None, stdout: Any = None, stderr: Any = None,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 shell: bool = False, text: bool = False, backend: str | None = None,
                 allow_weaker: bool = False, grace_period: float = GRACE_PERIOD,
                 log: Callable[[str], None] | None = None, _terminal: bool = False,
                 _chosen: tuple[str, tuple[Lost, ...]] | None = None,
                 _refusals: bool = False) -> None:
        from isorun.compile.plan import MountStep
        from isorun.compile.plan import Plan as _Plan
        from isorun.sandbox import git_guard

        self.args = _command(argv, shell)
        if isinstance(profile, _Plan):
            if cwd is not None:
                raise ValueError("cwd= needs a profile name or Profile: a Plan is already "
                                 "compiled for the directory it was compiled in")
            plan = profile
        else:
            plan = _cached_plan(profile, cwd=_working_dir(cwd))
        # A Plan or Profile given directly skips compile_entry, which checks this for
        # every string profile before it can be stored.
        if not isinstance(profile, str):
            from isorun.cache import store as cache_store

            cache_store.check_not_writable(plan)
        self.plan = plan
        self._text = text
        self.grace_period = grace_period
        if env is not None:
            _warn_dropped_env(plan, env)
        #: the backend that runs the sandbox, and the rules it does not enforce (only ever
        #: non-empty with allow_weaker)
        self.backend, self.lost = _chosen or _choose_backend(plan, backend or plan.backend,
                                                             allow_weaker, log)
        self._proc: NativeRun | SandboxRun
        # Before the sandbox can write: the .git guards with nothing to guard yet, looked
        # at again once it has ended (sandbox/git_guard.py).
        self._guards = git_guard.missing_guards(plan.find(MountStep))
        self._walks = git_guard.all_guards(plan.find(MountStep))
        self._since = git_guard.since() if self._walks else 0
        from isorun.sandbox.backends import BACKENDS

        self._proc = BACKENDS[self.backend].spawn(
            plan, self.args, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
            allow_weaker=allow_weaker, terminal=_terminal, refusals=_refusals,
            compiled=MEMO, log=log)
        #: isorun-launch says the refusal report when the command fails (the CLI's
        #: ``_refusals``); the other paths leave the notes to attached.launch
        self.reports_refusals = self._proc.reports_refusals
        #: why execve failed (exit code 126 or 127), None when the command started
        self.exec_error: SandboxSetupError | None = self._proc.exec_error
        self.pid: int = self._proc.pid
        self.stdin, self.stdout, self.stderr = _wrap_text(self._proc, text)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def timed_out(self) -> bool:
        """The wall-clock limit killed the sandbox (returncode 124)."""
        return bool(getattr(self._proc, "timed_out", False))

    @property
    def command_started(self) -> bool | None:
        """Once ended, on the bwrap and firejail backends: whether the wrapper got as
        far as starting the command (False: ``returncode`` is the wrapper's own failure);
        None where the backend does not say (the native backends report a failed set-up
        as :class:`SandboxSetupError` instead)."""
        started: bool | None = getattr(self._proc, "command_started", None)
        return started

    @property
    def limit_events(self) -> dict[str, int]:
        """What the cgroup limits did, once the sandbox was reaped: ``oom_kill``,
        ``pids_max`` (see sandbox.cgroup.Cgroup.events_in_parent); {} without a cgroup."""
        return dict(getattr(self._proc, "limit_events", {}))

    def _ended(self) -> None:
        """Once the sandbox has ended: move aside a .git it planted (git_guard.py)."""
        import sys

        from isorun.sandbox import git_guard

        if self._guards and self._proc.returncode is not None:
            missing, self._guards = self._guards, ()
            for note in git_guard.quarantine(missing):
                sys.stderr.write(note + "\n")
        if self._walks and self._proc.returncode is not None:
            walks, self._walks = self._walks, ()
            for note in git_guard.walk_planted(walks, self._since):
                sys.stderr.write(note + "\n")

    def poll(self) -> int | None:
        code = self._proc.poll()
        self._ended()
        return code

    def wait(self, timeout: float | None = None) -> int:
        code = self._proc.wait(timeout)
        self._ended()
        return code

    def refusal_lines(self) -> list[str]:
        """What seccomp refused, counted, with each rule, when this process supervised
        the run's listener itself (the wrapper backends, sandbox/refusal_watch.py); []
        otherwise (isorun-launch says it itself) or when nothing was refused."""
        watch = self._proc.refusals
        return watch.lines() if watch is not None else []

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
        self._ended()
        if self._text:
            return (None if out is None else out.decode(errors="replace"),
                    None if err is None else err.decode(errors="replace"))
        return out, err

    def __enter__(self) -> Popen:
        return self

    def __exit__(self, *exc: object) -> None:
        import subprocess

        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.poll() is None:
            # The command's SIGTERM handler gets its grace period (a terminate() just
            # before the with block ends is not cut short), then nothing survives.
            self.terminate()
            try:
                self.wait(self.grace_period)
            except subprocess.TimeoutExpired:
                self.kill()
        self.wait()


def _command(argv: Sequence[str] | str, shell: bool) -> list[str]:
    """The argv to execute, checked as subprocess would (a ValueError, not a failed launch)."""
    from isorun.errors import UsageError

    if shell:
        args = [argv] if isinstance(argv, str | bytes | os.PathLike) else list(argv)
        args = ["/bin/sh", "-c", *(os.fsdecode(a) for a in args)]
    elif isinstance(argv, str | bytes):
        raise TypeError("argv must be a sequence of strings, not one string "
                        "(or pass shell=True)")
    else:
        args = [os.fsdecode(a) for a in argv]
    if not args:
        raise UsageError("argv is empty: give the command to run")
    if not args[0]:
        raise UsageError("argv[0] is empty: give the command to run")
    if any("\0" in a for a in args):
        raise UsageError("an argument contains a NUL byte, which execve cannot pass")
    return args


def _working_dir(cwd: str | os.PathLike[str] | None) -> str | None:
    """The real path of ``cwd=``, which must be a directory (FileNotFoundError or
    NotADirectoryError otherwise, as subprocess raises)."""
    import errno
    import stat

    if cwd is None:
        return None
    path = os.path.realpath(os.fspath(cwd))
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(cwd))
    return path


def _warn_dropped_env(plan: Plan, env: Mapping[str, str]) -> None:
    """One DroppedEnvWarning naming each ``env=`` variable the profile does not keep."""
    import fnmatch
    import warnings

    from isorun.compile.plan import Environment

    steps = plan.find(Environment)
    if not steps or not steps[0].clear:
        return  # the caller's environment goes through whole
    step = steps[0]
    dropped = sorted(name for name in env if not any(
        name == pattern or (pattern.endswith("*") and fnmatch.fnmatchcase(name, pattern))
        for pattern in step.keep))  # fmt: skip
    if dropped:
        keep = ", ".join(step.keep) or "nothing"
        warnings.warn(
            f"profile {plan.profile} does not pass on {', '.join(dropped)} from env= "
            f"(environment.keep at {step.loc.short()} keeps {keep}); list them in "
            "environment.keep of a profile that extends it, or set them with environment.set",
            DroppedEnvWarning, stacklevel=3)


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


@dataclass(frozen=True, slots=True)
class CompletedRun:
    """The result of :func:`run`, like :class:`subprocess.CompletedProcess`."""

    args: list[str] | str
    returncode: int
    stdout: Any = None
    stderr: Any = None

    def check_returncode(self) -> None:
        if self.returncode:
            import subprocess

            raise subprocess.CalledProcessError(self.returncode, self.args, self.stdout,
                                                self.stderr)


def run(argv: Sequence[str] | str, *, profile: str | Profile | Plan = "strict",
        input: Any = None, capture_output: bool = False, timeout: float | None = None,
        check: bool = False, text: bool = False, **kwargs: Any) -> CompletedRun:
    """Run ``argv`` in a sandbox and wait for it, like :func:`subprocess.run`: ``timeout``
    kills the sandbox and raises TimeoutExpired, ``check`` raises CalledProcessError on a
    non-zero status. Other keywords go to :class:`Popen` (``cwd``, ``env``, ``shell``,
    ``stdout``, ``stderr=STDOUT``, ``backend``, ...)."""
    import subprocess

    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output")
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    args = argv if isinstance(argv, str) else list(argv)
    with Popen(argv, profile=profile, text=text, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout)
        except subprocess.TimeoutExpired as expired:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(args, expired.timeout, expired.output,
                                            expired.stderr) from None
        result = CompletedRun(args, proc.wait(), out, err)
    if check:
        result.check_returncode()
    return result


def _wrap_text(proc: Any, text: bool) -> tuple[Any, Any, Any]:
    if not text:
        return proc.stdin, proc.stdout, proc.stderr
    import io

    def wrap(stream: Any, write: bool) -> Any:
        if stream is None:
            return None
        return io.TextIOWrapper(stream, write_through=write)

    return wrap(proc.stdin, True), wrap(proc.stdout, False), wrap(proc.stderr, False)
