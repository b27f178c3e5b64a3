"""What container engines do besides applying a Docker seccomp profile.

Facts from data/engines.toml (the OCI runtimes' own syscalls after they loaded the
filter; names a libseccomp version does not know) and from runc's source (its ENOSYS stub),
used by the exports (:mod:`isorun.compile.render.docker`), the import
(:mod:`isorun.compile.render.docker_import`), the diff and learn mode.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any

from isorun.compile.render.docker import ACTIONS_OUT
from isorun.compile.seccomp import build_entries
from isorun.errors import UsageError
from isorun.kernel import syscalls
from isorun.profile.schema import Seccomp


def engine_facts() -> dict[str, Any]:
    """data/engines.toml: runtimes' post-filter syscalls, names libseccomp versions lack."""
    with open(os.path.join(os.path.dirname(__file__), "..", "data", "engines.toml"), "rb") as f:
        return tomllib.load(f)


#: names runc and crun drop when built with libseccomp 2.5.4 (Debian 12)
LIBSECCOMP_254_UNKNOWN = frozenset(engine_facts()["libseccomp"]["2.5.4"]["unknown"])


def runtime_syscalls(names: tuple[str, ...]) -> tuple[str, ...]:
    """The union of the named OCI runtimes' post-filter syscalls (data/engines.toml, each
    with how it was measured or read); ``all`` is every known one, ``none`` nothing."""
    known: dict[str, Any] = engine_facts()["runtime"]
    if "none" in names:
        return ()
    chosen = tuple(known) if not names or "all" in names else names
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise UsageError(
            f"unknown runtime {', '.join(map(repr, unknown))}; known: all, none, "
            + ", ".join(known)
        )
    return tuple(sorted({s for n in chosen for s in known[n]["syscalls"]}))


def with_runtime(
    policy: Seccomp, names: tuple[str, ...], arch: str = "x86_64"
) -> tuple[Seccomp, tuple[str, ...]]:
    """The policy allowing also what the runtimes call after loading the filter (they run
    under it too), and the names that added."""
    table = syscalls.table(arch)
    added = tuple(n for n in runtime_syscalls(names) if n not in policy.allow and n in table)
    return dataclasses.replace(policy, allow=(*policy.allow, *added)), added


def missing_runtime_syscalls(policy: Seccomp, runtime: str = "runc-1.1") -> tuple[str, ...]:
    """What ``runtime`` calls after loading the filter that the policy refuses."""
    from isorun.compile.seccomp import decide

    entries, _ = build_entries(policy)
    return tuple(
        n
        for n in runtime_syscalls((runtime,))
        if decide(policy, n, (), entries).kind not in ("allow", "log")
    )


def export_warnings(policy: Seccomp) -> list[str]:
    """What an engine will do differently from isorun with this export (printed, not
    fatal: the export itself is exact)."""
    out = []
    if policy.unknown_action.kind in ("kill_process", "kill_thread"):
        out.append(
            f"unknown_action = {policy.unknown_action} becomes defaultAction"
            f" {ACTIONS_OUT[policy.unknown_action.kind]}: runc's Go init makes calls no rule"
            " allows after loading the filter, one of its threads is killed and `runc"
            " create` hangs; use an errno unknown_action"
        )
    missing = missing_runtime_syscalls(policy)
    if missing:
        out.append(
            f"the filter refuses {' '.join(missing)}, which runc 1.1 calls after loading it:"
            ' a container will not start (runc: "unable to setup user"); export with'
            " --runtime all (or --runtime runc-1.1-nnp under --security-opt"
            " no-new-privileges)"
        )
    unknown = engine_facts()["libseccomp"]["2.5.4"]["unknown"]
    entries, _ = build_entries(policy)
    named = sorted(
        n for n in unknown if any(e.action != policy.unknown_action for e in entries.get(n, []))
    )
    if named:
        out.append(
            f"libseccomp 2.5.4 (Debian 12's runc and podman) does not know {', '.join(named)}:"
            f" engines built with it skip these rules, so the container answers ENOSYS or"
            f" the default action instead of what the profile says"
        )
    return out


def runc_stub(doc: dict[str, Any], arch: str = "x86_64") -> int | None:
    """The number above which runc answers ENOSYS before the profile's filter runs
    (libcontainer/seccomp/patchbpf: generatePatch, findLastSyscalls): the largest number
    of a name the profile lists. None when runc adds no stub (an allow, log or trace
    default). Names the engine's libseccomp lacks lower it further (a warning says so)."""
    if doc.get("defaultAction") in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        return None
    table = syscalls.table(arch)
    listed = [
        table[n]
        for rule in doc.get("syscalls") or []
        if isinstance(rule, dict)
        for n in [*(rule.get("names") or []), *([rule["name"]] if rule.get("name") else [])]
        if isinstance(n, str) and n in table
    ]
    return max(listed) if listed else None
