"""The launch record: a cached spec record straight to the shared spawn.

On this kind of machine ``import dataclasses`` alone costs more than bubblewrap takes to
start a sandbox, and the regular path (:func:`isorun.api.Popen` -> ``native.build_spec``
-> ``process.spawn``) imports dataclasses, typing, enum, subprocess and threading. So a
cache entry may carry a *launch record*: the ShimSpec ``native.build_spec`` made at
compile time, as :func:`isorun.sandbox.spec.spec_record` flattens it, which
:mod:`isorun.sandbox.foreground` hands to :func:`isorun.sandbox.parent.spawn_in_parent`
with the command line's argv. This module decides when a record may be made and used.

Fail closed: :func:`make_record` (on a cache miss, where imports are free) makes no
record for what the warm launch does not do (cgroups, a wall-clock limit, learn mode,
another backend, no shim); :func:`usable` refuses one when the caller's environment
variables the profile keeps differ from those it was built with, or argv cannot be C
strings. Then the regular path runs.

Imports at the top: ``os`` and builtin modules only.
"""

from __future__ import annotations

import os

from isorun.kernel.abi import MS_RDONLY, NOBODY
from isorun.sandbox.record import MOUNT, MOUNT_KINDS
from isorun.shim import abi as shim_abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from isorun.compile.plan import Plan
    from isorun.sandbox.parent import Record

def env_patterns(plan: Plan) -> tuple[str, ...] | None:
    """The caller's environment variables the plan reads: exact names, or ``PREFIX*``.

    None means the whole environment (no Environment step clearing it, or a pattern this
    module cannot match without fnmatch). A superset of what compile.environment.build_environment
    reads, so equal projections mean an equal environment for the command.
    """
    from isorun.compile.plan import Environment

    steps = plan.find(Environment)
    if not steps:
        # No Environment step: build_spec leaves ShimSpec.env at its default and reads
        # nothing of the caller's environment.
        return ()
    step = steps[0]
    if not step.clear:
        return None
    patterns: list[str] = []
    for pattern in step.keep:
        if pattern.endswith("*") and any(c in pattern[:-1] for c in "*?["):
            return None
        patterns.append(pattern)
    return tuple(patterns)


