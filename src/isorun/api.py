"""The Python API: what the CLI and the pytest plugin use.

``load_profile`` and ``compile_plan`` are pure; ``run``/``Popen`` start sandboxes.
"""

from __future__ import annotations

from isorun.compile.plan import Plan
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
