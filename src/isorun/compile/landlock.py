"""The Landlock layer of a plan: the profile's grants as a Landlock ruleset (landlock(7)).

Landlock needs no privilege and stacks on whatever confines isorun already (a container,
another sandbox), so it is a second wall behind the mount tree: a file rule per mount
(read-only binds may read and execute, writable binds and tmpfs may also write, nothing
else), TCP port rules from ``network.tcp_connect``/``tcp_bind``, and the scopes that cut
the sandbox off from abstract unix sockets and processes outside it.

Each right has the Landlock ABI that introduced it. :func:`degrade` keeps what the host's
ABI has and names every right, rule and scope it drops, so an older kernel weakens the
layer rule by rule and says so, never silently. The bit values below are the kernel's
(include/uapi/linux/landlock.h); the shim receives them as plain masks.
"""

from __future__ import annotations

from collections.abc import Iterable

from isorun.compile import plan as p
from isorun.errors import Loc
from isorun.kernel import abi

#: the newest ABI isorun knows; ABI 7 (Linux 6.15) adds audit-log flags only
KNOWN_ABI = 7
#: filesystem rights: name -> (bit, ABI that introduced it)
ACCESS_FS: dict[str, tuple[int, int]] = {
    "execute": (1 << 0, 1), "write_file": (1 << 1, 1), "read_file": (1 << 2, 1),
    "read_dir": (1 << 3, 1), "remove_dir": (1 << 4, 1), "remove_file": (1 << 5, 1),
    "make_char": (1 << 6, 1), "make_dir": (1 << 7, 1), "make_reg": (1 << 8, 1),
    "make_sock": (1 << 9, 1), "make_fifo": (1 << 10, 1), "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1), "refer": (1 << 13, 2), "truncate": (1 << 14, 3),
    "ioctl_dev": (1 << 15, 5),
}  # fmt: skip
#: the rights the kernel accepts on a rule for a file that is not a directory
FILE_RIGHTS = tuple(abi.LANDLOCK_FILE_RIGHTS)
ACCESS_NET: dict[str, tuple[int, int]] = {"bind_tcp": (1 << 0, 4), "connect_tcp": (1 << 1, 4)}
SCOPES: dict[str, tuple[int, int]] = {"abstract_unix_socket": (1 << 0, 6), "signal": (1 << 1, 6)}
#: what each ABI level adds (``isorun doctor --json``)
ABI_ADDS = {
    1: "file access rules (read, write, execute, make, remove), Linux 5.13",
    2: "refer: renaming and linking across directories, Linux 5.19",
    3: "truncate, Linux 6.2",
    4: "TCP bind and connect port rules, Linux 6.7",
    5: "ioctl on device files, Linux 6.10",
    6: "scoping of abstract unix sockets and signals, Linux 6.12",
    7: "audit logging of denials, Linux 6.15",
}

READ = ("read_file", "read_dir")
#: never granted: device nodes are nodev everywhere and CAP_MKNOD is dropped
WRITE = ("write_file", "remove_dir", "remove_file", "make_dir", "make_reg", "make_sock",
         "make_fifo", "make_sym", "refer", "truncate")


def mask(names: Iterable[str], table: dict[str, tuple[int, int]]) -> int:
    """The kernel bit mask of ``names``."""
    out = 0
    for name in names:
        out |= table[name][0]
    return out


def needs_abi(names: Iterable[str], table: dict[str, tuple[int, int]]) -> int:
    """The lowest ABI that has every one of ``names``."""
    return max((table[n][1] for n in names), default=1)


