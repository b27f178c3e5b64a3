"""``[seccomp]`` -> a raw BPF program the shim loads with seccomp(SECCOMP_SET_MODE_FILTER).

Semantics, first match wins, per syscall:

1. ``hardening`` (on by default): the denies listed in :data:`HARDENING`; ``clone3`` gets
   ENOSYS so libc falls back to ``clone``, whose flags a filter can read (clone3 passes
   them in memory, out of a filter's reach).
2. ``deny`` (answered with ``deny_action``), then ``[[seccomp.rules]]`` whose action is
   not ``allow``, in file order.
3. ``allow`` and the ``allow`` rules.
4. ``default_action`` for every other syscall of isorun's table, by an explicit rule each.

The filter's own default is ``unknown_action`` (ENOSYS): only syscall numbers newer than
the table reach it, so new kernels' syscalls fail the way programs expect on old kernels.
Any other ABI than the ones listed (x32, i386 on x86_64) kills the process: a filter
written for x86_64 numbers means nothing for i386 numbers, and x32 reuses x86_64 numbers
with bit 30 set (libseccomp checks that bit; the kill is SCMP_FLTATR_ACT_BADARCH).

Precedence is decided here, not by libseccomp, which has none between rules of one
syscall (see :mod:`isorun.compile.argspace`): every rule given to libseccomp covers a
region of argument values disjoint from the other actions' regions.

Checking a policy (unknown names, bad values, contradictions) is
:mod:`isorun.profile.seccomp_rules`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from isorun.compile import argspace
from isorun.compile.argspace import Region
from isorun.errors import DEFAULT_LOC, Diagnostic, Loc, ProfileError
from isorun.kernel import syscalls
from isorun.profile.schema import Action, Seccomp, SeccompRule, When
from isorun.profile.seccomp_rules import HARDENING_DENY, check_seccomp

LAYOUTS = ("tree", "linear")
#: more comparisons than this for one syscall means a rule set we should not hide in a
#: filter (each costs instructions on every call of that syscall)
MAX_COMPARISONS_PER_SYSCALL = 400
#: the same where one argument is compared below different other arguments in different
#: rules (argspace.mixed_shapes) and some rule compares three or more arguments:
#: libseccomp 2.5.4 takes exponential time to add those (two-argument rules of podman's
#: socket, 65 of them, take milliseconds; 63 one-argument rules then one with three
#: arguments took 14 s)
MAX_MIXED_RULES = 32

EPERM = 1
ENOSYS = 38
#: the longest filter the kernel loads (linux/bpf_common.h BPF_MAXINSNS)
BPF_MAXINSNS = 4096

#: calls that i386 may also make through the socketcall and ipc multiplexers, where their
#: arguments sit in memory (libseccomp src/syscalls.c, _abi_syscall_mux)
MULTIPLEXED = frozenset(
    [
        "socket",
        "bind",
        "connect",
        "listen",
        "accept",
        "getsockname",
        "getpeername",
        "socketpair",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "sendmsg",
        "recvmsg",
        "accept4",
        "recvmmsg",
        "sendmmsg",
        "semop",
        "semget",
        "semctl",
        "semtimedop",
        "msgsnd",
        "msgrcv",
        "msgget",
        "msgctl",
        "shmat",
        "shmdt",
        "shmget",
        "shmctl",
    ]
)

# ioctl requests from asm-generic/ioctls.h
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
CLONE_NEWUSER = 0x10000000
#: every namespace flag clone takes (linux/sched.h): NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
#: NEWUSER, NEWPID, NEWNET; the same mask as Docker's default profile
CLONE_NAMESPACES = 0x7E020000
#: unshare also takes CLONE_NEWTIME (0x80, since 5.6), which clone cannot: the bit is
#: part of CSIGNAL there
UNSHARE_NAMESPACES = CLONE_NAMESPACES | 0x80
# personality values Docker allows (moby profiles/seccomp/default.json): PER_LINUX,
# UNAME26, PER_LINUX32, PER_LINUX32|UNAME26, and 0xffffffff, which only queries
SAFE_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

@dataclass(frozen=True, slots=True)
class Entry:
    """One first-match step for one syscall: where it matches, what it answers, why."""

    region: Region
    action: Action
    origin: str
    loc: Loc = DEFAULT_LOC


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


@dataclass(frozen=True, slots=True)
class SeccompProgram:
    """The compiled filter: what the shim loads, and what ``explain`` shows."""

    bpf: bytes
    """Raw ``struct sock_filter`` array, native byte order."""
    pfc: str
    """libseccomp's pseudo-C rendering of the same filter."""
    arch: str
    arches: tuple[str, ...]
    layout: str
    rules: tuple[ResolvedRule, ...]
    unresolved: tuple[Unresolved, ...]
    libseccomp: str = ""
    refused: tuple[Unresolved, ...] = ()
    """Syscalls refused outright on an ABI where their argument conditions cannot be
    checked (i386 socket and ipc calls, multiplexed through socketcall and ipc; on i386
    and x32, rules on the high half of a 64-bit argument)."""

    def describe(self) -> str:
        head = (
            f"seccomp: {len(self.bpf) // 8} BPF instructions, {len(self.rules)} rules,"
            f" arches {','.join(self.arches)}, layout {self.layout}"
        )
        lines = [head]
        if self.unresolved:
            names = sorted({u.name for u in self.unresolved if u.arch == self.arch})
            lines.append(f"  not on {self.arch} (ignored there): {' '.join(names)}")
        for abi in sorted({u.arch for u in self.refused}):
            names = sorted(u.name for u in self.refused if u.arch == abi)
            lines.append(
                f"  refused on {abi} (its filter cannot check these rules' arguments:"
                f" socketcall/ipc, or the high half of a 64-bit argument): {' '.join(names)}"
            )
        return "\n".join(lines)


