"""The parts of a Docker seccomp profile read one by one: architectures, a rule's
``includes``/``excludes`` and its ``args``, each with what an engine would do differently
as a located warning. The whole profile is read by
:mod:`isorun.compile.render.docker_import`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from isorun.compile.render.docker import ARCH_IN, ARCH_OUT, DOCKER_ARCH_NAMES, OPS_IN
from isorun.compile.seccomp import parse_kernel
from isorun.errors import Diagnostic, Loc
from isorun.profile.schema import ArgCond, When

FILTER_KEYS = {"caps", "arches", "minKernel"}
ARG_KEYS = {"index", "value", "valueTwo", "op"}


@dataclass(frozen=True, slots=True)
class DockerWarning:
    """Something an engine would have ignored or read differently, with where it is."""

    loc: Loc
    message: str

    def render(self) -> str:
        return f"{self.loc}: warning: {self.message}"


class Locator:
    """Approximate JSON positions (json gives none): the n-th occurrence of a token."""

    def __init__(self, text: str, file: str) -> None:
        self.text, self.file = text, file
        self.rule_starts = [m.start() for m in re.finditer(r'"names?"\s*:', text)]

    def at(self, offset: int) -> Loc:
        line = self.text.count("\n", 0, offset) + 1
        col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return Loc(self.file, line, col)

    def rule(self, n: int) -> Loc:
        if n < len(self.rule_starts):
            return self.at(self.rule_starts[n])
        return Loc(self.file)

    def token(self, needle: str, n: int) -> Loc:
        start = self.rule_starts[n] if n < len(self.rule_starts) else 0
        found = self.text.find(needle, start)
        return self.at(found) if found >= 0 else self.rule(n)


def import_arches(
    doc: dict[str, Any], loc: Loc, errors: list[Diagnostic], warnings: list[DockerWarning]
) -> tuple[str, ...]:
    """isorun lists ABIs besides the native one; Docker's archMap/architectures list all.
    Every entry of ``archMap`` is kept (an x86_64 host reads x86_64's, an aarch64 host
    aarch64's); ABIs isorun cannot filter are named in a warning."""
    names: set[str] = set()
    for entry in doc.get("archMap") or []:
        if isinstance(entry, dict):
            names.add(str(entry.get("architecture")))
            names |= set(entry.get("subArchitectures") or [])
    names |= set(doc.get("architectures") or [])
    for name in sorted(names):
        if not isinstance(name, str) or not name.startswith("SCMP_ARCH_"):
            errors.append(
                Diagnostic(
                    loc,
                    f"unknown architecture {name!r}",
                    "use SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, ...",
                )
            )
    foreign = sorted(n for n in names if n.startswith("SCMP_ARCH_") and n not in ARCH_IN)
    if foreign:
        warnings.append(
            DockerWarning(
                loc,
                f"isorun does not filter {', '.join(foreign)}: on a host of that family a"
                " call of those ABIs is killed (bad architecture) instead of filtered",
            )
        )
    out = ["native"]
    out += [ARCH_IN[t] for t in ARCH_OUT.values() if t in names]
    return tuple(out)


def import_when(
    raw: dict[str, Any],
    n: int,
    loc: Loc,
    where: Locator,
    warnings: list[DockerWarning],
    errors: list[Diagnostic],
) -> When | None:
    parts: dict[str, Any] = {}
    for key, (caps, arches, kernel) in (
        ("includes", ("caps", "arches", "min_kernel")),
        ("excludes", ("not_caps", "not_arches", "below_kernel")),
    ):
        block = raw.get(key) or {}
        if not isinstance(block, dict):
            errors.append(Diagnostic(loc, f"syscalls[{n}].{key} must be an object", ""))
            continue
        for extra in sorted(set(block) - FILTER_KEYS):
            warnings.append(
                DockerWarning(loc, f"syscalls[{n}].{key}: unknown key {extra!r}: engines ignore it")
            )
        if block.get("caps"):
            parts[caps] = tuple(block["caps"])
            for cap in block["caps"]:
                if not re.fullmatch(r"CAP_[A-Z_]+", str(cap)):
                    warnings.append(
                        DockerWarning(
                            loc,
                            f"syscalls[{n}].{key}.caps: {cap!r} is not a"
                            " capability name; it never matches",
                        )
                    )
        if block.get("arches"):
            parts[arches] = tuple(block["arches"])
            for arch in block["arches"]:
                if arch not in DOCKER_ARCH_NAMES:
                    warnings.append(
                        DockerWarning(
                            where.token(f'"{arch}"', n),
                            f"syscalls[{n}].{key}.arches: {arch!r} is"
                            " not a Docker (Go) architecture name; it never matches"
                            + (" (write 'amd64')" if arch == "x86_64" else ""),
                        )
                    )
        if block.get("minKernel"):
            try:
                parse_kernel(str(block["minKernel"]))
            except ValueError:
                errors.append(
                    Diagnostic(
                        loc,
                        f"syscalls[{n}].{key}.minKernel"
                        f" {block['minKernel']!r} is not a kernel version",
                        'write e.g. "4.8"',
                    )
                )
                continue
            parts[kernel] = str(block["minKernel"])
    return When(loc=loc, **parts) if parts else None


def import_args(
    raw: Any, n: int, loc: Loc, warnings: list[DockerWarning], errors: list[Diagnostic]
) -> list[tuple[ArgCond, ...]]:
    """Docker args -> alternatives (rules). runc ANDs the conditions of a rule unless one
    index appears twice; then it adds every condition as a rule of its own (OR)."""
    conds: list[ArgCond] = []
    if not isinstance(raw, list):
        errors.append(Diagnostic(loc, f"syscalls[{n}].args must be an array", ""))
        return [()]
    for m, arg in enumerate(raw):
        cond = _import_arg(arg, f"syscalls[{n}].args[{m}]", loc, warnings, errors)
        if cond is not None:
            conds.append(cond)
    indexes = [c.index for c in conds]
    if len(set(indexes)) < len(indexes):
        warnings.append(
            DockerWarning(
                loc,
                f"syscalls[{n}]: two conditions on one argument index;"
                " engines (runc) OR every condition of this rule, not AND;"
                " imported as one rule per condition",
            )
        )
        return [(c,) for c in conds]
    return [tuple(conds)]


def _import_arg(
    arg: Any, where: str, loc: Loc, warnings: list[DockerWarning], errors: list[Diagnostic]
) -> ArgCond | None:
    """One Docker argument condition (``where`` names it in messages); None when it is
    an error or matches every argument."""
    if not isinstance(arg, dict):
        errors.append(Diagnostic(loc, f"{where} must be an object", ""))
        return None
    for key in sorted(set(arg) - ARG_KEYS):
        warnings.append(DockerWarning(loc, f"{where}: unknown key {key!r}"))
    index, op = arg.get("index"), arg.get("op")
    value, two = arg.get("value", 0), arg.get("valueTwo", 0)
    if not isinstance(index, int) or not 0 <= index <= 5:
        errors.append(
            Diagnostic(
                loc,
                f"{where}.index {index!r} out of range",
                "syscalls have 6 arguments: index 0 to 5",
            )
        )
        return None
    if op not in OPS_IN:
        errors.append(
            Diagnostic(
                loc,
                f"{where}.op: unknown operator {op!r}",
                f"use one of {', '.join(OPS_IN)}",
            )
        )
        return None
    if not all(isinstance(v, int) and 0 <= v < 1 << 64 for v in (value, two)):
        errors.append(
            Diagnostic(
                loc,
                f"{where}: value {value!r} / valueTwo {two!r} must be integers from 0 to 2**64-1",
                "runc compares unsigned 64-bit values",
            )
        )
        return None
    ours = OPS_IN[op]
    if ours == "masked_eq" and value == 0:
        # libseccomp compares arg & 0 with valueTwo & 0: true for every argument
        warnings.append(
            DockerWarning(
                loc,
                f"{where}: masked_eq with mask (value) 0 always matches; imported as no condition",
            )
        )
        return None
    if ours == "masked_eq":
        return ArgCond(index, ours, two & value, value, loc)
    return ArgCond(index, ours, value, 0, loc)
