"""The landlock backend: a sandbox without a user namespace (issue 18).

Where no user namespace can be made (a container's seccomp profile, AppArmor's
restriction of unprivileged user namespaces, ``user.max_user_namespaces = 0``, inside
another isorun sandbox), the native shim still runs every step that needs no namespace:
a cleared environment, closed descriptors, a new session, rlimits, die-with-parent,
no_new_privs, seccomp, and Landlock, which needs no privilege and stacks on whatever
confines isorun already. There is no new root: the profile's binds become Landlock
grants on the *host* paths they name, so a path outside them cannot be opened, written
or executed; everything a view would add (a private tmpfs, a file, a different source
at a destination) is lost, and :func:`lost_rules` names each such rule so that ``auto``
fails closed and ``--allow-weaker`` prints them.

``network = "none"`` without a network namespace: seccomp refuses socket(2) of every
family, AF_UNIX included (only socketpair(2) stays), and Landlock handles TCP bind and
connect with no port allowed; scoping keeps the host's abstract unix sockets and
processes out of reach. AF_UNIX is refused too because Landlock (up to ABI 7) does not
govern connect(2) to a *pathname* unix socket: the host's D-Bus session bus, an
ssh-agent or docker.sock would answer from outside every grant.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from isorun.compile import landlock
from isorun.compile import plan as p
from isorun.errors import HostError, Lost
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule
from isorun.sandbox.spec import ShimSpec

#: what a ``dev`` mount becomes: the host's harmless character devices, one rule each
DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
             "/dev/tty")
EAFNOSUPPORT = 97
EPERM = 1
#: namespaces whose isolation this mode does not give, with what stays reachable
_NAMESPACE_LOSS = {
    "pid": "the command sees and can name every host process (Landlock still refuses "
           "signals and ptrace across its boundary, seccomp prlimit of another process; "
           "renice and CPU affinity of the uid's host processes stay possible)",
    "net": "no network namespace (socket(2) of every family, AF_UNIX included, is "
           "refused instead, so not even loopback works; socketpair(2) stays)",
    "ipc": "System V IPC and POSIX message queues are the host's",
    "uts": "no UTS namespace: the host name is the host's",
    "cgroup": "/proc/self/cgroup shows the host's cgroup tree",
    "time": "the clocks are the host's",
}


def network_none(plan: p.Plan) -> bool:
    return bool(plan.find(p.Loopback))


def lost_rules(plan: p.Plan, abi: int | None = None) -> list[Lost]:
    """The rules of ``plan`` this mode does not enforce. ``abi``: the host's Landlock ABI
    (None: assume the newest, for the capability matrix). Rules are named as the other
    backends name them (a step's describe()), so a refusal lists who keeps each."""
    lost: list[Lost] = []

    def lose(step: p.Step, rule: str, why: str) -> None:
        lost.append(Lost(rule, step.loc, why))

    for step in plan.steps:
        match step:
            case p.Clone():
                for name in step.namespaces:
                    if name in _NAMESPACE_LOSS:
                        lose(step, f"{name} namespace", _NAMESPACE_LOSS[name])
            case p.MapIds():
                if (step.uid, step.gid) != (step.host_uid, step.host_gid):
                    lose(step, step.describe(), "without a user namespace the "
                         f"command runs as host uid {step.host_uid}, gid {step.host_gid}")
            case p.Cgroup():
                lose(step, step.describe(), "the landlock backend puts the sandbox in no "
                     "cgroup of its own")
            case p.NewRoot():
                # Landlock governs opening, creating and removing files, never their
                # metadata: chmod and utimensat by path reach every host file the command's
                # uid owns (chmod o+w ~/.bashrc hands it to every local user).
                lose(step, step.describe(), "the host's tree stays the root: Landlock refuses "
                     "opening anything outside the grants, but names and metadata (stat) "
                     "of host files stay visible, and the mode and times of every host "
                     "file the command's uid owns stay changeable (chmod, utimensat)")
            case p.MountStep():
                why = _mount_loss(step) or _nested_loss(step, plan)
                if why:
                    lose(step, step.describe(), why)
            case p.Hostname():
                lose(step, step.describe(), "no UTS namespace to set it in")
            case p.DropCaps():
                if step.keep:
                    lose(step, step.describe(), "a kept capability would be a host "
                         "capability without a user namespace; all are dropped instead")
            case p.Landlock():
                for rule, why in _landlock_losses(step, plan, abi):
                    lose(step, rule, why)
            case (p.MapIds() | p.WallTime() | p.PivotRoot() | p.Loopback() | p.Rlimit()
                  | p.Chdir() | p.NewSession() | p.DieWithParent() | p.CloseFds()
                  | p.Environment() | p.NoNewPrivs() | p.LoadSeccomp() | p.Exec()):
                pass
    return lost


def _landlock_losses(step: p.Landlock, plan: p.Plan, abi: int | None) -> list[tuple[str, str]]:
    """(rule, why) for each part of the plan's Landlock step that Landlock ABI ``abi``
    (None: the newest) cannot enforce as the only confinement."""
    have = landlock.KNOWN_ABI if abi is None else abi
    losses = []
    if have < 1:
        losses.append(("landlock", "this kernel has no Landlock: nothing would confine "
                       "files or network"))  # fmt: skip
    elif have < 6:
        losses.append(("scope abstract_unix_socket, signal", f"Landlock ABI {have} cannot "
                       "scope them (needs 6): host abstract sockets and processes stay "
                       "reachable"))  # fmt: skip
    if have >= 1 and not network_none(plan):
        losses.append(("pathname unix sockets", "Landlock does not govern connect(2) to a "
                       "unix socket by path: every listening socket of the host (the D-Bus "
                       "session bus, an ssh-agent, docker.sock) stays reachable"))  # fmt: skip
    if 0 < have < 4 and (network_none(plan) or step.handled_net):
        losses.append(("tcp rules", f"Landlock ABI {have} has no TCP rules (needs 4)"))
    return losses


def _nested_loss(step: p.MountStep, plan: p.Plan) -> str:
    """Why a read-only bind below a writable one is lost here, or "".

    Landlock rights add up along a path (landlock(7): a rule cannot take away what a
    rule above grants), and with no mount tree nothing else keeps the inner path
    read-only: the build profile's ``.git`` guard over ``${CWD}`` would be writable, and
    a hook planted there runs on the host at the next commit.
    """
    if step.type != "ro-bind":
        return ""
    for outer in plan.find(p.MountStep):
        if (outer.type in ("rw-bind", "dev-bind") and outer.src == outer.dst
                and outer.src != step.src and _below(step.src, outer.src)):
            return (f"stays writable: it lies inside the writable grant of {outer.src}, "
                    "and Landlock rights add up along a path (only a mount could make "
                    "it read-only)")
    return ""


def _below(path: str, top: str) -> bool:
    return top == "/" or path.startswith(top.rstrip("/") + "/")


def _mount_loss(step: p.MountStep) -> str:
    match step.type:
        case "ro-bind" | "rw-bind" | "dev-bind":
            if step.src != step.dst:
                return (f"no view: the host's {step.src} is granted at its own path, "
                        f"nothing appears at {step.dst}")
            return ""
        case "tmpfs":
            return "no private tmpfs: the host's directory gets no access at all"
        case "proc":
            return ("the host's /proc, readable (other processes' memory and environment "
                    "stay refused: Landlock forbids ptrace across its boundary)")
        case "dev":
            return "no private /dev: only the host's " + ", ".join(DEV_FILES) + " are granted"
        case _:
            return "not made: there is no new root to make it in"


def landlock_step(plan: p.Plan, abi: int) -> p.Landlock | None:
    """The Landlock step this mode applies: grants on host paths, no TCP under
    ``network = "none"``, both scopes; degraded to ``abi``."""
    found = plan.find(p.Landlock)
    if not found:
        return None
    binds = [s for s in plan.steps if isinstance(s, p.MountStep)
             and s.type in ("ro-bind", "rw-bind", "dev-bind") and s.src == s.dst]
    base: p.Landlock = landlock.build_landlock(
        binds, root="tmpfs", tcp_connect=None, tcp_bind=None, loc=found[0].loc,
        host_paths=True)
    rules = list(base.rules)
    for step in plan.find(p.MountStep):
        if step.type == "proc":
            rules.append(p.LandlockRule(("read_file", "read_dir"), path=step.dst, abi=1))
        elif step.type == "dev":
            # truncate: a shell's "> /dev/null" opens with O_TRUNC; ioctl_dev: ttys
            rules += [p.LandlockRule(("write_file", "read_file", "truncate", "ioctl_dev"),
                                     path=dev, optional=True, abi=5) for dev in DEV_FILES]
    net = found[0].handled_net
    ports = [r for r in found[0].rules if r.port]
    if network_none(plan):
        net, ports = ("bind_tcp", "connect_tcp"), []
    return landlock.degrade(replace(base, handled_net=net, rules=(*rules, *ports)), abi)


def seccomp_policy(plan: p.Plan) -> Seccomp | None:
    """The plan's seccomp policy, refusing socket(2) of every family under
    ``network = "none"`` (no network namespace stands behind that setting here). AF_UNIX
    too: Landlock does not govern connect(2) or sendto(2) to a pathname unix socket, so
    one made by socket(2) reaches every listener on the host whatever the grants (the
    D-Bus session bus starts host units); a pair from socketpair(2) reaches nothing
    outside. A non-allow rule, so it comes before every allow (compile/seccomp.py)."""
    found = plan.find(p.LoadSeccomp)
    if not found:
        return None
    policy: Seccomp = found[0].policy
    # prlimit64 on another process: Landlock scopes signals and ptrace, not the rlimit
    # hook, and with no pid namespace every host process of the same uid is in reach (a
    # limit of 0 open files or bytes of address space breaks it). pid 0 is the caller,
    # which is what setrlimit(2) and getrlimit(2) send.
    rules = [SeccompRule(("prlimit64",), Action("errno", EPERM), (ArgCond(0, "ne", 0),),
                         comment="no pid namespace: no rlimits of other processes")]
    if network_none(plan):
        rules.append(SeccompRule(("socket",), Action("errno", EAFNOSUPPORT), (),
                                 comment="network = none without a network namespace"))
    return replace(policy, rules=(*rules, *policy.rules))


def check_grant_paths(plan: p.Plan) -> None:
    """Refuse, naming the profile line, a grant whose host path runs through a link.

    The shim opens each grant's path with no link followed before its last component
    (shim/child/landlock.c) and fails with ELOOP otherwise; this says the same before the launch
    with the mount, the link and its target. A link the sandbox's side could have written
    is :class:`~isorun.sandbox.safepath.SymlinkRefused`; a root-owned one (a merged-/usr
    /lib) still cannot be followed, since the shim trusts none.
    """
    from isorun.sandbox import safepath

    for step in plan.find(p.MountStep):
        if step.type not in ("ro-bind", "rw-bind", "dev-bind") or step.src != step.dst:
            continue
        parent = os.path.dirname(step.src)
        what = f"{step.loc.short()}: {step.describe()}"
        try:
            found = safepath.probe(parent)
        except safepath.SymlinkRefused as err:
            raise err.with_what(what) from None
        except OSError:
            continue  # missing or unreadable: the shim skips an optional rule, or says why
        if found.path != parent:
            raise HostError(what, f"{parent} runs through a symbolic link (it leads to "
                            f"{found.path}); the landlock backend opens grant paths without "
                            "following any link", "remove the link; or, to grant its target, "
                            f"write {found.path}{step.src[len(parent):]} in the profile")


def mode_plan(plan: p.Plan, abi: int) -> p.Plan:
    """``plan`` with the steps this mode changes: its Landlock step and seccomp policy."""
    steps: list[p.Step] = []
    for step in plan.steps:
        if isinstance(step, p.Landlock):
            new = landlock_step(plan, abi)
            if new is not None:
                steps.append(new)
        elif isinstance(step, p.LoadSeccomp):
            policy = seccomp_policy(plan)
            steps.append(replace(step, policy=policy) if policy is not None else step)
        else:
            steps.append(step)
    return replace(plan, steps=tuple(steps))


def build_mode_spec(plan: p.Plan, argv: Sequence[str], caller_env: Mapping[str, str],
                    abi: int, program: Callable[[p.Plan], bytes] | None = None) -> ShimSpec:
    """The ShimSpec of ``plan`` in this mode: the native spec with no namespace, no id
    map, no root and no mounts; the command keeps the host identity the plan maps to.
    ``program``: the seccomp program of a plan (this mode changes the policy, so it is
    asked for the mode's), compiled anew when not given."""
    from isorun.compile.pipeline import seccomp_program
    from isorun.sandbox import native

    mode = mode_plan(plan, abi)
    spec = native.build_spec(mode, list(argv), caller_env, (program or seccomp_program)(mode))
    host = plan.find(p.MapIds)
    uid, gid = ((host[0].host_uid, host[0].host_gid) if host else (os.getuid(), os.getgid()))
    # init stays: without a pid namespace it is a subreaper that forwards signals
    return replace(spec, clone_flags=0, uid_map=b"", gid_map=b"", setgroups_deny=False,
                   uid=uid, gid=gid, root=b"", mounts=(), hostname=b"",
                   loopback_up=False, caps_keep=(), cgroup=b"")
