"""First-match entries -> disjoint rules libseccomp can take, per syscall and ABI table.

libseccomp has no precedence between rules of one syscall (see
:mod:`isorun.compile.argspace`): :func:`lower` turns each syscall's first-match entries
into regions disjoint from the other actions' regions, and :func:`plan_rules` writes them
as comparisons, refusing a syscall whose rules would not fit a filter. No libseccomp is
needed here: the Docker/OCI exports use these rules too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isorun.compile import argspace
from isorun.compile.argspace import Region
from isorun.compile.seccomp_entries import EPERM, SIMPLER, Context, Entry, build_entries
from isorun.errors import DEFAULT_LOC, Diagnostic, Loc, ProfileError
from isorun.kernel import syscalls
from isorun.profile.schema import Action, Seccomp

#: more comparisons than this for one syscall means a rule set we should not hide in a
#: filter (each costs instructions on every call of that syscall)
MAX_COMPARISONS_PER_SYSCALL = 400
#: the same where one argument is compared below different other arguments in different
#: rules (argspace.mixed_shapes) and some rule compares three or more arguments:
#: libseccomp 2.5.4 takes exponential time to add those (two-argument rules of podman's
#: socket, 65 of them, take milliseconds; 63 one-argument rules then one with three
#: arguments took 14 s)
MAX_MIXED_RULES = 32


@dataclass(frozen=True, slots=True)
class ResolvedRule:
    """One rule handed to libseccomp, with the profile line (or hardening) behind it."""

    syscall: str
    nr: int
    action: str
    #: libseccomp comparisons ``(arg index, op, datum_a, datum_b)``; for masked_eq
    #: datum_a is the mask, datum_b the value
    conditions: tuple[tuple[int, str, int, int], ...]
    origin: str
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A name the profile asks for that this architecture does not have (not an error)."""

    name: str
    arch: str
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


def lower(name: str, entries: list[Entry], default: Entry) -> list[tuple[Region, Entry]]:
    """First match -> disjoint regions: each entry keeps what earlier ones left over."""
    out: list[tuple[Region, Entry]] = []
    remaining = argspace.FULL
    for entry in [*entries, default]:
        if remaining == argspace.FULL and entry.region == argspace.FULL:
            # The common case (no argument condition left to split on): this entry takes
            # the whole space and nothing after it can match. Same result as the general
            # step below, without its set algebra (most syscalls of a profile get here,
            # and the algebra was a third of a cold compile).
            out.append((argspace.FULL, entry))
            break
        piece = argspace.simplify(argspace.intersect(entry.region, remaining))
        if piece:
            out.append((piece, entry))
        remaining = argspace.simplify(
            argspace.intersect(remaining, argspace.complement(entry.region))
        )
        if not remaining:
            break
    if len({str(e.action) for _, e in out}) == 1:
        # one answer for every argument (a hardening deny on a syscall the profile refuses
        # anyway): one unconditional rule instead of the pieces (isorun issue 14, item 6)
        return [(argspace.FULL, out[0][1])]
    return out


def plan_rules(
    policy: Seccomp,
    targets: tuple[str, ...],
    ctx: Context,
    *,
    fallthrough: str | None = None,
    fell: dict[str, int] | None = None,
) -> tuple[list[ResolvedRule], tuple[Unresolved, ...]]:
    """Disjoint rules for every syscall of the target ABIs' tables (no libseccomp needed:
    the Docker/OCI exports use this too). ``nr`` is the number on ``targets[0]``.

    ``fallthrough`` (for libseccomp 2.5.4 only, see :func:`_with_fallthrough`): the
    filter's own default action; where a syscall's exact rules are over the size limit,
    the action with the most pieces becomes one always-true rule added last, and
    ``fell`` gets ``name -> exact rule count`` so the caller proves that syscall's BPF
    (:mod:`isorun.compile.fallthrough_check`) before keeping it."""
    entries, mentioned = build_entries(policy, ctx)
    known: set[str] = set()
    for a in targets:
        known |= set(syscalls.table(a))
    unresolved = tuple(
        Unresolved(name, a, loc)
        for name, loc in sorted(mentioned.items())
        for a in targets
        if name not in syscalls.table(a)
    )
    default = Entry(argspace.FULL, policy.default_action, "seccomp.default_action", policy.loc)
    primary = syscalls.table(targets[0])
    rules: list[ResolvedRule] = []
    errors: list[Diagnostic] = []
    for name in sorted(known):
        try:
            pieces = lower(name, entries.get(name, []), default)
        except argspace.TooComplex as err:
            loc = next((e.loc for e in entries.get(name, []) if e.loc != DEFAULT_LOC), policy.loc)
            errors.append(Diagnostic(loc, f"the rules for {name} together are {err}", SIMPLER))
            continue
        planned = _plan_syscall(name, primary.get(name, -1), pieces, fallthrough, fell)
        if isinstance(planned, int):
            errors.append(_too_many(name, planned, pieces, policy.loc))
        else:
            rules += planned
    if errors:
        raise ProfileError(errors)
    return rules, unresolved


def _limit(boxes: list[argspace.Box]) -> int:
    """How many libseccomp rules one syscall may take (see MAX_MIXED_RULES)."""
    if argspace.mixed_shapes(boxes) and max(map(len, boxes), default=0) >= 3:
        return MAX_MIXED_RULES
    return MAX_COMPARISONS_PER_SYSCALL


