"""Plans compiled once per process and once per machine: the API's memo in front of the
on-disk plan cache (:mod:`isorun.cache.store`), in front of the compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from isorun.cache.memo import Memo
from isorun.compile.pipeline import compile_plan
from isorun.compile.plan import Plan
from isorun.host import facts as host_facts
from isorun.profile.schema import Profile

#: this process's compiled plans, programs and launch records (isorun.cache.memo): the one
#: instance the API's calls share, so a loop of isorun.run compiles once
MEMO = Memo()


def compiled(spec: str, log: Callable[[str], None] | None = None
             ) -> tuple[Plan, bytes, dict[str, object] | None]:
    """(plan, BPF, cache entry) for ``spec``: from the on-disk cache, else compiled and
    stored. ``ISORUN_CACHE=0`` in the environment skips the disk cache (reads and writes).
    """
    import os

    from isorun.cache import entry as cache_entry
    from isorun.cache import record as cache_record
    from isorun.cache import store as cache_store

    use_disk = os.environ.get("ISORUN_CACHE", "1") != "0"
    if use_disk:
        _, entry = cache_store.lookup(spec, log)
        if entry is not None:
            try:
                return cache_entry.load_plan(entry), entry["bpf"], entry  # type: ignore[return-value]
            except cache_entry.EntryInvalid as err:
                if log is not None:
                    log(f"isorun: cache: ignoring entry: {err}")

    def record(plan: Plan, bpf: bytes) -> dict[str, object] | None:
        return cache_record.make_record(plan, bpf, log)

    plan, bpf, entry = cache_store.compile_entry(spec, log, record)
    if entry is not None and use_disk:
        cache_store.store(entry, log)
    return plan, bpf, entry


def cached_plan(profile: str | Profile, log: Callable[[str], None] | None = None,
                 cwd: str | None = None) -> Plan:
    """Compile once per process: the API is used in loops by test harnesses.

    Keyed by the spec, the variables it resolves with (the working directory changes
    ${CWD}) and the caller's facts; each call checks that the source files are unchanged
    (:meth:`Memo.deps_unchanged`: by stat, else by hash), so an edited profile is
    recompiled.
    The first use in a process reads the on-disk cache (see :mod:`isorun.cache`).
    ``cwd``: compile for that working directory (Popen's ``cwd=``), without the disk
    cache, whose entries are keyed by the process's own.
    """
    from isorun.cache import entry as cache_entry

    if not isinstance(profile, str):
        if cwd is None:
            return compile_plan(profile)
        facts = host_facts.probe()
        return compile_plan(profile, facts, host_facts.variables(facts, cwd=cwd))
    key = (profile, tuple(sorted(cache_entry.variables(cwd=cwd).items())), cache_entry.facts_key())
    hit = MEMO.plan(key)
    if hit is not None:
        return hit
    if cwd is not None:
        try:
            deps: tuple[Any, ...] | None = cache_entry.collect_deps(profile)
        except cache_entry.DEPS_ERRORS:
            deps = None  # the compile below reports the problem with its location
        facts = host_facts.probe()
        plan = compile_plan(profile, facts, host_facts.variables(facts, cwd=cwd))
        if deps:
            MEMO.keep_plan(key, plan, deps)
        return plan
    plan, bpf, entry = compiled(profile, log)
    MEMO.keep_program(plan, bpf)
    if entry is not None:
        MEMO.keep_plan(key, plan, entry["deps"])  # type: ignore[arg-type]
    return plan


def cached_program(plan: Plan) -> bytes:
    """The plan's seccomp program, from :data:`MEMO`."""
    return MEMO.program(plan)
