"""Prove a fall-through syscall's BPF against the profile before the compiler keeps it.

The fall-through (``seccomp._with_fallthrough``) leans on the order libseccomp 2.5.4 gives
a syscall's comparisons; that order is not documented, so the compiler does not trust it:
for every syscall whose rules took it, the finished program is run in the cBPF
interpreter (:mod:`isorun.compile.bpf_verify`) on every ABI of the filter over a set of
argument values that decides every region, and compared with the profile's first match.

Why the set decides every region. The program reads an argument as two 32-bit words and
compares each word with constants (``jeq``/``jgt``/``jge`` with a constant ``k``, on the
word itself or on ``word & m``); the profile compares whole 64-bit values with spans
(``lo <= v <= hi``) and cubes (``v & mask == value``). Each such comparison splits a word's
values into intervals: ``jeq k`` into ``[0, k-1]``, ``[k]``, ``[k+1, 2**32-1]``; ``jgt k``
at ``k + 1``; ``jge k`` at ``k``; a span at ``lo`` and ``hi + 1``; a 64-bit bound ``c``
orders ``v`` as (``v.hi`` against ``c.hi``, then ``v.lo`` against ``c.lo``), so it splits
the high word at ``c.hi`` and ``c.hi + 1`` and the low word at ``c.lo``. The samples of a
word are 0, ``2**32 - 1`` and every such start (plus ``k - 1`` and ``k + 1`` of the
program's unmasked constants, and high words 0, 1 and ``2**32 - 1``, the values a caller
most plausibly sets; a high word neither side reads gets 0 and ``2**32 - 1`` only):
every interval between consecutive starts holds one, and an answer that compares the
word only at those starts is the same everywhere in one interval.
Both answers compare nothing else, so every combination of the words' samples (the
product over the argument words either side reads) meets every cell where both answers
are constant: if they agree on all samples, they agree on every call.

Masks: a prefix mask (a run of ones from a word's top bit: the cubes of a range or of an
``ne``, a 32-bit argument's low-word mask, ``0xFFFFFFFF``) makes the interval
``[value, value | ~mask]``, sampled at both ends. Any other mask (``0xF0``, a flags test),
or a ``jset``, makes a set that is not an interval, which interval starts do not decide:
a syscall whose program or profile has one is not checked, so the fall-through is not
kept for it (the profile is refused as without it).

Arguments neither side compares stay 0. The walk over the program stops the check (as
too many values would) at any instruction other than a load, ``and``, jump or return, so
no comparison it cannot see goes unsampled. High words are sampled on i386 too (a 64-bit
process can make an i386 call through ``int 0x80``); the caller's ``expected`` reads the
arguments as that ABI's kernel does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import product

from isorun.compile import bpf_verify as V
from isorun.compile.argspace import Cube, Region, Span
from isorun.kernel import syscalls

LOW32 = 0xFFFFFFFF
MAX = (1 << 64) - 1
#: more evaluations than this for one syscall and ABI: not checked, so not kept
MAX_EVALUATIONS = 20_000
#: what :func:`check` says when it does not run the program (too many argument values,
#: or an instruction the walk of :func:`program_constants` does not follow)
TOO_MANY = "too many argument values to check"
#: (AUDIT_ARCH_* the filter reads, the bits of an argument that ABI's kernel reads: a
#: 64-bit process can make an i386 call through ``int 0x80`` with high bits set)
ABIS = {
    "x86_64": (V.AUDIT_ARCH_X86_64, MAX),
    "x32": (V.AUDIT_ARCH_X86_64, MAX),
    "i386": (V.AUDIT_ARCH_I386, LOW32),
    "aarch64": (V.AUDIT_ARCH_AARCH64, MAX),
}
#: offset of args[0] in struct seccomp_data (linux/seccomp.h)
_ARGS = 16


def _prefix(mask: int) -> bool:
    """Whether ``mask`` (32 bits) is a run of ones from the top bit (an interval mask)."""
    inv = ~mask & LOW32
    return inv & (inv + 1) == 0


def _word_samples(value: int, mask: int) -> set[int]:
    """Interval starts of one 32-bit word for ``word & mask == value`` (``mask`` a prefix
    mask: the set is ``[value, value | ~mask]``)."""
    top = value | (~mask & LOW32)
    return {value, (top + 1) & LOW32}


def program_constants(insns: tuple[V.Insn, ...], nr: int, arch: int) -> dict[int, set[int]] | None:
    """``{word offset: constants}`` the program compares an argument word with, on the
    paths a call of ``nr`` on ``arch`` can take (the syscall number and ABI are known, so
    only their own branches are followed; every branch on an argument is). None where
    the program does something else than load, mask and compare."""
    seen: set[tuple[int, int | None, int | None, int]] = set()
    found: dict[int, set[int]] = {}
    # state: pc, known A (nr/arch loads) or None, argument word offset in A or None, mask
    stack: list[tuple[int, int | None, int | None, int]] = [(0, None, None, LOW32)]
    data = V.seccomp_data(nr, arch)
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        pc, known, word, mask = state
        if pc >= len(insns):
            continue
        ins = insns[pc]
        cls, op = ins.code & 0x07, ins.code & 0xF0
        if cls == 0x00 and ins.code & 0xE0 == 0x20:  # LD ABS
            if ins.k >= _ARGS:
                stack.append((pc + 1, None, ins.k, LOW32))
            else:
                stack.append(
                    (pc + 1, int.from_bytes(data[ins.k : ins.k + 4], "little"), None, LOW32)
                )
        elif cls == 0x04 and op == 0x50 and not ins.code & 0x08:  # ALU AND K
            if known is not None:
                stack.append((pc + 1, known & ins.k, None, LOW32))
            else:
                stack.append((pc + 1, None, word, mask & ins.k))
        elif cls == 0x05 and op == 0x00:  # JA
            stack.append((pc + 1 + ins.k, known, word, mask))
        elif cls == 0x05 and not ins.code & 0x08:
            if known is not None:
                hit = {0x10: known == ins.k, 0x20: known > ins.k, 0x30: known >= ins.k}
                taken = hit.get(op, bool(known & ins.k))
                stack.append((pc + 1 + (ins.jt if taken else ins.jf), known, None, LOW32))
                continue
            if word is not None:
                if op == 0x40 or not _prefix(mask):
                    # a set that is not an interval: the samples would not decide it
                    return None
                k = ins.k & mask
                ks = found.setdefault(word, set())
                ks |= _word_samples(k, mask)
                if mask == LOW32:
                    ks |= {(k - 1) & LOW32, (k + 1) & LOW32}
            stack.append((pc + 1 + ins.jt, known, word, mask))
            stack.append((pc + 1 + ins.jf, known, word, mask))
        elif cls == 0x06:  # RET
            continue
        else:
            # anything else (scratch memory, X, other ALU, other loads): libseccomp does
            # not write it, and a comparison the walk cannot see would leave a region
            # unsampled, so the program is not checked at all (fail closed)
            return None
    return found


def policy_constants(regions: Iterable[Region]) -> dict[int, set[int]] | None:
    """``{word offset: constants}`` of the profile's spans and cubes; None for a cube whose
    mask is not an interval in each word (see the module docstring)."""
    found: dict[int, set[int]] = {}

    def add(index: int, value: int, mask: int = MAX) -> None:
        lo = found.setdefault(_ARGS + 8 * index, set())
        lo |= _word_samples(value & LOW32, mask & LOW32)
        if mask >> 32:  # a 32-bit argument's cubes leave the high word free
            hi = found.setdefault(_ARGS + 8 * index + 4, set())
            hi |= {(k + d) & LOW32 for k in _word_samples(value >> 32, mask >> 32) for d in (0, 1)}

    for region in regions:
        for box in region:
            for index, atom in box:
                if isinstance(atom, Span):
                    add(index, atom.lo)
                    add(index, (atom.hi + 1) & MAX)
                elif isinstance(atom, Cube):
                    if not (_prefix(atom.mask & LOW32) and _prefix(atom.mask >> 32)):
                        return None
                    add(index, atom.value, atom.mask)
    return found


def covering_args(constants: dict[int, set[int]]) -> list[tuple[int, ...]] | None:
    """Every combination of the words' samples, or None when there are more than
    :data:`MAX_EVALUATIONS`."""
    per_arg: list[list[int]] = []
    for index in range(6):
        lo_k = constants.get(_ARGS + 8 * index, set())
        hi_k = constants.get(_ARGS + 8 * index + 4, set())
        if not lo_k and not hi_k:
            per_arg.append([0])
            continue
        # a high word neither side reads cannot change an answer: 0, and all ones in case
        # the walk or the profile's reading is wrong about that
        his = sorted(hi_k | {0, 1, LOW32}) if hi_k else [0, LOW32]
        per_arg.append([hi << 32 | lo for hi in his for lo in sorted(lo_k | {0, LOW32})])
    total = 1
    for vals in per_arg:
        total *= len(vals)
    if total > MAX_EVALUATIONS:
        return None
    return list(product(*per_arg))


def check(
    insns: tuple[V.Insn, ...],
    nr: int,
    arch: int,
    regions: Iterable[Region],
    expected: Callable[[tuple[int, ...]], int],
) -> str | None:
    """None when the program answers ``expected(args)`` on every covering argument
    vector; else why not (a differing call, or too many vectors to check)."""
    constants = policy_constants(regions)
    compared = program_constants(insns, nr, arch)
    if constants is None or compared is None:
        return TOO_MANY
    for word, ks in compared.items():
        constants.setdefault(word, set()).update(ks)
    vectors = covering_args(constants)
    if vectors is None:
        return TOO_MANY
    for args in vectors:
        got = V.run(insns, V.seccomp_data(nr, arch, args))
        if got != expected(args):
            return f"args {tuple(hex(a) for a in args)}: {V.describe(got)}"
    return None


def check_syscall(
    insns: tuple[V.Insn, ...],
    name: str,
    abis: Iterable[str],
    regions: list[Region],
    answer: Callable[[str, tuple[int, ...]], int],
) -> str | None:
    """:func:`check` on every ABI that has ``name``; ``answer(abi, args)`` is the
    profile's SECCOMP_RET_* value for the arguments as that ABI's kernel reads them."""
    for abi in abis:
        nr = syscalls.table(abi).get(name)
        if nr is None:
            continue  # the filter's default answers it, as every number it does not know
        audit, width = ABIS[abi]

        def expected(args: tuple[int, ...], abi: str = abi, width: int = width) -> int:
            return answer(abi, tuple(a & width for a in args))

        why = check(insns, nr, audit, regions, expected)
        if why is not None:
            return why if why == TOO_MANY else f"{abi}: {why}"
    return None
