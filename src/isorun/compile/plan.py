"""The plan: an ordered list of steps, each tagged with the phase it runs in.

A plan is backend-neutral and fully resolved (absolute paths, variables expanded, ids
decided). Backends turn it into something that runs; none may drop a step silently.
:class:`Plan` checks the ordering invariants on construction, so a planner bug cannot
produce a plan that, say, loads seccomp before no_new_privs.

The steps themselves live in :mod:`isorun.compile.steps`; this module re-exports them,
since the backends, the renderers and the planner spell them ``p.MountStep`` after
``from isorun.compile import plan as p`` (one import for the plan and its parts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from isorun.compile.steps import (
    RLIMIT_COVERS,
    Cgroup,
    Chdir,
    Clone,
    CloseFds,
    DieWithParent,
    DropCaps,
    Environment,
    Exec,
    Hostname,
    Landlock,
    LandlockRule,
    LoadSeccomp,
    Loopback,
    MapIds,
    MountStep,
    NewRoot,
    NewSession,
    NoNewPrivs,
    Phase,
    PivotRoot,
    ReadOnlyRoot,
    Rlimit,
    WallTime,
    human_size,
)
from isorun.errors import InternalError, SandboxSetupError
from isorun.kernel.abi import NOBODY

__all__ = [
    "RLIMIT_COVERS",
    "Cgroup",
    "Chdir",
    "Clone",
    "CloseFds",
    "DieWithParent",
    "DropCaps",
    "Environment",
    "Exec",
    "Hostname",
    "Landlock",
    "LandlockRule",
    "LoadSeccomp",
    "Loopback",
    "MapIds",
    "MountStep",
    "NewRoot",
    "NewSession",
    "NoNewPrivs",
    "Phase",
    "PivotRoot",
    "Plan",
    "ReadOnlyRoot",
    "Rlimit",
    "Step",
    "WallTime",
    "check_invariants",
    "human_size",
    "locate_error",
    "missing_source_hint",
]

Step = (Clone | MapIds | Cgroup | WallTime | NewRoot | MountStep | ReadOnlyRoot | PivotRoot
        | Hostname | Loopback | Rlimit | Chdir | NewSession | DieWithParent | CloseFds
        | Environment | DropCaps | NoNewPrivs | Landlock | LoadSeccomp | Exec)

#: steps that need privilege inside the namespaces, so must come before DropCaps
_PRIVILEGED = (NewRoot, MountStep, ReadOnlyRoot, PivotRoot, Hostname, Loopback, Rlimit)


@dataclass(frozen=True, slots=True)
class Plan:
    """A resolved profile: what to do, in order, and where each step came from."""

    profile: str
    steps: tuple[Step, ...]
    #: files the profile was built from (for the cache key and explain)
    sources: tuple[str, ...] = ()
    #: backend the profile asks for
    backend: str = "auto"
    #: variables the plan was resolved with
    variables: tuple[tuple[str, str], ...] = ()
    #: settings that weaken the sandbox, named in explain
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_invariants(self.steps)

    def find(self, kind: type[Any]) -> list[Any]:
        return [s for s in self.steps if isinstance(s, kind)]

    def describe(self, summary: Sequence[str] = ()) -> str:
        """The steps in order, then ``summary`` (explain's memory bound, which
        compile/memory_bound.py reads from these steps), then the warnings."""
        lines = [f"plan for profile {self.profile}"]
        if self.sources:
            lines.append("  from " + ", ".join(self.sources))
        phase = None
        for index, step in enumerate(self.steps):
            if step.phase != phase:
                phase = step.phase
                lines.append(f"{phase.name.lower().replace('_', ' ')}:")
            where = step.loc.short()
            lines.append(f"  {index:2d}. {step.describe():<60} {where}")
            if isinstance(step, Landlock):
                lines.extend(f"        {line}" for line in step.details())
        lines.extend(summary)
        for warning in self.warnings:
            lines.append(f"warning: {warning}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        steps = []
        for step in self.steps:
            data = {k: v for k, v in asdict(step).items() if k != "loc"}
            if isinstance(step, LoadSeccomp):
                data["policy"] = _jsonable(data["policy"])
            steps.append({"step": type(step).__name__, "phase": step.phase.name,
                          "what": step.describe(), "from": step.loc.short(), **data})
        return {"profile": self.profile, "sources": list(self.sources),
                "backend": self.backend, "variables": dict(self.variables),
                "warnings": list(self.warnings), "steps": steps}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "loc"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def check_invariants(steps: tuple[Step, ...]) -> None:
    """The ordering rules every plan obeys; a violation is a planner bug."""
    phases = [s.phase for s in steps]
    if phases != sorted(phases):
        raise InternalError("plan steps are not in phase order")
    kinds = [type(s) for s in steps]
    if not kinds or kinds[-1] is not Exec:
        raise InternalError("a plan must end with Exec")
    if LoadSeccomp in kinds:
        # seccomp last: the filter must not have to allow isorun's own set-up syscalls.
        if kinds.index(LoadSeccomp) != len(kinds) - 2:
            raise InternalError("LoadSeccomp must come right before Exec")
        # Without no_new_privs (or CAP_SYS_ADMIN, which we drop) the kernel refuses an
        # unprivileged seccomp filter, and a filter without it could be escaped by a
        # setuid exec.
        if NoNewPrivs not in kinds or kinds.index(NoNewPrivs) > kinds.index(LoadSeccomp):
            raise InternalError("NoNewPrivs must come before LoadSeccomp")
    if ReadOnlyRoot in kinds and MountStep in kinds[kinds.index(ReadOnlyRoot):]:
        # Every mount point lives in the root: a mount after the remount would fail.
        raise InternalError("a mount comes after the read-only remount of the root")
    if Landlock in kinds:
        at = kinds.index(Landlock)
        # The rules open the mounts' destinations: the view must be complete first.
        if any(issubclass(k, (MountStep, PivotRoot, NewRoot)) for k in kinds[at:]):
            raise InternalError("Landlock must come after every mount")
        # landlock_restrict_self needs no_new_privs once the capabilities are dropped.
        if NoNewPrivs not in kinds or kinds.index(NoNewPrivs) > at:
            raise InternalError("NoNewPrivs must come before Landlock")
    if DropCaps in kinds:
        drop = kinds.index(DropCaps)
        if any(issubclass(k, _PRIVILEGED) for k in kinds[drop:]):
            raise InternalError("a privileged step comes after the capability drop")


def locate_error(err: SandboxSetupError, plan: Plan) -> SandboxSetupError:
    """Name the profile line behind a failed step (the shim only knows the step index),
    and how to fix it where that is known."""
    loc = err.loc
    if loc is None and 0 <= err.step_index < len(plan.steps):
        loc = plan.steps[err.step_index].loc
    hint = err.hint or _setup_hint(err, plan)
    if loc is err.loc and hint == err.hint:
        return err
    return SandboxSetupError(err.step, err.syscall, err.errno, loc, err.detail,
                             err.step_index, hint)


def missing_source_hint(step: MountStep) -> str:
    """The fix for a required bind whose source is missing: said by ``check`` before the
    run, and by the run when the source went away after it."""
    return f"create {step.src}, or mark the mount optional = true (dst {step.dst})"


def _setup_hint(err: SandboxSetupError, plan: Plan) -> str:
    """The fix for a set-up failure a user causes, "" when there is none to suggest."""
    import errno
    import os

    if err.step == "mount" and err.errno == errno.ENOENT and 0 <= err.step_index < len(
            plan.steps):
        step = plan.steps[err.step_index]
        # only when it is still missing: ENOENT from below a present source is no typo
        if isinstance(step, MountStep) and step.src and not os.path.lexists(step.src):
            return missing_source_hint(step)
    chdir, ids = plan.find(Chdir), plan.find(MapIds)
    if err.step != "cwd" or err.errno != errno.EACCES or not chdir:
        return ""
    path = chdir[0].path
    if ids and ids[0].host_uid == NOBODY and os.geteuid() == 0:
        # README, "Root": a root caller's sandbox runs as the overflow user
        return (f"started by root, the sandbox runs as uid 65534 (nobody), which may not "
                f"enter {path}: run isorun from a directory others may enter, or as the "
                "user who owns this one (setpriv/sudo -u), or extend the profile with "
                "[unsafe] map_root = true (the sandbox is then root over the files it sees)")
    return f"the sandbox's user may not enter {path}: check its permissions and its parents'"
