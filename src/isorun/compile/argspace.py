"""Exact set algebra over syscall arguments, so seccomp rules never overlap.

libseccomp gives no precedence between rules of the same syscall: an unconditional rule
silently swallows conditional ones with another action (an ``allow ioctl`` next to a
``deny ioctl if cmd == TIOCSTI`` compiles to a plain allow), and overlapping conditional
rules are ordered by its internal tree. It also refuses two comparisons on the same
argument in one rule (EINVAL). So the compiler decides precedence itself, first match
wins, and hands libseccomp only *disjoint* regions, each a conjunction of at most one
comparison per argument.

The regions themselves (cubes, spans, boxes) are in :mod:`isorun.compile.argbox`, and the
comparisons handed to libseccomp in :mod:`isorun.compile.argrules`.
"""

from __future__ import annotations

from collections.abc import Iterator

from isorun.compile.argbox import (
    FULL,
    LOW32,
    MAX,
    Atom,
    Box,
    Cube,
    Region,
    Span,
    atom_of,
    complement_atom,
    complement_box,
    contains,
    intersect_atoms,
    intersect_boxes,
    low_cubes,
    span_cubes,
)
from isorun.compile.argrules import comparisons, count_comparisons, mixed_shapes, ranges_are_safe

# Re-exported: eight modules (seccomp, refusals, render/docker*, cli/main, learn/profile)
# and the tests use ``argspace.X`` as the one namespace of the argument algebra; its parts
# live in argbox and argrules only to keep each file to one concern.
__all__ = [
    "FULL",
    "LOW32",
    "MAX",
    "MAX_BOXES",
    "Atom",
    "Box",
    "Cube",
    "Region",
    "Span",
    "TooComplex",
    "atom_of",
    "comparisons",
    "complement",
    "complement_atom",
    "complement_box",
    "contains",
    "count_comparisons",
    "from_conditions",
    "intersect",
    "intersect_atoms",
    "intersect_boxes",
    "low_cubes",
    "mixed_shapes",
    "ranges_are_safe",
    "simplify",
    "span_cubes",
    "union",
]


def intersect(a: Region, b: Region) -> Region:
    return _bounded([box for x in a for y in b for box in intersect_boxes(x, y)])


class TooComplex(ValueError):
    """A region needs more than :data:`MAX_BOXES` boxes: the conditions are too intricate to
    compile into a filter of sensible size (the caller reports it against the profile)."""


#: the most boxes one region may take; far more than a real profile needs (strict's largest
#: has about 60), and a bound on the time a contrived one can take
MAX_BOXES = 4000


def _bounded(region: Region) -> Region:
    if len(region) > MAX_BOXES:
        raise TooComplex(f"more than {MAX_BOXES} disjoint pieces")
    return region


def complement(region: Region) -> Region:
    """Every argument vector outside ``region``, as disjoint boxes.

    Shannon expansion over the arguments: the first argument's space is cut into cells that
    each lie inside or outside every box's condition on it; cells that keep the same boxes
    share one recursive complement of what those boxes ask of the later arguments. (Folding
    ``complement_box`` over the boxes instead multiplies the pieces at every step.)"""
    return simplify(_complement(region))


def _complement(region: Region) -> Region:
    if not region:
        return FULL
    if any(box == () for box in region):
        return []
    index = min(box[0][0] for box in region)
    atoms = list(dict.fromkeys(box[0][1] for box in region if box[0][0] == index))
    # cells whose boxes ask the same of the later arguments share one complement of that
    groups: dict[frozenset[Box], list[Atom]] = {}
    for cell, inside in _cells(atoms):
        rest = frozenset(
            box[1:] if box[0][0] == index else box
            for box in region
            if box[0][0] != index or box[0][1] in inside
        )
        groups.setdefault(rest, []).append(cell)
    out: Region = []
    for rest, cells in groups.items():
        tails = _complement(sorted(rest, key=repr))
        for cell in cells:
            head = () if cell in (Cube(0, 0), Span(0, MAX)) else ((index, cell),)
            out += [(*head, *tail) for tail in tails]
        _bounded(out)
    return out


def _cells(atoms: list[Atom]) -> list[tuple[Atom, frozenset[Atom]]]:
    """Cut one argument's values into disjoint cells, each inside or outside every atom:
    (cell, the atoms holding it). Spans cut at their ends; with any cube, everything is cut
    into cubes along the mask bits."""
    # a point is a span too: eq conditions next to ranges keep span cells (2, not 64)
    as_span = {
        a: a if isinstance(a, Span) else Span(a.value, a.value)
        for a in atoms
        if isinstance(a, Span) or a.mask == MAX
    }
    if len(as_span) == len(atoms):
        cuts = sorted(
            {
                0,
                *(s.lo for s in as_span.values()),
                *(s.hi + 1 for s in as_span.values() if s.hi < MAX),
            }
        )
        out_s: list[tuple[Atom, frozenset[Atom]]] = []
        for n, lo in enumerate(cuts):
            hi = cuts[n + 1] - 1 if n + 1 < len(cuts) else MAX
            held = frozenset(a for a, s in as_span.items() if s.lo <= lo and hi <= s.hi)
            out_s.append((Span(lo, hi), held))
        return out_s
    cubes: list[tuple[Cube, Atom]] = []
    for a in atoms:
        if isinstance(a, Cube):
            cubes.append((a, a))
        else:
            cubes += [(c, a) for c in span_cubes(a.lo, a.hi)]
    out: list[tuple[Atom, frozenset[Atom]]] = []

    def walk(live: list[tuple[Cube, Atom]], mask: int, value: int) -> None:
        pending = 0
        for c, _ in live:
            pending |= c.mask & ~mask
        if not pending:  # every live cube holds this whole cell
            out.append((Cube(mask, value), frozenset(a for _, a in live)))
            return
        bit = 1 << (pending.bit_length() - 1)
        for side in (0, bit):
            walk(
                [(c, a) for c, a in live if not c.mask & bit or c.value & bit == side],
                mask | bit,
                value | side,
            )

    walk(cubes, 0, 0)
    return out


