"""What the backends share: the capability samples, the compiled inputs of a spawn
(:class:`Compiled`), the descriptors handed to a wrapper, and :class:`SandboxRun`, the
wrappers' running sandbox with the wall-clock limit the isorun parent enforces."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, suppress
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any, Protocol

from isorun.compile import plan as p
from isorun.compile.pipeline import seccomp_program
from isorun.compile.render.invocation import HELPER, Invocation
from isorun.errors import HostError, Lost, SandboxSetupError, Unsupported, os_failure
from isorun.host.probe import BackendFacts
from isorun.kernel.abi import EXIT_WALL_TIME
from isorun.profile.schema import Seccomp
from isorun.sandbox.wall_clock import start_wall_clock

if TYPE_CHECKING:
    from isorun.sandbox.refusal_watch import RefusalWatch

DRY_RUN_FD = 1000  # descriptor numbers for dry renders (check); never opened


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
        # (compile/render/bwrap.py): it enforces binds in plans that mount /proc
        before = (p.MountStep("proc", "/proc"),)
    return p.Plan("sample", (*before, step, p.Exec()))


def capabilities_of(check: Callable[[p.Plan, BackendFacts | None], list[Lost]]
                    ) -> frozenset[str]:
    return frozenset(aspect for aspect, step in SAMPLES
                     if not check(sample_plan(step), None))


def render_lost(render: Callable[[], Invocation]) -> list[Lost]:
    try:
        return list(render().lost)
    except Unsupported as err:  # pragma: no cover - renders below pass allow_weaker
        return list(err.lost)


def _needs_userns(plan: p.Plan) -> bool:
    return any("user" in c.namespaces for c in plan.find(p.Clone))


def userns_missing(plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
    if _needs_userns(plan) and not facts.userns.allowed:
        return (f"user namespaces are disabled ({facts.userns.blocker})", facts.userns.fix)
    return "", ""


#: a stateless Compiled for spawns without the API's memo
FRESH = Fresh()


def landlock_here() -> bool:
    """Whether this kernel has Landlock: bwrap's terminal mode needs it (render/bwrap.py)."""
    from isorun.host.facts import probe

    return probe().landlock >= 1


def userns_allowed(facts: BackendFacts | None) -> bool:
    return True if facts is None else facts.userns.allowed


def identity_missing(plan: p.Plan, facts: BackendFacts, tool: str) -> tuple[str, str]:
    """A wrapper maps the uid that runs it, so the runner spawns it as the plan's host
    uid; only root can become another uid."""
    for step in plan.find(p.MapIds):
        if step.host_uid != facts.host.uid and not facts.host.root:
            return (f"{tool} maps the uid that runs it ({facts.host.uid}) but the plan runs "
                    f"as host uid {step.host_uid}", "run isorun as that user, or as root")
    return "", ""


class SandboxRun:
    """A sandbox started by a backend, like :class:`subprocess.Popen` (wait, poll,
    communicate, send_signal, kill). The wall-clock limit is enforced here: the whole
    sandbox is killed and ``returncode`` is 124."""

    def __init__(self, proc: Any, backend: str, lost: tuple[Lost, ...],
                 wall_time: float | None, terminal_job: bool = False,
                 refusals: RefusalWatch | None = None, started_fd: int | None = None) -> None:
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
        #: once it has ended: whether the wrapper got as far as the exec stage inside
        #: (False: the exit status is the wrapper's own failure, not the command's);
        #: None where no stage runs inside to say so
        self.command_started: bool | None = None
        self._started_fd = started_fd
        self._timer = start_wall_clock(wall_time, self._expire)

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
        fd, self._started_fd = self._started_fd, None
        if fd is not None:
            self.command_started = read_started(fd)
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


def which_tool(name: str) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        raise HostError(f"backend {name}", f"{name} is not installed",
                        f"apt-get install {'bubblewrap' if name == 'bwrap' else name}")
    return path


def data_fd(data: bytes, stack: ExitStack) -> int:
    # close-on-exec here; the spawn clears it only for the descriptors the plan passes
    from isorun.host.anonfile import handed_file

    fd = handed_file(data)
    stack.callback(os.close, fd)
    return fd


def program_fd(plan: p.Plan, program: bytes, stack: ExitStack) -> int | None:
    """The same BPF program the native shim loads, in a descriptor."""
    if not plan.find(p.LoadSeccomp):
        return None
    return data_fd(program, stack)


def refusal_watch_for(plan: p.Plan, program: bytes, refusals: bool, stack: ExitStack
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


def landlock_fd(plan: p.Plan, stack: ExitStack) -> int | None:
    """The plan's Landlock ruleset for the exec stage, in a descriptor (None: the plan
    has none, or one that handles nothing, as native.landlock_fields decides)."""
    from isorun.sandbox.flat import landlock_section
    from isorun.sandbox.native import landlock_fields

    steps = plan.find(p.Landlock)
    fields = landlock_fields(steps[0]) if steps else {}
    if not fields:
        return None
    return data_fd(landlock_section(fields), stack)


def with_exec_stage(inv: Invocation) -> Invocation:
    if inv.argv and inv.argv[0] == HELPER:
        from isorun.sandbox.exec_stage import exec_stage_path

        return replace(inv, argv=(exec_stage_path(), *inv.argv[1:]))
    return inv


def started_pipe(stack: ExitStack) -> tuple[int, int]:
    """(read, write) ends of the pipe the exec stage's ``--started-fd`` writes its byte
    to; both are closed with ``stack``, and :func:`spawn_wrapper` keeps a copy of the read
    end for the run."""
    read, write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    stack.callback(os.close, read)
    stack.callback(os.close, write)
    return read, write


def read_started(fd: int) -> bool:
    """Whether the stage's byte arrived; closes ``fd``. Asked once the wrapper has
    ended, so a byte not there now never comes."""
    try:
        return os.read(fd, 1) == b"s"
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def spawn_wrapper(inv: Invocation, plan: p.Plan, stdin: Any, stdout: Any, stderr: Any,
                  watch: RefusalWatch | None = None,
                  started: tuple[int, int] | None = None) -> SandboxRun:
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
    try:
        proc = subprocess.Popen(list(inv.argv), env={}, close_fds=True,
                                pass_fds=inv.pass_fds, stdin=stdin, stdout=stdout,
                                stderr=stderr, **user)
    except OSError as err:
        raise _start_failure(inv, err) from err
    if watch is not None:
        watch.started()
    # the stage says it started only where it runs inside: the renderer passed the fd on
    started_fd = os.dup(started[0]) if started and started[1] in inv.pass_fds else None
    return SandboxRun(proc, inv.backend, inv.lost, wall[0].seconds if wall else None,
                      inv.terminal_job, watch, started_fd)


def _start_failure(inv: Invocation, err: OSError) -> HostError:
    """The HostError of a wrapper (or the exec stage before it) that could not be started:
    which program, where, and the errno of execve (or of fork or the identity change
    before it, which subprocess reports without a file name)."""
    program = inv.argv[0]
    syscall = "execve" if err.filename is not None else "fork/setresuid"
    if os.path.basename(program).startswith("isorun-seccomp-exec"):
        tool = "the exec stage"
        from isorun.sandbox.exec_stage import NOEXEC_FIX

        fix = NOEXEC_FIX
    else:
        tool = os.path.basename(program)
        fix = (f"check that {program} (and its interpreter) can be executed by uid "
               f"{inv.user[0] if inv.user else os.getuid()}, or pick another backend "
               "(--backend)")
    return HostError(f"backend {inv.backend}",
                     f"cannot start {tool} ({program}): {os_failure(syscall, err)}", fix)
