"""Which Python installation ``${PYTHON_PREFIX}`` and ``${PYTHON_BASE_PREFIX}`` name.

The test profile binds both read-only so the caller's ``python`` runs inside. That is
the caller's active virtual environment (``VIRTUAL_ENV``, as ``activate``, tox, nox and
uv set it), not the one isorun is installed in: with isorun installed apart (pipx, a
venv of its own) the project's interpreter was missing in the sandbox. Kept to ``os``
only: the launch path reads it (isorun.cache.entry.variables).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping


def _holds_home(path: str, env: Mapping[str, str]) -> bool:
    """``path`` is the home directory or above it: a read-only bind of it would show the
    whole home (keys, tokens)."""
    real = os.path.realpath(path).rstrip("/") + "/"
    home = os.path.realpath(env.get("HOME") or os.path.expanduser("~")).rstrip("/") + "/"
    return home.startswith(real)


def active_venv(env: Mapping[str, str]) -> str:
    """``VIRTUAL_ENV`` as given, when it names a virtual environment (a directory with
    ``pyvenv.cfg``) that is not the home directory or above it, else ""."""
    venv = env.get("VIRTUAL_ENV", "")
    if not venv or not os.path.isabs(venv) or _holds_home(venv, env):
        return ""
    return venv if os.path.isfile(os.path.join(venv, "pyvenv.cfg")) else ""


#: what a base installation's bin directory (pyvenv.cfg's ``home``) must hold
_INTERPRETERS = ("python3", "python", f"python{sys.version_info.major}.{sys.version_info.minor}")


#: the most of a pyvenv.cfg read: a few hundred bytes in practice, input that a sandbox
#: may have written
CFG_MAX = 64 << 10


def read_cfg(venv: str) -> dict[str, str]:
    """pyvenv.cfg of ``venv`` as data (keys lowercased, as site reads them), {} when it
    cannot be read; no more than :data:`CFG_MAX` bytes of it."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), "rb") as f:
            text = f.read(CFG_MAX).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            values.setdefault(key.strip().lower(), value.strip())
    return values


def base_of(venv: str, env: Mapping[str, str]) -> str:
    """The installation ``venv`` was made from: the parent of pyvenv.cfg's ``home``
    (the base interpreter's bin directory), or "" when it names none.

    pyvenv.cfg lies in the project more often than not, where a sandbox (build's
    writable ${CWD}) may have rewritten it, and the test profile binds what it names:
    ``home = /var`` showed all of /var to the next test run. So it is input, not
    configuration: it counts only when ``home`` holds a Python interpreter, and names
    neither ``/`` nor the home directory or above it; else the caller's own installation
    stands (:func:`prefixes`).
    """
    value = read_cfg(venv).get("home", "")
    if not os.path.isabs(value):
        return ""
    home = os.path.realpath(value)
    base = os.path.dirname(home) if os.path.basename(home) == "bin" else home
    if (base == "/" or _holds_home(base, env) or not any(
            os.path.isfile(os.path.join(home, n)) for n in _INTERPRETERS)):
        return ""
    return base


def prefixes(env: Mapping[str, str]) -> tuple[str, str]:
    """(prefix, base prefix) as given (unresolved): the active virtual environment and
    its base installation, else the interpreter running isorun."""
    venv = active_venv(env)
    if venv:
        base = base_of(venv, env)
        if base:
            return venv, base
    return sys.prefix, sys.base_prefix
