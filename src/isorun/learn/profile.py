"""Learn mode's output: an observation turned into a profile, a Docker export, a verdict.

The learned allow names and rules, the profile TOML, the Docker JSON, counts to compare
with, and a ``check`` run's refusals. Sibling: :mod:`isorun.learn.observe` (running the command
under the notifying filter and recording, merging and reading back an Observation).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections import Counter
from dataclasses import dataclass

from isorun.compile import argspace
from isorun.compile.plan import MountStep, Plan
from isorun.errors import DEFAULT_LOC, UsageError
from isorun.kernel import syscalls
from isorun.learn.filters import native_arch
from isorun.learn.observe import (
    FAMILIES,
    KEY_ARGS,
    MARKER,
    Call,
    Observation,
    _policy_of,
    to_json,
)
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule


@dataclass(frozen=True, slots=True)
class Learned:
    """The seccomp additions of a learned profile and what could not be granted."""

    allow: tuple[str, ...]
    rules: tuple[SeccompRule, ...]
    architectures: tuple[str, ...]
    #: lines for the person: calls seen but not granted, and why
    notes: tuple[str, ...]


def _describe_key(name: str, key: int) -> str:
    what = KEY_ARGS[name][2]
    if what == "family":
        return f"{what} {FAMILIES.get(key, key)}"
    return f"{what} {key:#x}"


def _refusers(policy: Seccomp) -> dict[str, str]:
    """Syscalls the base refuses on purpose (deny list, refusing rules, hardening)."""
    from isorun.profile.seccomp_rules import HARDENING_DENY

    out: dict[str, str] = {}
    if policy.hardening:
        out |= {n: "seccomp.hardening" for n in (*HARDENING_DENY, "clone3")}
    for item in policy.deny:
        out |= {n: "seccomp.deny" for n in syscalls.expand(item)}
    for n, rule in enumerate(policy.rules):
        if rule.action.kind != "allow" and not rule.args and rule.when is None:
            out |= {s: f"seccomp.rules[{n}]" for s in (
                name for item in rule.syscalls for name in syscalls.expand(item))}
    return out


def learned_rules(obs: Observation, policy: Seccomp) -> Learned:
    """Allow names and conditioned allow rules covering every observed call."""
    native = native_arch()
    refused = _refusers(policy)
    allow: set[str] = set()
    keyed: dict[tuple[str, int], int] = {}
    arches = set(policy.architectures)
    notes: list[str] = []
    for c in obs.calls:
        if c.name.startswith("nr"):
            notes.append(f"{c.name} ({c.arch}, {c.count}x): not in isorun's syscall table;"
                         " cannot be allowed by name")
            continue
        if c.name in refused:
            notes.append(f"{c.name} ({c.count}x): refused on purpose by the base's"
                         f" {refused[c.name]}; not granted, edit the profile by hand if"
                         " it is really needed")
            continue
        if c.arch != native:
            arches.add(c.arch)
        if c.key is not None:
            keyed[(c.name, c.key)] = keyed.get((c.name, c.key), 0) + c.count
        else:
            allow.add(c.name)
    rules = []
    for (name, key), count in sorted(keyed.items()):
        index, mask, _what = KEY_ARGS[name]
        rules.append(SeccompRule((name,), Action("allow"),
                                 (ArgCond(index, "masked_eq", key, mask),),
                                 f"learned: {_describe_key(name, key)}, {count}x"))
    ordered = tuple(a for a in ("native", "x86_64", "x32", "i386", "aarch64") if a in arches)
    return Learned(tuple(sorted(allow)), tuple(rules), ordered, tuple(notes))


def docker_default_count(arch: str = "x86_64") -> int:
    """How many of ``arch``'s syscalls Docker's default profile allows by name."""
    return len(syscalls.expand("@docker-default") & set(syscalls.table(arch)))


def outside_mounts(obs: Observation, plan: Plan) -> tuple[str, ...]:
    """Absolute paths the command opened that no mount of the plan covers."""
    dsts = [m.dst.rstrip("/") or "/" for m in plan.find(MountStep)]
    out = []
    for _sc, path, _n in obs.paths:
        if not path.startswith("/"):
            continue
        if not any(path == d or path.startswith(d + "/") or d == "/" for d in dsts):
            out.append(path)
    return tuple(sorted(set(out)))


def _base_ref(base: str, out_path: str | None) -> str:
    from isorun.profile.includes import is_path

    if not is_path(base):
        return base
    return os.path.abspath(base) if out_path is None else os.path.relpath(
        os.path.abspath(base), os.path.dirname(os.path.abspath(out_path)))


def render_profile(obs: Observation, *, out_path: str | None = None,
                   grant_fs: bool = False) -> tuple[str, Learned]:
    """The learned profile as TOML text, and what went into it."""
    from isorun import api
    from isorun.compile.render.docker_toml import render_toml

    if obs.mode == "check":
        raise UsageError("a --check run produces a verdict, not a profile")
    profile = api.load_profile(obs.base)
    plan = api.compile_plan(profile)
    policy = _policy_of(plan, profile)
    if obs.mode == "widen":
        # execve is notified even when allowed (see observing_filter): keep what the base
        # refuses only.
        obs = dataclasses.replace(obs, calls=tuple(r.call for r in refusals(obs)))
    learned = learned_rules(obs, policy)
    outside = outside_mounts(obs, plan)
    header = _profile_header(obs, learned, outside, grant_fs)
    lines = [f"# {line}" for h in header for line in h.splitlines()]
    lines.append(MARKER + to_json(obs))
    lines.append(f"extends = [{json.dumps(_base_ref(obs.base, out_path))}]")
    if obs.mode == "learn":
        # The base's grants are replaced; its refusing rules are carried over below.
        lines.append('override = ["seccomp.allow", "seccomp.rules"]')
        kept = tuple(r for r in policy.rules if r.action.kind != "allow")
        seccomp = dataclasses.replace(
            policy, allow=learned.allow, rules=(*kept, *learned.rules),
            architectures=learned.architectures or policy.architectures)
    else:
        seccomp = dataclasses.replace(
            policy, allow=learned.allow, rules=learned.rules, deny=(),
            architectures=learned.architectures or policy.architectures)
    if grant_fs:
        for path in outside:
            if os.path.exists(path):
                lines += ["", "[[mounts]]", 'type = "ro-bind"', f"dst = {json.dumps(path)}",
                          "optional = true"]
    lines.append("")
    lines.append(render_toml(seccomp).rstrip("\n"))
    return "\n".join(lines) + "\n", learned


def _profile_header(obs: Observation, learned: Learned, outside: tuple[str, ...],
                    grant_fs: bool) -> list[str]:
    """The learned profile's comment: the runs, what was allowed, counted and left out."""
    from isorun import __version__

    counts = Counter[str]()
    for c in obs.calls:
        counts[c.name] += c.count
    header = [f"Learned by `isorun learn` (isorun {__version__}), mode {obs.mode}, base"
              f" {obs.base}, from {len(obs.commands)} run(s):"]
    # A newline inside an argument would end the comment: show it escaped.
    header += [f"  {shlex.join(cmd)}".replace("\n", "\\n") for cmd in obs.commands]
    n_allowed = len(learned.allow) + len({r.syscalls[0] for r in learned.rules})
    if obs.mode == "learn":
        header.append(f"{n_allowed} syscalls allowed ({len(learned.rules)} rules with argument"
                      f" conditions); Docker's default allows {docker_default_count()}.")
    else:
        header.append(f"{n_allowed} syscalls added to what {obs.base} allows.")
    header.append(f"{obs.total} calls observed. Counts: " + ", ".join(
        f"{n} {v}" for n, v in counts.most_common()))
    header += [f"not granted: {n}" for n in learned.notes]
    if outside:
        verb = "granted read-only (--grant-fs)" if grant_fs else "suggestion, not granted"
        header.append(f"paths opened outside the mounts ({verb}): " + " ".join(outside))
    if obs.addresses:
        header.append("addresses used (suggestion, not granted): " + ", ".join(
            f"{s} {a}" for s, a, _n in obs.addresses))
    return header


