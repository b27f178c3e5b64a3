"""Which Python installation ``${PYTHON_PREFIX}`` and ``${PYTHON_BASE_PREFIX}`` name.

The test profile binds both read-only so the caller's ``python`` runs inside. That is
the caller's active virtual environment (``VIRTUAL_ENV``, as ``activate``, tox, nox and
uv set it), not the one isorun is installed in: with isorun installed apart (pipx, a
venv of its own) the project's interpreter was missing in the sandbox. Kept to ``os``
only: the launch path reads it (isorun.cache.variables).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping


def active_venv(env: Mapping[str, str]) -> str:
    """``VIRTUAL_ENV`` as given, when it names a virtual environment (a directory with
    ``pyvenv.cfg``) that is not the home directory or above it (a read-only bind of it
    would show the whole home: keys, tokens), else ""."""
    venv = env.get("VIRTUAL_ENV", "")
    if not venv or not os.path.isabs(venv):
        return ""
    real = os.path.realpath(venv).rstrip("/") + "/"
    home = os.path.realpath(env.get("HOME") or os.path.expanduser("~")).rstrip("/") + "/"
    if home.startswith(real):
        return ""
    return venv if os.path.isfile(os.path.join(venv, "pyvenv.cfg")) else ""


def _base_of(venv: str) -> str:
    """The installation ``venv`` was made from: the parent of pyvenv.cfg's ``home``
    (the base interpreter's bin directory), or "" when it names none."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip().lower() == "home" and os.path.isabs(value.strip()):
                    home = os.path.realpath(value.strip())
                    return os.path.dirname(home) if os.path.basename(home) == "bin" else home
    except (OSError, UnicodeDecodeError):
        pass
    return ""


def prefixes(env: Mapping[str, str]) -> tuple[str, str]:
    """(prefix, base prefix) as given (unresolved): the active virtual environment and
    its base installation, else the interpreter running isorun."""
    venv = active_venv(env)
    if venv:
        base = _base_of(venv)
        if base:
            return venv, base
    return sys.prefix, sys.base_prefix
