"""(Profile, HostFacts, variables) -> Plan.

The planner resolves everything a backend would otherwise have to decide: variables,
ids, mount order, which namespaces follow from which settings. The order of the steps it
emits is the order the shim applies them; each ``append`` below says why it stands where
it does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from isorun.compile import exposure
from isorun.compile import plan as p
from isorun.compile.mounts import inodes, mount_step, shm_mounts, without_repeats
from isorun.errors import Diagnostic, Loc, ProfileError
from isorun.host.facts import HostFacts
from isorun.kernel.abi import NOBODY
from isorun.profile import schema

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_plan(profile: schema.Profile, facts: HostFacts,
                 variables: dict[str, str]) -> p.Plan:
    """Turn a merged profile into an ordered, resolved plan. Raises ProfileError.

    One ``_plan_*`` per stretch of the plan, called in the order their steps run: each
    appends its steps (and errors and warnings) to ``c``.
    """
    c = _Planning(profile, facts, variables)
    _plan_pre_clone(c)
    _plan_post_clone(c)
    _plan_new_root(c)
    _plan_mounts(c)
    _plan_namespaced(c)
    _plan_process(c)
    _plan_drop(c)
    _plan_final(c)
    if c.errors:
        raise ProfileError(c.errors)
    return p.Plan(profile=profile.name, steps=tuple(c.steps), sources=profile.sources,
                  backend=profile.backend, variables=tuple(sorted(variables.items())),
                  warnings=tuple(c.warnings))


@dataclass
class _Planning:
    """The input of :func:`compile_plan` and what its steps collect."""

    profile: schema.Profile
    facts: HostFacts
    variables: dict[str, str]
    steps: list[p.Step] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def at(self, key: str, fallback: Loc) -> Loc:
        return schema.where(self.profile, key, fallback)

    def expand(self, text: str, loc: Loc) -> str:
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.variables:
                self.errors.append(Diagnostic(loc, f"unknown variable ${{{name}}}",
                                              "known variables: "
                                              f"{', '.join(sorted(self.variables))}"))
                return match.group(0)
            return self.variables[name]
        return _VAR.sub(sub, text)


def _private_net(profile: schema.Profile) -> bool:
    """Whether the sandbox gets a network namespace of its own (with only loopback)."""
    return profile.namespaces.net and profile.network.mode == "none"


def _plan_pre_clone(c: _Planning) -> None:
    """The namespaces to create, and what the network settings say about them."""
    profile = c.profile
    ns = profile.namespaces
    net = _private_net(profile)
    namespaces = tuple(n for n in schema.NAMESPACES if getattr(ns, n) and (n != "net" or net))
    if profile.network.mode == "none" and not ns.net:
        c.errors.append(Diagnostic(ns.loc, 'network.mode = "none" needs namespaces.net = true',
                                   'set namespaces.net = true, or network.mode = "host"'))
    if profile.network.mode == "host":
        # Stated, not fixed: sharing the host's network is what this mode is for, and no
        # rule can tell a loopback service the user means from one they forgot (issue 13:
        # Landlock scoping covers abstract unix sockets, tcp_connect the TCP ports,
        # nothing covers the rest of loopback). One warning, one wording (issue 17).
        c.warnings.append(
            f"network.mode = \"host\" ({c.at('network.mode', profile.network.loc).short()}): "
            "the sandbox shares the host's network namespace, so it can connect to every "
            "service listening on the host's loopback (127.0.0.1, ::1: databases, caches, "
            "admin and debug ports bound to localhost), bind ports on the host, and list "
            "the host's sockets in /proc/net"
            + ("" if profile.network.tcp_connect is not None else
               "; network.tcp_connect limits the ports it connects to"))
    c.steps.append(p.Clone(namespaces, ns.loc))


def _plan_post_clone(c: _Planning) -> None:
    """What the parent does once the child exists: id maps, cgroup, wall-time limit."""
    profile = c.profile
    ns = profile.namespaces
    if ns.user:
        c.steps.append(_identity(profile, c.facts, c.errors))
    elif not c.facts.root:
        c.errors.append(Diagnostic(ns.loc, "namespaces.user = false needs root: without a "
                                   "user namespace an unprivileged caller cannot create the "
                                   "others", "keep namespaces.user = true"))
    limits = profile.limits
    if limits.memory is not None or limits.pids is not None:
        c.steps.append(p.Cgroup(limits.memory, limits.pids,
                                c.at("limits.memory", c.at("limits.pids", limits.loc))))
    if limits.wall_time is not None:
        c.steps.append(p.WallTime(limits.wall_time, c.at("limits.wall_time", limits.loc)))


def _plan_new_root(c: _Planning) -> None:
    """The new root the mounts land in (none for filesystem.root = "host")."""
    fs = c.profile.filesystem
    if fs.root == "host":
        return
    if not c.profile.namespaces.mount:
        c.errors.append(Diagnostic(fs.loc, f"filesystem.root = {fs.root!r} needs a mount "
                                   "namespace", 'set namespaces.mount = true or root = "host"'))
    root = c.expand(fs.root, fs.loc)
    tmpfs_root = root == "tmpfs"
    c.steps.append(p.NewRoot("tmpfs" if tmpfs_root else "rootfs",
                             "" if tmpfs_root else os.path.normpath(root),
                             fs.root_size if tmpfs_root else None,
                             inodes(fs.root_size) if tmpfs_root else None,
                             c.at("filesystem.root", fs.loc)))


def _plan_mounts(c: _Planning) -> None:
    """The profile's mounts with the ones isorun adds (/dev/shm, masks, git guards),
    parents first."""
    profile, fs = c.profile, c.profile.filesystem
    exposure.check_cwd(profile, c.variables, c.errors)
    mounts = [mount_step(m, c.expand) for m in profile.mounts]
    for mount in mounts:
        if mount.type == "overlay" and fs.root == "host":
            c.errors.append(Diagnostic(mount.loc, "an overlay mount needs a new root: its "
                                       "changes live on a tmpfs beside it, in the new tree",
                                       'set filesystem.root = "tmpfs" (the default)'))
    mounts += shm_mounts(mounts)
    if fs.root == "host":
        # The profile gave up a file view of its own: masking the host's credentials here
        # would pretend otherwise, and wrappers could not (bwrap creates mount points on
        # the host). Said instead of done.
        c.warnings.append(
            f"filesystem.root = \"host\" ({c.at('filesystem.root', fs.loc).short()}): "
            "the host's whole tree is visible, credential locations included "
            "(~/.ssh, ~/.aws, ...); only a new root masks them")
    else:
        new_root = "" if fs.root == "tmpfs" else os.path.normpath(c.expand(fs.root, fs.loc))
        mounts = exposure.add_masks(mounts, new_root, c.variables)
    mounts = exposure.add_git_guards(mounts)
    # Parents before children: a tmpfs or bind mounted over a directory hides whatever an
    # earlier entry put below it, which is never what a profile means. The sort is stable,
    # so entries at the same depth keep the profile's order.
    mounts.sort(key=lambda m: m.dst.rstrip("/").count("/") if m.dst != "/" else 0)
    c.steps.extend(without_repeats(mounts))


def _plan_namespaced(c: _Planning) -> None:
    """The rest of what needs the namespaces' capabilities: sealing and entering the new
    root, hostname, loopback, rlimits."""
    profile, fs = c.profile, c.profile.filesystem
    if fs.root != "host" and fs.root_read_only:
        # After every mount (their mount points are made in the root) and before the
        # pivot, which only moves the tree.
        c.steps.append(p.ReadOnlyRoot(c.at("filesystem.root_read_only", fs.loc)))
    if fs.root != "host":
        # pivot_root after every mount: binds need the old root still reachable as their
        # source; detaching it afterwards leaves no path back to the host tree.
        c.steps.append(p.PivotRoot(fs.loc))
    if profile.namespaces.uts:
        c.steps.append(p.Hostname(profile.identity.hostname,
                                  c.at("identity.hostname", profile.identity.loc)))
    if _private_net(profile):
        c.steps.append(p.Loopback(c.at("network.mode", profile.network.loc)))
    for name in schema.RLIMITS:
        value = getattr(profile.limits, name)
        if value is not None:
            c.steps.append(p.Rlimit(name, value, c.at(f"limits.{name}", profile.limits.loc)))


def _plan_process(c: _Planning) -> None:
    """The command's process: directory, session, descriptors, environment."""
    profile, fs = c.profile, c.profile.filesystem
    cwd = os.path.normpath(c.expand(fs.cwd, fs.loc))
    c.steps.append(p.Chdir(cwd, c.at("filesystem.cwd", fs.loc)))
    proc = profile.process
    if proc.new_session:
        c.steps.append(p.NewSession(c.at("process.new_session", proc.loc)))
    if proc.die_with_parent:
        c.steps.append(p.DieWithParent(c.at("process.die_with_parent", proc.loc)))
    # Descriptors are closed before the environment and the drop so that nothing the
    # launcher held open (the profile file, the cache, sockets) reaches the command.
    c.steps.append(p.CloseFds(tuple(sorted(proc.pass_fds)), c.at("process.pass_fds", proc.loc)))
    env = profile.environment
    c.steps.append(p.Environment(env.clear, env.keep,
                                 tuple((k, c.expand(v, env.loc)) for k, v in env.set),
                                 c.at("environment.set", c.at("environment.keep", env.loc))))


