"""libseccomp comparisons for disjoint boxes, shaped so libseccomp 2.5.4 compiles them.

The boxes come from :mod:`isorun.compile.argspace`, already disjoint; what is left is the
shape of each rule. They must keep libseccomp 2.5.4's rule tree a tree. It compiles
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

from itertools import product

from isorun.compile.argbox import MAX, Box, Cube, Span, span_cubes


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
