"""The plan cache's lookups and stores: a profile compiled once, then launched without
the compiler (the package's docstring, :mod:`isorun.cache`, says what an entry holds).

Fail closed: every doubt (a foreign or group/world-writable file, a tag that does not
match, an input that changed, a compiler that grew an input this module does not know)
means recompile. A cache can make a launch faster, never its sandbox weaker.

On the warm launch path, so it imports only ``os``, ``sys`` and builtin modules at the
top; the compiler is imported on a miss only.
"""

from __future__ import annotations

import os
import sys

from isorun.cache.entry import (
    DEPS_ERRORS,
    FACT_FIELDS,
    Dep,
    check_deps,
    collect_deps,
    entry_key,
    variables,
)
from isorun.cache.files import _warn, cache_dir, read_entry, write_entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from isorun.compile.plan import Plan
    from isorun.host.facts import HostFacts

def check_not_writable(plan: Plan, directory: str | None = None) -> None:
    """Refuse ``plan`` when its sandbox could write the plan cache ``directory``, or the
    installation this isorun runs from.

    An entry holds a pickle, which runs constructors named in it, and a launch record the
    shim applies as it stands; both are trusted only with a tag no sandbox can forge
    (:func:`read_entry`, :mod:`isorun.host.mac`). A writable mount over the cache
    (``XDG_CACHE_HOME`` inside the project with build's writable ``${CWD}``, a profile
    binding ``~/.cache``) is refused all the same: the sandbox could delete entries or
    put back older ones of its choosing, and whatever else lives there (the exec stage,
    pytest session profiles) is not tagged. The same holds for
    isorun's own installation: its package, and the Python environments it runs in
    (``sys.prefix``: a ``.pth`` file in its site-packages runs at every interpreter start,
    its bin holds the ``isorun`` program; ``sys.base_prefix``: the standard library), a
    virtual environment inside the project being the usual case. Checked on every compile
    for a launch, so a plan refused here is never stored for a warm launch either.
    """
    from isorun.compile import plan as p
    from isorun.errors import HostError

    real = os.path.realpath(cache_dir() if directory is None else directory)
    guarded = [(real, f"isorun's plan cache {real}", "rewrite the plans that later launches "
                "load and run on the host",
                "set XDG_CACHE_HOME to a directory outside every writable mount (unset, "
                "the cache is ~/.cache/isorun), or make the mount read-only")]
    package = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    install_fix = ("install isorun (its virtual environment) outside every writable mount, "
                   "e.g. python3 -m venv ~/.venvs/NAME, or make the mount read-only")
    guarded.append((package, f"the isorun package {package}", "rewrite the code that every "
                    "later launch runs on the host", install_fix))
    for prefix in dict.fromkeys(os.path.realpath(x) for x in (sys.prefix, sys.base_prefix)):
        guarded.append((prefix, f"the Python environment {prefix} that isorun runs in",
                        "plant modules and .pth files that every later start of isorun "
                        "runs on the host", install_fix))
    for step in plan.find(p.MountStep):
        if step.type not in ("rw-bind", "dev-bind") or not step.src:
            continue
        top = step.src.rstrip("/")
        for path, what, harm, fix in guarded:
            if path == step.src or not top or path.startswith(top + "/"):
                raise HostError(f"{step.loc.short()}: {step.describe()}",
                                f"{what} lies inside this writable mount: the sandbox could "
                                f"{harm}", fix)


def lookup(
    spec: str, log: Callable[[str], None] | None = None, directory: str | None = None
) -> tuple[str, dict[str, object] | None]:
    """(key, entry) for ``spec`` as this caller would compile it now; entry None on a miss.

    Cheap enough for every launch: no compiler import, a few stat and read calls.
    """
    resolved = variables()
    key = entry_key(spec, resolved)
    directory = cache_dir() if directory is None else directory
    entry = read_entry(os.path.join(directory, key), log)
    if entry is None:
        return key, None
    if entry.get("key") != key or entry.get("variables") != tuple(sorted(resolved.items())):
        _warn(log, f"ignoring entry {key[:12]}: written for other inputs")
        return key, None
    deps = entry.get("deps")
    if not isinstance(deps, tuple) or not deps:
        return key, None
    changed = check_deps(deps)
    if changed is not None:
        _warn(log, f"recompiling {spec}: {changed}")
        return key, None
    return key, entry


def compile_entry(
    spec: str,
    log: Callable[[str], None] | None = None,
    launch_record: Callable[[Plan, bytes], dict[str, object] | None] | None = None,
) -> tuple[Plan, bytes, dict[str, object] | None]:
    """Compile ``spec`` and build its entry; the entry is None when it must not be cached.

    Raises ProfileError and friends exactly as :func:`isorun.api.compile_plan` does.
    """
    import pickle

    from isorun.compile.pipeline import compile_plan, seccomp_program
    from isorun.host import facts as host_facts

    try:
        deps: tuple[Dep, ...] | None = collect_deps(spec)
    except DEPS_ERRORS:
        deps = None  # the compile below reports the problem with its location
    facts = host_facts.probe()
    resolved = host_facts.variables(facts)
    plan = compile_plan(spec, facts, resolved)
    check_not_writable(plan)
    bpf = seccomp_program(plan)
    reason = _uncacheable(spec, facts, resolved, plan, deps)
    if reason is not None:
        _warn(log, f"not caching {spec}: {reason}")
        return plan, bpf, None
    assert deps is not None
    mine = variables()  # the key's variables: a superset of the compiler's (checked above)
    entry: dict[str, object] = {
        "key": entry_key(spec, mine),
        "spec": spec,
        "profile": plan.profile,
        "deps": deps,
        "variables": tuple(sorted(mine.items())),
        "plan": pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL),
        "bpf": bpf,
        "launch": launch_record(plan, bpf) if launch_record is not None else None,
    }
    return plan, bpf, entry


def _uncacheable(
    spec: str,
    facts: HostFacts,
    resolved: Mapping[str, str],
    plan: Plan,
    deps: tuple[Dep, ...] | None,
) -> str | None:
    """Why this compile must not be cached, or None. Each check guards a key input."""
    import dataclasses

    if deps is None:
        return "could not list its source files"
    if {real for _, real, _ in deps} != set(plan.sources):
        return "its source files changed while compiling"
    fields = {f.name for f in dataclasses.fields(facts)}
    if fields != FACT_FIELDS:
        return f"host facts {sorted(fields - FACT_FIELDS)} are not in the cache key"
    if (facts.uid, facts.gid, facts.arch, facts.kernel) != (
        os.getuid(),
        os.getgid(),
        os.uname().machine,
        os.uname().release,
    ):
        return "host facts differ from what the cache key reads"
    # Every variable the compiler had must be in the key with the same value; names the
    # key has beyond those only make it more specific.
    ours = variables()
    if any(ours.get(name) != value for name, value in resolved.items()):
        return "variables resolve differently from what the cache key reads"
    return None


def store(
    entry: Mapping[str, object],
    log: Callable[[str], None] | None = None,
    directory: str | None = None,
) -> bool:
    """Write a compiled entry under its key, and its launch index when it has a record."""
    directory = cache_dir() if directory is None else directory
    if not write_entry(directory, str(entry["key"]), dict(entry), log):
        return False
    if entry.get("launch") is not None:
        from isorun.cache import index as cache_index

        cache_index.write_index(entry, log, directory)
    return True
