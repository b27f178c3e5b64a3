"""The compiler end to end: a profile spec in, a plan (and its seccomp program) out.

Pure apart from probing the host when no facts are given; :mod:`isorun.api` re-exports
``load_profile`` and ``compile_plan`` as the public API, and the plan cache
(:mod:`isorun.cache`) calls them on a miss.
"""

from __future__ import annotations

from isorun.compile.plan import LoadSeccomp, Plan
from isorun.host import facts as host_facts
from isorun.profile import includes
from isorun.profile.schema import Profile


def load_profile(spec: str) -> Profile:
    """Load a profile by built-in name (``strict``) or path (``./web.toml``), extends merged."""
    return includes.load(spec)


def compile_plan(profile: Profile | str, facts: host_facts.HostFacts | None = None,
                 variables: dict[str, str] | None = None) -> Plan:
    """Resolve a profile into a plan for this host (or the facts given)."""
    from isorun.compile.planner import compile_plan as _compile

    if isinstance(profile, str):
        profile = load_profile(profile)
    facts = facts or host_facts.probe()
    if variables is None:
        variables = host_facts.variables(facts)
    return _compile(profile, facts, variables)


def seccomp_program(plan: Plan) -> bytes:
    """The compiled seccomp filter of ``plan`` (b"" when the plan loads none)."""
    steps = plan.find(LoadSeccomp)
    if not steps:
        return b""
    # the compiler loads libseccomp: only when a program is actually needed
    from isorun.compile.seccomp import compile_seccomp

    return compile_seccomp(steps[0].policy).bpf
