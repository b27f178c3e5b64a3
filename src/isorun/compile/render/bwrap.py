"""Plan -> bubblewrap invocation (pure; golden-tested in tests/golden/backends).

bubblewrap (bwrap(1), 0.8) builds a new root on a tmpfs from ordered mount operations,
which maps one to one onto the plan's mount steps. What it cannot express becomes a
:class:`~isorun.errors.Lost`; :func:`render_bwrap` refuses the plan unless the caller
allowed a weaker run. Three bwrap behaviours would weaken isorun if left alone, and are
covered here or by the runner:

* bwrap passes every inherited descriptor to the command: the runner spawns it with only
  ``pass_fds`` open.
* ``--proc`` leaves ``/proc/sys`` writable when the sandbox user may write it (uid 0
  mapped): the same paths the native shim masks are bound read-only over the new procfs.
* bwrap sets no rlimits: the exec stage inside sets them before the command, as the
  native shim does inside its namespaces. Only a plan without /proc, where no stage runs
  inside, has them set before bwrap runs (rlimits survive execve). There RLIMIT_NPROC
  is checked when bwrap makes its user namespace, against every process the caller's uid
  has on the host, so it can refuse to start (EAGAIN) a user who runs that many.
* bwrap resolves bind sources with realpath(3) and creates and mounts destinations by
  path, following links, after isorun walked them (issue #12). With ``stage_fd`` the exec
  stage also runs inside, as the command bwrap starts: it checks every bind at its
  destination against the source the runner walked (``--expect``), then loads the
  seccomp filter (last, as the native shim does) and execs the command. A destination
  below a directory someone else can change is refused by the runner before launch
  (sandbox/backends.py): bwrap would create it through a link swapped in there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from isorun.compile import plan as p
from isorun.compile.environment import build_environment
from isorun.compile.render.bwrap_mounts import BINDS, elide_redundant, expects, mount_args
from isorun.compile.render.invocation import (
    HELPER,
    NO_USERNS,
    Identity,
    Invocation,
    identity_without_userns,
    terminal_job_allowed,
)
from isorun.errors import InternalError, Lost, Unsupported

BACKEND = "bwrap"

_UNSHARE = {"user": "--unshare-user", "pid": "--unshare-pid", "net": "--unshare-net",
            "ipc": "--unshare-ipc", "uts": "--unshare-uts", "cgroup": "--unshare-cgroup"}



def file_mounts(plan: p.Plan) -> tuple[bytes, ...]:
    """Contents of the plan's ``file`` mounts, in order: the runner opens one descriptor for
    each and passes their numbers to :func:`render_bwrap` as ``file_fds``."""
    return tuple(s.content.encode() for s in plan.find(p.MountStep) if s.type == "file")


def render_bwrap(plan: p.Plan, argv: Sequence[str], env: Mapping[str, str], *,
                 seccomp_fd: int | None, file_fds: Sequence[int] = (),
                 allow_weaker: bool = False, bwrap: str = "bwrap",
                 helper: str = HELPER, userns: bool = True, stage_fd: int | None = None,
                 identities: Mapping[str, Identity] | None = None,
                 terminal: bool = False, landlock: bool = False,
                 landlock_fd: int | None = None,
                 report_fds: tuple[int, int] | None = None,
                 started_fd: int | None = None) -> Invocation:
    """Render ``plan`` running ``argv`` as a bwrap command line.

    ``started_fd``: the inner stage writes a byte to it first (--started-fd), so that a
    failure of bwrap's own is told from the command's; unused (not in ``pass_fds``) where
    no stage runs inside.

    ``report_fds`` (the CLI's refusal report): the socket and the reporting filter the
    inner stage hands the listener over with (--report-fd, shim/stage/seccomp_exec.c); unused
    where bwrap loads the filter itself (no stage inside), which the invocation's argv
    then shows by their absence.

    ``env`` is the caller's environment (``environment.keep`` takes values from it).
    ``seccomp_fd`` holds the compiled filter (required when the plan loads one);
    ``file_fds`` hold :func:`file_mounts`. Raises :class:`Unsupported` naming every rule
    bwrap cannot enforce, unless ``allow_weaker``; the invocation then lists them in
    ``lost``. ``userns=False``: the host forbids user namespaces (setuid bwrap only).

    ``stage_fd`` (the runner's): the exec stage, opened for reading, run inside as
    ``/proc/self/fd/N`` to check the binds and load the filter. ``identities`` maps each
    bind source to what the runner's walk found there (sandbox/safepath.py); each bind
    with one gets an ``--expect`` at its destination.

    ``terminal`` (the CLI, the foreground job of the terminal that is the command's
    stdin): leave out --new-session when the plan allows it (terminal_job_allowed), the
    stage inside loads the filter and ``landlock`` (the host has Landlock) lets it keep
    the command away from bwrap's pid 1; the invocation then says ``terminal_job``.
    ``landlock`` alone: the stage keeps the command away from pid 1 in every run.

    ``landlock_fd`` holds the plan's Landlock ruleset (sandbox/flat.landlock_section),
    which that inner stage applies.
    """
    plan = elide_redundant(plan, identities or {})
    inside, domain, shared = _stage_inside(plan, stage_fd, terminal=terminal,
                                           landlock=landlock)
    out = _Bwrap(plan, inside, domain, shared, env, userns, iter(file_fds), seccomp_fd,
                 landlock_fd, report_fds)
    if not plan.find(p.NewRoot):
        # filesystem.root = "host": bwrap always starts from an empty tmpfs, so the host
        # tree goes in whole (recursive, devices usable) before any other mount.
        out.args += ["--dev-bind", "/", "/"]
    for step in plan.steps:
        if out.late and not isinstance(step, p.MountStep | p.ReadOnlyRoot):
            out.args += out.late
            out.late.clear()
        _bwrap_step(out, step)
    command = list(argv) if stage_fd is None else _stage_command(out, argv, stage_fd,
                                                                 identities, started_fd)
    if out.lost and not allow_weaker:
        raise Unsupported(BACKEND, out.lost)
    out.inherited += list(file_fds)
    return out.invocation(bwrap, helper, command)


@dataclass
class _Bwrap:
    """What :func:`render_bwrap` collects while it walks the plan's steps."""

    plan: p.Plan
    #: the exec stage runs inside bwrap (and applies what bwrap has no option for)
    inside: bool
    #: the stage enters a Landlock domain that keeps the command away from bwrap's pid 1
    domain: bool
    #: the command stays the foreground job of the caller's terminal
    shared: bool
    env: Mapping[str, str]
    userns: bool
    files: Iterator[int]
    seccomp_fd: int | None
    landlock_fd: int | None
    report_fds: tuple[int, int] | None
    args: list[str] = field(default_factory=list)
    rlimits: list[str] = field(default_factory=list)
    lost: list[Lost] = field(default_factory=list)
    keep: tuple[int, ...] = ()
    user: tuple[int, int] | None = None
    inherited: list[int] = field(default_factory=list)
    #: the inner stage's options
    inner: list[str] = field(default_factory=list)
    #: read-only remounts that must follow every mount (mount points are made beneath)
    late: list[str] = field(default_factory=list)

    def lose(self, step: p.Step, rule: str, why: str) -> None:
        self.lost.append(Lost(rule, step.loc, why))

    def invocation(self, bwrap: str, helper: str, command: Sequence[str]) -> Invocation:
        """bwrap running ``command``, behind the rlimit helper when the plan sets any."""
        head = [helper, *self.rlimits, "--"] if self.rlimits else []
        return Invocation(BACKEND, (*head, bwrap, *self.args, "--", *command),
                          pass_fds=tuple(sorted({*self.inherited, *self.keep})),
                          user=self.user, lost=tuple(self.lost),
                          command_at=len(head) + 1 + len(self.args) + 1,
                          terminal_job=self.shared)


def _stage_inside(plan: p.Plan, stage_fd: int | None, *, terminal: bool,
                  landlock: bool) -> tuple[bool, bool, bool]:
    """(inside, domain, shared): whether the exec stage runs inside bwrap, enters the
    Landlock domain there, and lets the command share the caller's terminal."""
    # The stage runs inside as /proc/self/fd/N, so only where /proc is mounted; only
    # there can it apply what bwrap has no option for.
    inside = stage_fd is not None and _proc_at_proc(plan)
    # bwrap's --new-session is its answer to CVE-2017-5226 (TIOCSTI into the caller's
    # terminal). Leaving it out is safe only because the filter refusing TIOCSTI and
    # TIOCLINUX is loaded by the stage before the command: until then only bwrap and the
    # stage run. But bwrap's pid 1 (with --unshare-pid) then stays in the caller's
    # session too (with --new-session it calls setsid itself), unfiltered, dumpable and
    # the command's uid: the command could write code into its /proc/1/mem and TIOCSTI
    # from there. The stage's --ptrace-domain (Landlock) forbids that, so the terminal is
    # shared only where the host has Landlock. In any session, writing into pid 1 would
    # run what the filter refuses, so the stage enters the domain wherever it can.
    domain = inside and landlock
    shared = terminal and domain and terminal_job_allowed(plan)
    return inside, domain, shared


def _bwrap_step(out: _Bwrap, step: p.Step) -> None:
    """One plan step as bwrap options (or as a lost rule)."""
    match step:
        case p.Clone():
            _bwrap_clone(out, step)
        case p.MapIds():
            _bwrap_ids(out, step)
        case p.Cgroup():
            out.lose(step, step.describe(), "bwrap cannot put the sandbox in a cgroup")
        case p.NewRoot():
            _bwrap_new_root(out, step)
        case p.MountStep():
            out.args += mount_args(step, out.files, out.lose)
            if step.type == "dev":
                # bwrap's /dev tmpfs takes no size: read-only instead (its nodes are
                # mounts of their own, /dev/shm and /dev/pts too, and stay usable).
                out.late += ["--remount-ro", step.dst]
        case p.ReadOnlyRoot():
            out.late += ["--remount-ro", "/"]
        case p.Hostname():
            out.args += ["--hostname", step.name]
        case p.Rlimit():
            (out.inner if out.inside else out.rlimits).extend(
                ["--rlimit", f"{step.resource}={step.value}"])
        case p.Chdir():
            out.args += ["--chdir", step.path]
        case p.NewSession():
            # setsid in the sandbox: the command cannot TIOCSTI into the caller's
            # terminal (CVE-2017-5226); the seccomp filter denies TIOCSTI as well.
            # Shared: the command stays the terminal's foreground job (_stage_inside).
            if not out.shared:
                out.args.append("--new-session")
        case p.DieWithParent():
            out.args.append("--die-with-parent")
        case p.CloseFds():
            out.keep = step.keep
        case p.Environment():
            _bwrap_environment(out, step)
        case p.DropCaps():
            # Explicit, whatever the sandbox uid: without --cap-drop bwrap leaves the
            # bounding set full for a non-zero uid and every capability for uid 0.
            out.args += ["--cap-drop", "ALL"]
            for cap in step.keep:
                out.args += ["--cap-add", cap]
        case p.Landlock():
            _bwrap_landlock(out, step)
        case p.LoadSeccomp():
            _bwrap_seccomp(out, step)
        case p.WallTime() | p.PivotRoot() | p.Loopback() | p.NoNewPrivs() | p.Exec():
            # Nothing to ask bwrap for. WallTime: the isorun parent kills the sandbox
            # (sandbox/backends.py). PivotRoot: bwrap always pivots into the new root and
            # detaches the old one. Loopback: --unshare-net brings lo up in the new
            # network namespace. NoNewPrivs: bwrap always sets PR_SET_NO_NEW_PRIVS before
            # running the command. Exec: the command follows "--".
            pass
        case _:
            assert_never(step)


def _bwrap_clone(out: _Bwrap, step: p.Clone) -> None:
    for name in step.namespaces:
        if name == "user" and not out.userns:
            if not identity_without_userns(out.plan):
                out.lose(step, "user namespace", NO_USERNS)
        elif name in _UNSHARE:
            out.args.append(_UNSHARE[name])
        elif name == "time":
            out.lose(step, "time namespace", "bwrap has no option for a time "
                     "namespace")
        # "mount": bwrap always makes a mount namespace; nothing to ask for.


def _bwrap_ids(out: _Bwrap, step: p.MapIds) -> None:
    # bwrap writes a one-line map "uid <its real uid> 1" (user_namespaces(7)),
    # so the host side is whoever runs bwrap: the runner spawns it as host_uid.
    if out.userns:
        out.args += ["--uid", str(step.uid), "--gid", str(step.gid)]
    out.user = (step.host_uid, step.host_gid)


def _bwrap_environment(out: _Bwrap, step: p.Environment) -> None:
    out.args.append("--clearenv")
    for entry in build_environment(step, out.env):
        name, _, value = os.fsdecode(entry).partition("=")
        out.args += ["--setenv", name, value]


def _bwrap_new_root(out: _Bwrap, step: p.NewRoot) -> None:
    if step.kind == "rootfs":
        # First operation, so later mounts land inside it; recursive and
        # writable like the native shim's MS_BIND|MS_REC of the rootfs.
        out.args += ["--bind", step.path, "/"]
    elif step.size is not None and not out.plan.find(p.ReadOnlyRoot):
        out.lose(step, step.describe(), "bwrap's root tmpfs takes no size: only a "
                 "read-only root (filesystem.root_read_only) bounds it")
    # tmpfs: bwrap's root is always a fresh tmpfs (unsized, so read-only)


def _bwrap_landlock(out: _Bwrap, step: p.Landlock) -> None:
    if out.inside and out.landlock_fd is not None:
        # The same ruleset the native shim applies, after bwrap's
        # no_new_privs and before the filter; its paths are destinations,
        # which is what the sandbox's view shows (the rules were made so).
        out.inner += ["--landlock-fd", str(out.landlock_fd)]
        out.inherited.append(out.landlock_fd)
    else:
        from isorun.compile.landlock import wrapper_losses

        for rule, why in wrapper_losses(out.plan, step):
            out.lose(step, rule, why)


def _bwrap_seccomp(out: _Bwrap, step: p.LoadSeccomp) -> None:
    if out.seccomp_fd is None:
        raise InternalError("bwrap: the plan loads seccomp but no descriptor "
                            "holds the program")
    # The same BPF program the native shim loads, read raw from the fd; by
    # the inner stage when there is one, so its checks run unfiltered and the
    # filter is the last thing before the command. Without a stage inside (no
    # /proc), bwrap loads it itself, right before the command.
    if _proc_at_proc(out.plan) and "pid" in _namespaces(out.plan) and not out.domain:
        # bwrap's pid 1 (_stage_inside) is the filter's way round: only the
        # stage's Landlock domain keeps the command out of its memory.
        out.lose(step, "seccomp", "bwrap's pid 1 runs unfiltered as the command's "
                 "uid; without Landlock (Linux 5.13+, landlock in lsm=) the command "
                 "can write code into /proc/1/mem and make every refused syscall "
                 "there; use the native backend")
    if not out.inside:
        out.args += ["--seccomp", str(out.seccomp_fd)]
    else:
        out.inner += ["--no-new-privs", "--seccomp-fd", str(out.seccomp_fd)]
        if out.report_fds is not None:
            out.inner += ["--report-fd", str(out.report_fds[0]),
                          "--report-bpf-fd", str(out.report_fds[1])]
            out.inherited += list(out.report_fds)
    out.inherited.append(out.seccomp_fd)


def _stage_command(out: _Bwrap, argv: Sequence[str], stage_fd: int,
                   identities: Mapping[str, Identity] | None,
                   started_fd: int | None) -> list[str]:
    """The command bwrap runs when the exec stage goes inside: the stage, its checks and
    options, then ``argv``. Without /proc the stage cannot run: every bind check is lost
    and bwrap runs ``argv`` itself."""
    plan = out.plan
    if not _proc_at_proc(plan):
        for step in plan.find(p.MountStep):
            if step.type in BINDS:
                out.lose(step, f"check of {step.dst} after bwrap bound it", "the isorun "
                         "stage that checks binds runs as /proc/self/fd/N and the plan "
                         "mounts no /proc")
        return list(argv)
    if identities is not None:
        unchecked = [s.src for s in plan.find(p.MountStep)
                     if s.type in BINDS and s.src not in identities]
        if unchecked:
            # a bind with no check inside is one bwrap resolves on its own
            raise InternalError(f"bwrap: bind sources not walked: {unchecked}")
    checks = [e.arg() for e in expects(plan, identities or {})]
    out.inherited.append(stage_fd)
    started = [] if started_fd is None else ["--started-fd", str(started_fd)]
    out.inherited += [] if started_fd is None else [started_fd]
    # --close-fds: bwrap hands the command every descriptor it inherited (this
    # stage's own among them); only the plan's kept ones may reach the command.
    return [f"/proc/self/fd/{stage_fd}", *started,
            *(a for c in checks for a in ("--expect", c)), *out.inner,
            *(["--ptrace-domain"] if out.domain else []),
            *(a for fd in out.keep for a in ("--keep-fd", str(fd))), "--close-fds",
            "--reset-signals", "--", *argv]


def _namespaces(plan: p.Plan) -> set[str]:
    return {n for c in plan.find(p.Clone) for n in c.namespaces}


def _proc_at_proc(plan: p.Plan) -> bool:
    return any(s.type == "proc" and s.dst == "/proc" for s in plan.find(p.MountStep))
