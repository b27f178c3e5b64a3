"""Exact set algebra over syscall arguments, so seccomp rules never overlap.

libseccomp gives no precedence between rules of the same syscall: an unconditional rule
silently swallows conditional ones with another action (an ``allow ioctl`` next to a
``deny ioctl if cmd == TIOCSTI`` compiles to a plain allow), and overlapping conditional
rules are ordered by its internal tree. It also refuses two comparisons on the same
argument in one rule (EINVAL). So the compiler decides precedence itself, first match
wins, and hands libseccomp only *disjoint* regions, each a conjunction of at most one
comparison per argument.

A region is a list of disjoint boxes; a box maps an argument index to one atom; an atom is
a :class:`Cube` (``arg & mask == value``) or a :class:`Span` (``lo <= arg <= hi``), both on
unsigned 64-bit values as libseccomp compares them. Complements stay exact: a cube's
complement is one cube per mask bit, a span's is at most two spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True, order=True)
class Cube:
    """``arg & mask == value`` (value has no bits outside mask)."""

    mask: int
    value: int

    def bounds(self) -> tuple[int, int]:
        return self.value, self.value | (MAX ^ self.mask)


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """``lo <= arg <= hi``, unsigned."""

    lo: int
    hi: int


Atom = Cube | Span
#: one argument condition per index, sorted by index; () is "every argument value"
Box = tuple[tuple[int, Atom], ...]
Region = list[Box]
FULL: Region = [()]


def span_cubes(lo: int, hi: int) -> list[Cube]:
    """Split ``[lo, hi]`` into aligned power-of-two blocks (at most 128 cubes)."""
    out: list[Cube] = []
    while lo <= hi:
        size = (lo & -lo) if lo else 1 << 64
        while size > hi - lo + 1:
            size >>= 1
        out.append(Cube(MAX ^ (size - 1), lo))
        lo += size
    return out


def atom_of(op: str, value: int, mask: int = 0) -> list[Atom]:
    """The disjoint atoms of one profile comparison (``eq``, ``ne``, ... ``masked_eq``)."""
    if op == "eq":
        return [Cube(MAX, value)]
    if op == "ne":
        return complement_atom(Cube(MAX, value))
    if op == "lt":
        return [Span(0, value - 1)] if value > 0 else []
    if op == "le":
        return [Span(0, value)]
    if op == "gt":
        return [Span(value + 1, MAX)] if value < MAX else []
    if op == "ge":
        return [Span(value, MAX)]
    if op == "masked_eq":
        # bits of value outside mask can never compare equal: the condition is never true
        return [] if value & ~mask else [Cube(mask, value)]
    raise ValueError(op)


def complement_atom(atom: Atom) -> list[Atom]:
    if isinstance(atom, Span):
        out: list[Atom] = []
        if atom.lo > 0:
            out.append(Span(0, atom.lo - 1))
        if atom.hi < MAX:
            out.append(Span(atom.hi + 1, MAX))
        return out
    if atom.mask == MAX:  # a point: two spans read better than 64 cubes
        return complement_atom(Span(atom.value, atom.value))
    out = []
    higher = 0
    for bit in range(63, -1, -1):
        b = 1 << bit
        if atom.mask & b:
            out.append(Cube(higher | b, (atom.value & higher) | (~atom.value & b)))
            higher |= b
    return out


def intersect_atoms(a: Atom, b: Atom) -> list[Atom]:
    if isinstance(a, Span) and isinstance(b, Span):
        lo, hi = max(a.lo, b.lo), min(a.hi, b.hi)
        return [Span(lo, hi)] if lo <= hi else []
    if isinstance(a, Cube) and isinstance(b, Cube):
        if (a.value ^ b.value) & a.mask & b.mask:
            return []
        return [Cube(a.mask | b.mask, a.value | b.value)]
    cube, span = (a, b) if isinstance(a, Cube) else (b, a)
    assert isinstance(cube, Cube) and isinstance(span, Span)
    lo, hi = cube.bounds()
    if span.lo <= lo and hi <= span.hi:
        return [cube]
    if hi < span.lo or lo > span.hi:
        return []
    out: list[Atom] = []
    for piece in span_cubes(span.lo, span.hi):
        out += intersect_atoms(cube, piece)
    return out


def intersect_boxes(a: Box, b: Box) -> Region:
    per: dict[int, list[Atom]] = {i: [atom] for i, atom in a}
    for i, atom in b:
        if i in per:
            per[i] = [x for old in per[i] for x in intersect_atoms(old, atom)]
        else:
            per[i] = [atom]
    if any(not atoms for atoms in per.values()):
        return []
    keys = sorted(per)
    return [tuple(zip(keys, combo, strict=True)) for combo in product(*(per[k] for k in keys))]


def intersect(a: Region, b: Region) -> Region:
    return [box for x in a for y in b for box in intersect_boxes(x, y)]


def complement_box(box: Box) -> Region:
    """Disjoint: the first argument differs, or it matches and the second differs, ..."""
    out: Region = []
    for n, (i, atom) in enumerate(box):
        for other in complement_atom(atom):
            out.append((*box[:n], (i, other)))
    return out


def complement(region: Region) -> Region:
    out = FULL
    for box in region:
        out = simplify(intersect(out, complement_box(box)))
    return out


def from_conditions(conds: list[tuple[int, str, int, int]]) -> Region:
    """The region where every ``(index, op, value, mask)`` comparison holds."""
    out = FULL
    for index, op, value, mask in conds:
        out = intersect(out, [((index, atom),) for atom in atom_of(op, value, mask)])
    return simplify(out)


def _merge_atoms(a: Atom, b: Atom) -> Atom | None:
    if isinstance(a, Span) and isinstance(b, Span):
        if a.hi + 1 == b.lo:
            return Span(a.lo, b.hi)
        if b.hi + 1 == a.lo:
            return Span(b.lo, a.hi)
        return None
    if isinstance(a, Cube) and isinstance(b, Cube) and a.mask == b.mask:
        diff = a.value ^ b.value
        if diff and diff & (diff - 1) == 0:  # siblings: they differ in exactly one bit
            return Cube(a.mask ^ diff, a.value & ~diff)
    return None


def simplify(region: Region) -> Region:
    """Merge boxes that differ in one sibling atom, until nothing merges. Exact."""
    boxes = list(dict.fromkeys(region))
    changed = True
    while changed and len(boxes) > 1:
        changed = False
        for x in range(len(boxes)):
            for y in range(x + 1, len(boxes)):
                merged = _merge_boxes(boxes[x], boxes[y])
                if merged is not None:
                    boxes[x] = merged
                    del boxes[y]
                    changed = True
                    break
            if changed:
                break
    return boxes


def _merge_boxes(a: Box, b: Box) -> Box | None:
    if len(a) != len(b) or [i for i, _ in a] != [i for i, _ in b]:
        return None
    diff = [n for n in range(len(a)) if a[n][1] != b[n][1]]
    if len(diff) != 1:
        return None
    n = diff[0]
    merged = _merge_atoms(a[n][1], b[n][1])
    if merged is None:
        return None
    if merged in (Span(0, MAX), Cube(0, 0)):
        return (*a[:n], *a[n + 1 :])
    return (*a[:n], (a[n][0], merged), *a[n + 1 :])


def contains(region: Region, args: tuple[int, ...]) -> bool:
    """Whether the argument values fall in the region (for tests and ``explain``)."""
    full = tuple(args) + (0,) * (6 - len(args))

    def hit(i: int, atom: Atom) -> bool:
        v = full[i] & MAX
        if isinstance(atom, Span):
            return atom.lo <= v <= atom.hi
        return v & atom.mask == atom.value

    return any(all(hit(i, atom) for i, atom in box) for box in region)


def comparisons(box: Box) -> list[list[tuple[int, str, int, int]]]:
    """libseccomp comparisons ``(index, op, datum_a, datum_b)`` for a box: one list per rule.

    A middle span needs two comparisons on one argument, which libseccomp refuses, so it
    is split into aligned cubes, one rule each.
    """
    per: list[list[tuple[int, str, int, int]]] = []
    for i, atom in box:
        if isinstance(atom, Cube):
            if atom.mask == MAX:
                per.append([(i, "eq", atom.value, 0)])
            else:
                per.append([(i, "masked_eq", atom.mask, atom.value)])
        elif atom.lo == atom.hi:
            per.append([(i, "eq", atom.lo, 0)])
        elif atom.lo == 0:
            per.append([(i, "le", atom.hi, 0)])
        elif atom.hi == MAX:
            per.append([(i, "ge", atom.lo, 0)])
        else:
            per.append(
                [
                    (i, "masked_eq", c.mask, c.value) if c.mask != MAX else (i, "eq", c.value, 0)
                    for c in span_cubes(atom.lo, atom.hi)
                ]
            )
    return [list(combo) for combo in product(*per)]