def _plan_drop(c: _Planning) -> None:
    """Giving up privilege: capabilities, no_new_privs, then Landlock."""
    profile, fs = c.profile, c.profile.filesystem
    c.steps.append(p.DropCaps(tuple(sorted({_cap(n) for n in profile.capabilities.keep})),
                              c.at("capabilities.keep", profile.capabilities.loc)))
    if profile.security.no_new_privs:
        c.steps.append(p.NoNewPrivs(c.at("security.no_new_privs", profile.security.loc)))
    else:
        c.warnings.append(f"no_new_privs is off "
                          f"({c.at('security.no_new_privs', profile.security.loc).short()}): "
                          "setuid programs run with their privileges")
    if profile.landlock.enabled and profile.security.no_new_privs:
        from isorun.compile import landlock

        root = "host" if fs.root == "host" else "tmpfs" if fs.root == "tmpfs" else "rootfs"
        network = profile.network
        full = landlock.build_landlock(c.steps, root=root, tcp_connect=network.tcp_connect,
                                       tcp_bind=network.tcp_bind,
                                       loc=c.at("landlock.enabled", profile.loc),
                                       root_writable=not fs.root_read_only)
        # After no_new_privs (landlock_restrict_self needs it once the caps are gone),
        # before seccomp (the filter need not allow the landlock syscalls).
        step = landlock.degrade(full, c.facts.landlock)
        c.steps.append(step)
        c.warnings.extend(f"landlock ({step.loc.short()}): {line}" for line in step.lost)
    elif profile.landlock.enabled:
        c.warnings.append(f"landlock is off ({profile.security.loc.short()}): it needs "
                          "no_new_privs")
    else:
        c.warnings.append(f"landlock is off ({profile.landlock.loc.short()})")


