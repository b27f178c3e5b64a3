"""The backends and the choice between them, failing closed.

Three backends run a plan: ``native`` (the C shim, enforces every step), ``bwrap`` and
``firejail`` (wrappers, each enforcing what its renderer can express). Selection never
runs a plan weaker than written: a backend that would lose a rule is refused with
:class:`Unsupported` naming the rules and the backends that keep them, unless the caller
passed ``allow_weaker``; the lost rules are then returned for the caller to print.

Rendering is pure (compile/bwrap.py, compile/firejail.py). The impure part is here: the
descriptors the renderers named, the identity to spawn as, and the wall-clock limit,
which the isorun parent enforces for every backend.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any, Protocol

from isorun.compile import plan as p
from isorun.compile.bwrap import file_mounts, render_bwrap
from isorun.compile.firejail import render_firejail
from isorun.compile.invocation import HELPER, Invocation, terminal_job_allowed
from isorun.compile.pipeline import seccomp_program
from isorun.errors import HostError, Lost, SandboxSetupError, Unsupported
from isorun.host.probe import BackendFacts
from isorun.profile.schema import Seccomp
from isorun.sandbox.wrapper_mounts import check_sources, unsafe_destination

if TYPE_CHECKING:
    from isorun.sandbox.process import SandboxProcess
    from isorun.sandbox.refusal_watch import RefusalWatch
    from isorun.sandbox.spec import ShimSpec

#: strongest first: auto takes the first one that enforces the whole plan here
ORDER = ("native", "bwrap", "firejail", "landlock")
NOBODY = 65534
EXIT_WALL_TIME = 124
_DUMMY_FD = 1000  # descriptor numbers for dry renders (check); never opened


class Backend(Protocol):
    name: str

    def capabilities(self) -> frozenset[str]:
        """The step types and aspects (``Clone:time``, ``MountStep:noexec``) this backend
        can enforce, whatever the host."""

    def unavailable(self, plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
        """("", "") when this host can run ``plan`` on this backend, else (why, fix)."""

    def check(self, plan: p.Plan, facts: BackendFacts | None = None) -> list[Lost]:
        """The rules of ``plan`` this backend cannot enforce (on this host, with facts)."""

    def terminal_job(self, plan: p.Plan) -> bool:
        """Whether a terminal launch (``spawn(terminal=True)``) of ``plan`` keeps the
        command in the caller's session as the terminal's foreground job: job control,
        ^C from the terminal itself. False: a new session, so the launcher passes on ^C."""

    def spawn(self, plan: p.Plan, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              allow_weaker: bool = False, facts: BackendFacts | None = None,
              terminal: bool = False, refusals: bool = False,
              compiled: Compiled | None = None,
              log: Callable[[str], None] | None = None) -> SandboxRun | NativeRun:
        """Start ``argv`` in the sandbox. Raises Unsupported, HostError. ``terminal``: the
        CLI, the foreground job of the terminal that is the command's stdin. ``refusals``:
        the CLI's refusal report (sandbox/refusal_watch.py). ``compiled``: where the
        plan's seccomp program (and the native launch record) come from, the API's memo
        (isorun.api.MEMO); None compiles them for this call. ``log``: what the backend
        says about how it starts (verbose)."""


class Compiled(Protocol):
    """What a spawn needs compiled from a plan, from wherever the caller keeps it."""

    def program(self, plan: p.Plan) -> bytes:
        """The plan's seccomp program (b"" when it loads none)."""

    def launch_record(self, plan: p.Plan, caller_env: Mapping[str, str]
                      ) -> tuple[dict[str, Any], bytes]:
        """(record, flat.encode(record)) of the native spec of ``plan`` for this
        environment, without argv (see :func:`launch_record`)."""


class Fresh:
    """Compiled anew on every call: for a spawn without the API's memo."""

    def program(self, plan: p.Plan) -> bytes:
        return seccomp_program(plan)

    def launch_record(self, plan: p.Plan, caller_env: Mapping[str, str]
                      ) -> tuple[dict[str, Any], bytes]:
        return launch_record(plan, self.program(plan), caller_env)