def mount_access(step: p.MountStep) -> tuple[str, ...]:
    """The rights the mount ``step`` grants at its destination, in ACCESS_FS order."""
    exe = () if step.noexec else ("execute",)
    names: tuple[str, ...]
    match step.type:
        case "ro-bind":
            names = (*READ, *exe)
        case "rw-bind" | "tmpfs" | "overlay":
            # an overlay is writable at its destination (the changes go to its own tmpfs)
            names = (*READ, *WRITE, *exe)
        case "dev-bind":
            names = (*READ, *WRITE, "ioctl_dev", *exe)
        case "dev":
            # /dev/null, ttys and /dev/shm (a tmpfs inside): never executable (the
            # mount is noexec), device ioctls for ttys opened inside
            names = (*READ, *WRITE, "ioctl_dev")
        case "proc":
            # /proc/self/* is written by ordinary programs (oom_score_adj, comm)
            names = (*READ, "write_file")
        case "mqueue":
            names = (*READ, "write_file", "remove_file", "make_reg")
        case "file":
            names = ("read_file",)
        case "dir":
            names = ("read_dir",)
        case _:
            # symlink: resolving a link needs no right; a mask (an empty read-only tmpfs or
            # /dev/null over a credential) grants nothing beyond what the path above has
            names = ()
            names = ()
    return tuple(n for n in ACCESS_FS if n in names)


def build_landlock(steps: Iterable[p.Step], *, root: str, tcp_connect: tuple[int, ...] | None,
                   tcp_bind: tuple[int, ...] | None, loc: Loc, host_paths: bool = False,
                   root_writable: bool = False) -> p.Landlock:
    """The full-strength Landlock step for a plan's ``steps`` (before :func:`degrade`).

    ``root`` is the plan's NewRoot kind (``tmpfs``, ``rootfs``) or ``host``. A rule's path
    is the mount's destination, or its host source with ``host_paths`` (the landlock
    backend, which builds no view). Only the topmost mount at a destination counts, as in
    the tree; a deeper rule adds to its ancestors' (Landlock rights are a union over the
    path), so a read-only mount under a writable one is kept read-only by the mount alone.
    """
    handled_fs: tuple[str, ...] = ()
    rules: dict[str, p.LandlockRule] = {}
    if root == "tmpfs" or host_paths:
        handled_fs = tuple(ACCESS_FS)
        if root == "tmpfs" and not host_paths:
            # Listing the new root's own names; its files are the mounts' below. A root
            # left writable (filesystem.root_read_only = false) must take writes too, and a
            # rule's rights reach everything beneath it: then only the mounts' own flags
            # keep a read-only bind read-only.
            top: tuple[str, ...] = (*READ, *WRITE) if root_writable else ("read_dir",)
            rules["/"] = p.LandlockRule(tuple(n for n in ACCESS_FS if n in top), path="/",
                                        abi=needs_abi(top, ACCESS_FS))
        for step in steps:
            if not isinstance(step, p.MountStep):
                continue
            path = step.src if host_paths and "bind" in step.type else step.dst
            access = mount_access(step)
            rules.pop(path, None)
            if access:
                rules[path] = p.LandlockRule(access, path=path, optional=step.optional,
                                             abi=needs_abi(access, ACCESS_FS))
    handled_net: list[str] = []
    ports: list[p.LandlockRule] = []
    for name, allowed in (("connect_tcp", tcp_connect), ("bind_tcp", tcp_bind)):
        if allowed is None:
            continue
        handled_net.append(name)
        ports += [p.LandlockRule((name,), port=port, abi=4) for port in sorted(set(allowed))]
    return p.Landlock(handled_fs=handled_fs, handled_net=tuple(handled_net),
                      scopes=tuple(SCOPES), rules=(*rules.values(), *ports), abi=KNOWN_ABI,
                      loc=loc)


