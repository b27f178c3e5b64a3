"""Plan -> ShimSpec for the native backend: the parent-side half of "Python compiles".

Everything the child needs is decided here, in the launcher, so the shim only walks a flat
spec. The environment is the one thing resolved per launch rather than per plan: ``keep``
takes the caller's current values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import assert_never

from isorun.compile import plan as p
from isorun.compile.environment import build_environment
from isorun.errors import InternalError
from isorun.kernel import abi
from isorun.kernel.abi import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, NAMESPACE_FLAGS
from isorun.profile.schema import CAPABILITIES
from isorun.sandbox.spec import MountKind, Rlimit, ShimMount, ShimSpec

#: the shim's names for its fixed steps (the ``step`` of a failure record) -> plan step type
SHIM_STEPS = {
    "clone": p.Clone, "ids": p.MapIds, "setgroups": p.MapIds, "uid_map": p.MapIds,
    "gid_map": p.MapIds, "cgroup": p.Cgroup, "root": p.NewRoot,
    "pivot_root": p.PivotRoot, "hostname": p.Hostname, "loopback": p.Loopback,
    "rlimit": p.Rlimit, "cwd": p.Chdir, "setsid": p.NewSession,
    "die_with_parent": p.DieWithParent, "close_fds": p.CloseFds, "caps": p.DropCaps,
    "securebits": p.DropCaps, "no_new_privs": p.NoNewPrivs, "landlock": p.Landlock,
    "seccomp": p.LoadSeccomp,
    "exec": p.Exec,
}
RLIMIT_NUMBERS = {name: number for name, (_c, number) in abi.RLIMITS.items()}


def _mount(index: int, step: p.MountStep) -> ShimMount:
    dst = os.fsencode(step.dst)
    noexec = MS_NOEXEC if step.noexec else 0
    match step.type:
        case "ro-bind":
            # nosuid/nodev on every bind: a setuid binary or device node from the host must
            # not become usable inside, whatever the host mount allows.
            return ShimMount(MountKind.BIND, dst, os.fsencode(step.src),
                             MS_RDONLY | MS_NOSUID | MS_NODEV | noexec,
                             optional=step.optional, step=index)
        case "rw-bind":
            return ShimMount(MountKind.BIND, dst, os.fsencode(step.src),
                             MS_NOSUID | MS_NODEV | noexec, optional=step.optional, step=index)
        case "dev-bind":
            return ShimMount(MountKind.DEV_BIND, dst, os.fsencode(step.src), MS_NOSUID,
                             optional=step.optional, step=index)
        case "tmpfs":
            mode = 0o755 if step.mode is None else step.mode
            data = f"mode={mode:o}" + _tmpfs_limits(step.size, step.inodes)
            return ShimMount(MountKind.TMPFS, dst, b"", MS_NOSUID | MS_NODEV | noexec,
                             data.encode(), mode, step=index)
        case "overlay":
            return ShimMount(MountKind.OVERLAY, dst, os.fsencode(step.src),
                             MS_NOSUID | MS_NODEV | noexec,
                             ("mode=700" + _tmpfs_limits(step.size, step.inodes)).encode(),
                             optional=step.optional, step=index)
        case "mask":
            return ShimMount(MountKind.MASK, dst, optional=True, step=index)
        case "proc":
            return ShimMount(MountKind.PROC, dst, flags=MS_NOSUID | MS_NODEV | MS_NOEXEC,
                             step=index)
        case "dev":
            return ShimMount(MountKind.DEV, dst,
                             data=("mode=755" + _tmpfs_limits(step.size, step.inodes)).encode(),
                             step=index)
        case "symlink":
            return ShimMount(MountKind.SYMLINK, dst, os.fsencode(step.src), step=index)
        case "file":
            return ShimMount(MountKind.FILE, dst, step.content.encode(),
                             mode=0o644 if step.mode is None else step.mode, step=index)
        case "dir":
            return ShimMount(MountKind.DIR, dst, mode=0o755 if step.mode is None else step.mode,
                             step=index)
        case "mqueue":
            return ShimMount(MountKind.MQUEUE, dst, flags=MS_NOSUID | MS_NODEV | MS_NOEXEC,
                             step=index)
    raise InternalError(f"mount type {step.type!r} has no shim mapping")


def _tmpfs_limits(size: int | None, inodes: int | None) -> str:
    return (f",size={size}" if size else "") + (f",nr_inodes={inodes}" if inodes else "")


def landlock_fields(step: p.Landlock) -> dict[str, object]:
    """The ShimSpec fields of a Landlock step: masks and rules, nothing to decide in C."""
    from isorun.compile import landlock

    fs, net, scoped = (landlock.mask(step.handled_fs, landlock.ACCESS_FS),
                       landlock.mask(step.handled_net, landlock.ACCESS_NET),
                       landlock.mask(step.scopes, landlock.SCOPES))
    if not (step.abi and (fs or net or scoped)):
        return {}  # the kernel refuses a ruleset that handles nothing (ENOMSG)
    rules = tuple((os.fsencode(r.path), r.port, landlock.mask(r.access, landlock.ACCESS_NET
                                                               if r.port else landlock.ACCESS_FS),
                   r.optional) for r in step.rules)  # fmt: skip
    return {"landlock_abi": step.abi,
            "landlock_fs": fs, "landlock_net": net, "landlock_scoped": scoped,
            "landlock_rules": rules}


def build_spec(plan: p.Plan, argv: list[str], caller_env: Mapping[str, str],
               seccomp_bpf: bytes) -> ShimSpec:
    """Flatten ``plan`` into the shim's spec. ``seccomp_bpf`` is the compiled filter."""
    fields: dict[str, object] = {"argv": tuple(os.fsencode(a) for a in argv),
                                 "root": b"", "loopback_up": False, "new_session": False,
                                 "die_with_parent": False, "no_new_privs": False,
                                 "init": False}
    for step in plan.steps:
        _spec_fields(step, fields, caller_env, seccomp_bpf)
    step_index: dict[str, int] = {}
    for name, kind in SHIM_STEPS.items():
        found = plan.find(kind)
        if found:
            step_index[name] = plan.steps.index(found[0])
    rlimits = tuple(Rlimit(RLIMIT_NUMBERS[step.resource], step.value, step.value, index)
                    for index, step in enumerate(plan.steps) if isinstance(step, p.Rlimit))
    return ShimSpec(mounts=_spec_mounts(plan), rlimits=rlimits, step_index=step_index,
                    **fields)  # type: ignore[arg-type]


