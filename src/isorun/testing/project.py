"""What ``isorun pytest`` reads before it starts anything: pytest's configuration file as
pytest would find it, and the project's interpreter with its import paths (.pth files
included), all read as data, nothing of the project run."""

from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """pytest's configuration file as pytest would find it, read as data."""

    rootdir: str
    #: the file the values came from, "" when none was found
    inifile: str = ""
    #: ini values by key: a str, or a list for line lists
    values: Mapping[str, str | list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str:
        value = self.values.get(key, "")
        return " ".join(value) if isinstance(value, list) else value

    def lines(self, key: str) -> list[str]:
        value = self.values.get(key, [])
        if isinstance(value, list):
            return [str(v) for v in value]
        return [line.strip() for line in value.splitlines() if line.strip()]


#: the most of a pyproject.toml read: a large one is some 20 KB
_PYPROJECT_MAX = 4 << 20


def _load_pyproject(path: str) -> dict[str, Any]:
    """``path`` parsed with tomli, whose bounds (nesting, a dotted key's parts) tomllib
    of Python 3.11 lacks: a sandbox-written key of 200,000 parts held the host for
    about 20 minutes. A file no pyproject needs, or bad TOML, is a located error."""
    import tomli

    from isorun.errors import UsageError

    hint = "\n  hint: fix the file (see https://toml.io), or pass -c FILE"
    try:
        text = _read_capped(path, _PYPROJECT_MAX)
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not UTF-8 text (byte {err.start}){hint}") from None
    except ValueError:
        raise UsageError(f"{path}: larger than {_PYPROJECT_MAX} bytes, more than any "
                         f"pyproject.toml needs; isorun does not read it{hint}") from None
    try:
        return tomli.loads(text)
    except tomli.TOMLDecodeError as err:
        where = f"{path}:{getattr(err, 'lineno', 0)}:{getattr(err, 'colno', 0)}"
        msg = getattr(err, "msg", str(err))
        raise UsageError(f"{where}: TOML syntax: {msg}{hint}") from None
    except RecursionError:  # tomli's bound on nesting and on a dotted key's parts
        raise UsageError(f"{path}: TOML nested too deeply (or a dotted key of too many "
                         f"parts){hint}") from None


def _read_ini_file(path: str) -> dict[str, str | list[str]] | None:
    """The pytest section of ``path``, or None when it has none (pytest.ini always has)."""
    name = os.path.basename(path)
    if name == "pyproject.toml":
        data = _load_pyproject(path)
        section = data.get("tool", {}).get("pytest", {})
        options = section.get("ini_options") if isinstance(section, dict) else None
        if not isinstance(options, dict):
            return None
        return {
            str(k): [str(x) for x in v] if isinstance(v, list) else str(v)
            for k, v in options.items()
        }
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return None
    section_name = "tool:pytest" if name == "setup.cfg" else "pytest"
    if not parser.has_section(section_name):
        return {} if name in ("pytest.ini", ".pytest.ini") else None
    return dict(parser.items(section_name))


def find_project_config(cwd: str, args: Sequence[str]) -> ProjectConfig:
    """The configuration pytest would use for ``args`` started in ``cwd``: ``-c FILE``,
    else the first of pytest.ini, .pytest.ini, pyproject.toml, tox.ini, setup.cfg with a
    pytest section in ``cwd`` or above; the rootdir is its directory (``--rootdir``
    wins), else ``cwd``."""
    explicit = ""
    rootdir = ""
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("-c", "--config-file") and index + 1 < len(args):
            explicit = args[index + 1]
        elif arg.startswith("--config-file="):
            explicit = arg.partition("=")[2]
        elif arg == "--rootdir" and index + 1 < len(args):
            rootdir = args[index + 1]
        elif arg.startswith("--rootdir="):
            rootdir = arg.partition("=")[2]
    if explicit:
        path = os.path.abspath(os.path.join(cwd, explicit))
        values = _read_ini_file(path) or {}
        root = os.path.abspath(os.path.join(cwd, rootdir)) if rootdir else os.path.dirname(path)
        return ProjectConfig(root, path, values)
    directory = os.path.abspath(cwd)
    while True:
        for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                found = _read_ini_file(path)
                if found is not None:
                    root = os.path.abspath(os.path.join(cwd, rootdir)) if rootdir else directory
                    return ProjectConfig(root, path, found)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return ProjectConfig(os.path.abspath(os.path.join(cwd, rootdir or ".")))


def project_python(env: Mapping[str, str]) -> str:
    """The project's interpreter: the active virtual environment's; else the one isorun
    runs on when pytest is installed beside it; else ``python3`` (or ``python``) on the
    caller's PATH (isorun installed apart, with pipx or in a venv of its own). Its path
    only: it runs in the session sandbox, never here (:func:`python_paths`)."""
    import importlib.util
    import shutil

    from isorun.host import venv

    active = venv.active_venv(env)
    if active:
        candidate = os.path.join(active, "bin", "python")
        if os.path.lexists(candidate):
            return candidate
    if importlib.util.find_spec("pytest") is not None:
        return sys.executable
    for name in ("python3", "python"):
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    return sys.executable


#: the most isorun reads of one .pth file or editable finder module, and of all .pth
#: files of one site directory together: they are input a sandbox may have written
#: (a venv in the project), and real ones are a few hundred bytes
_PTH_FILE_MAX = 1 << 20
_PTH_DIR_MAX = 16 << 20

#: a library directory of an installation, by the version it holds
_LIB_VERSION = re.compile(r"python(3\.[0-9]{1,3})")


def _versions(prefix: str) -> set[str]:
    """The Python versions ("3.11") whose standard library or site directories lie in
    ``prefix``, by the names of its library directories (data, not run)."""
    found = set()
    for lib in ("lib", "lib64"):
        try:
            names = os.listdir(os.path.join(prefix, lib))
        except OSError:
            continue
        for name in names:
            match = _LIB_VERSION.fullmatch(name)
            if match and os.path.isdir(os.path.join(prefix, lib, name)):
                found.add(match.group(1))
    return found


def _site_dirs(prefix: str, versions: set[str]) -> list[str]:
    """The site directories of ``prefix`` that exist: CPython's (``lib`` and the
    ``lib64`` platlibdir) and Debian's (dist-packages, /usr/local first)."""
    out, seen = [], set()
    for version in sorted(versions):
        for path in (f"local/lib/python{version}/dist-packages", "lib/python3/dist-packages",
                     f"lib/python{version}/dist-packages", f"lib/python{version}/site-packages",
                     f"lib64/python{version}/site-packages"):
            full = os.path.join(prefix, path)
            real = os.path.realpath(full)  # a venv's lib64 is a link to lib
            if real not in seen and os.path.isdir(full):
                seen.add(real)
                out.append(full)
    return out


def installation(python: str, env: Mapping[str, str]) -> tuple[str, str, list[str]]:
    """(prefix, base prefix, site directories) of ``python``, read from data as ``site``
    and getpath would find them; nothing of it runs.

    Asking the interpreter (``python -I -S -c ...``) ran the project's program on the
    host, as the caller: a venv in the project is one build can rewrite, its
    ``bin/python`` a script of the sandbox's. So a venv is known by its pyvenv.cfg
    (beside the interpreter or one up, as site looks), its base by the validated
    ``home`` (:func:`isorun.host.venv.base_of`); any other interpreter by the landmark
    getpath uses, ``lib/pythonX.Y/os.py``, in a directory above its real path.
    """
    from isorun.errors import UsageError
    from isorun.host import venv

    here = os.path.dirname(os.path.abspath(python))
    for prefix in (here, os.path.dirname(here)):
        if not os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
            continue
        base = venv.base_of(prefix, env)
        if not base:
            raise UsageError(
                f"{prefix}/pyvenv.cfg names no Python installation isorun can bind: its "
                "'home' must be the bin directory of a Python interpreter, neither / nor "
                "your home directory or above it\n  hint: recreate the virtual environment "
                f"(python3 -m venv {prefix})")
        versions = _versions(prefix)
        dirs = _site_dirs(prefix, versions)
        system = venv.read_cfg(prefix).get("include-system-site-packages", "")
        if system.lower() == "true":
            dirs += _site_dirs(base, versions or _versions(base))
        return prefix, base, dirs
    real = os.path.realpath(python)
    match = _LIB_VERSION.fullmatch(os.path.basename(real))
    directory = os.path.dirname(real)
    while directory != "/":
        versions = _versions(directory)
        if match and match.group(1) in versions:
            versions = {match.group(1)}
        if any(os.path.isfile(os.path.join(directory, "lib", f"python{v}", "os.py"))
               for v in versions):
            return directory, directory, _site_dirs(directory, versions)
        directory = os.path.dirname(directory)
    raise UsageError(
        f"cannot tell where {python} ({real}) keeps its standard library: no "
        "lib/pythonX.Y/os.py in a directory above it\n  hint: activate the project's "
        "virtual environment, or install pytest beside isorun")


def python_paths(python: str, env: Mapping[str, str]) -> tuple[str, list[str], list[str]]:
    """(prefix, the directories ``python`` imports from, its site directories): its
    prefixes (the standard library lies in the base), its site directories, the paths
    their ``.pth`` files add (path lines, and the package directories of setuptools'
    finder-style editable installs, read as data, not run), and ``PYTHONPATH``.
    Outermost first, without a path inside another; only existing absolute
    directories, never ``/`` (the session's profile leaves out what shows the home)."""
    prefix, base, site_dirs = installation(python, env)
    found = {prefix, base, *site_dirs}
    for site_dir in site_dirs:
        found.update(_pth_paths(site_dir))
    found.update(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)
    paths = {os.path.realpath(p) for p in found
             if os.path.isabs(p) and "\0" not in p and os.path.isdir(p)}
    out: list[str] = []
    for p in sorted(paths):
        if p != "/" and not any(p.startswith(o.rstrip("/") + "/") for o in out):
            out.append(p)
    return prefix, out, site_dirs


def _read_capped(path: str, limit: int) -> str:
    """The text of ``path``; ValueError when it is over ``limit`` bytes."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data.decode("utf-8")


def _pth_paths(site_dir: str) -> list[str]:
    """What the ``.pth`` files of ``site_dir`` put on the path, without running them."""
    import ast

    from isorun.errors import UsageError

    out = []
    try:
        names = sorted(n for n in os.listdir(site_dir) if n.endswith(".pth"))
    except OSError:
        return []
    budget = _PTH_DIR_MAX
    for name in names:
        path = os.path.join(site_dir, name)
        try:
            text = _read_capped(path, _PTH_FILE_MAX)
        except (OSError, UnicodeDecodeError):
            continue
        except ValueError:
            raise UsageError(
                f"{path} is larger than {_PTH_FILE_MAX} bytes, more than any .pth file "
                "needs; isorun does not read it\n  hint: remove it, or reinstall the "
                "package that made it") from None
        budget -= len(text)
        if budget < 0:
            raise UsageError(
                f"the .pth files of {site_dir} hold more than {_PTH_DIR_MAX} bytes; "
                "isorun reads no more\n  hint: remove the .pth files no package needs")
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith(("import ", "import\t")):
                out.append(os.path.join(site_dir, line))
                continue
            # setuptools' editable finder: "import __editable___x_finder; ...install()";
            # its module holds MAPPING = {"pkg": "/path/to/src/pkg"}.
            module = line.split()[1].rstrip(";")
            source = os.path.join(site_dir, module + ".py")
            try:
                tree = ast.parse(_read_capped(source, _PTH_FILE_MAX))
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError,
                    MemoryError):
                continue
            for node in tree.body:
                if (
                    isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "MAPPING" for t in node.targets)
                ):
                    try:
                        mapping = ast.literal_eval(node.value)
                    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                        continue
                    if isinstance(mapping, dict):
                        out += [os.path.dirname(str(v)) for v in mapping.values()]
    return out