def action_value(action: Action) -> int:
    """The SECCOMP_RET_* value of an action (linux/seccomp.h)."""
    match action.kind:
        case "allow":
            return 0x7FFF0000
        case "errno":
            return 0x00050000 | (action.errno & 0xFFFF)
        case "kill_process":
            return 0x80000000
        case "kill_thread":
            return 0x00000000
        case "trap":
            return 0x00030000
        case "log":
            return 0x7FFC0000
    raise ValueError(f"unknown action {action.kind!r}")


def _conds(name: str, cond_list: list[tuple[int, str, int, int]]) -> Region:
    """The region of a conjunction of conditions on ``name``'s arguments, its 32-bit
    arguments compared on the low 32 bits the kernel reads."""
    return argspace.from_conditions(cond_list, syscalls.narrow_args(name))


def hardening_entries(policy: Seccomp) -> dict[str, list[Entry]]:
    """The hardening rules, as first-match entries per syscall."""
    deny = policy.deny_action
    out: dict[str, list[Entry]] = {}

    def add(name: str, region: Region, action: Action, why: str) -> None:
        out.setdefault(name, []).append(Entry(region, action, f"hardening: {why}"))

    # clone3 passes flags in a struct a filter cannot read: ENOSYS makes glibc fall back to
    # clone, whose namespace flags the rule below checks
    add("clone3", argspace.FULL, Action("errno", ENOSYS), "clone3 -> ENOSYS (flags unreadable)")
    for name, why in HARDENING_DENY.items():
        add(name, argspace.FULL, deny, why)
    # CVE-2019-10063 (flatpak): the kernel truncates the ioctl request to 32 bits, so a
    # request with high bits set must be compared on the low 32 bits only
    for req, label in ((TIOCSTI, "TIOCSTI"), (TIOCLINUX, "TIOCLINUX")):
        add(
            "ioctl",
            _conds("ioctl", [(1, "eq", req, 0)]),
            deny,
            f"{label} pushes input into the terminal (CVE-2017-5226, CVE-2019-10063)",
        )
    # nested user namespaces give a full capability set over new namespaces: the entry
    # point of most unprivileged kernel exploits; the other namespace flags reach kernel
    # code (mount, network, ipc setup) that a sandbox has no use for and Docker refuses too.
    # The sandboxed command starts after isorun's own clone, so this never stops isorun.
    for name, mask in (("clone", CLONE_NAMESPACES), ("unshare", UNSHARE_NAMESPACES)):
        no_ns = _conds(name, [(0, "masked_eq", 0, mask)])
        add(name, argspace.complement(no_ns), deny, "namespace flags: no nested namespaces")
    safe: Region = []
    for value in SAFE_PERSONALITIES:
        safe += _conds("personality", [(0, "eq", value, 0)])
    # other personalities turn off ASLR (ADDR_NO_RANDOMIZE) or map page 0 (MMAP_PAGE_ZERO)
    add(
        "personality",
        argspace.complement(safe),
        deny,
        "personality other than Docker's safe values",
    )
    return out


