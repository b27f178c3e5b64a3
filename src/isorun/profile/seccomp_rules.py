"""The one check of a ``[seccomp]`` table: every problem it has, each located, before
anything is compiled.

It runs twice on a profile file, with the same rules and words: the loader checks each
file as it reads it (``locate`` then finds the line and column of every key and list item),
and :func:`isorun.compile.seccomp.compile_seccomp` checks the merged policy (or one built
in Python, or imported from Docker's JSON), where only the locations the schema objects
carry are known. A file is checked with ``layer=True``: what depends on settings the file
may inherit from the profiles it extends (``hardening``, ``deny_action``) waits for the
merge.

It also says what ``hardening = true`` means (:data:`HARDENING_DENY`): a fact of the
profile, which the compiler turns into filter entries.
"""

from __future__ import annotations

from collections.abc import Callable

from isorun.errors import DEFAULT_LOC, Diagnostic, Loc, did_you_mean
from isorun.kernel import syscalls
from isorun.kernel.syscalls import ARG_MAX
from isorun.profile.schema import ACTIONS, ARCH_NAMES, OPERATORS, Action, ArgCond, Seccomp
from isorun.profile.source_map import Path, dotted

#: the kernel's MAX_ERRNO: larger SECCOMP_RET_ERRNO data is clamped to it, and errno 0
#: would make a refused call look like a success
MAX_ERRNO = 4095

#: unconditional hardening denies: name -> why
HARDENING_DENY: dict[str, str] = {
    **{
        n: "io_uring bypasses seccomp for the operations it runs (and is a steady source of"
        " kernel CVEs)"
        for n in ("io_uring_setup", "io_uring_enter", "io_uring_register")
    },
    "userfaultfd": "stalls kernel page faults at will, the usual tool to win kernel races",
    "bpf": "eBPF programs are kernel attack surface (verifier CVEs)",
    "perf_event_open": "perf events leak kernel addresses and have a long CVE history",
    **{
        n: "the kernel keyring is shared across containers (not namespaced)"
        for n in ("keyctl", "add_key", "request_key")
    },
    **{n: "loads a new kernel" for n in ("kexec_load", "kexec_file_load")},
    **{n: "loads kernel code" for n in ("init_module", "finit_module", "delete_module")},
    "ptrace": "inspecting other processes escapes the filter (ptrace can change syscalls"
    " after seccomp ran, before 4.8) and reads their memory",
    **{
        n: "mounting reshapes the file view the sandbox was built with"
        for n in (
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "move_mount",
            "open_tree",
            "open_tree_attr",
            "fsopen",
            "fsmount",
            "fsconfig",
            "fspick",
            "mount_setattr",
        )
    },
}

#: where a key of the policy was written, e.g. ``("seccomp", "rules", 0, "args", 1, "op")``
Locate = Callable[[Path], Loc]


def check_seccomp(
    policy: Seccomp, locate: Locate | None = None, *, layer: bool = False
) -> list[Diagnostic]:
    """Every problem of a ``[seccomp]`` table, located by ``locate`` (by default, the
    location of the nearest schema object: the rule, the condition, the table).

    ``layer``: ``policy`` is what one file says, before the profiles it extends are merged.
    """
    check = _Check(policy, locate or _object_locs(policy))
    check.actions()
    check.names(("seccomp", "allow"), policy.allow)
    check.names(("seccomp", "deny"), policy.deny)
    for index, arch in enumerate(policy.architectures):
        if arch not in ARCH_NAMES:
            check.report(
                ("seccomp", "architectures", index),
                f"unknown architecture {arch!r}",
                did_you_mean(arch, ARCH_NAMES, f"use one of: {', '.join(ARCH_NAMES)}"),
            )
    for index in range(len(policy.rules)):
        check.rule(index)
    check.contradictions(layer)
    return check.diagnostics


def _object_locs(policy: Seccomp) -> Locate:
    """The locations a policy carries without its file: rules and conditions have one each,
    every other key has the table's."""

    def locate(path: Path) -> Loc:
        if len(path) > 2 and path[1] == "rules":
            rule = policy.rules[int(path[2])]
            if len(path) > 4 and path[3] == "args":
                cond = rule.args[int(path[4])]
                if cond.loc != DEFAULT_LOC:
                    return cond.loc
            return rule.loc
        return policy.loc

    return locate


