"""``[seccomp]`` -> first-match entries per syscall: what the profile answers, in order.

The order (hardening, denies, non-allow rules, allows, allow rules) is
:mod:`isorun.compile.seccomp`'s docstring; rules whose ``when`` does not hold are left out
here. :func:`decide` answers one call from these entries: the reference every compiled
filter is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass

from isorun.compile import argspace
from isorun.compile.argspace import Region
from isorun.errors import DEFAULT_LOC, Diagnostic, Loc, ProfileError
from isorun.kernel import syscalls
from isorun.kernel.abi import CLONE_NEWTIME, NAMESPACE_FLAGS
from isorun.profile.schema import Action, Seccomp, SeccompRule, When
from isorun.profile.seccomp_rules import HARDENING_DENY

EPERM = 1
ENOSYS = 38
SIMPLER = "simplify the argument conditions for this syscall"

# ioctl requests from asm-generic/ioctls.h
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
#: every namespace flag clone takes: the same mask (0x7E020000) as Docker's default profile
CLONE_NAMESPACES = sum(flag for flag in NAMESPACE_FLAGS.values() if flag != CLONE_NEWTIME)
#: unshare also takes CLONE_NEWTIME, which clone cannot: the bit is part of CSIGNAL there
UNSHARE_NAMESPACES = CLONE_NAMESPACES | CLONE_NEWTIME
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
                        [Diagnostic(loc, f"{origin}: the conditions on {name} are {err}", SIMPLER)]
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


def _rule_conds(rule: SeccompRule) -> list[tuple[int, str, int, int]]:
    return [(c.index, c.op, c.value, c.mask) for c in rule.args]


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
