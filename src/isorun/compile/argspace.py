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

A 32-bit argument (``int family`` of socket, ``unsigned int cmd`` of ioctl, ...) reaches
the filter as the whole 64-bit register, but the kernel reads only its low 32 bits:
``socket(0x100000028, ...)`` opens an AF_VSOCK (40) socket. Conditions on such an argument
are therefore built from cubes whose mask has no bit above 31 (see ``bits`` of
:func:`from_conditions`), so the high half never decides.

The rules handed to libseccomp 2.5.4 must also keep its rule tree a tree. It compiles
``le``/``lt``/``ge``/``gt`` on a 64-bit argument to three nodes, two of which point at the
next argument's nodes; when a later rule with the same range inserts a node at the head of
that shared level, ``_db_tree_add`` (src/db.c) updates one of the two parents, then visits
the same level again through the other and links the new node before itself: a cycle in
the level list, and ``seccomp_rule_add_array`` spins forever (isorun issue 14). So a range
comparison is emitted only on the last argument of a rule; a range on an earlier argument
becomes aligned ``masked_eq`` cubes (see :func:`comparisons`). ``eq`` and ``masked_eq``
build a chain of single-parent nodes and cannot make that cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def intersect(a: Region, b: Region) -> Region:
    return _bounded([box for x in a for y in b for box in intersect_boxes(x, y)])


def complement_box(box: Box) -> Region:
    """Disjoint: the first argument differs, or it matches and the second differs, ..."""
    out: Region = []
    for n, (i, atom) in enumerate(box):
        for other in complement_atom(atom):
            out.append((*box[:n], (i, other)))
    return out


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


def ranges_are_safe(boxes: list[Box]) -> bool:
    """Whether one syscall's rules may use ``le``/``ge``: two ranges on an argument below
    the same conditions on the arguments before it must compare the same high word.

    libseccomp 2.5.4 merges ``arg <= 0xfffffffe`` and ``arg >= 1 << 32`` (same action) into
    a filter that also matches ``0xffffffff`` (found by the property test, confirmed in the
    kernel), while ``arg <= 8`` and ``arg >= 10`` keep their gap. Where that could happen,
    every span becomes cubes.

    Nor may a range on an argument sit below other arguments while another box of the
    syscall compares that argument below other ones (or none): cube rules on ``arg1``
    alone next to ``arg0 == 0 && arg1 <= 1`` made 2.5.4 spin as well (found by a random
    property run, case in tests/unit/test_seccomp_property.py; where in ``_db_tree_add``
    is not pinned down). Boxes that all reach the argument through the same ones are fine."""
    before: dict[int, set[tuple[int, ...]]] = {}
    for box in boxes:
        for n, (i, _) in enumerate(box):
            before.setdefault(i, set()).add(tuple(j for j, _ in box[:n]))
    for box in boxes:
        if box and len(box) > 1:
            i, atom = box[-1]
            if isinstance(atom, Span) and atom.lo != atom.hi and len(before[i]) > 1:
                return False
    seen: dict[tuple[Box, int], int] = {}
    for box in boxes:
        if not box:
            continue
        i, atom = box[-1]  # only the last argument's span is written as a range
        if isinstance(atom, Span) and atom.lo != atom.hi and (atom.lo == 0 or atom.hi == MAX):
            high = (atom.hi if atom.lo == 0 else atom.lo) >> 32
            if seen.setdefault((box[:-1], i), high) != high:
                return False
    return True


def mixed_shapes(boxes: list[Box]) -> bool:
    """Whether some argument is compared below different sets of other arguments (e.g.
    ``arg3`` alone in one rule and after ``arg0, arg2`` in another). libseccomp 2.5.4
    merges such rules in exponential time: 63 rules on ``arg3`` alone, then one on
    ``arg0, arg2, arg3`` took 14 s to add (the random property run's "hangs" were these;
    see :data:`isorun.compile.seccomp.MAX_MIXED_RULES`)."""
    before: dict[int, set[tuple[int, ...]]] = {}
    for box in boxes:
        for n, (i, _) in enumerate(box):
            before.setdefault(i, set()).add(tuple(j for j, _ in box[:n]))
    return any(len(p) > 1 for p in before.values())


def comparisons(box: Box, ranges: bool = True) -> list[list[tuple[int, str, int, int]]]:
    """libseccomp comparisons ``(index, op, datum_a, datum_b)`` for a box: one list per rule.

    A middle span needs two comparisons on one argument, which libseccomp refuses, so it
    is split into aligned cubes, one rule each. So is a span on any argument but the last
    of the box: libseccomp's range nodes share their child level, which its rule merge
    can turn into a cycle (see the module docstring); and every span when ``ranges`` is
    false (see :func:`ranges_are_safe`).
    """
    per: list[list[tuple[int, str, int, int]]] = []
    last = len(box) - 1
    for n, (i, atom) in enumerate(box):
        if isinstance(atom, Cube):
            per.append([_cube_comparison(i, atom)])
        elif atom.lo == atom.hi:
            per.append([(i, "eq", atom.lo, 0)])
        elif atom.lo == 0 and n == last and ranges:
            per.append([(i, "le", atom.hi, 0)])
        elif atom.hi == MAX and n == last and ranges:
            per.append([(i, "ge", atom.lo, 0)])
        else:
            per.append([_cube_comparison(i, c) for c in span_cubes(atom.lo, atom.hi)])
    return [list(combo) for combo in product(*per)]


def count_comparisons(box: Box, ranges: bool = True) -> int:
    """``len(comparisons(box, ranges))`` without building them."""
    count, last = 1, len(box) - 1
    for n, (_, atom) in enumerate(box):
        if isinstance(atom, Cube) or atom.lo == atom.hi:
            continue
        if not (ranges and n == last and (atom.lo == 0 or atom.hi == MAX)):
            count *= len(span_cubes(atom.lo, atom.hi))
    return count


def _cube_comparison(index: int, cube: Cube) -> tuple[int, str, int, int]:
    if cube.mask == MAX:
        return (index, "eq", cube.value, 0)
    return (index, "masked_eq", cube.mask, cube.value)
