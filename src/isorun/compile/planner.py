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

from isorun.compile import plan as p
from isorun.errors import Diagnostic, Loc, ProfileError
from isorun.host.facts import HostFacts
from isorun.profile import schema

#: the unprivileged id a root caller's sandbox runs as on the host (see _identity)
NOBODY = 65534

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
        steps.append(p.NewRoot("tmpfs" if root == "tmpfs" else "rootfs",
                               "" if root == "tmpfs" else os.path.normpath(root),
                               at("filesystem.root", fs.loc)))
    mounts = [_mount_step(m, expand) for m in profile.mounts]
    if fs.root != "host":
        for mount, step in zip(profile.mounts, mounts, strict=True):
            # Started from /, a bind of ${CWD} is a bind of the host's whole root over the
            # new one (every file of the host, /root and /home included), and the mounts
            # after it land in that bind instead of the new root.
            if step.dst == "/" and "${CWD}" in mount.dst:
                errors.append(Diagnostic(
                    mount.loc, f"the working directory is /, so this {mount.type} of "
                    "${CWD} would put the host's whole root into the sandbox",
                    "run isorun from the directory the command works in (cd there first)"))
    # Parents before children: a tmpfs or bind mounted over a directory hides whatever an
    # earlier entry put below it, which is never what a profile means. The sort is stable,
    # so entries at the same depth keep the profile's order.
    mounts.sort(key=lambda m: m.dst.rstrip("/").count("/") if m.dst != "/" else 0)
    steps.extend(_without_repeats(mounts))
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
    # Every [unsafe] switch that is on is named (schema.Unsafe says so), and the network
    # a command can reach with the host's: what "host" exposes is not obvious.
    for name, why in UNSAFE_WHY.items():
        if getattr(profile.unsafe, name):
            warnings.append(f"[unsafe] {name} = true "
                            f"({at(f'unsafe.{name}', profile.unsafe.loc).short()}): {why}")
    if profile.network.mode == "host":
        warnings.append(
            f'network.mode = "host" ({at("network.mode", profile.network.loc).short()}): the '
            "host's network namespace: every host interface, services listening on the "
            "host's loopback, and abstract unix sockets (X11, D-Bus, ...) are reachable")
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
    if facts.root and profile.unsafe.map_root:
        host_uid, host_gid = 0, 0
        uid = 0 if ident.uid is None else ident.uid
        gid = 0 if ident.gid is None else ident.gid
    elif facts.root:
        host_uid, host_gid = NOBODY, NOBODY
        uid = NOBODY if ident.uid is None else ident.uid
        gid = NOBODY if ident.gid is None else ident.gid
    else:
        host_uid, host_gid = facts.uid, facts.gid
        uid = facts.uid if ident.uid is None else ident.uid
        gid = facts.gid if ident.gid is None else ident.gid
    if profile.unsafe.map_root and not facts.root:
        errors.append(Diagnostic(profile.unsafe.loc, "unsafe.map_root needs root",
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


def _mount_step(mount: schema.Mount, expand: Callable[[str, Loc], str]) -> p.MountStep:
    dst = os.path.normpath(expand(mount.dst, mount.loc))
    if mount.type in ("ro-bind", "rw-bind", "dev-bind"):
        src = os.path.normpath(expand(mount.src, mount.loc)) if mount.src else dst
    else:
        src = expand(mount.src, mount.loc)
    return p.MountStep(type=mount.type, dst=dst, src=src, content=mount.content, size=mount.size,
                       mode=mount.mode, optional=mount.optional, noexec=mount.noexec,
                       loc=mount.loc)


def _check_startable(policy: schema.Seccomp, loc: Loc, errors: list[Diagnostic]) -> None:
    """A filter that refuses execve or exit_group can never run a command: every launch
    would die at its first syscall (SIGSEGV once even exit is refused). That is almost
    always a profile without an allow list, so say so instead of failing obscurely."""
    from isorun.compile import syscalls

    allowed: set[str] = set()
    for name in policy.allow:
        allowed |= syscalls.expand(name)
    for rule in policy.rules:
        if rule.action.kind in ("allow", "log"):
            for name in rule.syscalls:
                allowed |= syscalls.expand(name)
    missing = [n for n in ("execve", "exit_group") if n not in allowed]
    if missing:
        errors.append(Diagnostic(
            loc, f"the seccomp filter allows neither {' nor '.join(missing)}: "
            "no command could start or exit under it",
            'allow a base set, e.g. [seccomp] allow = ["@docker-default"] (what strict '
            'uses), or extends = ["strict"]'))


def _cap(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"
