"""An isorun policy as Docker/OCI ``syscalls`` entries: exact, compact and int64-safe.

What engines do with the entries fixes the shape (runc libcontainer/seccomp and crun
src/libcrun/seccomp.c agree):

- libseccomp has no precedence between rules of one syscall, so two rules that can match
  the same call must give the same action. Rules of one action may overlap freely.
- A call no rule matches gets ``defaultAction``: the pieces of a syscall with that action
  need no rule at all.
- An entry whose ``args`` name one argument index twice is added as one rule *per
  condition* (OR); otherwise its conditions are ANDed. So every alternative that is a
  single comparison goes into one entry, however many there are.
- The Security Profiles Operator's CRD types ``value``/``valueTwo`` as int64 with minimum
  0, and caps ``args`` at 6. Comparisons with a value of 2**63 or more are rewritten: a
  cube that fixes bit 63 is widened to ignore it when its mirror image across bit 63 has
  the same answer, ``arg >= 2**63`` is ``gt 2**63-1``, and what cannot be rewritten stops
  the export with the syscall named (fail closed, never a silently different filter).

Each cube is also grown greedily (a mask bit at a time) while it stays inside its
action's region, then cubes another one covers are dropped. All of it is checked against
the policy's own first-match semantics by the tests (tests/unit/test_docker_export.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from isorun.compile import argspace
from isorun.compile.argspace import MAX, Atom, Box, Cube, Region, Span
from isorun.compile.seccomp import Context, Entry, build_entries, lower
from isorun.errors import Diagnostic, Loc, ProfileError
from isorun.kernel import syscalls
from isorun.profile.schema import Action, Seccomp

#: the largest value an int64 field (the SPO CRD's ``value``/``valueTwo``) can hold
I64 = (1 << 63) - 1
BIT63 = 1 << 63
#: a comparison as Docker writes it: (index, op, value, valueTwo); masked_eq is
#: (index, "masked_eq", mask, value), as in moby's own clone rule
Cmp = tuple[int, str, int, int]
#: the SPO CRD's ``maxItems`` of ``args``
SPO_MAX_ARGS = 6


@dataclass(frozen=True, slots=True)
class Group:
    """One Docker entry before rendering: names, action, comparisons, where from."""

    names: tuple[str, ...]
    action: str
    args: tuple[Cmp, ...]
    origins: tuple[str, ...]


def _inside(box: Box, others: Region) -> bool:
    """Whether ``box`` shares no point with ``others`` (the other actions' regions)."""
    return not any(argspace.intersect_boxes(box, other) for other in others)


def _grow(index: int, cube: Cube, box: Box, others: Region) -> Cube:
    """Drop mask bits, highest first, while the cube stays clear of ``others`` (and
    writable with int64 values, once it is)."""
    for bit in range(63, -1, -1):
        b = 1 << bit
        if not cube.mask & b:
            continue
        wider = Cube(cube.mask ^ b, cube.value & ~b)
        if _writable(index, cube) and not _writable(index, wider):
            continue
        trial = tuple((i, wider if i == index else a) for i, a in box)
        if _inside(trial, others):
            cube = wider
            box = trial
    return cube


def _atom_cubes(atom: Atom) -> list[Atom]:
    """Spans that are not one comparison become aligned cubes (disjoint, exact)."""
    if isinstance(atom, Cube):
        return [atom]
    if atom.lo == 0 and I64 < atom.hi < MAX:
        # "le" cannot reach past 2**63: the lower half is one comparison, the rest cubes
        return [Span(0, I64), *argspace.span_cubes(BIT63, atom.hi)]
    if atom.hi == MAX and atom.lo > BIT63:
        return list(argspace.span_cubes(atom.lo, MAX))
    if atom.lo == 0 or atom.hi == MAX:
        return [atom]
    return list(argspace.span_cubes(atom.lo, atom.hi))


def _safe(index: int, atom: Atom) -> Cmp | None:
    """One int64-safe comparison for the atom, None when it needs none, or raise KeyError
    when no single comparison with values below 2**63 says it."""
    if isinstance(atom, Span):
        if atom.lo == 0 and atom.hi == MAX:
            return None
        if atom.lo == atom.hi and atom.lo <= I64:
            return (index, "eq", atom.lo, 0)
        if atom.lo == 0 and atom.hi <= I64:
            return (index, "le", atom.hi, 0)
        if atom.hi == MAX and atom.lo <= I64 + 1:
            return (index, "gt", atom.lo - 1, 0) if atom.lo else None
        raise KeyError(atom)
    if atom.mask == 0:
        return None
    if atom.mask == MAX and atom.value <= I64:
        return (index, "eq", atom.value, 0)
    if atom.mask <= I64:
        return (index, "masked_eq", atom.mask, atom.value)
    free = MAX ^ atom.mask
    if free & (free + 1):
        raise KeyError(atom)  # free bits not all low: not an interval
    lo, hi = atom.bounds()
    if lo == 0 and hi <= I64:
        return (index, "le", hi, 0)
    if hi == MAX and lo <= I64 + 1:
        return (index, "gt", lo - 1, 0)
    raise KeyError(atom)


def _writable(index: int, atom: Atom) -> bool:
    try:
        _safe(index, atom)
    except KeyError:
        return False
    return True


def _prefer_ge(cmp: Cmp) -> Cmp:
    # "gt v-1" and "ge v" are the same set; ge reads as Docker's own profiles do
    index, op, value, two = cmp
    if op == "gt" and value < I64:
        return (index, "ge", value + 1, two)
    return cmp


#: a cube no single int64 comparison says is written point by point up to this many
POINTS_MAX = 64


def _safe_options(index: int, atom: Atom) -> list[Cmp | None]:
    """int64-safe comparisons whose union is the atom: one, or its points (an interval
    below 2**63 that neither starts at 0 nor ends at the top, e.g. ``2 <= arg <= 3``)."""
    try:
        return [_safe(index, atom)]
    except KeyError:
        if not isinstance(atom, Cube):
            raise
    free = MAX ^ atom.mask
    lo, hi = atom.bounds()
    if hi > I64 or bin(free).count("1") > POINTS_MAX.bit_length() - 1:
        raise KeyError(atom)
    bits = [1 << b for b in range(64) if free >> b & 1]
    points = []
    for n in range(1 << len(bits)):
        points.append(lo | sum(bit for k, bit in enumerate(bits) if n >> k & 1))
    return [(index, "eq", p, 0) for p in sorted(points)]


def _raw(index: int, atom: Atom) -> Cmp | None:
    """The uint64 comparison runc and crun take (not the SPO CRD: its fields are int64)."""
    if isinstance(atom, Span):
        if atom.lo == 0:
            return None if atom.hi == MAX else (index, "le", atom.hi, 0)
        return (index, "ge", atom.lo, 0)
    if atom.mask == MAX:
        return (index, "eq", atom.value, 0)
    return (index, "masked_eq", atom.mask, atom.value)


def _alternatives(
    name: str, region: Region, others: Region, loc: Loc, int64: bool
) -> list[tuple[Cmp, ...]]:
    """Conjunctions whose union is exactly ``region`` (overlaps allowed), int64-safe
    where a form exists; with ``int64`` a condition without one stops the export."""
    out: list[tuple[Cmp, ...]] = []
    for box in region:
        per_index: list[list[tuple[int, Atom]]] = [
            [(i, a) for a in _atom_cubes(atom)] for i, atom in box
        ]
        for combo in product(*per_index):
            sub: Box = tuple(combo)
            grown = tuple(
                (i, _grow(i, a, sub, others) if isinstance(a, Cube) else a) for i, a in sub
            )
            options: list[list[Cmp | None]] = []
            for i, atom in grown:
                try:
                    options.append(_safe_options(i, atom))
                except KeyError:
                    if not int64:
                        options.append([_raw(i, atom)])
                        continue
                    raise ProfileError(
                        Diagnostic(
                            loc,
                            f"{name}: the condition {atom} on argument {i} cannot be written"
                            " with values below 2**63 (Docker and Kubernetes store int64)",
                            "compare this argument on its low 32 bits (masked_eq with"
                            " mask 0xFFFFFFFF) or with values below 2**63",
                        )
                    ) from None
            for choice in product(*options):
                out.append(tuple(_prefer_ge(c) for c in choice if c is not None))
    return _drop_covered(out)


def _drop_covered(alts: list[tuple[Cmp, ...]]) -> list[tuple[Cmp, ...]]:
    """Remove duplicates and single masked comparisons another single one contains."""
    unique = list(dict.fromkeys(alts))
    if () in unique:
        return [()]
    keep = []
    for alt in unique:
        if len(alt) == 1 and alt[0][1] == "masked_eq":
            i, _op, m, v = alt[0]
            if any(
                len(o) == 1
                and o != alt
                and o[0][0] == i
                and o[0][1] == "masked_eq"
                and o[0][2] & m == o[0][2]
                and v & o[0][2] == o[0][3]
                for o in unique
            ):
                continue
        keep.append(alt)
    return keep


def groups(
    policy: Seccomp,
    targets: tuple[str, ...],
    ctx: Context,
    default: Action,
    *,
    max_args: int | None = None,
    list_default: bool = False,
    int64: bool = False,
) -> list[Group]:
    """The Docker entries for the policy on ``targets`` with ``default`` as defaultAction.

    ``list_default`` also writes the syscalls the default answers, when it is an errno
    other than EPERM: Docker 20.10 ignores ``defaultErrnoRet`` (its default is then EPERM)
    and would give clone3 EPERM, which glibc's pthread_create does not fall back from.
    runc and crun skip a rule equal to the default, so where it is honoured they cost
    nothing but bytes."""
    spell_out = list_default and default.kind == "errno" and default.errno != 1
    entries, _ = build_entries(policy, ctx)
    known: set[str] = set()
    for arch in targets:
        known |= set(syscalls.table(arch))
    fallback = Entry(argspace.FULL, policy.default_action, "seccomp.default_action", policy.loc)
    origin_of: dict[tuple[str, str], set[str]] = {}
    plain: dict[str, set[str]] = {}
    conditioned: dict[tuple[str, tuple[Cmp, ...]], set[str]] = {}
    errors: list[Diagnostic] = []
    #: names with one answer for every argument
    everywhere: dict[str, str] = {}
    for name in sorted(known):
        pieces = lower(name, entries.get(name, []), fallback)
        regions: dict[str, Region] = {}
        for region, entry in pieces:
            act = str(entry.action)
            regions.setdefault(act, []).extend(region)
            origin_of.setdefault((name, act), set()).add(entry.origin.split(" via ")[0])
        if len(regions) == 1:
            act = next(iter(regions))
            everywhere[name] = act
            if act != str(default) or spell_out:
                plain.setdefault(act, set()).add(name)
            continue
        for act, region in regions.items():
            if act == str(default) and not spell_out:
                continue
            others = [b for a, r in regions.items() if a != act for b in r]
            try:
                loc = next((e.loc for _, e in pieces if str(e.action) == act), policy.loc)
                alts = _alternatives(name, argspace.simplify(region), others, loc, int64)
            except ProfileError as err:
                errors.extend(err.diagnostics)
                continue
            for args in _or_entries(alts, max_args):
                conditioned.setdefault((act, args), set()).add(name)
    if errors:
        raise ProfileError(errors)
    _keep_stub_above(plain, conditioned, everywhere, targets[0], default)
    out = [
        Group(
            tuple(sorted(names)),
            act,
            (),
            tuple(sorted({o for n in names for o in origin_of[(n, act)]})),
        )
        for act, names in plain.items()
    ]
    out += [
        Group(
            tuple(sorted(names)),
            act,
            args,
            tuple(sorted({o for n in names for o in origin_of[(n, act)]})),
        )
        for (act, args), names in conditioned.items()
    ]
    return sorted(out, key=lambda g: (bool(g.args), g.action, g.names[0], g.args))


def _keep_stub_above(
    plain: dict[str, set[str]],
    conditioned: dict[tuple[str, tuple[Cmp, ...]], set[str]],
    everywhere: dict[str, str],
    arch: str,
    default: Action,
) -> None:
    """List the highest-numbered syscall that is not ENOSYS, even when the default says
    it: runc answers ENOSYS for every number above the highest name a profile lists
    (libcontainer/seccomp/patchbpf), before the filter. runc and crun skip a rule equal
    to the default, so the extra name costs nothing else."""
    if default.kind in ("allow", "log"):
        return  # runc adds no stub under a permissive default
    table = syscalls.table(arch)
    listed = {n for names in plain.values() for n in names}
    listed |= {n for names in conditioned.values() for n in names}
    top = max((table[n] for n in listed if n in table), default=-1)
    enosys = str(Action("errno", 38))
    answers = [(nr, n) for n, nr in table.items() if everywhere.get(n) != enosys]
    if not answers:
        return
    nr, name = max(answers)
    if nr > top:
        plain.setdefault(everywhere.get(name, str(default)), set()).add(name)


def _or_entries(alts: list[tuple[Cmp, ...]], max_args: int | None) -> list[tuple[Cmp, ...]]:
    """Entries for the alternatives: every single comparison on an index shared with
    another goes into one entry engines OR; the rest stay ANDed entries of their own."""
    singles: dict[int, list[Cmp]] = {}
    out: list[tuple[Cmp, ...]] = []
    for alt in alts:
        if len(alt) == 1:
            singles.setdefault(alt[0][0], []).append(alt[0])
        else:
            out.append(alt)
    for _index, cmps in sorted(singles.items()):
        size = max_args or len(cmps)
        chunks = [cmps[n : n + size] for n in range(0, len(cmps), size)]
        # a lone comparison left over is an entry of its own (ANDed, same meaning)
        out += [tuple(sorted(chunk)) for chunk in chunks]
    return out