#: our architecture names -> Docker's (Go's GOARCH) names used by ``when.arches``
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i386": "386", "x32": "amd64"}


@dataclass(frozen=True, slots=True)
class Context:
    """What ``when`` conditions are decided against: kept capabilities, the host
    architecture (our name) and the kernel version (None: unknown, min_kernel fails)."""

    caps: frozenset[str] = frozenset()
    arch: str = "x86_64"
    kernel: tuple[int, ...] | None = None


def parse_kernel(text: str) -> tuple[int, ...]:
    """``"5.15.0-91-generic"`` -> (5, 15, 0); raises ValueError on a non-version."""
    head = text.split("-")[0].split("+")[0]
    parts = tuple(int(p) for p in head.split("."))
    if not parts or len(parts) > 3:
        raise ValueError(text)
    return parts


def when_holds(when: When | None, ctx: Context) -> bool:
    """Docker's includes/excludes semantics (moby profiles/seccomp, ``setupSeccomp``)."""
    if when is None:
        return True
    if any(c not in ctx.caps for c in when.caps) or any(c in ctx.caps for c in when.not_caps):
        return False
    host = DOCKER_ARCH.get(ctx.arch, ctx.arch)
    if (when.arches and host not in when.arches) or host in when.not_arches:
        return False
    if when.min_kernel and (ctx.kernel is None or ctx.kernel < parse_kernel(when.min_kernel)):
        return False
    return not (
        when.below_kernel and (ctx.kernel is None or ctx.kernel >= parse_kernel(when.below_kernel))
    )


def build_entries(
    policy: Seccomp, ctx: Context | None = None
) -> tuple[dict[str, list[Entry]], dict[str, Loc]]:
    """First-match entries per syscall name, and every name the profile mentions.

    Rules whose ``when`` does not hold in ``ctx`` are left out (default context: no
    capabilities, x86_64, unknown kernel)."""
    ctx = ctx or Context()
    entries: dict[str, list[Entry]] = hardening_entries(policy) if policy.hardening else {}
    mentioned: dict[str, Loc] = {}

    docker_checks = syscalls.docker_default_conditions(DOCKER_ARCH.get(ctx.arch, ctx.arch))

    def add(
        items: tuple[str, ...],
        conds: list[tuple[int, str, int, int]],
        action: Action,
        origin: str,
        loc: Loc,
    ) -> None:
        for item in items:
            for name in sorted(syscalls.expand(item)):
                mentioned.setdefault(name, loc)
                via = f" via {item}" if item != name else ""
                try:
                    region = _conds(name, conds) if conds else argspace.FULL
                except argspace.TooComplex as err:
                    raise ProfileError(
                        [Diagnostic(loc, f"{origin}: the conditions on {name} are {err}", _SIMPLER)]
                    ) from None
                if item == "@docker-default" and action.kind == "allow" and name in docker_checks:
                    # the group stands for Docker's decisions, argument checks included
                    # (isorun issue 13: a bare name list let AF_VSOCK sockets through)
                    checked: Region = []
                    for alt in docker_checks[name]:
                        checked = argspace.union(checked, _conds(name, list(alt)))
                    region = argspace.simplify(argspace.intersect(region, checked))
                entries.setdefault(name, []).append(Entry(region, action, origin + via, loc))

    add(policy.deny, [], policy.deny_action, "seccomp.deny", policy.loc)
    active = [(n, r) for n, r in enumerate(policy.rules) if when_holds(r.when, ctx)]
    for n, rule in active:
        if rule.action.kind != "allow":
            add(rule.syscalls, _rule_conds(rule), rule.action, f"seccomp.rules[{n}]", rule.loc)
    add(policy.allow, [], Action("allow"), "seccomp.allow", policy.loc)
    for n, rule in active:
        if rule.action.kind == "allow":
            add(rule.syscalls, _rule_conds(rule), rule.action, f"seccomp.rules[{n}]", rule.loc)
    return entries, mentioned


