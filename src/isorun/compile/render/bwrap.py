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
* bwrap sets no rlimits: the exec stage sets them before bwrap runs, so bwrap and the
  command inherit them (rlimits survive execve, setrlimit(2)).
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import assert_never

from isorun.compile import plan as p
from isorun.compile.environment import build_environment
from isorun.compile.render.invocation import (
    HELPER,
    NO_USERNS,
    Expect,
    Identity,
    Invocation,
    identity_without_userns,
    terminal_job_allowed,
)
from isorun.errors import InternalError, Lost, Unsupported

BACKEND = "bwrap"

_UNSHARE = {"user": "--unshare-user", "pid": "--unshare-pid", "net": "--unshare-net",
            "ipc": "--unshare-ipc", "uts": "--unshare-uts", "cgroup": "--unshare-cgroup"}

#: paths below a new procfs bound read-only over themselves, as the native shim does
#: (mount.c, do_proc): kernel-wide knobs a process with CAP_SYS_ADMIN in the sandbox's
#: user namespace could otherwise write. /proc/sys must exist; the others may not.
PROC_READ_ONLY = (("sys", True), ("sysrq-trigger", False), ("irq", False), ("bus", False))
#: mount step types that put a mount on their destination
MOUNTS = ("ro-bind", "rw-bind", "dev-bind", "tmpfs", "proc", "dev", "mqueue")
BINDS = ("ro-bind", "rw-bind", "dev-bind")


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
                 report_fds: tuple[int, int] | None = None) -> Invocation:
    """Render ``plan`` running ``argv`` as a bwrap command line.

    ``report_fds`` (the CLI's refusal report): the socket and the reporting filter the
    inner stage hands the listener over with (--report-fd, shim/seccomp_exec.c); unused
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
    args: list[str] = []
    rlimits: list[str] = []
    lost: list[Lost] = []
    keep: tuple[int, ...] = ()
    user: tuple[int, int] | None = None
    files = iter(file_fds)
    inherited: list[int] = []
    inner: list[str] = []
    #: read-only remounts that must follow every mount (mount points are made beneath)
    late: list[str] = []

    def lose(step: p.Step, rule: str, why: str) -> None:
        lost.append(Lost(rule, step.loc, why))

    if not plan.find(p.NewRoot):
        # filesystem.root = "host": bwrap always starts from an empty tmpfs, so the host
        # tree goes in whole (recursive, devices usable) before any other mount.
        args += ["--dev-bind", "/", "/"]
    for step in plan.steps:
        if late and not isinstance(step, p.MountStep | p.ReadOnlyRoot):
            args += late
            late.clear()
        match step:
            case p.Clone():
                for name in step.namespaces:
                    if name == "user" and not userns:
                        if not identity_without_userns(plan):
                            lose(step, "user namespace", NO_USERNS)
                    elif name in _UNSHARE:
                        args.append(_UNSHARE[name])
                    elif name == "time":
                        lose(step, "time namespace", "bwrap has no option for a time "
                             "namespace")
                    # "mount": bwrap always makes a mount namespace; nothing to ask for.
            case p.MapIds():
                # bwrap writes a one-line map "uid <its real uid> 1" (user_namespaces(7)),
                # so the host side is whoever runs bwrap: the runner spawns it as host_uid.
                if userns:
                    args += ["--uid", str(step.uid), "--gid", str(step.gid)]
                user = (step.host_uid, step.host_gid)
            case p.Cgroup():
                lose(step, step.describe(), "bwrap cannot put the sandbox in a cgroup")
            case p.WallTime():
                pass  # the isorun parent kills the sandbox (sandbox/backends.py)
            case p.NewRoot():
                if step.kind == "rootfs":
                    # First operation, so later mounts land inside it; recursive and
                    # writable like the native shim's MS_BIND|MS_REC of the rootfs.
                    args += ["--bind", step.path, "/"]
                elif step.size is not None and not plan.find(p.ReadOnlyRoot):
                    lose(step, step.describe(), "bwrap's root tmpfs takes no size: only a "
                         "read-only root (filesystem.root_read_only) bounds it")
                # tmpfs: bwrap's root is always a fresh tmpfs (unsized, so read-only)
            case p.MountStep():
                args += _mount(step, files, lose)
                if step.type == "dev":
                    # bwrap's /dev tmpfs takes no size: read-only instead (its nodes are
                    # mounts of their own, /dev/shm and /dev/pts too, and stay usable).
                    late += ["--remount-ro", step.dst]
            case p.ReadOnlyRoot():
                late += ["--remount-ro", "/"]
            case p.PivotRoot():
                pass  # bwrap always pivots into the new root and detaches the old one
            case p.Hostname():
                args += ["--hostname", step.name]
            case p.Loopback():
                pass  # --unshare-net brings lo up in the new network namespace
            case p.Rlimit():
                rlimits += ["--rlimit", f"{step.resource}={step.value}"]
            case p.Chdir():
                args += ["--chdir", step.path]
            case p.NewSession():
                # setsid in the sandbox: the command cannot TIOCSTI into the caller's
                # terminal (CVE-2017-5226); the seccomp filter denies TIOCSTI as well.
                # Shared: the command stays the terminal's foreground job (see above).
                if not shared:
                    args.append("--new-session")
            case p.DieWithParent():
                args.append("--die-with-parent")
            case p.CloseFds():
                keep = step.keep
            case p.Environment():
                args.append("--clearenv")
                for entry in build_environment(step, env):
                    name, _, value = os.fsdecode(entry).partition("=")
                    args += ["--setenv", name, value]
            case p.DropCaps():
                # Explicit, whatever the sandbox uid: without --cap-drop bwrap leaves the
                # bounding set full for a non-zero uid and every capability for uid 0.
                args += ["--cap-drop", "ALL"]
                for cap in step.keep:
                    args += ["--cap-add", cap]
            case p.NoNewPrivs():
                pass  # bwrap always sets PR_SET_NO_NEW_PRIVS before running the command
            case p.Landlock():
                if inside and landlock_fd is not None:
                    # The same ruleset the native shim applies, after bwrap's
                    # no_new_privs and before the filter; its paths are destinations,
                    # which is what the sandbox's view shows (the rules were made so).
                    inner += ["--landlock-fd", str(landlock_fd)]
                    inherited.append(landlock_fd)
                else:
                    from isorun.compile.landlock import wrapper_losses

                    for rule, why in wrapper_losses(plan, step):
                        lose(step, rule, why)
            case p.LoadSeccomp():
                if seccomp_fd is None:
                    raise InternalError("bwrap: the plan loads seccomp but no descriptor "
                                        "holds the program")
                # The same BPF program the native shim loads, read raw from the fd; by
                # the inner stage when there is one, so its checks run unfiltered and the
                # filter is the last thing before the command. Without a stage inside (no
                # /proc), bwrap loads it itself, right before the command.
                if _proc_at_proc(plan) and "pid" in _namespaces(plan) and not domain:
                    # bwrap's pid 1 (see above) is the filter's way round: only the
                    # stage's Landlock domain keeps the command out of its memory.
                    lose(step, "seccomp", "bwrap's pid 1 runs unfiltered as the command's "
                         "uid; without Landlock (Linux 5.13+, landlock in lsm=) the command "
                         "can write code into /proc/1/mem and make every refused syscall "
                         "there; use the native backend")
                if not inside:
                    args += ["--seccomp", str(seccomp_fd)]
                else:
                    inner += ["--no-new-privs", "--seccomp-fd", str(seccomp_fd)]
                    if report_fds is not None:
                        inner += ["--report-fd", str(report_fds[0]),
                                  "--report-bpf-fd", str(report_fds[1])]
                        inherited += list(report_fds)
                inherited.append(seccomp_fd)
            case p.Exec():
                pass
            case _:
                assert_never(step)
    command: list[str] = list(argv)
    if stage_fd is not None:
        if not _proc_at_proc(plan):
            for step in plan.find(p.MountStep):
                if step.type in BINDS:
                    lose(step, f"check of {step.dst} after bwrap bound it", "the isorun "
                         "stage that checks binds runs as /proc/self/fd/N and the plan "
                         "mounts no /proc")
        else:
            if identities is not None:
                unchecked = [s.src for s in plan.find(p.MountStep)
                             if s.type in BINDS and s.src not in identities]
                if unchecked:
                    # a bind with no check inside is one bwrap resolves on its own
                    raise InternalError(f"bwrap: bind sources not walked: {unchecked}")
            checks = [e.arg() for e in expects(plan, identities or {})]
            # --close-fds: bwrap hands the command every descriptor it inherited (this
            # stage's own among them); only the plan's kept ones may reach the command.
            command = [f"/proc/self/fd/{stage_fd}",
                       *(a for c in checks for a in ("--expect", c)), *inner,
                       *(["--ptrace-domain"] if domain else []),
                       *(a for fd in keep for a in ("--keep-fd", str(fd))), "--close-fds",
                       "--reset-signals", "--", *argv]
            inherited.append(stage_fd)
    if lost and not allow_weaker:
        raise Unsupported(BACKEND, lost)
    inherited += list(file_fds)
    head: list[str] = []
    if rlimits:
        head = [helper, *rlimits, "--"]
    return Invocation(BACKEND, (*head, bwrap, *args, "--", *command),
                      pass_fds=tuple(sorted({*inherited, *keep})), user=user,
                      lost=tuple(lost), command_at=len(head) + 1 + len(args) + 1,
                      terminal_job=shared)


def elide_redundant(plan: p.Plan, identities: Mapping[str, Identity]) -> p.Plan:
    """``plan`` less the binds that change nothing: a path bound onto itself, inside a
    bind of the same kind (ro in ro, rw in rw) of one of its ancestors onto itself, with
    no other mount between, both walked by the runner and found without a link. The outer
    bind (recursive) already shows that very path, with the same flags; the inner one
    would only make bwrap resolve, create and mount a destination inside a tree someone
    else may write (issue #12), for nothing. The common case: the test profile's
    ${PYTHON_PREFIX} when the virtual environment is in the project.
    """
    def plain(step: p.MountStep) -> bool:
        found = identities.get(step.src)
        return step.src == step.dst and found is not None and found[0] == step.src

    mounts: list[p.MountStep] = []
    keep: list[p.Step] = []
    for step in plan.steps:
        if isinstance(step, p.MountStep) and step.type in MOUNTS:
            cover = next((m for m in reversed(mounts)
                          if m.dst != step.dst and _beneath(step.dst, m.dst)), None)
            if (cover is not None and step.type in ("ro-bind", "rw-bind")
                    and cover.type == step.type and cover.noexec == step.noexec
                    and plain(cover) and plain(step)):
                continue
            mounts.append(step)
        keep.append(step)
    if len(keep) == len(plan.steps):
        return plan
    return replace(plan, steps=tuple(keep))


def _namespaces(plan: p.Plan) -> set[str]:
    return {n for c in plan.find(p.Clone) for n in c.namespaces}


def _proc_at_proc(plan: p.Plan) -> bool:
    return any(s.type == "proc" and s.dst == "/proc" for s in plan.find(p.MountStep))


def _beneath(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or lies below it (both normalised, absolute)."""
    return top == "/" or path == top or path.startswith(top + "/")


def expects(plan: p.Plan, identities: Mapping[str, Identity]) -> list[Expect]:
    """The inner stage's checks: each bind whose source the runner walked must show, at
    its destination, the file walked. A bind a later mount covers (at it or above it) is
    left out: what is seen there is the later mount, checked on its own."""
    steps = [s for s in plan.steps if isinstance(s, p.MountStep) and s.type in MOUNTS]
    out: list[Expect] = []
    for root in plan.find(p.NewRoot):
        found = identities.get(root.path) if root.kind == "rootfs" else None
        if found is not None and not any(s.dst == "/" for s in steps):
            out.append(Expect("/", found[1], found[2]))
    for i, step in enumerate(steps):
        found = identities.get(step.src) if step.type in BINDS else None
        if found is None or any(_beneath(step.dst, later.dst) for later in steps[i + 1:]):
            continue
        out.append(Expect(step.dst, found[1], found[2], readonly=step.type == "ro-bind"))
    return out


def _mount(step: p.MountStep, files: Iterator[int],
           lose: Callable[[p.Step, str, str], None]) -> list[str]:
    """One mount step. Binds are recursive; bwrap adds nosuid to every bind and nodev to
    all but --dev-bind, matching the native shim's flags."""
    try_ = "-try" if step.optional else ""
    if step.noexec and step.type != "proc":
        lose(step, f"noexec on {step.dst}", "bwrap has no noexec mount option")
    match step.type:
        case "ro-bind":
            return [f"--ro-bind{try_}", step.src, step.dst]
        case "rw-bind":
            return [f"--bind{try_}", step.src, step.dst]
        case "dev-bind":
            return [f"--dev-bind{try_}", step.src, step.dst]
        case "tmpfs":
            out = ["--perms", f"{0o755 if step.mode is None else step.mode:04o}"]
            # --size only: bwrap has no inode limit, the size still bounds the data.
            if step.size:
                out += ["--size", str(step.size)]
            return [*out, "--tmpfs", step.dst]
        case "overlay":
            lose(step, step.describe(), "bwrap's --tmp-overlay keeps the changes on a tmpfs "
                 "it gives no size")
            return []
        case "mask":
            lose(step, step.describe(), "bwrap cannot hide a path whose type it learns only "
                 "at run time (--tmpfs fails on a file, a bind of /dev/null on a directory)")
            return []
        case "proc":
            out = ["--proc", step.dst]
            for name, required in PROC_READ_ONLY:
                # The source is the host's /proc (bwrap resolves bind sources in the old
                # root); these files answer for the reader's namespaces, not the mounter's.
                out += ["--ro-bind" if required else "--ro-bind-try", f"/proc/{name}",
                        os.path.join(step.dst, name)]
            return out
        case "dev":
            return ["--dev", step.dst]
        case "symlink":
            return ["--symlink", step.src, step.dst]
        case "file":
            fd = next(files, None)
            if fd is None:
                raise InternalError("bwrap: fewer file descriptors than file mounts")
            mode = 0o644 if step.mode is None else step.mode
            return ["--perms", f"{mode:04o}", "--file", str(fd), step.dst]
        case "dir":
            mode = 0o755 if step.mode is None else step.mode
            return ["--perms", f"{mode:04o}", "--dir", step.dst]
        case "mqueue":
            return ["--mqueue", step.dst]
    raise InternalError(f"bwrap: mount type {step.type!r} has no mapping")