def _plan_syscall(
    name: str,
    nr: int,
    pieces: list[tuple[Region, Entry]],
    fallthrough: str | None,
    fell: dict[str, int] | None,
) -> list[ResolvedRule] | int:
    """One syscall's disjoint pieces as libseccomp rules, or (over the size limit) how
    many rules they would need. Records a fall-through in ``fell`` (see plan_rules)."""
    boxes = [box for region, _ in pieces for box in region]
    ranges = argspace.ranges_are_safe(boxes)
    limit = _limit(boxes)
    counts = [sum(argspace.count_comparisons(b, ranges) for b in r) for r, _ in pieces]
    big = max(range(len(pieces)), key=counts.__getitem__)
    # counted before they are built: a product of cubes can run into millions
    exact = sum(counts)
    if not (exact <= limit or (fallthrough is not None and exact - counts[big] < limit)):
        return exact
    emitted = [
        (entry, [c for box in region for c in argspace.comparisons(box, ranges)])
        if k != big or exact <= limit
        else (entry, [])
        for k, (region, entry) in enumerate(pieces)
    ]
    need, took = exact, False
    if exact > limit and fallthrough is not None:
        emitted, took = _with_fallthrough(emitted, fallthrough, big, counts[big])
        need = sum(len(cl) for _, cl in emitted) if took else exact
    if need > limit:
        return exact
    if took and fell is not None:
        fell[name] = exact
    return [
        ResolvedRule(name, nr, str(entry.action), tuple(cmps), entry.origin, entry.loc)
        for entry, cmps_list in emitted
        for cmps in cmps_list
    ]


def _too_many(name: str, need: int, pieces: list[tuple[Region, Entry]], where: Loc) -> Diagnostic:
    """The refusal of a syscall whose rules need ``need`` libseccomp rules."""
    boxes = [box for region, _ in pieces for box in region]
    loc = next((e.loc for _, e in pieces if e.loc != DEFAULT_LOC), where)
    return Diagnostic(
        loc,
        f"the rules for {name} need {need} libseccomp rules to compile exactly"
        + (
            " (rules comparing an argument after different other arguments:"
            f" at most {MAX_MIXED_RULES}, libseccomp 2.5.4 takes exponential"
            " time to merge them)"
            if _limit(boxes) == MAX_MIXED_RULES
            else ""
        ),
        SIMPLER,
    )


#: ``arg0 >= 0``: true for every call; see _with_fallthrough
ALWAYS = (0, "ge", 0, 0)
_RANGE_OPS = ("le", "lt", "ge", "gt")


def _with_fallthrough(
    emitted: list[tuple[Entry, list[list[tuple[int, str, int, int]]]]],
    filter_default: str,
    big: int,
    big_count: int,
) -> tuple[list[tuple[Entry, list[list[tuple[int, str, int, int]]]]], bool]:
    """Replace the largest action's rules of one syscall by one ``arg0 >= 0`` rule, last.

    libseccomp 2.5.4's filter for one syscall is a depth-first search of its rule tree:
    a comparison that fails, or a level whose nodes all failed, continues with the next
    node of the level above (src/gen_bpf.c, ``_gen_bpf_chain`` resolves a level's end to
    the parent's next node), and the first action reached answers. A level's nodes are
    kept in descending order of (argument, high word first, operator: eq/masked_eq/ne,
    then le/lt, then ge/gt, datum) (src/db.c, ``_db_chain_lt`` and ``_db_tree_add``), and
    every rule starts with its high-word node. So the high-word node of ``arg0 >= 0``
    (``a0.hi > 0``) is the last node of the syscall's top level: the rule answers exactly
    the calls that no other rule, all disjoint, matched. That turns the complement of
    two ``ne`` conditions on 32-bit arguments (1024 cube rules, issue 14) into one rule.

    Not where another rule compares ``arg0`` with a range: its ``a0.hi > k`` node with
    ``k == 0`` is the same node to libseccomp and the two would be merged. Nor where one
    of the actions is the filter's default: those pieces are left to the end of the
    search, which the new rule would take (libseccomp refuses rules with the default
    action, so they cannot be written either).

    Only a fallback, and never trusted: a property run once found a wrong decision with
    it (personality(0, 0, 0x10, 0x8) refused where the profile allows; not reproduced
    since, so the order above may not be the whole story). plan_rules uses it only where
    the exact rules are over the size limit, and compile_seccomp runs every such
    syscall's finished BPF against the profile on every ABI
    (:mod:`isorun.compile.fallthrough_check`), refusing the profile if one call differs.

    ``emitted[big]`` has the most rules (``big_count``; they may be left unbuilt). Returns
    the rules and whether the fall-through took the place of ``emitted[big]``."""
    others = [item for k, item in enumerate(emitted) if k != big]
    if (
        len(emitted) < 2
        or big_count < 2
        or any(str(entry.action) == filter_default for entry, _ in emitted)
        or any(i == 0 and op in _RANGE_OPS for _, cl in others for c in cl for i, op, _a, _b in c)
    ):
        return emitted, False
    return [*others, (emitted[big][0], [[ALWAYS]])], True


def target_arches(policy: Seccomp, primary: str) -> tuple[str, ...]:
    extra = [a for a in ("x32", "i386") if a in policy.architectures]
    return (primary, *extra) if primary == "x86_64" else (primary,)


def refusal_action(policy: Seccomp) -> Action:
    """What a call gets on an ABI whose filter cannot check its rules: the profile's
    ``default_action``, or ``deny_action`` where the default lets calls through (a
    deny-list profile: its argument rules refuse, so dropping them must not allow)."""
    for action in (policy.default_action, policy.deny_action):
        if action.kind not in ("allow", "log"):
            return action
    return Action("errno", EPERM)
