"""Checking a ``[seccomp]`` table: every problem the profile has, as diagnostics with
locations, before anything is compiled. Its sibling :mod:`isorun.compile.seccomp` builds
the filter from a policy that passed.
"""

from __future__ import annotations

from isorun.compile import argspace
from isorun.compile.seccomp import HARDENING_DENY
from isorun.errors import DEFAULT_LOC, Diagnostic, Loc, close_matches
from isorun.kernel import syscalls
from isorun.profile.schema import ACTIONS, ARCH_NAMES, OPERATORS, Action, Seccomp

MAX_ERRNO = 4095  # the kernel's MAX_ERRNO: larger SECCOMP_RET_ERRNO data is clamped


def _close(word: str, pool: tuple[str, ...] | list[str]) -> str:
    close = close_matches(word, list(pool), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_seccomp(policy: Seccomp) -> list[Diagnostic]:
    """Every problem of a ``[seccomp]`` table (the loader may call this to report early)."""
    diags: list[Diagnostic] = []
    known = syscalls.all_names()

    def names(where: str, items: tuple[str, ...], loc: Loc) -> None:
        for name in items:
            if name not in known:
                hint = syscalls.suggest(name) or (
                    "see `isorun syscalls` for the names and @groups isorun knows"
                )
                kind = "group" if name.startswith("@") else "syscall"
                diags.append(Diagnostic(loc, f"{where}: unknown {kind} {name!r}", hint))

    def action(where: str, act: Action, loc: Loc) -> None:
        if act.kind not in ACTIONS:
            diags.append(
                Diagnostic(
                    loc,
                    f"{where}: unknown action {act.kind!r}",
                    _close(act.kind, ACTIONS) or f"use one of {', '.join(ACTIONS)}",
                )
            )
        elif act.kind == "errno" and not 0 <= act.errno <= MAX_ERRNO:
            diags.append(
                Diagnostic(
                    loc,
                    f"{where}: errno {act.errno} out of range",
                    f"use an errno between 0 and {MAX_ERRNO}, e.g. errno:EPERM",
                )
            )

    action("seccomp.default_action", policy.default_action, policy.loc)
    action("seccomp.unknown_action", policy.unknown_action, policy.loc)
    action("seccomp.deny_action", policy.deny_action, policy.loc)
    if policy.deny_action.kind == "allow":
        diags.append(
            Diagnostic(
                policy.loc,
                "seccomp.deny_action cannot be allow",
                "use errno:EPERM, kill_process, trap or log",
            )
        )
    names("seccomp.allow", policy.allow, policy.loc)
    names("seccomp.deny", policy.deny, policy.loc)
    for arch in policy.architectures:
        if arch not in ARCH_NAMES:
            diags.append(
                Diagnostic(
                    policy.loc,
                    f"seccomp.architectures: unknown {arch!r}",
                    _close(arch, ARCH_NAMES) or f"use {', '.join(ARCH_NAMES)}",
                )
            )
    for n, rule in enumerate(policy.rules):
        where = f"seccomp.rules[{n}]"
        if not rule.syscalls:
            diags.append(
                Diagnostic(
                    rule.loc,
                    f"{where}.syscalls is empty",
                    'name at least one syscall, e.g. syscalls = ["mkdir"]',
                )
            )
        names(f"{where}.syscalls", rule.syscalls, rule.loc)
        action(f"{where}.action", rule.action, rule.loc)
        for m, cond in enumerate(rule.args):
            cwhere = f"{where}.args[{m}]"
            loc = cond.loc if cond.loc != DEFAULT_LOC else rule.loc
            if not 0 <= cond.index <= 5:
                diags.append(
                    Diagnostic(
                        loc,
                        f"{cwhere}.index {cond.index} out of range",
                        "syscalls have 6 arguments: index 0 to 5",
                    )
                )
            if cond.op not in OPERATORS:
                diags.append(
                    Diagnostic(
                        loc,
                        f"{cwhere}.op: unknown operator {cond.op!r}",
                        _close(cond.op, OPERATORS) or f"use one of {', '.join(OPERATORS)}",
                    )
                )
            for what, value in (("value", cond.value), ("mask", cond.mask)):
                if not 0 <= value <= argspace.MAX:
                    diags.append(
                        Diagnostic(
                            loc,
                            f"{cwhere}.{what} {value} is not an unsigned 64-bit value",
                            "the kernel compares arguments as unsigned 64-bit; write -1 as"
                            " 0xffffffffffffffff (or 0xffffffff for a 32-bit int)",
                        )
                    )
            if cond.op == "masked_eq":
                if cond.mask == 0:
                    diags.append(
                        Diagnostic(
                            loc,
                            f"{cwhere}: masked_eq needs a mask",
                            "add mask = 0x..., the bits to compare",
                        )
                    )
                elif cond.value & ~cond.mask:
                    diags.append(
                        Diagnostic(
                            loc,
                            f"{cwhere}: value {cond.value:#x} has bits outside mask"
                            f" {cond.mask:#x}, so the condition never holds",
                            f"use value = {cond.value & cond.mask:#x}",
                        )
                    )
            elif cond.mask:
                diags.append(
                    Diagnostic(
                        loc,
                        f"{cwhere}: mask is only used by masked_eq",
                        'remove mask, or use op = "masked_eq"',
                    )
                )
    if not diags:
        diags += _contradictions(policy)
    return diags


def _contradictions(policy: Seccomp) -> list[Diagnostic]:
    """Unconditional rules on one *literal* name that cannot both hold.

    Denying a name inside an allowed group is a refinement, not a contradiction; naming the
    same syscall both ways means one line of the profile would be dropped.
    """
    diags: list[Diagnostic] = []
    allowed: dict[str, Loc] = {n: policy.loc for n in policy.allow if not n.startswith("@")}
    denied: dict[str, tuple[Action, Loc, str]] = {
        n: (policy.deny_action, policy.loc, "seccomp.deny")
        for n in policy.deny
        if not n.startswith("@")
    }
    for n, rule in enumerate(policy.rules):
        if rule.args or rule.when is not None:
            continue
        for name in rule.syscalls:
            if name.startswith("@"):
                continue
            if rule.action.kind == "allow":
                allowed.setdefault(name, rule.loc)
                continue
            prev = denied.get(name)
            if prev is not None and prev[0] != rule.action:
                diags.append(
                    Diagnostic(
                        rule.loc,
                        f"seccomp.rules[{n}]: {name} answers {rule.action}, but"
                        f" {prev[2]} ({prev[1].short()}) already answers {prev[0]}",
                        "keep one rule per syscall and action",
                    )
                )
            denied.setdefault(name, (rule.action, rule.loc, f"seccomp.rules[{n}]"))
    for name, loc in sorted(allowed.items()):
        if name in denied:
            act, dloc, where = denied[name]
            diags.append(
                Diagnostic(
                    loc,
                    f"{name} is allowed here and denied by {where} ({dloc.short()},"
                    f" {act}) without conditions",
                    "remove one of the two; to refine a group, allow the group and deny the name",
                )
            )
        elif policy.hardening and name in HARDENING_DENY | {"clone3": ""}:
            diags.append(
                Diagnostic(
                    loc,
                    f"{name} is allowed here but seccomp.hardening denies it",
                    f"remove {name} from the allow list, or set seccomp.hardening = false",
                )
            )
    return diags
