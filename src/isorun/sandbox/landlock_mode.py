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

``network = "none"`` without a network namespace: seccomp refuses every socket family
but AF_UNIX, and Landlock handles TCP bind and connect with no port allowed; scoping
keeps the host's abstract unix sockets and processes out of reach.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace

from isorun.compile import landlock
from isorun.compile import plan as p
from isorun.errors import Lost
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule
from isorun.sandbox.spec import ShimSpec

#: what a ``dev`` mount becomes: the host's harmless character devices, one rule each
DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
             "/dev/tty")
AF_UNIX = 1
EAFNOSUPPORT = 97
#: namespaces whose isolation this mode does not give, with what stays reachable
_NAMESPACE_LOSS = {
    "pid": "the command sees and can name every host process (Landlock still refuses "
           "signals and ptrace across its boundary)",
    "net": "no network namespace (TCP and every socket family but AF_UNIX are refused "
           "instead, so not even loopback works)",
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
                lose(step, step.describe(), "the host's tree stays the root: Landlock refuses "
                     "opening anything outside the grants, but names and metadata (stat) "
                     "of host files stay visible")
            case p.MountStep():
                why = _mount_loss(step)
                if why:
                    lose(step, step.describe(), why)
            case p.Hostname():
                lose(step, step.describe(), "no UTS namespace to set it in")
            case p.DropCaps():
                if step.keep:
                    lose(step, step.describe(), "a kept capability would be a host "
                         "capability without a user namespace; all are dropped instead")
            case p.Landlock():
                have = landlock.KNOWN_ABI if abi is None else abi
                if have < 1:
                    lose(step, "landlock", "this kernel has no Landlock: nothing would "
                         "confine files or network")
                elif have < 6:
                    lose(step, "scope abstract_unix_socket, signal", f"Landlock ABI {have} "
                         "cannot scope them (needs 6): host abstract sockets and processes "
                         "stay reachable")
                if 0 < have < 4 and (network_none(plan) or step.handled_net):
                    lose(step, "tcp rules", f"Landlock ABI {have} has no TCP rules (needs 4)")
            case (p.MapIds() | p.WallTime() | p.PivotRoot() | p.Loopback() | p.Rlimit()
                  | p.Chdir() | p.NewSession() | p.DieWithParent() | p.CloseFds()
                  | p.Environment() | p.NoNewPrivs() | p.LoadSeccomp() | p.Exec()):
                pass
    return lost


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
    """The plan's seccomp policy, refusing every socket family but AF_UNIX under
    ``network = "none"`` (no network namespace stands behind that setting here). A
    non-allow rule, so it comes before every allow (compile/seccomp.py); compared as a
    whole 64-bit value, so a family with high bits set is refused too."""
    found = plan.find(p.LoadSeccomp)
    if not found:
        return None
    policy: Seccomp = found[0].policy
    if network_none(plan):
        rule = SeccompRule(("socket",), Action("errno", EAFNOSUPPORT),
                           (ArgCond(0, "ne", AF_UNIX),),
                           comment="network = none without a network namespace")
        policy = replace(policy, rules=(rule, *policy.rules))
    return policy


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
                    abi: int) -> ShimSpec:
    """The ShimSpec of ``plan`` in this mode: the native spec with no namespace, no id
    map, no root and no mounts; the command keeps the host identity the plan maps to."""
    from isorun.api import cached_program
    from isorun.sandbox import native

    mode = mode_plan(plan, abi)
    spec = native.build_spec(mode, list(argv), caller_env, cached_program(mode))
    host = plan.find(p.MapIds)
    uid, gid = ((host[0].host_uid, host[0].host_gid) if host else (os.getuid(), os.getgid()))
    # init stays: without a pid namespace it is a subreaper that forwards signals
    return replace(spec, clone_flags=0, uid_map=b"", gid_map=b"", setgroups_deny=False,
                   uid=uid, gid=gid, root=b"", mounts=(), hostname=b"",
                   loopback_up=False, caps_keep=(), cgroup=b"")
