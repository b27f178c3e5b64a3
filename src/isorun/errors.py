"""The error tree of isorun and its rendering.

Every error a person can see says what is wrong, where, and how to fix it, in the format
compilers use (``file:line:col: error: what`` then ``  hint: how``), so editors and CI logs
can jump to the line. Only ``cli.py`` catches broadly; everything else raises these.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Loc:
    """Where a value came from: a file, a 1-based line and column, and the include chain."""

    file: str
    line: int = 0
    col: int = 0
    #: the locations of the ``extends`` entries that pulled this file in, outermost last
    via: tuple[Loc, ...] = ()

    def __str__(self) -> str:
        text = self.file
        if self.line:
            text += f":{self.line}"
            if self.col:
                text += f":{self.col}"
        for outer in self.via:
            text += f" (included from {outer.file}:{outer.line})"
        return text

    def short(self) -> str:
        """``file:line`` without the include chain, for provenance columns."""
        return f"{self.file}:{self.line}" if self.line else self.file


#: a location for values that no file gave (built-in defaults)
DEFAULT_LOC = Loc("<default>")


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in a profile: where, what, and how to fix it."""

    loc: Loc
    message: str
    hint: str = ""

    def render(self) -> str:
        text = f"{self.loc}: error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def sort_key(self) -> tuple[str, int, int]:
        return (self.loc.file, self.loc.line, self.loc.col)


class IsorunError(Exception):
    """Root of every error isorun raises on purpose."""

    #: kernel/abi.py EXIT_SETUP (this module imports nothing of isorun; test_abi checks it)
    exit_code: ClassVar[int] = 125

    def render(self) -> str:
        return f"isorun: error: {self}"


class ProfileError(IsorunError, ValueError):
    """A profile (or the command line that names one) is wrong. Carries every problem found."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic) -> None:
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(
            sorted(diagnostics, key=Diagnostic.sort_key)
        )
        super().__init__("\n".join(d.render() for d in self.diagnostics))

    def render(self) -> str:
        count = len(self.diagnostics)
        tail = f"\n{count} errors" if count > 1 else ""
        return "\n".join(d.render() for d in self.diagnostics) + tail


class UsageError(IsorunError, ValueError):
    """The command line (or an API call's arguments) is wrong in a way that is not about a
    profile. A ValueError too, as a bad argument to a Python function is."""

    exit_code = 2


class HostError(IsorunError):
    """This host cannot enforce something the plan needs; says how to enable it."""

    def __init__(self, what: str, why: str, fix: str = "") -> None:
        self.what, self.why, self.fix = what, why, fix
        super().__init__(f"{what}: {why}")

    def render(self) -> str:
        text = f"isorun: error: cannot enforce {self.what}: {self.why}"
        if self.fix:
            text += f"\n  hint: {self.fix}"
        return text


class BackendError(IsorunError):
    """A backend failed to run a plan it accepted."""


@dataclass(frozen=True, slots=True)
class Lost:
    """One rule a backend cannot enforce."""

    rule: str
    loc: Loc
    why: str
    #: backends that could enforce it
    alternatives: tuple[str, ...] = field(default=())


class Unsupported(BackendError):
    """A backend cannot express one or more rules of the plan (fail closed)."""

    def __init__(self, backend: str, lost: list[Lost]) -> None:
        self.backend, self.lost = backend, tuple(lost)
        super().__init__(f"backend {backend} cannot enforce {len(lost)} rule(s)")

    def render(self) -> str:
        lines = [f"isorun: error: backend '{self.backend}' cannot enforce this profile:"]
        for item in self.lost:
            alt = f" (enforced by: {', '.join(item.alternatives)})" if item.alternatives else ""
            lines.append(f"  {item.loc.short()}: {item.rule}: {item.why}{alt}")
        lines.append(
            "  hint: pick a backend that enforces every rule (--backend), or pass "
            "--allow-weaker to run without the rules listed"
        )
        return "\n".join(lines)


class SandboxSetupError(IsorunError):
    """A step of the sandbox set-up failed in the child or the parent.

    Names the step, the syscall and the errno, and the profile line that asked for the step.
    """

    def __init__(self, step: str, syscall: str, errno: int, loc: Loc | None = None,
                 detail: str = "", step_index: int = -1, hint: str = "") -> None:
        self.step, self.syscall, self.errno, self.loc, self.detail = (
            step, syscall, errno, loc, detail)
        #: how to fix it, when the failure is one a person can act on (a refused link)
        self.hint = hint
        #: index into Plan.steps of the step that failed (-1: not tied to one), so the
        #: caller can look up the profile line and re-raise with ``loc``
        self.step_index = step_index
        name = _errno.errorcode.get(errno, str(errno))
        where = f" ({loc.short()})" if loc is not None else ""
        extra = f": {detail}" if detail else ""
        super().__init__(f"{step}: {syscall}: {name} ({os.strerror(errno)}){extra}{where}")

    def render(self) -> str:
        text = f"isorun: error: {self}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ShimAbiError(IsorunError):
    """The compiled shim does not match this package."""

    def render(self) -> str:
        return (f"isorun: error: {self}\n  hint: rebuild the native shim: "
                "pip install --force-reinstall --no-deps -e . (or make dev)")


class InternalError(IsorunError):
    """A bug in isorun: an invariant did not hold."""

    exit_code = 125


def os_failure(syscall: str, err: OSError) -> str:
    """``syscall: ENAME (strerror)`` for an OSError, the form every wrapped one uses in
    its message, as :class:`SandboxSetupError` does."""
    code = err.errno or 0
    name = _errno.errorcode.get(code, str(code))
    return f"{syscall}: {name} ({os.strerror(code)})"


def did_you_mean(word: str, choices: Iterable[str], otherwise: str = "") -> str:
    """The hint for ``word``, which is none of ``choices``: ``did you mean 'x'?`` with the
    closest choice, or ``otherwise`` when none is close. difflib is imported here, on the
    error path only: it costs about 8 ms of every cold compile otherwise."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else otherwise
