"""What one process compiled, kept for its next launches: the API is used in loops by test
harnesses, and a launch must not pay the compiler (or even the disk cache) twice.

A :class:`Memo` holds four tables: plans by their spec and inputs (with the source files
they were compiled from), seccomp programs by policy, the stat signatures of source files
whose hashes last matched, and native launch records by plan and environment. The API
keeps one (isorun.api.MEMO); a caller may keep its own. Each table only ever saves work:
a plan is served only while its source files are unchanged (:meth:`Memo.deps_unchanged`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from isorun.compile.plan import LoadSeccomp, Plan

#: (literal path, real path, sha256 hex) of each source file, as isorun.cache.entry.Dep
Deps = tuple[tuple[str, str, str], ...]


def _policy_of(plan: Plan) -> Any:
    steps = plan.find(LoadSeccomp)
    return steps[0].policy if steps else None


class Memo:
    """The compiled results of this process (see the module docstring)."""

    #: how old a file's last change must be before its stat signature stands for its
    #: hash: a change within the same timestamp tick as an earlier one would leave it as
    #: it was
    settled_ns = 2_000_000_000
    #: bounds on the launch records: plans a process launches, environments per plan
    max_plans, max_envs = 32, 16

    def __init__(self) -> None:
        #: (spec, variables, facts) -> (plan, the source files it was compiled from)
        self.plans: dict[tuple[object, ...], tuple[Plan, Deps]] = {}
        #: seccomp policy -> BPF; arch and libseccomp do not change within a process
        self.programs: dict[Any, bytes] = {}
        #: source files -> their stat signature when their hashes last matched
        self.verified: dict[Deps, tuple[tuple[int, ...], ...]] = {}
        #: id(plan) -> (plan, (exact names, name prefixes) or None for the whole
        #: environment, {what the plan reads of an environment: (record, flat record)});
        #: the plan is kept so its id stays its own
        self.records: dict[int, tuple[Plan, tuple[tuple[str, ...], tuple[str, ...]] | None,
                                      dict[Any, tuple[dict[str, Any], bytes]]]] = {}

    def plan(self, key: tuple[object, ...]) -> Plan | None:
        """The plan kept under ``key`` while its source files are unchanged, else None."""
        hit = self.plans.get(key)
        if hit is not None and self.deps_unchanged(hit[1]):
            return hit[0]
        return None

    def keep_plan(self, key: tuple[object, ...], plan: Plan, deps: Deps) -> None:
        self.plans[key] = (plan, deps)

    def keep_program(self, plan: Plan, program: bytes) -> None:
        """Keep ``program`` as the plan's (read with the plan from the disk cache)."""
        self.programs[_policy_of(plan)] = program

    def program(self, plan: Plan) -> bytes:
        """The plan's seccomp program, keyed by the policy itself (a frozen dataclass)."""
        key = _policy_of(plan)
        program = self.programs.get(key)
        if program is None:
            from isorun.compile.pipeline import seccomp_program

            program = self.programs[key] = seccomp_program(plan)
        return program

    def deps_unchanged(self, deps: Deps) -> bool:
        """``cache.check_deps(deps) is None``, without reading and hashing every file again
        when none changed since the last time it held (about 60 us a launch, for strict).

        Changed means another file (device, inode: a replaced file, or a path that now
        resolves elsewhere), another size, mtime or ctime; ctime moves on every write,
        rename or utime and cannot be set back. Only a signature taken when every file had
        been still for :attr:`settled_ns` is trusted, so that an edit in the same
        timestamp tick as the hash cannot go unseen; anything else is hashed as before.
        """
        from isorun.cache import entry as cache_entry

        try:
            now = [os.stat(literal) for literal, _real, _digest in deps]
            sig = tuple((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                        for st in now)  # fmt: skip
        except OSError:
            return cache_entry.check_deps(deps) is None
        if self.verified.get(deps) == sig:
            return True
        if cache_entry.check_deps(deps) is not None:
            return False
        settled = time.time_ns() - self.settled_ns
        if all(max(mtime, ctime) < settled for *_, mtime, ctime in sig):
            self.verified[deps] = sig
        return True

    def launch_record(self, plan: Plan, caller_env: Mapping[str, str]
                      ) -> tuple[dict[str, Any], bytes]:
        """(record, flat.encode(record)) of ``plan`` for this caller's environment, built
        once (sandbox.backend.common.launch_record).

        The environment is the only per-launch input of native.build_spec; keyed by the
        part of it the plan reads (the names and prefixes of isorun.cache.record.env_patterns, a
        superset of what build_environment reads), so an equal key means an equal record.
        The key is taken name by name rather than with launch.env_projection: decoding
        every variable of os.environ costs more than the rest of this function.
        """
        entry = self.records.get(id(plan))
        if entry is None or entry[0] is not plan:
            from isorun.cache import record as cache_record

            if len(self.records) >= self.max_plans:
                del self.records[next(iter(self.records))]
            patterns = cache_record.env_patterns(plan)
            names = None if patterns is None else (
                tuple(p for p in patterns if not p.endswith("*")),
                tuple(p[:-1] for p in patterns if p.endswith("*")))  # fmt: skip
            entry = self.records[id(plan)] = (plan, names, {})
        split: tuple[tuple[Any, ...], tuple[Any, ...]] | None = entry[1]
        env: Mapping[Any, Any] = caller_env
        if caller_env is os.environ:
            # The bytes os.environ keeps (and decodes on every access); its own key space.
            env = os.environ._data  # type: ignore[attr-defined]
            if split is not None:
                split = (tuple(os.fsencode(n) for n in split[0]),
                         tuple(os.fsencode(n) for n in split[1]))  # fmt: skip
        if split is None:
            key: Any = tuple(sorted(env.items()))
        else:
            exact, prefixes = split
            key = tuple(env.get(name) for name in exact)
            if prefixes:
                key += tuple(sorted((name, env[name]) for name in env
                                    if name.startswith(prefixes)))  # fmt: skip
        hit = entry[2].get(key)
        if hit is None:
            from isorun.sandbox.backends import launch_record

            if len(entry[2]) >= self.max_envs:
                del entry[2][next(iter(entry[2]))]
            hit = entry[2][key] = launch_record(plan, self.program(plan), caller_env)
        return hit