def runtime_syscalls(names: tuple[str, ...]) -> tuple[str, ...]:
    """The runtimes' post-filter syscalls (:func:`isorun.compile.engines.runtime_syscalls`)."""
    from isorun.compile.engines import runtime_syscalls as of

    return of(names)


def export_docker_json(
    toml_path: str, *, runtime: tuple[str, ...] = ("all",)
) -> tuple[str, tuple[str, ...]]:
    """Docker JSON of a learned profile, through the same loader and exporter as any, and
    the syscalls it added for the runtime.

    ``runtime`` names the OCI runtimes of data/engines.toml whose own post-filter syscalls
    are added (the engine's needs, not the command's); ``("none",)`` adds nothing.
    """
    from isorun import api
    from isorun.compile.engines import with_runtime
    from isorun.compile.render.docker import export_docker

    profile = api.load_profile(toml_path)
    policy = _policy_of(api.compile_plan(profile), profile)
    policy, added = with_runtime(policy, runtime, native_arch())
    return export_docker(policy, arch=native_arch()), added


def allowed_count(profile_spec: str) -> int:
    """Syscalls of the host's table that a profile allows for at least some arguments."""
    from isorun import api
    from isorun.compile.seccomp import Context, plan_rules

    profile = api.load_profile(profile_spec)
    policy = _policy_of(api.compile_plan(profile), profile)
    rules, _ = plan_rules(policy, (native_arch(),), Context(arch=native_arch()))
    return len({r.syscall for r in rules if r.action == "allow"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call the profile would have refused, and which rule refuses it."""

    call: Call
    action: str
    origin: str

    def render(self) -> str:
        key = f" ({_describe_key(self.call.name, self.call.key)})" \
            if self.call.key is not None else ""
        arch = f" [{self.call.arch}]" if self.call.arch != native_arch() else ""
        return (f"{self.call.name}{arch}{key}: {self.call.count}x, answered {self.action}"
                f" by {self.origin}")


def refusals(obs: Observation) -> tuple[Refusal, ...]:
    """Each observed call of a check run with the base's answer and the rule behind it."""
    from isorun import api
    from isorun.compile.seccomp import build_entries

    profile = api.load_profile(obs.base)
    policy = _policy_of(api.compile_plan(profile), profile)
    entries, _ = build_entries(policy)
    out = []
    for c in obs.calls:
        args = [0] * 6
        if c.key is not None:
            args[KEY_ARGS[c.name][0]] = c.key
        action, origin = str(policy.default_action), "seccomp.default_action"
        if c.name.startswith("nr"):
            action, origin = str(policy.unknown_action), "seccomp.unknown_action"
        elif c.arch not in (native_arch(), *policy.architectures):
            action, origin = "kill_process", "seccomp.architectures"
        for entry in entries.get(c.name, []):
            if argspace.contains(entry.region, tuple(args)):
                action = str(entry.action)
                where = f" ({entry.loc.short()})" if entry.loc != DEFAULT_LOC else ""
                origin = entry.origin + where
                break
        if action != "allow":
            out.append(Refusal(c, action, origin))
    return tuple(out)
