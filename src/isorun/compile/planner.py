"""(Profile, HostFacts, variables) -> Plan.

The planner resolves everything a backend would otherwise have to decide: variables,
ids, mount order, which namespaces follow from which settings. The order of the steps it
emits is the order the shim applies them; each ``append`` below says why it stands where
it does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace

from isorun.compile import exposure
from isorun.compile import plan as p
from isorun.errors import Diagnostic, Loc, ProfileError
from isorun.host.facts import HostFacts
from isorun.profile import schema

#: the unprivileged id a root caller's sandbox runs as on the host (see _identity)
NOBODY = 65534
#: a tmpfs's pages are charged to no process, so the OOM killer never picks the sandbox
#: for them: every tmpfs gets a size. These are the defaults of a mount that names none.
TMPFS_SIZE = 64 << 20
#: /dev holds only mount points and symlinks; its shm is a mount of its own (Docker's
#: default size for /dev/shm)
DEV_SIZE, SHM_SIZE = 64 << 10, 64 << 20

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_plan(profile: schema.Profile, facts: HostFacts,
                 variables: dict[str, str]) -> p.Plan:
    """Turn a merged profile into an ordered, resolved plan. Raises ProfileError."""
    errors: list[Diagnostic] = []
    warnings: list[str] = []

    def at(key: str, fallback: Loc) -> Loc:
        return schema.where(profile, key, fallback)

    def expand(text: str, loc: Loc) -> str:
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables:
                errors.append(Diagnostic(loc, f"unknown variable ${{{name}}}",
                                         f"known variables: {', '.join(sorted(variables))}"))
                return match.group(0)
            return variables[name]
        return _VAR.sub(sub, text)

    ns = profile.namespaces
    net = ns.net and profile.network.mode == "none"
    namespaces = tuple(n for n in schema.NAMESPACES if getattr(ns, n) and (n != "net" or net))
    if profile.network.mode == "none" and not ns.net:
        errors.append(Diagnostic(ns.loc, 'network.mode = "none" needs namespaces.net = true',
                                 'set namespaces.net = true, or network.mode = "host"'))
    if profile.network.mode == "host":
        # Stated, not fixed: sharing the host's network is what this mode is for, and no
        # rule can tell a loopback service the user means from one they forgot (issue 13:
        # Landlock scoping covers abstract unix sockets, tcp_connect the TCP ports,
        # nothing covers the rest of loopback). One warning, one wording (issue 17).
        warnings.append(
            f"network.mode = \"host\" ({at('network.mode', profile.network.loc).short()}): "
            "the sandbox shares the host's network namespace, so it can connect to every "
            "service listening on the host's loopback (127.0.0.1, ::1: databases, caches, "
            "admin and debug ports bound to localhost), bind ports on the host, and list "
            "the host's sockets in /proc/net"
            + ("" if profile.network.tcp_connect is not None else
               "; network.tcp_connect limits the ports it connects to"))
    steps: list[p.Step] = [p.Clone(namespaces, ns.loc)]

    if ns.user:
        steps.append(_identity(profile, facts, errors))
    elif not facts.root:
        errors.append(Diagnostic(ns.loc, "namespaces.user = false needs root: without a user "
                                 "namespace an unprivileged caller cannot create the others",
                                 "keep namespaces.user = true"))
    limits = profile.limits
    if limits.memory is not None or limits.pids is not None:
        steps.append(p.Cgroup(limits.memory, limits.pids,
                              at("limits.memory", at("limits.pids", limits.loc))))
    if limits.wall_time is not None:
        steps.append(p.WallTime(limits.wall_time, at("limits.wall_time", limits.loc)))

    fs = profile.filesystem
    if fs.root != "host":
        if not ns.mount:
            errors.append(Diagnostic(fs.loc, f"filesystem.root = {fs.root!r} needs a mount "
                                     "namespace", 'set namespaces.mount = true or root = "host"'))
        root = expand(fs.root, fs.loc)
        tmpfs_root = root == "tmpfs"
        steps.append(p.NewRoot("tmpfs" if tmpfs_root else "rootfs",
                               "" if tmpfs_root else os.path.normpath(root),
                               fs.root_size if tmpfs_root else None,
                               inodes(fs.root_size) if tmpfs_root else None,
                               at("filesystem.root", fs.loc)))
    exposure.check_cwd(profile, variables, errors)
    mounts = [_mount_step(m, expand) for m in profile.mounts]
    for mount in mounts:
        if mount.type == "overlay" and fs.root == "host":
            errors.append(Diagnostic(mount.loc, "an overlay mount needs a new root: its "
                                     "changes live on a tmpfs beside it, in the new tree",
                                     'set filesystem.root = "tmpfs" (the default)'))
    mounts += _shm_mounts(mounts)
    if fs.root == "host":
        # The profile gave up a file view of its own: masking the host's credentials here
        # would pretend otherwise, and wrappers could not (bwrap creates mount points on
        # the host). Said instead of done.
        warnings.append(f"filesystem.root = \"host\" ({at('filesystem.root', fs.loc).short()}): "
                        "the host's whole tree is visible, credential locations included "
                        "(~/.ssh, ~/.aws, ...); only a new root masks them")
    else:
        new_root = "" if fs.root == "tmpfs" else os.path.normpath(expand(fs.root, fs.loc))
        mounts = exposure.add_masks(mounts, new_root, variables)
    mounts = exposure.add_git_guards(mounts)
    # Parents before children: a tmpfs or bind mounted over a directory hides whatever an
    # earlier entry put below it, which is never what a profile means. The sort is stable,
    # so entries at the same depth keep the profile's order.
    mounts.sort(key=lambda m: m.dst.rstrip("/").count("/") if m.dst != "/" else 0)
    steps.extend(_without_repeats(mounts))
    if fs.root != "host" and fs.root_read_only:
        # After every mount (their mount points are made in the root) and before the
        # pivot, which only moves the tree.
        steps.append(p.ReadOnlyRoot(at("filesystem.root_read_only", fs.loc)))
    if fs.root != "host":
        # pivot_root after every mount: binds need the old root still reachable as their
        # source; detaching it afterwards leaves no path back to the host tree.
        steps.append(p.PivotRoot(fs.loc))
    if ns.uts:
        steps.append(p.Hostname(profile.identity.hostname,
                                at("identity.hostname", profile.identity.loc)))
    if net:
        steps.append(p.Loopback(at("network.mode", profile.network.loc)))
    for name in schema.RLIMITS:
        value = getattr(limits, name)
        if value is not None:
            steps.append(p.Rlimit(name, value, at(f"limits.{name}", limits.loc)))

    cwd = os.path.normpath(expand(fs.cwd, fs.loc))
    steps.append(p.Chdir(cwd, at("filesystem.cwd", fs.loc)))
    proc = profile.process
    if proc.new_session:
        steps.append(p.NewSession(at("process.new_session", proc.loc)))
    if proc.die_with_parent:
        steps.append(p.DieWithParent(at("process.die_with_parent", proc.loc)))
    # Descriptors are closed before the environment and the drop so that nothing the
    # launcher held open (the profile file, the cache, sockets) reaches the command.
    steps.append(p.CloseFds(tuple(sorted(proc.pass_fds)), at("process.pass_fds", proc.loc)))
    env = profile.environment
    steps.append(p.Environment(env.clear, env.keep,
                               tuple((k, expand(v, env.loc)) for k, v in env.set),
                               at("environment.set", at("environment.keep", env.loc))))
    steps.append(p.DropCaps(tuple(sorted({_cap(c) for c in profile.capabilities.keep})),
                            at("capabilities.keep", profile.capabilities.loc)))
    if profile.security.no_new_privs:
        steps.append(p.NoNewPrivs(at("security.no_new_privs", profile.security.loc)))
    else:
        warnings.append(f"no_new_privs is off "
                        f"({at('security.no_new_privs', profile.security.loc).short()}): "
                        "setuid programs run with their privileges")
    if profile.landlock.enabled and profile.security.no_new_privs:
        from isorun.compile import landlock

        root = "host" if fs.root == "host" else "tmpfs" if fs.root == "tmpfs" else "rootfs"
        network = profile.network
        full = landlock.build_landlock(steps, root=root, tcp_connect=network.tcp_connect,
                                       tcp_bind=network.tcp_bind,
                                       loc=at("landlock.enabled", profile.loc),
                                       root_writable=not fs.root_read_only)
        # After no_new_privs (landlock_restrict_self needs it once the caps are gone),
        # before seccomp (the filter need not allow the landlock syscalls).
        step = landlock.degrade(full, facts.landlock)
        steps.append(step)
        warnings.extend(f"landlock ({step.loc.short()}): {line}" for line in step.lost)
    elif profile.landlock.enabled:
        warnings.append(f"landlock is off ({profile.security.loc.short()}): it needs "
                        "no_new_privs")
    else:
        warnings.append(f"landlock is off ({profile.landlock.loc.short()})")
    if profile.seccomp.enabled:
        _check_startable(profile.seccomp, profile.seccomp.loc if profile.seccomp.loc.line
                         else profile.loc, errors)
        # Last before execve: the filter must not have to allow isorun's own set-up.
        steps.append(p.LoadSeccomp(profile.seccomp, at("seccomp.allow", profile.seccomp.loc)))
    else:
        # The line that turned it off (the user's override), not the section's first line,
        # which may be a base profile's.
        warnings.append(f"seccomp is off ({at('seccomp.enabled', profile.seccomp.loc).short()}):"
                        " every syscall is allowed")
    if not profile.seccomp.hardening and profile.seccomp.enabled:
        warnings.append("seccomp hardening is off "
                        f"({at('seccomp.hardening', profile.seccomp.loc).short()}): TIOCSTI, "
                        "io_uring, userfaultfd, bpf and nested user namespaces are not refused")
    # Every [unsafe] switch that is on is named (schema.Unsafe says so).
    for name, why in UNSAFE_WHY.items():
        if getattr(profile.unsafe, name):
            warnings.append(f"[unsafe] {name} = true "
                            f"({at(f'unsafe.{name}', profile.unsafe.loc).short()}): {why}")

    steps.append(p.Exec(profile.loc))
    if errors:
        raise ProfileError(errors)
    return p.Plan(profile=profile.name, steps=tuple(steps), sources=profile.sources,
                  backend=profile.backend, variables=tuple(sorted(variables.items())),
                  warnings=tuple(warnings))


#: what each [unsafe] switch gives up, for explain's warnings
UNSAFE_WHY = {
    "allow_new_privs": "security.no_new_privs may be turned off (setuid programs regain "
                       "their privileges)",
    "map_root": "a root caller's sandbox runs as host root (uid 0), owner of every host "
                "file it can see",
}


def host_ids(root: bool, map_root: bool, uid: int, gid: int) -> tuple[int, int]:
    """The host (uid, gid) a sandbox runs as, for a caller with ``uid``/``gid``: its own,
    or, for root, the overflow user 65534 unless ``unsafe.map_root`` (see _identity). The
    pytest plugin hands its per-test files to the same ids."""
    if root and map_root:
        return 0, 0
    if root:
        return NOBODY, NOBODY
    return uid, gid


def _identity(profile: schema.Profile, facts: HostFacts,
              errors: list[Diagnostic]) -> p.MapIds:
    """Decide the id maps.

    Unprivileged: the caller's ids, mapped to themselves unless the profile names others.
    Root: host uid 0 is never mapped to uid 0 inside unless ``unsafe.map_root`` says so,
    because a process that is root on the host keeps root's ownership of every host file
    it can see, capabilities dropped or not. A root caller's sandbox therefore runs as the
    host's overflow user (65534) unless it opts in.
    """
    ident = profile.identity
    host_uid, host_gid = host_ids(facts.root, profile.unsafe.map_root, facts.uid, facts.gid)
    # Inside, the same ids unless the profile names others.
    uid = host_uid if ident.uid is None else ident.uid
    gid = host_gid if ident.gid is None else ident.gid
    if profile.unsafe.map_root and not facts.root:
        errors.append(Diagnostic(schema.where(profile, "unsafe.map_root", profile.unsafe.loc),
                                 "unsafe.map_root needs root",
                                 "run as root or remove map_root"))
    return p.MapIds(uid, gid, host_uid, host_gid,
                    schema.where(profile, "identity.uid", ident.loc))


def _without_repeats(mounts: list[p.MountStep]) -> list[p.MountStep]:
    """``mounts`` (sorted by depth) without a mount that repeats the previous one at its
    destination: the same source, type and options mounted again on top shows nothing
    new and costs a mount per launch. Profiles meet this by layering: the pytest marker
    adds the interpreter's paths, which the test profile already binds as ${VENV} and
    ${CWD}. Only the previous mount *at the same destination* counts: after the depth
    sort everything between the two is at the same depth, so nothing can lie under or
    over the repeat. A repeat that is required makes the kept one required."""
    out: list[p.MountStep] = []
    last_at: dict[str, int] = {}
    for mount in mounts:
        at = last_at.get(mount.dst)
        if at is not None and replace(out[at], optional=mount.optional) == mount:
            if not mount.optional:
                out[at] = replace(out[at], optional=False)
            continue
        last_at[mount.dst] = len(out)
        out.append(mount)
    return out


def inodes(size: int) -> int:
    """The inode limit of a tmpfs of ``size`` bytes: one per 4 KiB, at least 64. Empty
    files cost no pages, only slab memory nothing else bounds (about 1 KiB each)."""
    return max(64, size // 4096)


def _mount_step(mount: schema.Mount, expand: Callable[[str, Loc], str]) -> p.MountStep:
    dst = os.path.normpath(expand(mount.dst, mount.loc))
    if mount.type in ("ro-bind", "rw-bind", "dev-bind", "overlay"):
        src = os.path.normpath(expand(mount.src, mount.loc)) if mount.src else dst
    else:
        src = expand(mount.src, mount.loc)
    size = mount.size
    if mount.type in ("tmpfs", "overlay"):
        size = TMPFS_SIZE if size is None else size
    elif mount.type == "dev":
        size = DEV_SIZE
    return p.MountStep(type=mount.type, dst=dst, src=src, content=mount.content, size=size,
                       mode=mount.mode, optional=mount.optional, noexec=mount.noexec,
                       inodes=None if size is None else inodes(size), loc=mount.loc)


def _shm_mounts(mounts: list[p.MountStep]) -> list[p.MountStep]:
    """A sized tmpfs at the shm of each ``dev`` mount the profile does not mount itself."""
    taken = {m.dst for m in mounts}
    return [p.MountStep(type="tmpfs", dst=os.path.join(m.dst, "shm"), size=SHM_SIZE,
                        mode=0o1777, inodes=inodes(SHM_SIZE), loc=m.loc)
            for m in mounts if m.type == "dev" and os.path.join(m.dst, "shm") not in taken]


def _check_startable(policy: schema.Seccomp, loc: Loc, errors: list[Diagnostic]) -> None:
    """A filter that refuses execve or exit_group can never run a command: every launch
    would die at its first syscall (SIGSEGV once even exit is refused). That is almost
    always a profile without an allow list, so say so instead of failing obscurely."""
    from isorun.kernel import syscalls

    allowed: set[str] = set()
    for name in policy.allow:
        allowed |= syscalls.expand(name)
    for rule in policy.rules:
        if rule.action.kind in ("allow", "log"):
            for name in rule.syscalls:
                allowed |= syscalls.expand(name)
    if policy.default_action.kind in ("allow", "log"):
        # a deny list (Docker's SCMP_ACT_ALLOW default): allowed unless refused outright
        refused: set[str] = set()
        for name in policy.deny:
            refused |= syscalls.expand(name)
        for rule in policy.rules:
            if rule.action.kind not in ("allow", "log") and not rule.args and rule.when is None:
                for name in rule.syscalls:
                    refused |= syscalls.expand(name)
        allowed |= {"execve", "exit_group", "exit"} - refused
    # a program may end with exit(2) alone (one thread: the same as exit_group)
    ends = "exit_group" if "exit" not in allowed else "exit"
    missing = [n for n in ("execve", ends) if n not in allowed]
    if missing:
        errors.append(Diagnostic(
            loc, f"the seccomp filter allows neither {' nor '.join(missing)}: "
            "no command could start or exit under it",
            'allow a base set, e.g. [seccomp] allow = ["@docker-default"] (what strict '
            'uses), or extends = ["strict"]'))


def _cap(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"