def env_projection(
    patterns: tuple[str, ...] | None, environ: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs of ``environ`` that ``patterns`` select, sorted."""
    env = os.environ if environ is None else environ
    if patterns is None:
        return tuple(sorted(env.items()))
    exact = {p for p in patterns if not p.endswith("*")}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    return tuple(
        sorted(
            (k, v) for k, v in env.items() if k in exact or (prefixes and k.startswith(prefixes))
        )
    )


def make_record(
    plan: Plan, bpf: bytes, log: Callable[[str], None] | None = None
) -> dict[str, object] | None:
    """The launch record of ``plan``, or None when the warm launch must not run it."""
    from isorun.compile.plan import Cgroup, Rlimit, WallTime

    if plan.find(Cgroup) or plan.find(WallTime):
        return None  # parent-side timers and cgroups: process.spawn does those
    if any(r.resource == "cpu" for r in plan.find(Rlimit)):
        return None  # attached.launch names limits.cpu when it kills the command (limit_report)
    if plan.backend not in ("auto", "native"):
        return None  # another backend runs it (see api.Popen)
    from isorun.host.facts import probe
    from isorun.sandbox import native, parent
    from isorun.sandbox.spec import spec_record

    facts = probe()
    if not facts.userns:
        return None  # api.Popen would choose another backend on this host
    from isorun.compile.exposure import root_write_notes

    if root_write_notes(plan):
        return None  # attached.launch says, on every launch, what the sandbox cannot write
    if not _shim_loads(log):
        return None
    patterns = env_patterns(plan)
    # argv comes from each command line; build_spec reads the caller's environment now,
    # and usable() checks at launch that what it read is still the same.
    spec = native.build_spec(plan, [], os.environ, bpf)
    if spec.cgroup or spec.notify_bpf:
        return None  # a cgroup or learn mode's listener: process.spawn handles those
    from isorun.compile.refusals import report_fields

    # isorun-launch says these when the command fails (launch_report.c); the Python warm
    # launch (run below) hands a reporting launch to it (isorun.__main__).
    return {
        "format": parent.RECORD_FORMAT,
        "spec": {**spec_record(spec), **report_fields(plan, bpf)},
        "env_patterns": patterns,
        "env": env_projection(patterns),
    }


MODE_NATIVE, MODE_LANDLOCK, MODE_LANDLOCK_AUTO = (
    shim_abi.MODE_NATIVE, shim_abi.MODE_LANDLOCK, shim_abi.MODE_LANDLOCK_AUTO)  # fmt: skip
AUTO_FILES, AUTO_TOOLS = shim_abi.AUTO_FILES, shim_abi.AUTO_TOOLS


def make_landlock_record(plan: Plan, log: Callable[[str], None] | None = None
                         ) -> dict[str, object] | None:
    """The launch record of ``plan`` on the landlock backend (sandbox/landlock_mode.py),
    or None when the warm launch must not run it. The same checks as :func:`make_record`
    but the backend's; what the mode loses is decided per launch (:func:`landlock_choice`)."""
    from isorun.compile.plan import Landlock, Rlimit, WallTime

    if plan.find(WallTime) or any(r.resource == "cpu" for r in plan.find(Rlimit)):
        return None  # a parent-side timer, or a limit attached.launch names when it kills
    if not plan.find(Landlock):
        return None
    from isorun.host.facts import probe
    from isorun.sandbox import parent
    from isorun.sandbox.landlock_mode import build_mode_spec
    from isorun.sandbox.spec import spec_record

    abi = probe().landlock
    if abi < 1:
        return None
    if not _shim_loads(log):
        return None
    patterns = env_patterns(plan)
    spec = build_mode_spec(plan, [], os.environ, abi)
    if spec.cgroup or spec.notify_bpf:
        return None
    from isorun.compile.refusals import landlock_notes, report_fields
    from isorun.sandbox.landlock_mode import mode_plan

    # the refusal report, as LandlockBackend.spawn gives the API's launches
    report = report_fields(mode_plan(plan, abi), spec.seccomp_bpf, notes=landlock_notes(plan))
    return {
        "format": parent.RECORD_FORMAT,
        "spec": {**spec_record(spec), **report},
        "env_patterns": patterns,
        "env": env_projection(patterns),
    }


def landlock_choice(plan: Plan, backend: str | None) -> tuple[int, str, bool] | None:
    """(mode, the --allow-weaker warning to print, whether the run needs --allow-weaker)
    when the regular path would run ``plan`` on the landlock backend now, else None.

    The selection itself decides (sandbox.backends.select_backend, with this host's
    facts), so the warm launch never differs from the regular one: ``auto`` takes the
    landlock backend only where no user namespace can be made and no wrapper is usable.
    """
    from isorun.errors import IsorunError
    from isorun.host.facts import probe
    from isorun.host.probe import probe_backends
    from isorun.sandbox.backends import describe_lost, select_backend
    from isorun.sandbox.landlock_mode import check_grant_paths

    requested = backend or plan.backend
    if requested not in ("auto", "landlock"):
        return None
    facts = probe()
    if requested == "auto" and facts.userns:
        return None  # native
    try:
        chosen, lost = select_backend(plan, requested, probe_backends(facts), True)
        check_grant_paths(plan)
    except IsorunError:
        return None  # the regular path says why
    if chosen.name != "landlock":
        return None
    mode = MODE_LANDLOCK if requested == "landlock" else MODE_LANDLOCK_AUTO
    return mode, describe_lost("landlock", lost) if lost else "", bool(lost)


def usable(record: object, argv: list[str]) -> Record | None:
    """The spec record to launch ``argv`` with for this caller now, else None."""
    from isorun.sandbox.parent import RECORD_FORMAT

    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    if not argv or not argv[0] or any("\0" in a for a in argv):
        return None  # the regular path reports these properly
    if env_projection(record["env_patterns"]) != record["env"]:
        return None  # a kept variable changed: the command's environment would differ
    spec: Record = record["spec"]
    from isorun.host.nobody import nobody_cannot_write

    if any(nobody_cannot_write(src) for src in root_sandbox_binds(spec)):
        # made or chowned since this record (web's ./data): the regular path says what
        # the sandbox cannot write (api.root_write_notes), the record would not
        return None
    return {**spec, "argv": tuple(os.fsencode(a) for a in argv)}


def root_sandbox_binds(spec: Record) -> list[bytes]:
    """For a root caller whose sandbox runs as 65534 (README, "Root"), the sources of the
    record's writable binds; [] for anyone else."""
    nobody = str(NOBODY).encode()
    if os.geteuid() != 0 or not any(line.split()[1:2] == [nobody]
                                    for line in spec.get("uid_map", b"").splitlines()):
        return []
    return [m[MOUNT.src] for m in spec["mounts"]
            if m[MOUNT.kind] == MOUNT_KINDS["BIND"] and not m[MOUNT.flags] & MS_RDONLY]


def locate(err: Exception, entry: Mapping[str, object]) -> Exception | None:
    """``err`` naming the profile line of its step, as the regular path reports it, or
    None when there is nothing to add. Only called once the launch failed, so loading
    the cached plan for its locations costs nothing that matters."""
    from isorun.errors import SandboxSetupError

    if not isinstance(err, SandboxSetupError) or err.loc is not None:
        return None
    from isorun.cache import entry as cache_entry
    from isorun.compile.plan import locate_error

    try:
        plan = cache_entry.load_plan(entry)
    except cache_entry.EntryInvalid:
        return None  # the error without its line is still the right error
    return locate_error(err, plan)


def _shim_loads(log: Callable[[str], None] | None) -> bool:
    """Whether the compiled shim a launch record is made for loads here; says why not."""
    from isorun.errors import IsorunError
    from isorun.sandbox.shim_ffi import load_shim

    try:
        load_shim()
    except IsorunError as err:
        if log is not None:
            log(f"isorun: cache: no launch record: {err}")
        return False
    return True