_SIMPLER = "simplify the argument conditions for this syscall"


def _rule_conds(rule: SeccompRule) -> list[tuple[int, str, int, int]]:
    return [(c.index, c.op, c.value, c.mask) for c in rule.args]


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


def decide(
    policy: Seccomp,
    name: str,
    args: tuple[int, ...] = (),
    entries: dict[str, list[Entry]] | None = None,
    ctx: Context | None = None,
) -> Action:
    """What the profile answers for one call of a syscall it knows (the reference the BPF
    is tested against). Pass ``entries`` from :func:`build_entries` to decide many calls."""
    if entries is None:
        entries = build_entries(policy, ctx)[0]
    for entry in entries.get(name, []):
        if argspace.contains(entry.region, args):
            return entry.action
    return policy.default_action


def _resolve_arch(arch: str, native: str) -> str:
    return native if arch == "native" else arch


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
            errors.append(Diagnostic(loc, f"the rules for {name} together are {err}", _SIMPLER))
            continue
        start = len(rules)
        boxes = [box for region, _ in pieces for box in region]
        ranges = argspace.ranges_are_safe(boxes)
        limit = MAX_COMPARISONS_PER_SYSCALL
        if argspace.mixed_shapes(boxes) and max(map(len, boxes), default=0) >= 3:
            limit = MAX_MIXED_RULES
        counts = [sum(argspace.count_comparisons(b, ranges) for b in r) for r, _ in pieces]
        big = max(range(len(pieces)), key=counts.__getitem__)
        # counted before they are built: a product of cubes can run into millions
        exact = sum(counts)
        need, took = exact, False
        if exact <= limit or (fallthrough is not None and exact - counts[big] < limit):
            emitted = [
                (entry, [c for box in region for c in argspace.comparisons(box, ranges)])
                if k != big or exact <= limit
                else (entry, [])
                for k, (region, entry) in enumerate(pieces)
            ]
            if exact > limit and fallthrough is not None:
                emitted, took = _with_fallthrough(emitted, fallthrough, big, counts[big])
                need = sum(len(cl) for _, cl in emitted) if took else exact
            if need <= limit:
                for entry, cmps_list in emitted:
                    for cmps in cmps_list:
                        rules.append(
                            ResolvedRule(
                                name,
                                primary.get(name, -1),
                                str(entry.action),
                                tuple(cmps),
                                entry.origin,
                                entry.loc,
                            )
                        )
                if took and fell is not None:
                    fell[name] = exact
            else:
                need = exact
        if need > limit:
            loc = next((e.loc for _, e in pieces if e.loc != DEFAULT_LOC), policy.loc)
            errors.append(
                Diagnostic(
                    loc,
                    f"the rules for {name} need {need} libseccomp rules to compile exactly"
                    + (
                        " (rules comparing an argument after different other arguments:"
                        f" at most {MAX_MIXED_RULES}, libseccomp 2.5.4 takes exponential"
                        " time to merge them)"
                        if limit == MAX_MIXED_RULES
                        else ""
                    ),
                    _SIMPLER,
                )
            )
            del rules[start:]
    if errors:
        raise ProfileError(errors)
    return rules, unresolved


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


