"""Cubes, spans and boxes: the atoms of argument regions and their exact set operations.

A region is a list of disjoint boxes; a box maps an argument index to one atom; an atom is
a :class:`Cube` (``arg & mask == value``) or a :class:`Span` (``lo <= arg <= hi``), both on
unsigned 64-bit values as libseccomp compares them. Complements stay exact: a cube's
complement is one cube per mask bit, a span's is at most two spans.

A 32-bit argument (``int family`` of socket, ``unsigned int cmd`` of ioctl, ...) reaches
the filter as the whole 64-bit register, but the kernel reads only its low 32 bits:
``socket(0x100000028, ...)`` opens an AF_VSOCK (40) socket. Conditions on such an argument
are therefore built from cubes whose mask has no bit above 31 (see ``bits`` of
:func:`atom_of`), so the high half never decides.

The operations on whole regions (intersect, complement, union, simplify) are in
:mod:`isorun.compile.argspace`; turning boxes into libseccomp comparisons is in
:mod:`isorun.compile.argrules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from isorun.kernel.syscalls import ARG_MAX

MAX = ARG_MAX
#: the bits the kernel reads of a 32-bit (``int``, ``unsigned int``) argument
LOW32 = (1 << 32) - 1


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


def low_cubes(lo: int, hi: int) -> list[Cube]:
    """``[lo, hi]`` on the low 32 bits, any high half: aligned cubes with 32-bit masks."""
    return [Cube(c.mask & LOW32, c.value) for c in span_cubes(lo, hi)]


def atom_of(op: str, value: int, mask: int = 0, bits: int = 64) -> list[Atom]:
    """The disjoint atoms of one profile comparison (``eq``, ``ne``, ... ``masked_eq``).

    ``bits=32``: the argument is 32-bit; the comparison is on its low 32 bits, the datum
    read the same way (so ``-1`` written sign-extended still means ``0xffffffff``)."""
    if bits == 32:
        return _atom_of_low32(op, value & LOW32, mask & LOW32)
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


def _atom_of_low32(op: str, value: int, mask: int) -> list[Atom]:
    if op == "eq":
        return [Cube(LOW32, value)]
    if op == "ne":
        return complement_atom(Cube(LOW32, value))
    if op == "masked_eq":
        if value & ~mask:
            return []
        return [Cube(mask, value)] if mask else [Cube(0, 0)]
    bounds = {
        "lt": (0, value - 1),
        "le": (0, value),
        "gt": (value + 1, LOW32),
        "ge": (value, LOW32),
    }
    if op not in bounds:
        raise ValueError(op)
    lo, hi = bounds[op]
    return list(low_cubes(lo, hi)) if lo <= hi else []


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


def complement_box(box: Box) -> Region:
    """Disjoint: the first argument differs, or it matches and the second differs, ..."""
    out: Region = []
    for n, (i, atom) in enumerate(box):
        for other in complement_atom(atom):
            out.append((*box[:n], (i, other)))
    return out


def contains(region: Region, args: tuple[int, ...]) -> bool:
    """Whether the argument values fall in the region (for tests and ``explain``)."""
    full = tuple(args) + (0,) * (6 - len(args))

    def hit(i: int, atom: Atom) -> bool:
        v = full[i] & MAX
        if isinstance(atom, Span):
            return atom.lo <= v <= atom.hi
        return v & atom.mask == atom.value

    return any(all(hit(i, atom) for i, atom in box) for box in region)
