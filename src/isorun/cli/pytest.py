"""``isorun pytest [PYTEST ARGS]`` (and ``python -m isorun.pytest``): the whole test run
inside the test profile from pytest's first instruction.

``pytest --isorun`` starts the sandbox from a plugin hook, after pytest has imported
every installed ``pytest11`` plugin and every ``-p`` module on the host. This front door
runs nothing of the project, of pytest or of its plugins outside: it reads the project's
configuration as data (tomli, configparser), judges it (isorun.testing.trust: the project
may only tighten), and launches ``PYTHON -m pytest ARGS`` in the sandbox, with the
interpreter's installation and import paths read-only.

Options of its own, before or among pytest's (removed from what pytest gets):
``--isorun-profile=PROFILE`` (the user's choice, trusted), ``--isorun-trust-project``.
"""

from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from isorun.testing import trust as pytest_trust

PROFILE_OPTION = "--isorun-profile"


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


def split_args(args: Sequence[str]) -> tuple[str | None, bool, list[str]]:
    """(--isorun-profile value, --isorun-trust-project given, the rest for pytest)."""
    profile = None
    trust = False
    rest: list[str] = []
    items = list(args)
    index = 0
    while index < len(items):
        arg = items[index]
        if arg == "--":
            rest += items[index:]
            break
        if arg == pytest_trust.TRUST_FLAG:
            trust = True
        elif arg == PROFILE_OPTION and index + 1 < len(items):
            profile = items[index + 1]
            index += 1
        elif arg.startswith(PROFILE_OPTION + "="):
            profile = arg.partition("=")[2]
        else:
            rest.append(arg)
        index += 1
    return profile, trust, rest


def run(args: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """The front door: returns pytest's exit code, or isorun's on a refusal."""
    from isorun.errors import IsorunError
    from isorun.testing import session as pytest_session

    env = os.environ if env is None else env
    user_profile, trust_flag, pytest_args = split_args(args)
    cwd = os.getcwd()
    try:
        config = find_project_config(cwd, pytest_args)
        source = os.path.basename(config.inifile) or "the project's configuration"
        python = project_python(env)
        prefix, paths, site_dirs = python_paths(python, env)
        prefixes = {prefix, sys.prefix}
        loosenings: list[pytest_trust.Loosening] = []
        profile = user_profile or config.get("isorun_profile") or pytest_trust.DEFAULT_PROFILE
        base = profile
        if profile.endswith(".toml") or os.sep in profile:
            # The user's path is relative to where they typed it; the project's to its
            # rootdir, as pytest resolves its ini values.
            base = os.path.abspath(os.path.join(cwd if user_profile else config.rootdir, profile))
        option = "--isorun-profile" if user_profile else "isorun_profile"
        pytest_trust.check_profile_file(option, profile, base)
        if user_profile is None:
            loosenings += [
                pytest_trust.Loosening(f"isorun_profile = {profile}", x.source, x.why)
                for x in pytest_trust.profile_loosenings(base, config.rootdir, source)
            ]
        writable = []
        for value in config.lines("isorun_writable"):
            found = pytest_trust.path_loosening(
                "isorun_writable", value, config.rootdir, source, prefixes
            )
            if found:
                loosenings.append(found)
            # Where it leads: the sandbox binds a path, and a link in the project would
            # be a mount point the launcher refuses.
            writable.append(os.path.realpath(os.path.join(config.rootdir, value)))
        cache_value = config.get("cache_dir") or ".pytest_cache"
        cache_loosens = pytest_trust.path_loosening(
            "cache_dir", cache_value, config.rootdir, source, prefixes
        )
        if cache_loosens:
            loosenings.append(cache_loosens)
        # Report files: the user's own, and the project's addopts', judged.
        chosen = pytest_session.report_files(pytest_args, cwd)
        addopts = pytest_session.report_files(config.get("addopts").split(), cwd)
        for path in addopts:
            found = pytest_trust.path_loosening(
                "--junitxml", path, config.rootdir, source, prefixes
            )
            if found and path not in chosen:
                loosenings.append(found)
        trust = trust_flag or pytest_trust.trusted((), env)
        header = pytest_trust.enforce(loosenings, trust)
    except IsorunError as err:
        sys.stderr.write(err.render() + "\n")
        return err.exit_code
    except (OSError, ValueError) as err:
        sys.stderr.write(f"isorun: error: cannot read the project's configuration: {err}\n")
        return 2
    cache_dir = os.path.join(config.rootdir, cache_value)
    caching = "no:cacheprovider" not in [*pytest_args, *config.get("addopts").split()]
    if caching and cache_loosens is None:
        # pytest writes its cache at the session's end; a missing one it cannot create
        # in the read-only project is a PytestCacheWarning, an error under
        # filterwarnings = error.
        pytest_session.sandbox_owns(cache_dir)
    if caching and not pytest_session.writable_by_sandbox(cache_dir):
        # As root, an existing root-owned cache is read-only to uid 65534: a private one
        # keeps pytest quiet (docs/testing.md, "Running as root").
        pytest_args = ["-o", "cache_dir=/tmp/.pytest_cache", *pytest_args]
    pythonpath = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if any(os.path.isdir(os.path.join(d, "hypothesis")) for d in [*site_dirs, *pythonpath]):
        # Hypothesis writes its example database in the working directory.
        pytest_session.sandbox_owns(os.path.join(cwd, ".hypothesis"))
    try:
        coverage = pytest_session.prepare_coverage(
            [*pytest_args, *config.get("addopts").split()], cwd, env, config.rootdir
        )
    except IsorunError as err:
        sys.stderr.write(err.render() + "\n")
        return err.exit_code
    reports = pytest_session.prepare_reports(sorted({*chosen, *addopts}))
    for line in header:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    text = pytest_session.session_profile_text(
        base, config.rootdir, cache_dir, writable, paths, reports, coverage,
        pytest_session.hypothesis_environment(cwd),
    )  # fmt: skip
    argv = [python, "-m", "pytest", *pytest_args]
    return pytest_session.launch_session(argv, text, reports, coverage)


@click.command(
    "pytest",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": [],
    },
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def pytest_command(args: tuple[str, ...]) -> None:
    """Run pytest inside the test profile from its first instruction.

    \b
    isorun pytest [--isorun-profile P] [--isorun-trust-project] [PYTEST ARGS...]
    """
    sys.exit(run(args))


#: registered by isorun.cli
COMMANDS = (pytest_command,)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m isorun.pytest``."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))