def launch_record(plan: p.Plan, program: bytes, caller_env: Mapping[str, str]
                  ) -> tuple[dict[str, Any], bytes]:
    """The native launch record of ``plan`` for this environment (isorun-launch takes it
    with the command line's argv), and its flat encoding."""
    from isorun.compile.refusals import report_fields
    from isorun.sandbox import flat, native
    from isorun.sandbox.spec import spec_record

    spec = native.build_spec(plan, [], caller_env, program)
    record = {**spec_record(spec), **report_fields(plan, program)}
    del record["argv"]
    return record, flat.encode(record)


#: one representative step per step type and per option a backend may not support; the
#: capability matrix and the contract test are derived from these by rendering them
SAMPLES: tuple[tuple[str, p.Step], ...] = (
    *((f"Clone:{ns}", p.Clone((ns,))) for ns in
      ("user", "pid", "net", "mount", "ipc", "uts", "cgroup", "time")),
    ("MapIds", p.MapIds(1000, 1000, 1000, 1000)),
    ("MapIds:other", p.MapIds(0, 0, 1000, 1000)),
    ("Cgroup", p.Cgroup(1 << 30, 64)),
    ("WallTime", p.WallTime(10.0)),
    ("NewRoot:tmpfs", p.NewRoot("tmpfs")),
    ("NewRoot:rootfs", p.NewRoot("rootfs", "/srv/root")),
    *((f"MountStep:{kind}", p.MountStep(kind, "/tmp" if kind == "tmpfs" else "/x",
                                        "t" if kind == "symlink" else
                                        "/x" if "bind" in kind or kind == "overlay" else ""))
      for kind in ("ro-bind", "rw-bind", "dev-bind", "tmpfs", "proc", "dev", "symlink",
                   "file", "dir", "mqueue", "overlay", "mask")),
    ("MountStep:noexec", p.MountStep("ro-bind", "/x", "/x", noexec=True)),
    ("MountStep:src", p.MountStep("ro-bind", "/x", "/y")),
    ("MountStep:tmpfs-size", p.MountStep("tmpfs", "/tmp", size=1 << 20, mode=0o700)),
    ("ReadOnlyRoot", p.ReadOnlyRoot()),
    ("PivotRoot", p.PivotRoot()),
    ("Hostname", p.Hostname("sandbox")),
    ("Loopback", p.Loopback()),
    ("Rlimit", p.Rlimit("nofile", 64)),
    ("Chdir", p.Chdir("/")),
    ("NewSession", p.NewSession()),
    ("DieWithParent", p.DieWithParent()),
    ("CloseFds", p.CloseFds((5,))),
    ("Environment", p.Environment(True, ("TERM",), (("A", "1"),))),
    ("DropCaps", p.DropCaps(())),
    ("DropCaps:keep", p.DropCaps(("CAP_NET_BIND_SERVICE",))),
    ("NoNewPrivs", p.NoNewPrivs()),
    ("Landlock", p.Landlock(("read_file",), (), (), (p.LandlockRule(("read_file",), "/x"),),
                            7)),
    ("Landlock:tcp", p.Landlock((), ("connect_tcp",), (),
                                (p.LandlockRule(("connect_tcp",), port=443),), 7)),
    ("Landlock:scope abstract_unix_socket", p.Landlock((), (), ("abstract_unix_socket",), (),
                                                       7)),
    ("Landlock:scope signal", p.Landlock((), (), ("signal",), (), 7)),
    ("LoadSeccomp", p.LoadSeccomp(Seccomp())),
    ("Exec", p.Exec()),
)


def sample_plan(step: p.Step) -> p.Plan:
    """The smallest valid plan holding ``step``."""
    if isinstance(step, p.Exec):
        return p.Plan("sample", (step,))
    before: tuple[p.Step, ...] = ((p.NoNewPrivs(),) if isinstance(step, p.LoadSeccomp | p.Landlock)
                                   else ())
    if isinstance(step, p.Landlock):
        # bwrap's exec stage applies it from inside, which needs /proc (as binds, below)
        before = (p.MountStep("proc", "/proc"), *before)
    if isinstance(step, p.MountStep) and "bind" in step.type:
        # bwrap checks a bind from inside, with its exec stage run as /proc/self/fd/N
        # (compile/bwrap.py): it enforces binds in plans that mount /proc
        before = (p.MountStep("proc", "/proc"),)
    return p.Plan("sample", (*before, step, p.Exec()))