def degrade(step: p.Landlock, abi: int) -> p.Landlock:
    """``step`` as the host's Landlock ``abi`` can enforce it, each loss named."""
    abi = min(abi, KNOWN_ABI)
    lost: list[str] = []
    if abi <= 0:
        if step.handled_fs or step.handled_net or step.scopes:
            lost.append("the whole Landlock layer: this kernel has no Landlock (needs Linux "
                        "5.13+ with landlock in the lsm= boot list)")
        return p.Landlock((), (), (), (), 0, tuple(lost), step.loc)

    def keep(names: tuple[str, ...], table: dict[str, tuple[int, int]], what: str
             ) -> tuple[str, ...]:
        gone = [n for n in names if table[n][1] > abi]
        if gone:
            lost.append(f"{what} {', '.join(gone)} (needs ABI "
                        f"{max(table[n][1] for n in gone)}, this kernel has {abi})")
        return tuple(n for n in names if table[n][1] <= abi)

    fs = keep(step.handled_fs, ACCESS_FS, "file rights")
    net = keep(step.handled_net, ACCESS_NET, "TCP rules")
    scopes = keep(step.scopes, SCOPES, "scopes")
    rules = []
    for rule in step.rules:
        if rule.port:
            if rule.access[0] in net:
                rules.append(rule)
            continue
        access = tuple(n for n in rule.access if n in fs)
        rules.append(p.LandlockRule(access, path=rule.path, optional=rule.optional,
                                    abi=needs_abi(access, ACCESS_FS)))
    if "abstract_unix_socket" not in scopes and "abstract_unix_socket" in step.scopes:
        lost.append("the sandbox can reach abstract unix sockets of the host's network "
                    "namespace when it shares it (network = host)")
    return p.Landlock(fs, net, scopes, tuple(rules), abi, tuple(lost), step.loc)


def wrapper_losses(plan: p.Plan, step: p.Landlock) -> list[tuple[str, str]]:
    """(rule, why) for each part of ``step`` that a wrapper backend (bwrap, firejail)
    leaves unenforced where nothing else in the plan covers it, when isorun's exec stage
    cannot apply the ruleset inside it (bwrap: a plan with no /proc to run it from).

    The file rules restate the mounts, which the wrapper builds as a view: they are lost
    as a second wall, not as a rule. TCP port rules are rules of their own. A scope is
    covered by the namespace that makes the outside unreachable anyway: abstract unix
    sockets live in a network namespace, signals cannot name a process outside a pid
    namespace.
    """
    namespaces = {n for c in plan.find(p.Clone) for n in c.namespaces}
    out = []
    if any(r.port for r in step.rules) or step.handled_net:
        out.append(("Landlock:tcp", "TCP port rules need Landlock, which a wrapper gets "
                    "only from isorun's exec stage inside it"))
    if "abstract_unix_socket" in step.scopes and "net" not in namespaces:
        out.append(("Landlock:scope abstract_unix_socket", "the host network's abstract "
                    "unix sockets stay reachable without Landlock scoping"))
    if "signal" in step.scopes and "pid" not in namespaces:
        out.append(("Landlock:scope signal", "processes outside the sandbox stay "
                    "signalable without a pid namespace or Landlock scoping"))
    return out


def landlock_applier(plan: p.Plan, backend: str) -> str:
    """Who applies ``plan``'s Landlock layer on ``backend``, and when; or why nothing does."""
    steps = plan.find(p.Landlock)
    if not steps or not (steps[0].abi and (steps[0].handled_fs or steps[0].handled_net
                                           or steps[0].scopes)):
        return "none: the plan has no Landlock layer (or this kernel has no Landlock)"
    order = "after no_new_privs, before seccomp"
    match backend:
        case "native":
            return f"the shim, once the mounts are made, {order}; rules at the destinations"
        case "landlock":
            return (f"the shim, {order}; rules on the host's paths (there is no view), "
                    "reached with no link followed")
        case "bwrap":
            if not any(s.type == "proc" and s.dst == "/proc" for s in plan.find(p.MountStep)):
                return ("none: isorun's exec stage runs inside bwrap as /proc/self/fd/N and "
                        "the plan mounts no /proc")
            return (f"isorun's exec stage inside bwrap, {order}; rules at the destinations "
                    "(the sandbox's view)")
        case "firejail":
            return (f"isorun's exec stage inside firejail, {order}; firejail keeps the "
                    "host's root, so rules are host paths, reached with no link followed")
    return "unknown backend"
