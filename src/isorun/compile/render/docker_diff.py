"""What a Docker profile decides for a syscall, and the difference between two policies.

:func:`docker_decide` is the engines' reference the tests hold exports and imports to.
Siblings: :mod:`isorun.compile.render.docker` (the exports and the shared tables) and
:mod:`isorun.compile.render.docker_import` (Docker JSON -> policy -> TOML).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from isorun.compile.render.docker import ACTIONS_IN, OPS_IN, _check
from isorun.compile.seccomp import DOCKER_ARCH, Context, build_entries, lower, parse_kernel
from isorun.kernel import syscalls
from isorun.profile.schema import Seccomp


def docker_decide(
    doc: dict[str, Any],
    name: str,
    args: tuple[int, ...] = (),
    *,
    caps: frozenset[str] = frozenset(),
    arch: str = "x86_64",
    kernel: tuple[int, ...] | None = (6, 1),
) -> str:
    """What an engine (moby + runc + libseccomp) answers, in our action words.

    A reference for tests: applies includes/excludes like moby, ORs a rule's conditions
    when one index repeats like runc, answers ENOSYS above the highest listed syscall
    like runc's stub, and refuses (ValueError) a call that two matching
    rules answer differently, where the result would depend on libseccomp's internals.
    """
    # other arches: x86_64's numbers (since 424 every arch numbers new syscalls alike)
    if _above_stub(doc, syscalls.table(arch if arch in ("x86_64", "aarch64") else "x86_64"), name):
        return "errno:38"  # runc's ENOSYS stub answers before the filter
    host = DOCKER_ARCH.get(arch, arch)
    full = tuple(args) + (0,) * (6 - len(args))
    answers: set[str] = set()
    for rule in doc.get("syscalls") or []:
        names = set(rule.get("names") or []) | ({rule["name"]} if rule.get("name") else set())
        if name not in names:
            continue
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if any(c not in caps for c in inc.get("caps") or []):
            continue
        if any(c in caps for c in exc.get("caps") or []):
            continue
        if inc.get("arches") and host not in inc["arches"]:
            continue
        if host in (exc.get("arches") or []):
            continue
        if inc.get("minKernel") and (kernel is None or kernel < parse_kernel(inc["minKernel"])):
            continue
        if exc.get("minKernel") and kernel is not None and kernel >= parse_kernel(exc["minKernel"]):
            continue
        conds = rule.get("args") or []
        results = [_docker_cmp(full[c["index"]], c) for c in conds]
        indexes = [c["index"] for c in conds]
        repeated = len(set(indexes)) < len(indexes)
        if not conds or (any(results) if repeated else all(results)):
            act = ACTIONS_IN[rule["action"]]
            answers.add(f"errno:{rule.get('errnoRet', 1)}" if act == "errno" else act)
    if len(answers) > 1:
        raise ValueError(f"{name}{args}: rules answer {sorted(answers)}")
    if answers:
        return answers.pop()
    act = ACTIONS_IN[doc["defaultAction"]]
    return f"errno:{doc.get('defaultErrnoRet', 1)}" if act == "errno" else act


def _above_stub(doc: dict[str, Any], table: Mapping[str, int], name: str) -> bool:
    """Whether runc's ENOSYS stub answers ``name`` (see engines.runc_stub); stops at
    the first listed name numbered at least as high."""
    if doc.get("defaultAction") in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        return False
    number = table.get(name)
    if number is None:
        return False
    listed = False
    for rule in doc.get("syscalls") or []:
        for n in [*(rule.get("names") or []), *([rule["name"]] if rule.get("name") else [])]:
            nr = table.get(n)
            if nr is not None:
                if nr >= number:
                    return False
                listed = True
    return listed


def _docker_cmp(arg: int, cond: dict[str, Any]) -> bool:
    a, v, two = arg, int(cond.get("value", 0)), int(cond.get("valueTwo", 0))
    match OPS_IN[cond["op"]]:
        case "eq":
            return a == v
        case "ne":
            return a != v
        case "lt":
            return a < v
        case "le":
            return a <= v
        case "gt":
            return a > v
        case "ge":
            return a >= v
        case _:
            return a & v == two


def diff_policies(
    a: Seccomp, b: Seccomp, *, arch: str = "x86_64", ctx: Context | None = None
) -> list[str]:
    """Semantic differences, one line per syscall: allowed in one only, changed action,
    changed argument conditions. Empty when both decide every call the same."""
    ctx = ctx or Context(arch=arch)
    _check(a)
    _check(b)
    out: list[str] = []
    # default_action only answers through names, which the lines below compare; the
    # unknown action answers every number without a name
    if a.unknown_action != b.unknown_action:
        out.append(f"unknown_action: {a.unknown_action} -> {b.unknown_action}")
    ea, _ = build_entries(a, ctx)
    eb, _ = build_entries(b, ctx)
    from isorun.compile.argspace import FULL
    from isorun.compile.seccomp import Entry

    names: set[str] = set(syscalls.table(arch))
    for name in sorted(names):
        la = lower(name, ea.get(name, []), Entry(FULL, a.default_action, "default"))
        lb = lower(name, eb.get(name, []), Entry(FULL, b.default_action, "default"))
        pa, pb = _canon(la), _canon(lb)
        if pa == pb or _same_decisions(la, lb):
            continue
        acts_a = {act for act, _ in pa}
        acts_b = {act for act, _ in pb}
        if len(acts_a) == 1 and len(acts_b) == 1:
            act_a, act_b = next(iter(acts_a)), next(iter(acts_b))
            if act_a == "allow":
                out.append(f"{name}: allowed only in A (B: {act_b})")
            elif act_b == "allow":
                out.append(f"{name}: allowed only in B (A: {act_a})")
            else:
                out.append(f"{name}: {act_a} -> {act_b}")
        else:
            out.append(f"{name}: argument conditions differ (A: {_show(pa)}; B: {_show(pb)})")
    return out


def _same_decisions(a: list[tuple[Any, Any]], b: list[tuple[Any, Any]]) -> bool:
    """Exact: both sides partition the argument space, so they decide the same iff no box
    of one meets a box of the other with another action (simplify's forms may differ)."""
    from isorun.compile.argspace import intersect_boxes

    for region_a, entry_a in a:
        for region_b, entry_b in b:
            if entry_a.action == entry_b.action:
                continue
            if any(intersect_boxes(x, y) for x in region_a for y in region_b):
                return False
    return True


def _canon(pieces: list[tuple[Any, Any]]) -> frozenset[tuple[str, Any]]:
    merged: dict[str, list[Any]] = {}
    for region, entry in pieces:
        merged.setdefault(str(entry.action), []).extend(region)
    from isorun.compile.argspace import simplify

    return frozenset((act, frozenset(simplify(boxes))) for act, boxes in merged.items())


def _show(canon: frozenset[tuple[str, Any]]) -> str:
    from isorun.compile.argspace import comparisons

    parts = []
    for act, boxes in sorted(canon, key=lambda p: str(p[0])):
        conds = [
            " and ".join(
                f"arg{i} {op} {x:#x}" + (f"/{y:#x}" if op == "masked_eq" else "")
                for i, op, x, y in cmp
            )
            for box in sorted(boxes, key=repr)  # Cube and Span do not compare
            for cmp in comparisons(box)
        ]
        shown = " or ".join(c or "always" for c in conds[:3])
        parts.append(f"{act} if {shown}{' ...' if len(conds) > 3 else ''}")
    return ", ".join(parts)


def diff_engine_numbers(
    a: Seccomp,
    b: Seccomp,
    doc_a: dict[str, Any],
    doc_b: dict[str, Any],
    *,
    arch: str = "x86_64",
    limit: int = 1024,
) -> list[str]:
    """Numbers runc answers differently for the two Docker profiles because of its ENOSYS
    stub (numbers above the highest listed syscall), as ranges."""
    from isorun.compile.engines import runc_stub

    names = {nr: n for n, nr in syscalls.table(arch).items()}
    stubs = (runc_stub(doc_a, arch), runc_stub(doc_b, arch))

    def answer(policy: Seccomp, stub: int | None, nr: int) -> str:
        if stub is not None and nr > stub:
            return "errno:38"
        if nr not in names:
            return str(policy.unknown_action)
        return ""  # the per-name diff covers it

    runs: list[tuple[int, int, str, str]] = []
    for nr in range(limit):
        x, y = answer(a, stubs[0], nr), answer(b, stubs[1], nr)
        if not x and not y:
            continue
        x = x or str(decide_plain(a, names[nr]))
        y = y or str(decide_plain(b, names[nr]))
        if x == y:
            continue
        if runs and runs[-1][1] == nr - 1 and runs[-1][2:] == (x, y):
            runs[-1] = (runs[-1][0], nr, x, y)
        else:
            runs.append((nr, nr, x, y))
    out = []
    for lo, hi, x, y in runs:
        span = f"{lo}" if lo == hi else f"{lo}-{hi}"
        out.append(
            f"numbers {span}: {x} -> {y} under runc (its ENOSYS stub answers numbers above"
            f" the highest listed syscall: A {stubs[0]}, B {stubs[1]})"
        )
    return out


def decide_plain(policy: Seccomp, name: str) -> str:
    """The answer for a call with every argument 0 (a stub-range name's plain answer)."""
    from isorun.compile.seccomp import decide

    return str(decide(policy, name, ()))
