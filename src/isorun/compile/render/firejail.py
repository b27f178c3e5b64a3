"""Plan -> firejail invocation (pure; golden-tested in tests/golden/backends).

firejail (0.9.72) is a setuid-root launcher built around the host's file tree: it hides
and remounts parts of it but cannot start from an empty root, and its seccomp filter takes
syscall names, not a BPF program. So the file view of most profiles is :class:`Lost` on
firejail, and everything from the working directory to the seccomp filter is applied
inside the sandbox by the exec stage (``isorun-seccomp-exec``, reached as
``/proc/self/fd/N``: firejail mounts a fresh /proc, and the descriptor makes the stage
independent of which host paths the sandbox can see). The stage loads exactly the BPF
program the native shim loads.

firejail resolves each --read-only/--read-write/--noexec path with realpath(3) and
remounts what it finds, so a link swapped into a project after isorun walked it (issue
#12) would move the rule elsewhere. The stage checks first, inside, that each such path
is the file the runner walked and is read-only (noexec) as asked (``--expect``); what
firejail did elsewhere cannot make a checked path weaker without failing the check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from isorun.compile import plan as p
from isorun.compile.environment import build_environment
from isorun.compile.render.invocation import (
    NO_USERNS,
    Expect,
    Identity,
    Invocation,
    identity_without_userns,
    terminal_job_allowed,
)
from isorun.errors import InternalError, Lost, Unsupported

BACKEND = "firejail"


def render_firejail(plan: p.Plan, argv: Sequence[str], env: Mapping[str, str], *,
                    seccomp_fd: int | None, env_fd: int, helper_fd: int,
                    allow_weaker: bool = False, firejail: str = "firejail",
                    userns: bool = True,
                    identities: Mapping[str, Identity] | None = None,
                    terminal: bool = False,
                    landlock_fd: int | None = None,
                    report_fds: tuple[int, int] | None = None,
                    started_fd: int | None = None) -> Invocation:
    """Render ``plan`` running ``argv`` as a firejail command line.

    ``env_fd`` receives the command's environment (``inputs``), ``helper_fd`` is the exec
    stage opened for reading, ``seccomp_fd`` holds the compiled filter. Raises
    :class:`Unsupported` naming every rule firejail cannot enforce, unless
    ``allow_weaker``. ``userns=False``: the host forbids user namespaces. ``identities``
    maps bind sources to what the runner's walk found (sandbox/safepath.py): each becomes
    a check the stage makes before anything else.

    ``terminal`` (the CLI, the foreground job of the terminal that is the command's
    stdin): the stage leaves out its setsid when the plan allows it
    (terminal_job_allowed); the invocation then says ``terminal_job``.
    ``landlock_fd`` holds the plan's Landlock ruleset (sandbox/flat.landlock_section),
    which the stage applies. ``report_fds`` (the CLI's refusal report): the socket and
    the reporting filter the stage hands the listener over with (shim/stage/seccomp_exec.c).
    ``started_fd``: the stage writes a byte to it first (--started-fd), so that a failure
    of firejail's own is told from the command's.
    """
    # The stage loads the filter refusing TIOCSTI/TIOCLINUX before it execs the command,
    # and nothing of the sandbox runs before the stage but firejail itself: the command
    # may then stay in the caller's session, the terminal's foreground job.
    shared = terminal and terminal_job_allowed(plan)
    out = _Firejail(plan, env, userns, identities or {}, shared, env_fd, seccomp_fd,
                    landlock_fd, report_fds)
    for step in plan.steps:
        _firejail_step(out, step)
    if out.lost and not allow_weaker:
        raise Unsupported(BACKEND, out.lost)
    # Everything the stage reads, plus what the plan keeps, must survive firejail's own
    # descriptor closing (--keep-fd); the stage then closes all but ``keep``.
    inputs = ((env_fd, out.env_bytes),) if out.env_bytes or plan.find(p.Environment) else ()
    started = () if started_fd is None else (started_fd,)
    passed = sorted({helper_fd, *started, *(fd for fd, _ in inputs), *out.keep,
                     *(() if seccomp_fd is None else (seccomp_fd,)),
                     *(() if seccomp_fd is None or report_fds is None else report_fds),
                     *(() if landlock_fd is None or not plan.find(p.Landlock)
                       else (landlock_fd,))})
    args = [*out.args, "--nogroups", "--keep-fd=" + ",".join(str(fd) for fd in passed)]
    # the checks first: nothing else of the stage, nor the command, runs before them;
    # the command starts from default dispositions and no blocked signal (seccomp_exec.c)
    stage = [*(a for fd in started for a in ("--started-fd", str(fd))),
             *(a for c in _final(out.checks) for a in ("--expect", c.arg())), *out.stage,
             *(arg for fd in out.keep for arg in ("--keep-fd", str(fd))),
             "--close-fds", "--reset-signals"]
    return Invocation(BACKEND, (firejail, *args, "--", f"/proc/self/fd/{helper_fd}", *stage,
                                "--", *argv),
                      inputs=inputs, pass_fds=tuple(passed), user=out.user,
                      lost=tuple(out.lost), terminal_job=shared)


@dataclass
class _Firejail:
    """What :func:`render_firejail` collects while it walks the plan's steps."""

    plan: p.Plan
    env: Mapping[str, str]
    userns: bool
    identities: Mapping[str, Identity]
    #: the command stays the foreground job of the caller's terminal
    shared: bool
    env_fd: int
    seccomp_fd: int | None
    landlock_fd: int | None
    report_fds: tuple[int, int] | None
    # --noprofile: no default profile may add or relax rules behind the plan's back.
    # --deterministic-exit-code: the command's status, not firejail's.
    args: list[str] = field(
        default_factory=lambda: ["--quiet", "--noprofile", "--deterministic-exit-code"])
    #: the exec stage's options, in the order the plan's steps ask for them
    stage: list[str] = field(default_factory=list)
    lost: list[Lost] = field(default_factory=list)
    keep: tuple[int, ...] = ()
    user: tuple[int, int] | None = None
    env_bytes: bytes = b""
    checks: list[Expect] = field(default_factory=list)

    def lose(self, step: p.Step, rule: str, why: str) -> None:
        self.lost.append(Lost(rule, step.loc, why))


def _firejail_step(out: _Firejail, step: p.Step) -> None:
    """One plan step as firejail options, stage options, or a lost rule."""
    match step:
        case p.Clone():
            _firejail_clone(out, step)
        case p.MapIds():
            _firejail_ids(out, step)
        case p.Cgroup():
            out.lose(step, step.describe(), "firejail cannot put the sandbox in a cgroup")
        case p.NewRoot():
            out.lose(step, step.describe(), "firejail keeps the host's root and hides "
                     "paths in it; it cannot start from an empty tree or a rootfs")
        case p.MountStep():
            _firejail_mount(out, step)
        case p.PivotRoot() | p.ReadOnlyRoot():
            out.lose(step, step.describe(), "firejail does not pivot into a new root")
        case p.Hostname():
            out.args.append(f"--hostname={step.name}")
        case p.Rlimit():
            # In the stage: firejail has no option for core, stack and memlock, and
            # lowering both limits needs no capability.
            out.stage += ["--rlimit", f"{step.resource}={step.value}"]
        case p.Chdir():
            out.stage += ["--chdir", step.path]
        case p.NewSession():
            if not out.shared:
                out.stage.append("--setsid")
        case p.DieWithParent():
            # execve of a setuid program clears PR_SET_PDEATHSIG (prctl(2)), and
            # firejail has no option to follow the launcher.
            out.lose(step, step.describe(), "firejail is setuid: the kernel clears the "
                     "parent-death signal when it starts, and it has no option for it")
        case p.CloseFds():
            out.keep = step.keep
        case p.Environment():
            out.env_bytes = b"".join(e + b"\0" for e in build_environment(step, out.env))
            out.stage += ["--env-fd", str(out.env_fd)]
        case p.DropCaps():
            if step.keep:
                out.lose(step, step.describe(), "firejail cannot give capabilities to a "
                         "command that is not root")
            out.args.append("--caps.drop=all")
        case p.NoNewPrivs():
            out.args.append("--nonewprivs")
            out.stage.append("--no-new-privs")
        case p.Landlock():
            _firejail_landlock(out, step)
        case p.LoadSeccomp():
            _firejail_seccomp(out)
        case p.WallTime() | p.Loopback() | p.Exec():
            # Nothing to ask firejail for. WallTime: the isorun parent kills the sandbox
            # (sandbox/backends.py). Loopback: --net=none brings lo up in the new network
            # namespace. Exec: the command follows the stage's "--".
            pass
        case _:
            assert_never(step)


def _firejail_clone(out: _Firejail, step: p.Clone) -> None:
    # firejail always makes new mount, pid and uts namespaces.
    for name in step.namespaces:
        if name == "user" and not out.userns:
            if not identity_without_userns(out.plan):
                out.lose(step, "user namespace", NO_USERNS)
        elif name == "user":
            # a user namespace mapping only the caller's own ids
            out.args.append("--noroot")
        elif name == "net":
            out.args.append("--net=none")
        elif name == "ipc":
            out.args.append("--ipc-namespace")
        elif name in ("cgroup", "time"):
            out.lose(step, f"{name} namespace",
                     f"firejail has no option for a {name} namespace")


def _firejail_ids(out: _Firejail, step: p.MapIds) -> None:
    if (step.uid, step.gid) != (step.host_uid, step.host_gid):
        out.lose(step, step.describe(), "firejail --noroot maps only the caller's "
                 "own uid and gid to themselves")
    if step.host_uid == 0:
        out.lose(step, step.describe(), "firejail refuses --noroot (the user "
                 "namespace) for a sandbox started as root")
    out.user = (step.host_uid, step.host_gid)


def _firejail_seccomp(out: _Firejail) -> None:
    if out.seccomp_fd is None:
        raise InternalError("firejail: the plan loads seccomp but no "
                            "descriptor holds the program")
    out.stage += ["--seccomp-fd", str(out.seccomp_fd)]
    if out.report_fds is not None:
        out.stage += ["--report-fd", str(out.report_fds[0]),
                      "--report-bpf-fd", str(out.report_fds[1])]


def _firejail_mount(out: _Firejail, step: p.MountStep) -> None:
    out.args += _mount(step, out.lose)
    found = out.identities.get(step.src)
    if found is not None and step.type in ("ro-bind", "rw-bind") and step.src == step.dst:
        # firejail remounts the real path; that is where the check looks
        out.checks.append(Expect(found[0], found[1], found[2],
                                 readonly=step.type == "ro-bind", noexec=step.noexec))


def _firejail_landlock(out: _Firejail, step: p.Landlock) -> None:
    if out.landlock_fd is not None:
        # Applied by the stage as the native shim applies it. firejail keeps
        # the host's tree as the root, so the rules' paths are host paths:
        # the stage follows no link on the way to them, as the landlock
        # backend does (shim/child/landlock.c, open_host_path).
        out.stage += ["--landlock-fd", str(out.landlock_fd), "--landlock-host-paths"]
    else:
        from isorun.compile.landlock import wrapper_losses

        for rule, why in wrapper_losses(out.plan, step):
            out.lose(step, rule, why)


def _final(checks: list[Expect]) -> list[Expect]:
    """The checks whose path no later rule applies to again: a later rw rule on the same
    path (or above it) may leave it writable, as the profile asked."""
    out = []
    for i, check in enumerate(checks):
        later = checks[i + 1:]
        if any(c.path == check.path or check.path.startswith(c.path.rstrip("/") + "/")
               for c in later if c.readonly != check.readonly):
            continue
        out.append(check)
    return out


def _mount(step: p.MountStep, lose: Callable[[p.Step, str, str], None]) -> list[str]:
    """A mount over the host tree. Only what firejail does exactly is accepted."""
    out: list[str] = []
    if step.type in ("ro-bind", "rw-bind") and step.src != step.dst:
        lose(step, step.describe(), "firejail binds one path onto another (--bind) only "
             "for sandboxes started as root")
        return out
    match step.type:
        case "ro-bind":
            out.append(f"--read-only={step.dst}")
        case "rw-bind":
            # the host tree is writable already; this undoes a read-only parent
            out.append(f"--read-write={step.dst}")
        case "tmpfs" if step.dst == "/tmp" and step.size is None and step.mode in (
                None, 0o1777):
            out.append("--private-tmp")
        case "tmpfs":
            lose(step, step.describe(), "firejail's tmpfs takes no size or mode, and only "
                 "/tmp (--private-tmp) is allowed for a sandbox not started as root")
        case "mask":
            # decided by firejail at run time, like the native shim: a directory becomes
            # an empty one, anything else unreadable
            out.append(f"--blacklist={step.dst}")
        case "proc" if step.dst == "/proc":
            pass  # firejail mounts a new procfs for its pid namespace on /proc
        case "dev":
            lose(step, step.describe(), "firejail's --private-dev keeps dri, snd, video, "
                 "hidraw and usb devices the native /dev does not have")
        case _:
            lose(step, step.describe(), f"firejail has no {step.type} mount at "
                 f"{step.dst} for a sandbox not started as root")
    if step.noexec and out:
        out.append(f"--noexec={step.dst}")
    return out
