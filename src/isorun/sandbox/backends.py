"""The backends and the choice between them, failing closed.

Three backends run a plan: ``native`` (the C shim, enforces every step), ``bwrap`` and
``firejail`` (wrappers, each enforcing what its renderer can express). Selection never
runs a plan weaker than written: a backend that would lose a rule is refused with
:class:`Unsupported` naming the rules and the backends that keep them, unless the caller
passed ``allow_weaker``; the lost rules are then returned for the caller to print.

Rendering is pure (compile/render/{bwrap,firejail}.py). The impure part is in
:mod:`isorun.sandbox.backend`, one module per backend: the descriptors the renderers
named, the identity to spawn as, and the wall-clock limit, which the isorun parent
enforces for every backend. This module is the registry and the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from isorun.compile import plan as p
from isorun.errors import HostError, Lost, Unsupported
from isorun.host.probe import BackendFacts
from isorun.sandbox.backend.bwrap import BwrapBackend
from isorun.sandbox.backend.common import (
    FRESH,
    SAMPLES,
    Compiled,
    Fresh,
    launch_record,
    sample_plan,
)
from isorun.sandbox.backend.firejail import FirejailBackend
from isorun.sandbox.backend.landlock import LandlockBackend
from isorun.sandbox.backend.native import NativeBackend, NativeRun, native_missing
from isorun.sandbox.backend.wrapper_run import SandboxRun, kill_tree

#: the names callers take from here: the registry and selection below, and the shared
#: parts of the backend modules
__all__ = ["BACKENDS", "FRESH", "ORDER", "SAMPLES", "Backend", "BwrapBackend", "Compiled",
           "FirejailBackend", "Fresh", "LandlockBackend", "NativeBackend", "NativeRun",
           "SandboxRun", "capability_matrix", "describe_backend", "describe_lost", "kill_tree",
           "launch_record", "native_missing", "sample_plan", "select_backend"]

#: strongest first: auto takes the first one that enforces the whole plan here
ORDER = ("native", "bwrap", "firejail", "landlock")


class Backend(Protocol):
    name: str

    def capabilities(self) -> frozenset[str]:
        """The step types and aspects (``Clone:time``, ``MountStep:noexec``) this backend
        can enforce, whatever the host."""

    def unavailable(self, plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
        """("", "") when this host can run ``plan`` on this backend, else (why, fix)."""

    def check(self, plan: p.Plan, facts: BackendFacts | None = None) -> list[Lost]:
        """The rules of ``plan`` this backend cannot enforce (on this host, with facts)."""

    def terminal_job(self, plan: p.Plan) -> bool:
        """Whether a terminal launch (``spawn(terminal=True)``) of ``plan`` keeps the
        command in the caller's session as the terminal's foreground job: job control,
        ^C from the terminal itself. False: a new session, so the launcher passes on ^C."""

    def spawn(self, plan: p.Plan, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              allow_weaker: bool = False, facts: BackendFacts | None = None,
              terminal: bool = False, refusals: bool = False,
              compiled: Compiled | None = None,
              log: Callable[[str], None] | None = None) -> SandboxRun | NativeRun:
        """Start ``argv`` in the sandbox. Raises Unsupported, HostError. ``terminal``: the
        CLI, the foreground job of the terminal that is the command's stdin. ``refusals``:
        the CLI's refusal report (sandbox/refusal_watch.py). ``compiled``: where the
        plan's seccomp program (and the native launch record) come from, the API's memo
        (isorun.api.MEMO); None compiles them for this call. ``log``: what the backend
        says about how it starts (verbose)."""


BACKENDS: dict[str, Backend] = {"native": NativeBackend(), "bwrap": BwrapBackend(),
                                "firejail": FirejailBackend(), "landlock": LandlockBackend()}


def select_backend(plan: p.Plan, requested: str, facts: BackendFacts, allow_weaker: bool,
                   *, log: Callable[[str], None] | None = None) -> tuple[Backend, list[Lost]]:
    """Choose the backend for ``plan`` (``auto`` or a name).

    ``auto`` takes the strongest backend that this host can run and that enforces every
    rule; ``log`` (verbose mode) hears why each stronger one was passed over. A named
    backend is taken or refused, never swapped. When the choice would lose rules, raises
    :class:`Unsupported` unless ``allow_weaker``; the lost rules are then returned.
    Raises :class:`HostError` when no backend can run here at all.
    """
    say = log or (lambda _: None)
    if requested != "auto" and requested not in BACKENDS:
        raise HostError(f"backend {requested!r}", "unknown backend",
                        "use one of: auto, " + ", ".join(ORDER))
    names = ORDER if requested == "auto" else (requested,)
    usable: list[tuple[Backend, list[Lost]]] = []
    reasons: list[tuple[str, str, str]] = []
    for name in names:
        backend = BACKENDS[name]
        why, fix = backend.unavailable(plan, facts)
        if why:
            say(f"isorun: backend {name}: not usable here: {why}")
            reasons.append((name, why, fix))
            continue
        lost = backend.check(plan, facts)
        if not lost:
            say(f"isorun: backend {name}: enforces every rule of {plan.profile}"
                + (" (the strongest usable here)" if requested == "auto" else ""))
            return backend, []
        say(f"isorun: backend {name}: would not enforce "
            + "; ".join(f"{item.rule} ({item.loc.short()})" for item in lost))
        usable.append((backend, lost))
    if not usable:
        name, why, fix = reasons[0]
        if requested == "auto":
            why = "; ".join(f"{n}: {w}" for n, w, _ in reasons)
            fix = next((f for _, _, f in reasons if f), "")
        raise HostError(f"profile {plan.profile} on backend {name}"
                        if requested != "auto" else f"profile {plan.profile}",
                        why if requested != "auto" else f"no backend can run here ({why})",
                        fix)
    backend, lost = usable[0]
    lost = _with_alternatives(plan, lost, facts)
    if not allow_weaker:
        raise Unsupported(backend.name, lost)
    say(f"isorun: backend {backend.name}: running WEAKER than the profile (--allow-weaker)")
    return backend, lost


def _with_alternatives(plan: p.Plan, lost: list[Lost], facts: BackendFacts) -> list[Lost]:
    """Name, for each lost rule, the backends that would enforce it (and whether this
    host can run them), so the error says where to go."""
    keeps: dict[str, set[tuple[str, str]]] = {}
    # once per backend, not per lost rule: a wrapper's walks its bind sources
    whys: dict[str, str] = {}
    for name in ORDER:
        keeps[name] = {(item.rule, item.loc.short())
                       for item in BACKENDS[name].check(plan, facts)}
        whys[name] = BACKENDS[name].unavailable(plan, facts)[0]
    out = []
    for item in lost:
        alts = []
        for name in ORDER:
            if (item.rule, item.loc.short()) in keeps[name]:
                continue
            why = whys[name]
            alts.append(name if not why else f"{name}, not usable here: {why}")
        out.append(replace(item, alternatives=tuple(alts)))
    return out


def describe_lost(backend: str, lost: Sequence[Lost]) -> str:
    """The warning an ``--allow-weaker`` launch prints before it runs, one rule a line."""
    lines = [f"isorun: warning: backend {backend} runs this profile WITHOUT:"]
    for item in lost:
        alt = f" (enforced by: {', '.join(item.alternatives)})" if item.alternatives else ""
        lines.append(f"  {item.loc.short()}: {item.rule}: {item.why}{alt}")
    return "\n".join(lines)


def describe_backend(plan: p.Plan, name: str) -> tuple[p.Plan, list[str]]:
    """(the plan backend ``name`` runs, lines saying how it enforces it) for ``explain
    --backend``: who applies the Landlock layer, and each rule it cannot keep whatever
    the host (``auto``: the native backend's view)."""
    from isorun.compile.landlock import landlock_applier

    name = "native" if name == "auto" else name
    if name == "landlock":
        from isorun.host.facts import probe
        from isorun.sandbox.landlock_mode import mode_plan

        plan = replace(plan, steps=mode_plan(plan, probe().landlock).steps)
    lines = [f"backend {name}:", f"  landlock: {landlock_applier(plan, name)}"]
    lost = BACKENDS[name].check(plan, None)
    lines += [f"  does not enforce {item.loc.short()}: {item.rule}: {item.why}"
              for item in lost] or ["  enforces every rule of the plan"]
    return plan, lines


def capability_matrix() -> dict[str, frozenset[str]]:
    """backend name -> the aspects it enforces (``isorun doctor`` prints it)."""
    return {name: BACKENDS[name].capabilities() for name in ORDER}
