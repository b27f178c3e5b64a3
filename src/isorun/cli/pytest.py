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

import os
import sys
from collections.abc import Mapping, Sequence

import click

from isorun.testing import profiles
from isorun.testing import reports as pytest_reports
from isorun.testing import trust as pytest_trust
from isorun.testing.project import find_project_config, project_python, python_paths

PROFILE_OPTION = "--isorun-profile"


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
        chosen = pytest_reports.report_files(pytest_args, cwd)
        addopts = pytest_reports.report_files(config.get("addopts").split(), cwd)
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
    reports = pytest_reports.prepare_reports(sorted({*chosen, *addopts}))
    for line in header:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    text = profiles.session_profile_text(
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


#: registered by isorun.cli.main
COMMANDS = (pytest_command,)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m isorun.pytest``."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))