def compile_seccomp(
    policy: Seccomp,
    *,
    arch: str = "native",
    layout: str = "tree",
    caps: frozenset[str] = frozenset(),
    kernel: tuple[int, ...] | None = None,
) -> SeccompProgram:
    """Compile ``[seccomp]`` to BPF for ``arch`` (the host's by default).

    ``caps`` (the capabilities the sandbox keeps) and ``kernel`` decide rules with a
    ``when``. Raises ProfileError listing every problem of the policy, with locations.
    """
    diags = check_seccomp(policy)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if diags:
        raise ProfileError(diags)

    from isorun.compile import _libseccomp as lsc

    lib = lsc.load()
    native = lsc.native_arch(lib)
    primary = native if arch == "native" else arch
    if primary not in lsc.ARCH_TOKENS or primary in ("x32", "i386"):
        raise ValueError(f"cannot compile for {primary!r}")
    targets = target_arches(policy, primary)
    ctx = Context(caps, primary, kernel)
    fell: dict[str, int] = {}
    rules, unresolved = plan_rules(
        policy, targets, ctx, fallthrough=str(policy.unknown_action), fell=fell
    )
    unknown_value = action_value(policy.unknown_action)
    kept: list[ResolvedRule] = []
    conditional = {r.syscall for r in rules if r.conditions}
    inexact32 = {r.syscall for r in rules if not all(map(_low32_exact, r.conditions))}
    refused: list[Unresolved] = []
    missing: set[tuple[str, str]] = set()
    # One filter per ABI, merged at the end: libseccomp rewrites an i386 socket or ipc rule
    # into a socketcall/ipc rule whose first argument it overwrites (src/syscalls.c,
    # abi_rule_add), so argument conditions cannot be given to it together with the
    # native rules (their rewritten copies collide: EEXIST, isorun issue 14).
    filters = [_abi_filter(lsc, lib, unknown_value, layout, native, a) for a in targets]
    try:
        # libseccomp takes the primary ABI's numbers (or its pseudo-numbers for names
        # only other ABIs have) and translates them by name for each ABI of a filter
        token = lsc.ARCH_TOKENS[primary]
        numbers: dict[str, int] = {}
        for rule in rules:
            if rule.syscall not in numbers:
                nr = filters[0].resolve(token, rule.syscall)
                # libseccomp older than our table: the number is a kernel fact, but only
                # safe on a single-ABI filter (libseccomp would reuse it on other ABIs)
                if nr == lsc.NR_SCMP_ERROR and rule.nr >= 0 and len(targets) == 1:
                    nr = rule.nr
                numbers[rule.syscall] = nr
        for abi, flt in zip(targets, filters, strict=True):
            for rule in rules:
                nr = numbers[rule.syscall]
                if nr == lsc.NR_SCMP_ERROR:
                    missing.add((rule.syscall, abi))
                    continue
                if abi == primary:
                    kept.append(rule)
                if _unreadable(abi, rule.syscall, conditional, inexact32):
                    # fail closed: a rule this ABI's filter cannot decide as written would
                    # answer other calls than the profile says; the call is refused there
                    if not any(u.name == rule.syscall and u.arch == abi for u in refused):
                        refused.append(Unresolved(rule.syscall, abi, rule.loc))
                        value = action_value(refusal_action(policy))
                        if value != unknown_value:
                            flt.add_rule(value, nr, [])
                    continue
                if abi == "i386" and rule.syscall in ("socketcall", "ipc") and not rule.conditions:
                    # libseccomp decides socketcall(N) and ipc(N) by the rules of the call
                    # N carries (abi_rule_add adds each on the multiplexer's call number);
                    # an unconditional rule for the multiplexer would wipe those out
                    # (db_rule_add), and socketcall(SYS_SOCKET) would escape a deny socket
                    continue
                value = action_value(Action(*_split(rule.action)))
                if value != unknown_value:  # else the filter's default answers it already
                    try:
                        flt.add_rule(value, nr, list(rule.conditions))
                    except OSError as err:
                        raise ProfileError(
                            [
                                Diagnostic(
                                    rule.loc,
                                    f"{rule.origin}: libseccomp cannot compile the rule for"
                                    f" {rule.syscall} on {abi}: {err.strerror}",
                                    f"remove {abi!r} from seccomp.architectures, or simplify"
                                    " the argument conditions",
                                )
                            ]
                        ) from err
        for other in filters[1:]:
            filters[0].merge(other)
        bpf = filters[0].export_bpf()
        pfc = filters[0].export_pfc()
    finally:
        for flt in filters:
            flt.close()
    if len(bpf) // 8 > BPF_MAXINSNS:
        # the kernel would refuse it at launch (EINVAL from seccomp(2)); say so now, with
        # the syscalls that cost the most
        cost: dict[str, int] = {}
        for rule in rules:
            cost[rule.syscall] = cost.get(rule.syscall, 0) + 1
        worst = sorted(cost, key=lambda n: -cost[n])[:3]
        raise ProfileError(
            [
                Diagnostic(
                    policy.loc,
                    f"the seccomp filter needs {len(bpf) // 8} BPF instructions, more than"
                    f" the kernel's {BPF_MAXINSNS} (most rules: "
                    + ", ".join(f"{n} {cost[n]}" for n in worst)
                    + ")",
                    _SIMPLER,
                )
            ]
        )
    if fell:
        _prove_fallthrough(policy, ctx, bpf, targets, fell, refused, missing, rules)
    unresolved += tuple(
        Unresolved(n, a) for n, a in sorted(missing) if Unresolved(n, a) not in unresolved
    )
    return SeccompProgram(
        bpf=bpf,
        pfc=pfc,
        arch=primary,
        arches=targets,
        layout=layout,
        rules=tuple(kept),
        unresolved=unresolved,
        libseccomp=".".join(str(v) for v in lib.version),
        refused=tuple(refused),
    )