def _spec_mounts(plan: p.Plan) -> tuple[ShimMount, ...]:
    """The shim's mounts, in the plan's order, each with its step's index."""
    mounts: list[ShimMount] = []
    for index, step in enumerate(plan.steps):
        match step:
            case p.NewRoot() if step.kind == "tmpfs":
                # The root's own tmpfs, with its size: the shim mounts a TMPFS at "/"
                # that comes first as the root instead of an unsized one (mount.c).
                data = "mode=755" + _tmpfs_limits(step.size, step.inodes)
                mounts.append(ShimMount(MountKind.TMPFS, b"/", b"", MS_NOSUID | MS_NODEV,
                                        data.encode(), 0o755, step=index))
            case p.MountStep():
                mounts.append(_mount(index, step))
            case p.ReadOnlyRoot():
                mounts.append(ShimMount(MountKind.REMOUNT_RO, b"/", step=index))
    return tuple(mounts)


def _spec_fields(step: p.Step, fields: dict[str, object], caller_env: Mapping[str, str],
                 seccomp_bpf: bytes) -> None:
    """The spec's fields ``step`` sets (its mounts and rlimits: :func:`build_spec`)."""
    match step:
        case p.Clone():
            flags = 0
            for name in step.namespaces:
                flags |= NAMESPACE_FLAGS[name]
            fields["clone_flags"] = flags
            fields["init"] = "pid" in step.namespaces
        case p.MapIds():
            fields["uid_map"] = f"{step.uid} {step.host_uid} 1\n".encode()
            fields["gid_map"] = f"{step.gid} {step.host_gid} 1\n".encode()
            fields["uid"], fields["gid"] = step.uid, step.gid
        case p.NewRoot():
            fields["root"] = b"tmpfs" if step.kind == "tmpfs" else os.fsencode(step.path)
        case p.Hostname():
            fields["hostname"] = step.name.encode()
        case p.Loopback():
            fields["loopback_up"] = True
        case p.Chdir():
            fields["cwd"] = os.fsencode(step.path)
        case p.NewSession():
            fields["new_session"] = True
        case p.DieWithParent():
            fields["die_with_parent"] = True
        case p.CloseFds():
            fields["keep_fds"] = step.keep
        case p.Environment():
            fields["env"] = build_environment(step, caller_env)
        case p.DropCaps():
            fields["caps_keep"] = tuple(CAPABILITIES.index(c) for c in step.keep)
        case p.NoNewPrivs():
            fields["no_new_privs"] = True
        case p.Landlock():
            fields.update(landlock_fields(step))
        case p.LoadSeccomp():
            fields["seccomp_bpf"] = seccomp_bpf
            # The hardening rules refuse TIOCSTI and TIOCLINUX, the reason for a new
            # session; with them the sandbox may stay in a terminal's session as its
            # foreground job (spec.terminal_job), and a shell works as one.
            fields["terminal_job"] = bool(seccomp_bpf) and step.policy.hardening
        case p.MountStep() | p.ReadOnlyRoot() | p.Rlimit():
            pass  # mounts and rlimits: lists of their own (build_spec)
        case p.Cgroup() | p.WallTime():
            pass  # parent-side: handled by the runner around spawn
        case p.PivotRoot():
            pass  # implied by a root: the shim always pivots after the mounts
        case p.Exec():
            pass
        case _:
            assert_never(step)