class _Check:
    """The diagnostics of one policy, collected in the order of its keys."""

    def __init__(self, policy: Seccomp, locate: Locate) -> None:
        self.policy, self.locate = policy, locate
        self.diagnostics: list[Diagnostic] = []

    def report(self, path: Path, message: str, hint: str) -> None:
        """A problem of the key at ``path``, whose dotted name starts the message."""
        self.diagnostics.append(Diagnostic(self.locate(path), f"{dotted(path)}: {message}", hint))

    def names(self, path: Path, items: tuple[str, ...]) -> None:
        known = syscalls.all_names()
        for index, name in enumerate(items):
            if name not in known:
                kind = "syscall group" if name.startswith("@") else "syscall"
                self.report(
                    (*path, index),
                    f"unknown {kind} {name!r}",
                    syscalls.suggest(
                        name, "run `isorun syscalls` for the names and @groups isorun knows"
                    ),
                )

    def action(self, path: Path, act: Action) -> None:
        if act.kind not in ACTIONS:
            self.report(
                path,
                f"unknown action {act.kind!r}",
                did_you_mean(act.kind, ACTIONS, f"use one of: {', '.join(ACTIONS)}"),
            )
        elif act.kind == "errno" and not 0 < act.errno <= MAX_ERRNO:
            self.report(
                path,
                f"errno {act.errno} out of range",
                f"use an errno from 1 to {MAX_ERRNO}, e.g. errno:EPERM",
            )

    def actions(self) -> None:
        policy = self.policy
        self.action(("seccomp", "default_action"), policy.default_action)
        self.action(("seccomp", "unknown_action"), policy.unknown_action)
        self.action(("seccomp", "deny_action"), policy.deny_action)
        if policy.deny_action.kind == "allow":
            self.report(
                ("seccomp", "deny_action"),
                "cannot be allow",
                "use errno:EPERM, kill_process, trap or log",
            )

    def rule(self, index: int) -> None:
        rule = self.policy.rules[index]
        path: Path = ("seccomp", "rules", index)
        if not rule.syscalls:
            self.report(
                (*path, "syscalls"),
                "a rule needs at least one syscall",
                'name one, e.g. syscalls = ["mkdir"]',
            )
        self.names((*path, "syscalls"), rule.syscalls)
        self.action((*path, "action"), rule.action)
        for arg, cond in enumerate(rule.args):
            self.condition((*path, "args", arg), cond)

    def condition(self, path: Path, cond: ArgCond) -> None:
        if not 0 <= cond.index <= 5:
            self.report(
                (*path, "index"),
                f"{cond.index} out of range",
                "syscalls have 6 arguments: index 0 to 5",
            )
        if cond.op not in OPERATORS:
            self.report(
                (*path, "op"),
                f"unknown operator {cond.op!r}",
                did_you_mean(cond.op, OPERATORS, f"use one of: {', '.join(OPERATORS)}"),
            )
        for what, number in (("value", cond.value), ("mask", cond.mask)):
            if not 0 <= number <= ARG_MAX:
                self.report(
                    (*path, what),
                    f"{number} is not an unsigned 64-bit value",
                    "the kernel compares arguments as unsigned 64-bit; write -1 as"
                    " 0xffffffffffffffff (or 0xffffffff for a 32-bit int)",
                )
        if cond.op == "masked_eq":
            if cond.mask == 0:
                self.report(path, "masked_eq needs a mask", "add mask = 0x..., the bits to compare")
            elif cond.value & ~cond.mask:
                self.report(
                    (*path, "value"),
                    f"{cond.value:#x} has bits outside mask {cond.mask:#x}, so the condition"
                    " never holds",
                    f"use value = {cond.value & cond.mask:#x}",
                )
        elif cond.mask:
            self.report(
                (*path, "mask"),
                f"only used by masked_eq, not by {cond.op}",
                'remove mask, or use op = "masked_eq"',
            )

    def contradictions(self, layer: bool) -> None:
        """Unconditional answers for one *literal* name that cannot all hold.

        Denying a name inside an allowed group is a refinement, not a contradiction; naming
        the same syscall both ways means one line of the profile would be dropped. A file
        (``layer``) has its allow list checked against its deny list, written side by side;
        rules are compared in the merged policy only, where ``deny_action`` and
        ``hardening`` (which a base may set) are known.
        """
        policy = self.policy
        allowed: dict[str, Path] = {
            name: ("seccomp", "allow", i)
            for i, name in enumerate(policy.allow)
            if not name.startswith("@")
        }
        denied: dict[str, tuple[Action, Path]] = {
            name: (policy.deny_action, ("seccomp", "deny", i))
            for i, name in enumerate(policy.deny)
            if not name.startswith("@")
        }
        for index, rule in enumerate(() if layer else policy.rules):
            if rule.args or rule.when is not None:
                continue
            path: Path = ("seccomp", "rules", index)
            for name in rule.syscalls:
                if name.startswith("@"):
                    continue
                if rule.action.kind == "allow":
                    allowed.setdefault(name, path)
                    continue
                prev = denied.setdefault(name, (rule.action, path))
                if prev[0] != rule.action:
                    self.report(
                        path,
                        f"{name} answers {rule.action}, but {dotted(prev[1])}"
                        f" ({self.locate(prev[1]).short()}) already answers {prev[0]}",
                        "keep one rule per syscall and action",
                    )
        for name, (_, path) in sorted(denied.items()):
            if name in allowed:
                where = allowed[name]
                self.report(
                    path,
                    f"{name} is denied here and allowed by {dotted(where)}"
                    f" ({self.locate(where).short()}) without conditions",
                    "remove one of the two; to refine a group, allow the group and deny the name",
                )
        if layer or not policy.hardening:
            return
        for name, path in sorted(allowed.items()):
            if name not in denied and name in HARDENING_DENY | {"clone3": ""}:
                self.report(
                    path,
                    f"{name} is allowed here but seccomp.hardening denies it",
                    f"remove {name} from the allow list, or set seccomp.hardening = false",
                )