def _capabilities(check: Callable[[p.Plan, BackendFacts | None], list[Lost]]
                  ) -> frozenset[str]:
    return frozenset(aspect for aspect, step in SAMPLES
                     if not check(sample_plan(step), None))


def _render_lost(render: Callable[[], Invocation]) -> list[Lost]:
    try:
        return list(render().lost)
    except Unsupported as err:  # pragma: no cover - renders below pass allow_weaker
        return list(err.lost)


def _needs_userns(plan: p.Plan) -> bool:
    return any("user" in c.namespaces for c in plan.find(p.Clone))


def _userns_missing(plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
    if _needs_userns(plan) and not facts.userns.allowed:
        return (f"user namespaces are disabled ({facts.userns.blocker})", facts.userns.fix)
    return "", ""


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
        return _userns_missing(plan, facts)

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
        from isorun.sandbox.exec_stage import exec_stage_path

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
            stage_fd = os.open(exec_stage_path(), os.O_RDONLY | os.O_CLOEXEC)
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


class FirejailBackend:
    name = "firejail"

    def capabilities(self) -> frozenset[str]:
        return _capabilities(self.check)

    def unavailable(self, plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
        tool = facts.firejail
        if tool is None:
            return "firejail is not installed", "apt-get install firejail"
        if not tool.setuid and not facts.host.root:
            return "firejail is not setuid root", f"chmod u+s {tool.path}"
        if facts.no_new_privs and not facts.host.root:
            return ("no_new_privs is set on this process, so setuid firejail cannot gain "
                    "root", "run isorun where no_new_privs is not set")
        missing = _identity_missing(plan, facts, "firejail")
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
        return _render_lost(lambda: render_firejail(plan, [], {}, seccomp_fd=_DUMMY_FD,
                                                    env_fd=_DUMMY_FD + 1,
                                                    helper_fd=_DUMMY_FD + 2,
                                                    allow_weaker=True,
                                                    userns=_userns(facts),
                                                    landlock_fd=_DUMMY_FD + 3))

    def terminal_job(self, plan: p.Plan) -> bool:
        return render_firejail(plan, [], {}, seccomp_fd=_DUMMY_FD, env_fd=_DUMMY_FD + 1,
                               helper_fd=_DUMMY_FD + 2, allow_weaker=True,
                               terminal=True).terminal_job

    def spawn(self, plan: p.Plan, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              allow_weaker: bool = False, facts: BackendFacts | None = None,
              terminal: bool = False, refusals: bool = False,
              compiled: Compiled | None = None,
              log: Callable[[str], None] | None = None) -> SandboxRun:
        from isorun.sandbox.exec_stage import exec_stage_path

        caller = os.environ if env is None else env
        checked = check_sources(plan)
        plan = checked.plan
        with ExitStack() as stack:
            program = (compiled or FRESH).program(plan)
            seccomp_fd = _program_fd(plan, program, stack)
            watch = _refusal_watch(plan, program, refusals, stack)
            env_fd = _memfd(b"", stack)
            # The stage reaches the sandbox as a descriptor (exec'd as /proc/self/fd/N),
            # so no host path of it has to be visible inside.
            helper_fd = os.open(exec_stage_path(), os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, helper_fd)
            inv = render_firejail(plan, argv, caller, seccomp_fd=seccomp_fd, env_fd=env_fd,
                                  helper_fd=helper_fd, allow_weaker=allow_weaker,
                                  firejail=_which("firejail"), userns=_userns(facts),
                                  identities=checked.identities, terminal=terminal,
                                  landlock_fd=_landlock_fd(plan, stack),
                                  report_fds=None if watch is None else watch.child_fds)
            for fd, data in inv.inputs:
                os.write(fd, data)
                os.lseek(fd, 0, os.SEEK_SET)
            return _spawn(inv, plan, stdin, stdout, stderr, watch)
        raise AssertionError("unreachable")  # pragma: no cover


class LandlockBackend:
    """The native shim without a user namespace: Landlock, seccomp and process hygiene
    where namespaces are forbidden (sandbox/landlock_mode.py says what it loses)."""

    name = "landlock"

    def capabilities(self) -> frozenset[str]:
        return _capabilities(self.check)

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


#: a stateless Compiled for spawns without the API's memo
FRESH = Fresh()

BACKENDS: dict[str, Backend] = {"native": NativeBackend(), "bwrap": BwrapBackend(),
                                "firejail": FirejailBackend(), "landlock": LandlockBackend()}


def _landlock_here() -> bool:
    """Whether this kernel has Landlock: bwrap's terminal mode needs it (compile/bwrap.py)."""
    from isorun.host.facts import probe

    return probe().landlock >= 1


def _userns(facts: BackendFacts | None) -> bool:
    return True if facts is None else facts.userns.allowed


def _identity_missing(plan: p.Plan, facts: BackendFacts, tool: str) -> tuple[str, str]:
    """A wrapper maps the uid that runs it, so the runner spawns it as the plan's host
    uid; only root can become another uid."""
    for step in plan.find(p.MapIds):
        if step.host_uid != facts.host.uid and not facts.host.root:
            return (f"{tool} maps the uid that runs it ({facts.host.uid}) but the plan runs "
                    f"as host uid {step.host_uid}", "run isorun as that user, or as root")
    return "", ""


def select_backend(plan: p.Plan, requested: str, facts: BackendFacts, allow_weaker: bool,
                   *, log: Callable[[str], None] | None = None) -> tuple[Backend, list[Lost]]:
    """Choose the backend for ``plan`` (``auto`` or a name).

    ``auto`` takes the strongest backend that this host can run and that enforces every
    rule; ``log`` (verbose mode) hears why each stronger one was passed over. A named
    backend is taken or refused, never swapped. When the choice would lose rules, raises
    :class:`Unsupported` unless ``allow_weaker``; the lost rules are then returned.
    Raises :class:`HostError` when no backend can run here at all.
    """
    say = log or (lambda _: None)
    if requested != "auto" and requested not in BACKENDS:
        raise HostError(f"backend {requested!r}", "unknown backend",
                        "use one of: auto, " + ", ".join(ORDER))
    names = ORDER if requested == "auto" else (requested,)
    usable: list[tuple[Backend, list[Lost]]] = []
    reasons: list[tuple[str, str, str]] = []
    for name in names:
        backend = BACKENDS[name]
        why, fix = backend.unavailable(plan, facts)
        if why:
            say(f"isorun: backend {name}: not usable here: {why}")
            reasons.append((name, why, fix))
            continue
        lost = backend.check(plan, facts)
        if not lost:
            say(f"isorun: backend {name}: enforces every rule of {plan.profile}"
                + (" (the strongest usable here)" if requested == "auto" else ""))
            return backend, []
        say(f"isorun: backend {name}: would not enforce "
            + "; ".join(f"{item.rule} ({item.loc.short()})" for item in lost))
        usable.append((backend, lost))
    if not usable:
        name, why, fix = reasons[0]
        if requested == "auto":
            why = "; ".join(f"{n}: {w}" for n, w, _ in reasons)
            fix = next((f for _, _, f in reasons if f), "")
        raise HostError(f"profile {plan.profile} on backend {name}"
                        if requested != "auto" else f"profile {plan.profile}",
                        why if requested != "auto" else f"no backend can run here ({why})",
                        fix)
    backend, lost = usable[0]
    lost = _with_alternatives(plan, lost, facts)
    if not allow_weaker:
        raise Unsupported(backend.name, lost)
    say(f"isorun: backend {backend.name}: running WEAKER than the profile (--allow-weaker)")
    return backend, lost


def _with_alternatives(plan: p.Plan, lost: list[Lost], facts: BackendFacts) -> list[Lost]:
    """Name, for each lost rule, the backends that would enforce it (and whether this
    host can run them), so the error says where to go."""
    keeps: dict[str, set[tuple[str, str]]] = {}
    # once per backend, not per lost rule: a wrapper's walks its bind sources
    whys: dict[str, str] = {}
    for name in ORDER:
        keeps[name] = {(item.rule, item.loc.short())
                       for item in BACKENDS[name].check(plan, facts)}
        whys[name] = BACKENDS[name].unavailable(plan, facts)[0]
    out = []
    for item in lost:
        alts = []
        for name in ORDER:
            if (item.rule, item.loc.short()) in keeps[name]:
                continue
            why = whys[name]
            alts.append(name if not why else f"{name}, not usable here: {why}")
        out.append(replace(item, alternatives=tuple(alts)))
    return out


def describe_lost(backend: str, lost: Sequence[Lost]) -> str:
    """The warning an ``--allow-weaker`` launch prints before it runs, one rule a line."""
    lines = [f"isorun: warning: backend {backend} runs this profile WITHOUT:"]
    for item in lost:
        alt = f" (enforced by: {', '.join(item.alternatives)})" if item.alternatives else ""
        lines.append(f"  {item.loc.short()}: {item.rule}: {item.why}{alt}")
    return "\n".join(lines)


def describe_backend(plan: p.Plan, name: str) -> tuple[p.Plan, list[str]]:
    """(the plan backend ``name`` runs, lines saying how it enforces it) for ``explain
    --backend``: who applies the Landlock layer, and each rule it cannot keep whatever
    the host (``auto``: the native backend's view)."""
    from isorun.compile.landlock import landlock_applier

    name = "native" if name == "auto" else name
    if name == "landlock":
        from isorun.host.facts import probe
        from isorun.sandbox.landlock_mode import mode_plan

        plan = replace(plan, steps=mode_plan(plan, probe().landlock).steps)
    lines = [f"backend {name}:", f"  landlock: {landlock_applier(plan, name)}"]
    lost = BACKENDS[name].check(plan, None)
    lines += [f"  does not enforce {item.loc.short()}: {item.rule}: {item.why}"
              for item in lost] or ["  enforces every rule of the plan"]
    return plan, lines


def capability_matrix() -> dict[str, frozenset[str]]:
    """backend name -> the aspects it enforces (``isorun doctor`` prints it)."""
    return {name: BACKENDS[name].capabilities() for name in ORDER}


class SandboxRun:
    """A sandbox started by a backend, like :class:`subprocess.Popen` (wait, poll,
    communicate, send_signal, kill). The wall-clock limit is enforced here: the whole
    sandbox is killed and ``returncode`` is 124."""

    def __init__(self, proc: Any, backend: str, lost: tuple[Lost, ...],
                 wall_time: float | None, terminal_job: bool = False,
                 refusals: RefusalWatch | None = None) -> None:
        self._proc = proc
        #: the refusal report's supervisor (the wrapper backends' exec stage), or None
        self.refusals = refusals
        self.backend = backend
        self.lost = lost
        #: the command shares the caller's session, the terminal's foreground job
        self.terminal_job = terminal_job
        self.pid: int = proc.pid
        self.stdin: IO[bytes] | None = proc.stdin
        self.stdout: IO[bytes] | None = proc.stdout
        self.stderr: IO[bytes] | None = proc.stderr
        self.timed_out = False
        #: isorun-launch says the refusal report itself (the landlock backend's launch)
        self.reports_refusals = False
        #: the wrappers report no failed execve apart: the exec stage says it itself
        self.exec_error: SandboxSetupError | None = None
        self._timer: threading.Timer | None = None
        if wall_time is not None:
            self._timer = threading.Timer(wall_time, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        if self._proc.poll() is None:
            self.timed_out = True
            kill_tree(self.pid)

    def _code(self, code: int | None) -> int | None:
        if code is None:
            return None
        if self._timer is not None:
            self._timer.cancel()
        if self.refusals is not None:
            self.refusals.finish()
        if self.timed_out:
            return EXIT_WALL_TIME
        # the shell's convention, as the native backend reports a signalled command
        return 128 - code if code < 0 else code

    @property
    def returncode(self) -> int | None:
        return self._code(self._proc.returncode)

    def poll(self) -> int | None:
        return self._code(self._proc.poll())

    def wait(self, timeout: float | None = None) -> int:
        code = self._code(self._proc.wait(timeout))
        assert code is not None
        return code

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[Any, Any]:
        out, err = self._proc.communicate(input, timeout)
        self._code(self._proc.returncode)
        return out, err

    def send_signal(self, sig: int) -> None:
        # To the command, as the native sandbox's pid 1 forwards it (see sandbox.forward);
        # to the wrapper only while the command does not exist yet.
        from isorun.sandbox.forward import command_pid

        target = command_pid(self.pid) if self._proc.poll() is None else None
        if target is None:
            self._proc.send_signal(sig)
            return
        with suppress(ProcessLookupError, PermissionError):
            os.kill(target, sig)

    def kill(self) -> None:
        kill_tree(self.pid)


def _children(pid: int) -> Iterator[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            yield kid
            yield from _children(kid)


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant, descendants first: killing the sandbox's
    pid 1 takes its whole pid namespace down even where the wrapper survives."""
    for kid in reversed(list(_children(pid))):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(kid, signal.SIGKILL)
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _which(name: str) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        raise HostError(f"backend {name}", f"{name} is not installed",
                        f"apt-get install {'bubblewrap' if name == 'bwrap' else name}")
    return path


def _memfd(data: bytes, stack: ExitStack) -> int:
    # close-on-exec here; the spawn clears it only for the descriptors the plan passes
    from isorun.host.anonfile import anon_file

    fd = anon_file("isorun")
    stack.callback(os.close, fd)
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _program_fd(plan: p.Plan, program: bytes, stack: ExitStack) -> int | None:
    """The same BPF program the native shim loads, in a descriptor."""
    if not plan.find(p.LoadSeccomp):
        return None
    return _memfd(program, stack)


def _refusal_watch(plan: p.Plan, program: bytes, refusals: bool, stack: ExitStack
                   ) -> RefusalWatch | None:
    """The refusal report's watch for a wrapper's exec stage; None when not asked for,
    or when the plan's program has no reporting form (refusals.reporting_filter)."""
    if not refusals or not plan.find(p.LoadSeccomp):
        return None
    from isorun.compile.refusals import reporting_filter
    from isorun.sandbox.refusal_watch import RefusalWatch

    report_bpf = reporting_filter(program, os.uname().machine, head=False)
    if not report_bpf:
        return None
    watch = RefusalWatch.for_stage(plan, program, report_bpf)
    stack.callback(watch.abandon)  # until started: a failed render leaves nothing open
    return watch


def _landlock_fd(plan: p.Plan, stack: ExitStack) -> int | None:
    """The plan's Landlock ruleset for the exec stage, in a descriptor (None: the plan
    has none, or one that handles nothing, as native.landlock_fields decides)."""
    from isorun.sandbox.flat import landlock_section
    from isorun.sandbox.native import landlock_fields

    steps = plan.find(p.Landlock)
    fields = landlock_fields(steps[0]) if steps else {}
    if not fields:
        return None
    return _memfd(landlock_section(fields), stack)


def _with_stage(inv: Invocation) -> Invocation:
    if inv.argv and inv.argv[0] == HELPER:
        from isorun.sandbox.exec_stage import exec_stage_path

        return replace(inv, argv=(exec_stage_path(), *inv.argv[1:]))
    return inv


def _spawn(inv: Invocation, plan: p.Plan, stdin: Any, stdout: Any, stderr: Any,
           watch: RefusalWatch | None = None) -> SandboxRun:
    user: dict[str, Any] = {}
    if inv.user is not None and inv.user != (os.getuid(), os.getgid()):
        if os.getuid() != 0:
            raise HostError("identity", f"{inv.backend} maps the uid that runs it "
                            f"({os.getuid()}) but the plan runs as host uid {inv.user[0]}",
                            "run isorun as that user, or as root")
        # setresgid/setgroups/setresuid happen in subprocess's C child, before exec
        user = {"user": inv.user[0], "group": inv.user[1], "extra_groups": []}
    wall = plan.find(p.WallTime)
    # close_fds with pass_fds: bwrap and the stage hand every inherited descriptor to the
    # command, so only those the plan keeps (and the renderer's own) may exist at exec.
    # No environment: bwrap builds the command's from --setenv, the stage from its fd.
    proc = subprocess.Popen(list(inv.argv), env={}, close_fds=True, pass_fds=inv.pass_fds,
                            stdin=stdin, stdout=stdout, stderr=stderr, **user)
    if watch is not None:
        watch.started()
    return SandboxRun(proc, inv.backend, inv.lost, wall[0].seconds if wall else None,
                      inv.terminal_job, watch)