def _plan_final(c: _Planning) -> None:
    """The seccomp filter, the warnings for what the profile switched off, and execve."""
    profile = c.profile
    seccomp = profile.seccomp
    if seccomp.enabled:
        _check_startable(seccomp, seccomp.loc if seccomp.loc.line else profile.loc, c.errors)
        # Last before execve: the filter must not have to allow isorun's own set-up.
        c.steps.append(p.LoadSeccomp(seccomp, c.at("seccomp.allow", seccomp.loc)))
    else:
        # The line that turned it off (the user's override), not the section's first line,
        # which may be a base profile's.
        c.warnings.append(f"seccomp is off ({c.at('seccomp.enabled', seccomp.loc).short()}):"
                          " every syscall is allowed")
    if not seccomp.hardening and seccomp.enabled:
        c.warnings.append("seccomp hardening is off "
                          f"({c.at('seccomp.hardening', seccomp.loc).short()}): TIOCSTI, "
                          "io_uring, userfaultfd, bpf and nested user namespaces are not "
                          "refused")
    # Every [unsafe] switch that is on is named (schema.Unsafe says so).
    for name, why in UNSAFE_WHY.items():
        if getattr(profile.unsafe, name):
            c.warnings.append(f"[unsafe] {name} = true "
                              f"({c.at(f'unsafe.{name}', profile.unsafe.loc).short()}): {why}")
    c.steps.append(p.Exec(profile.loc))


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
