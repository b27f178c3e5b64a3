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
                    report_fds: tuple[int, int] | None = None) -> Invocation:
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
    the reporting filter the stage hands the listener over with (shim/seccomp_exec.c).
    """
    # The stage loads the filter refusing TIOCSTI/TIOCLINUX before it execs the command,
    # and nothing of the sandbox runs before the stage but firejail itself: the command
    # may then stay in the caller's session, the terminal's foreground job.
    shared = terminal and terminal_job_allowed(plan)
    # --noprofile: no default profile may add or relax rules behind the plan's back.
    # --deterministic-exit-code: the command's status, not firejail's.
    args = ["--quiet", "--noprofile", "--deterministic-exit-code"]
    stage: list[str] = []
    lost: list[Lost] = []
    keep: tuple[int, ...] = ()
    user: tuple[int, int] | None = None
    env_bytes = b""
    checks: list[Expect] = []

    def lose(step: p.Step, rule: str, why: str) -> None:
        lost.append(Lost(rule, step.loc, why))

    for step in plan.steps:
        match step:
            case p.Clone():
                # firejail always makes new mount, pid and uts namespaces.
                for name in step.namespaces:
                    if name == "user" and not userns:
                        if not identity_without_userns(plan):
                            lose(step, "user namespace", NO_USERNS)
                    elif name == "user":
                        # a user namespace mapping only the caller's own ids
                        args.append("--noroot")
                    elif name == "net":
                        args.append("--net=none")
                    elif name == "ipc":
                        args.append("--ipc-namespace")
                    elif name in ("cgroup", "time"):
                        lose(step, f"{name} namespace",
                             f"firejail has no option for a {name} namespace")
            case p.MapIds():
                if (step.uid, step.gid) != (step.host_uid, step.host_gid):
                    lose(step, step.describe(), "firejail --noroot maps only the caller's "
                         "own uid and gid to themselves")
                if step.host_uid == 0:
                    lose(step, step.describe(), "firejail refuses --noroot (the user "
                         "namespace) for a sandbox started as root")
                user = (step.host_uid, step.host_gid)
            case p.Cgroup():
                lose(step, step.describe(), "firejail cannot put the sandbox in a cgroup")
            case p.WallTime():
                pass  # the isorun parent kills the sandbox (sandbox/backends.py)
            case p.NewRoot():
                lose(step, step.describe(), "firejail keeps the host's root and hides "
                     "paths in it; it cannot start from an empty tree or a rootfs")
            case p.MountStep():
                args += _mount(step, lose)
                found = (identities or {}).get(step.src)
                if found is not None and step.type in ("ro-bind", "rw-bind") \
                        and step.src == step.dst:
                    # firejail remounts the real path; that is where the check looks
                    checks.append(Expect(found[0], found[1], found[2],
                                         readonly=step.type == "ro-bind",
                                         noexec=step.noexec))
            case p.PivotRoot() | p.ReadOnlyRoot():
                lose(step, step.describe(), "firejail does not pivot into a new root")
            case p.Hostname():
                args.append(f"--hostname={step.name}")
            case p.Loopback():
                pass  # --net=none brings lo up in the new network namespace
            case p.Rlimit():
                # In the stage: firejail has no option for core, stack and memlock, and
                # lowering both limits needs no capability.
                stage += ["--rlimit", f"{step.resource}={step.value}"]
            case p.Chdir():
                stage += ["--chdir", step.path]
            case p.NewSession():
                if not shared:
                    stage.append("--setsid")
            case p.DieWithParent():
                # execve of a setuid program clears PR_SET_PDEATHSIG (prctl(2)), and
                # firejail has no option to follow the launcher.
                lose(step, step.describe(), "firejail is setuid: the kernel clears the "
                     "parent-death signal when it starts, and it has no option for it")
            case p.CloseFds():
                keep = step.keep
            case p.Environment():
                env_bytes = b"".join(e + b"\0" for e in build_environment(step, env))
                stage += ["--env-fd", str(env_fd)]
            case p.DropCaps():
                if step.keep:
                    lose(step, step.describe(), "firejail cannot give capabilities to a "
                         "command that is not root")
                args.append("--caps.drop=all")
            case p.NoNewPrivs():
                args.append("--nonewprivs")
                stage.append("--no-new-privs")
            case p.Landlock():
                if landlock_fd is not None:
                    # Applied by the stage as the native shim applies it. firejail keeps
                    # the host's tree as the root, so the rules' paths are host paths:
                    # the stage follows no link on the way to them, as the landlock
                    # backend does (shim/landlock.c, open_host_path).
                    stage += ["--landlock-fd", str(landlock_fd), "--landlock-host-paths"]
                else:
                    from isorun.compile.landlock import wrapper_losses

                    for rule, why in wrapper_losses(plan, step):
                        lose(step, rule, why)
            case p.LoadSeccomp():
                if seccomp_fd is None:
                    raise InternalError("firejail: the plan loads seccomp but no "
                                        "descriptor holds the program")
                stage += ["--seccomp-fd", str(seccomp_fd)]
                if report_fds is not None:
                    stage += ["--report-fd", str(report_fds[0]),
                              "--report-bpf-fd", str(report_fds[1])]
            case p.Exec():
                pass
            case _:
                assert_never(step)
    if lost and not allow_weaker:
        raise Unsupported(BACKEND, lost)
    # Everything the stage reads, plus what the plan keeps, must survive firejail's own
    # descriptor closing (--keep-fd); the stage then closes all but ``keep``.
    inputs = ((env_fd, env_bytes),) if env_bytes or plan.find(p.Environment) else ()
    passed = sorted({helper_fd, *(fd for fd, _ in inputs), *keep,
                     *(() if seccomp_fd is None else (seccomp_fd,)),
                     *(() if seccomp_fd is None or report_fds is None else report_fds),
                     *(() if landlock_fd is None or not plan.find(p.Landlock)
                       else (landlock_fd,))})
    args += ["--nogroups", "--keep-fd=" + ",".join(str(fd) for fd in passed)]
    stage += [arg for fd in keep for arg in ("--keep-fd", str(fd))]
    # the command starts from default dispositions and no blocked signal (seccomp_exec.c)
    stage += ["--close-fds", "--reset-signals"]
    # the checks first: nothing else of the stage, nor the command, runs before them
    stage = [*(a for c in _final(checks) for a in ("--expect", c.arg())), *stage]
    return Invocation(BACKEND, (firejail, *args, "--", f"/proc/self/fd/{helper_fd}", *stage,
                                "--", *argv),
                      inputs=inputs, pass_fds=tuple(passed), user=user, lost=tuple(lost),
                      terminal_job=shared)


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
