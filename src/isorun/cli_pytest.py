"""``isorun pytest [PYTEST ARGS]`` (and ``python -m isorun.pytest``): the whole test run
inside the test profile from pytest's first instruction.

``pytest --isorun`` starts the sandbox from a plugin hook, after pytest has imported
every installed ``pytest11`` plugin and every ``-p`` module on the host. This front door
runs nothing of the project, of pytest or of its plugins outside: it reads the project's
configuration as data (tomllib, configparser), judges it (isorun.pytest_trust: the project
may only tighten), and launches ``PYTHON -m pytest ARGS`` in the sandbox, with the
interpreter's installation and import paths read-only.

Options of its own, before or among pytest's (removed from what pytest gets):
``--isorun-profile=PROFILE`` (the user's choice, trusted), ``--isorun-trust-project``.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import click

from isorun import pytest_trust

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


def _read_ini_file(path: str) -> dict[str, str | list[str]] | None:
    """The pytest section of ``path``, or None when it has none (pytest.ini always has)."""
    name = os.path.basename(path)
    if name == "pyproject.toml":
        import tomllib

        with open(path, "rb") as f:
            data = tomllib.load(f)
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
    caller's PATH (isorun installed apart, with pipx or in a venv of its own)."""
    import importlib.util
    import shutil

    venv = env.get("VIRTUAL_ENV", "")
    if venv:
        candidate = os.path.join(venv, "bin", "python")
        if os.access(candidate, os.X_OK):
            return candidate
    if importlib.util.find_spec("pytest") is not None:
        return sys.executable
    for name in ("python3", "python"):
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    return sys.executable


#: run by the project's interpreter with -I -S: no site, no .pth file, no
#: sitecustomize, nothing of the environment runs. Without site, a virtual environment
#: is not applied (site.venv does that), so this reads its pyvenv.cfg as site would.
_PROBE = """
import json, os, site, sys
prefix = sys.prefix
system = True
here = os.path.dirname(os.path.abspath(sys.executable))
for cfg in (os.path.join(here, "pyvenv.cfg"), os.path.join(os.path.dirname(here), "pyvenv.cfg")):
    if os.path.isfile(cfg):
        prefix = os.path.dirname(cfg)
        with open(cfg, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip().lower() == "include-system-site-packages":
                    system = value.strip().lower() == "true"
        break
dirs = site.getsitepackages([prefix])
if prefix != sys.prefix and system:
    dirs += site.getsitepackages([sys.base_prefix])
print(json.dumps([prefix, sys.base_prefix, dirs, sys.path]))
"""


def python_paths(python: str, env: Mapping[str, str]) -> tuple[str, list[str], list[str]]:
    """(prefix, the directories ``python`` imports from, its site directories): its
    prefixes, its standard
    library, its site directories, the paths their ``.pth`` files add (path lines, and the
    package directories of setuptools' finder-style editable installs, read as data, not
    run), and ``PYTHONPATH``. Outermost first, without a path inside another."""
    import json

    proc = subprocess.run(
        [python, "-I", "-S", "-c", _PROBE],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": env.get("PATH", "/usr/bin:/bin")},
        timeout=60,
    )
    if proc.returncode != 0:
        from isorun.errors import UsageError

        raise UsageError(
            f"cannot ask {python} for its import paths: {proc.stderr.strip() or proc.returncode}"
        )
    prefix, base, site_dirs, path = json.loads(proc.stdout)
    found = {prefix, base, *path, *site_dirs}
    for site_dir in site_dirs:
        found.update(_pth_paths(site_dir))
    found.update(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)
    paths = {os.path.realpath(p) for p in found if p and os.path.isdir(p)}
    out: list[str] = []
    for p in sorted(paths):
        if p != "/" and not any(p.startswith(o.rstrip("/") + "/") for o in out):
            out.append(p)
    return str(prefix), out, [str(d) for d in site_dirs]


def _pth_paths(site_dir: str) -> list[str]:
    """What the ``.pth`` files of ``site_dir`` put on the path, without running them."""
    import ast

    out = []
    try:
        names = sorted(n for n in os.listdir(site_dir) if n.endswith(".pth"))
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(site_dir, name), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
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
                with open(source, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in tree.body:
                if (
                    isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "MAPPING" for t in node.targets)
                ):
                    try:
                        mapping = ast.literal_eval(node.value)
                    except ValueError:
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
    from isorun import pytest_session
    from isorun.errors import IsorunError

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