def _prove_fallthrough(
    policy: Seccomp,
    ctx: Context,
    bpf: bytes,
    targets: tuple[str, ...],
    fell: dict[str, int],
    refused: list[Unresolved],
    missing: set[tuple[str, str]],
    rules: list[ResolvedRule],
) -> None:
    """Refuse the profile unless every fall-through syscall's BPF answers what the
    profile does, on every ABI, for a set of calls that decides every region (see
    :mod:`isorun.compile.fallthrough_check`)."""
    from isorun.compile import bpf_verify, fallthrough_check
    from isorun.compile.fallthrough_check import TOO_MANY

    insns = bpf_verify.decode(bpf)
    entries = build_entries(policy, ctx)[0]
    gone = {(u.name, u.arch) for u in refused}
    errors: list[Diagnostic] = []
    for name in sorted(fell):

        def answer(abi: str, args: tuple[int, ...], name: str = name) -> int:
            if (name, abi) in gone:  # the whole syscall is refused on that ABI
                return action_value(refusal_action(policy))
            return action_value(decide(policy, name, args, entries))

        abis = [a for a in targets if (name, a) not in missing]
        regions = [e.region for e in entries.get(name, [])]
        why = fallthrough_check.check_syscall(insns, name, abis, regions, answer)
        if why is not None:
            located = (r.loc for r in rules if r.syscall == name and r.loc != DEFAULT_LOC)
            loc = next(located, policy.loc)
            checked = " (the shorter encoding was checked and gave a different answer)"
            text = f"the rules for {name} need {fell[name]} libseccomp rules to compile exactly"
            errors.append(Diagnostic(loc, text + ("" if why == TOO_MANY else checked), _SIMPLER))
    if errors:
        raise ProfileError(errors)


