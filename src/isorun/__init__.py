"""isorun: run one command inside Linux isolation compiled from a TOML policy.

The package is imported on the launch path, so it imports nothing heavy: the public API
names are resolved lazily (PEP 562) from :mod:`isorun.api`.
"""

from __future__ import annotations

# typing costs ~10 ms to import on a cold start and this package is imported on the
# launch path; mypy treats a module-level TYPE_CHECKING as typing.TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["IsorunError", "Popen", "ProfileError", "__version__", "compile_plan", "load_profile",
           "run"]


def __dir__() -> list[str]:
    # The lazily resolved names are part of the module as far as dir() (and completion in
    # a REPL) is concerned, as if they had been imported.
    return sorted({*globals(), *__all__, "CompletedRun"})


def __getattr__(name: str) -> Any:
    if name in ("run", "Popen", "load_profile", "compile_plan", "CompletedRun"):
        from isorun import api

        return getattr(api, name)
    if name == "__version__":
        # isorun.version, not a literal here: one definition, which pyproject.toml reads
        from isorun.version import __version__

        return __version__
    if name in ("IsorunError", "ProfileError"):
        from isorun import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'isorun' has no attribute {name!r}")