def from_conditions(
    conds: list[tuple[int, str, int, int]], narrow: frozenset[int] = frozenset()
) -> Region:
    """The region where every ``(index, op, value, mask)`` comparison holds; arguments
    whose index is in ``narrow`` are 32-bit and compared on their low 32 bits."""
    out = FULL
    for index, op, value, mask in conds:
        bits = 32 if index in narrow else 64
        atoms = atom_of(op, value, mask, bits)
        out = intersect(out, [((index, atom),) if atom != Cube(0, 0) else () for atom in atoms])
    return simplify(out)


def union(a: Region, b: Region) -> Region:
    """``a`` or ``b``, still as disjoint boxes."""
    return simplify(a + intersect(b, complement(a)))


def simplify(region: Region) -> Region:
    """Merge boxes that differ in one sibling atom, until nothing merges. Exact.

    Partners are found by hashing: a cube's partner is the same cube with one mask bit
    flipped; spans are grouped by the rest of their box and merged where they touch."""
    one = _single_arg_cubes(region)
    if one is not None:  # the common case, on plain integers (hashing Cubes is slower)
        index, cubes = one
        merged = _merge_cube_values({(c.mask, c.value): None for c in cubes})
        return [((index, Cube(m, v)),) if m else () for m, v in merged]
    boxes: dict[Box, None] = dict.fromkeys(region)
    changed = True
    while changed and len(boxes) > 1:
        changed = _merge_cubes(boxes)
        changed = _merge_spans(boxes) or changed
    return list(boxes)


def _merge_spans(boxes: dict[Box, None]) -> bool:
    groups: dict[tuple[Box, int], list[Box]] = {}
    for box in boxes:
        for n, (i, atom) in enumerate(box):
            if isinstance(atom, Span):
                rest = (*box[:n], (i, Span(0, 0)), *box[n + 1 :])
                groups.setdefault((rest, n), []).append(box)
    merged_any = False
    for (_, n), members in groups.items():
        live = sorted((b for b in members if b in boxes), key=lambda b: _lo(b[n][1]))
        runs: list[list[Box]] = []
        for box in live:
            if runs and _lo(box[n][1]) == _hi(runs[-1][-1][n][1]) + 1:
                runs[-1].append(box)
            else:
                runs.append([box])
        for run in runs:
            if len(run) < 2:
                continue
            for old in run:
                del boxes[old]
            first, wide = run[0], Span(_lo(run[0][n][1]), _hi(run[-1][n][1]))
            kept = () if wide == Span(0, MAX) else ((first[n][0], wide),)
            boxes[(*first[:n], *kept, *first[n + 1 :])] = None
            merged_any = True
    return merged_any


def _lo(atom: Atom) -> int:
    return atom.lo if isinstance(atom, Span) else atom.value


def _hi(atom: Atom) -> int:
    return atom.hi if isinstance(atom, Span) else atom.value


def _single_arg_cubes(region: Region) -> tuple[int, list[Cube]] | None:
    """(index, cubes) when every box is one cube on the same argument, else None."""
    if not region or any(len(box) != 1 for box in region):
        return None
    index = region[0][0][0]
    cubes = [atom for box in region for i, atom in box if i == index and isinstance(atom, Cube)]
    return (index, cubes) if len(cubes) == len(region) else None


def _merge_cube_values(cubes: dict[tuple[int, int], None]) -> list[tuple[int, int]]:
    work = list(cubes)
    while work:
        mask, value = work.pop()
        if (mask, value) not in cubes:
            continue
        bits = mask
        while bits:
            bit = bits & -bits
            bits ^= bit
            if (mask, value ^ bit) in cubes:
                del cubes[(mask, value)], cubes[(mask, value ^ bit)]
                wider = (mask ^ bit, value & ~bit)
                cubes[wider] = None
                work.append(wider)
                break
    return list(cubes)


def _merge_cubes(boxes: dict[Box, None]) -> bool:
    work = list(boxes)
    merged_any = False
    while work:
        box = work.pop()
        if box not in boxes:
            continue
        for partner, merged in _cube_siblings(box):
            if partner in boxes:
                del boxes[box], boxes[partner]
                boxes[merged] = None
                work.append(merged)
                merged_any = True
                break
    return merged_any


def _cube_siblings(box: Box) -> Iterator[tuple[Box, Box]]:
    """(partner, union) for each box that differs from ``box`` in one bit of one cube."""
    for n, (i, atom) in enumerate(box):
        if not isinstance(atom, Cube):
            continue
        head, tail = box[:n], box[n + 1 :]
        bits = atom.mask
        while bits:
            bit = bits & -bits
            bits ^= bit
            partner = (*head, (i, Cube(atom.mask, atom.value ^ bit)), *tail)
            wider = Cube(atom.mask ^ bit, atom.value & ~bit)
            merged = (*head, *tail) if wider == Cube(0, 0) else (*head, (i, wider), *tail)
            yield partner, merged