#: ABIs whose libseccomp filters compare 32 bits of each argument: arch-x86.c and
#: arch-x32.c are ARCH_SIZE_32, and _db_rule_gen_32 (src/db.c) keeps only the low halves
#: of a rule's mask and datum
ABIS_32 = frozenset({"i386", "x32"})
_LOW32 = 0xFFFFFFFF


def _low32_exact(cond: tuple[int, str, int, int]) -> bool:
    """Whether a 32-bit ABI's filter decides a comparison as the profile does: only a
    ``masked_eq`` whose mask has no high bit. Every condition on a 32-bit argument is
    written that way (argspace), so this is false only where a rule compares the high
    half of a 64-bit argument (``eq``, ranges, wide masks): libseccomp would drop that
    half (``a1 == 0x100000005`` becomes ``a1 == 5``), and x32 calls pass 64-bit registers
    that the kernel reads whole."""
    _index, op, mask, _value = cond
    # the fall-through's ``arg0 >= 0`` holds for every value, at either width
    return (op == "masked_eq" and mask <= _LOW32) or cond == ALWAYS


def refusal_action(policy: Seccomp) -> Action:
    """What a call gets on an ABI whose filter cannot check its rules: the profile's
    ``default_action``, or ``deny_action`` where the default lets calls through (a
    deny-list profile: its argument rules refuse, so dropping them must not allow)."""
    for action in (policy.default_action, policy.deny_action):
        if action.kind not in ("allow", "log"):
            return action
    return Action("errno", EPERM)


_IPC_PREFIX = re.compile(r"(sem|msg|shm)")


def _unreadable(abi: str, name: str, conditional: set[str], inexact32: set[str]) -> bool:
    """Whether ``name``'s argument rules cannot be enforced on ``abi``: on i386 the
    socket and ipc calls also go through socketcall/ipc, which pass their arguments in
    memory (and libseccomp pairs every direct rule with a multiplexed copy); on both
    32-bit ABIs, a rule on the high half of a 64-bit argument."""
    if abi == "i386" and name in conditional and name in MULTIPLEXED:
        return True
    if abi == "i386" and name in ("socketcall", "ipc"):
        # the multiplexer itself too: libseccomp refuses a carried call there by a rule
        # on its call number, which an unconditional rule for the multiplexer (a group
        # that allows socketcall, or a default that allows) would wipe out
        carried = {n for n in conditional & MULTIPLEXED if _IPC_PREFIX.match(n)}
        return bool(carried if name == "ipc" else (conditional & MULTIPLEXED) - carried)
    return abi in ABIS_32 and name in inexact32


def _abi_filter(lsc: Any, lib: Any, unknown_value: int, layout: str, native: str, abi: str) -> Any:
    """An empty libseccomp filter for one ABI, with isorun's attributes."""
    flt = lsc.Filter(lib, unknown_value)
    # the kernel loads what the shim gives it; no_new_privs is the shim's own step
    flt.set_attr(lsc.ATTR_CTL_NNP, 0)
    flt.set_attr(lsc.ATTR_ACT_BADARCH, action_value(Action("kill_process")))
    if layout == "tree":
        # binary search over syscall numbers instead of a linear if-chain
        flt.set_attr(lsc.ATTR_CTL_OPTIMIZE, 2)
    if abi != native:
        flt.add_arch(lsc.ARCH_TOKENS[abi])
        flt.remove_arch(lsc.ARCH_TOKENS[native])
    return flt


def _split(action: str) -> tuple[str, int]:
    kind, _, num = action.partition(":")
    return kind, int(num or 0)
