"""Cold start (#17 item 8): what the CLI imports before it knows which command runs, and
what the pytest plugin imports into every pytest run."""

from __future__ import annotations

import importlib
import subprocess
import sys

from click.testing import CliRunner

from isorun.cli import main as cli_module


def _isorun_modules_after(code: str) -> set[str]:
    """The isorun modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.startswith('isorun')))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return set(done.stdout.split())


# the plan's and the schema's dataclasses (~45 ms without bytecode), the compiler, and
# each subcommand module's own imports (learn, pytest), paid only by what uses them
HEAVY = {"isorun.api", "isorun.compile.plan", "isorun.compile.steps", "isorun.profile.schema",
         "isorun.learn.observe", "isorun.learn.profile", "isorun.cli.learn", "isorun.cli.pytest",
         "isorun.cli.seccomp", "isorun.cli.doctor"}

#: what the warm launch path (python -m isorun when the C front end misses) may load
WARM = {"isorun", "isorun.__main__", "isorun.cli", "isorun.cli.launch", "isorun.shim",
        "isorun.shim.abi"}


def test_importing_the_cli_loads_no_compiler_and_no_subcommand_module() -> None:
    loaded = _isorun_modules_after("import isorun.cli.main")
    assert "isorun.cli.main" in loaded
    assert not loaded & HEAVY, loaded & HEAVY


def test_the_launch_entry_point_loads_only_the_launch_grammar() -> None:
    # the warm path when the C front end misses: python -m isorun parses a launch without
    # click, the compiler or isorun.errors (each costs more than a warm launch takes);
    # shim.abi is the one definition of the names shared with the C front end, and
    # imports nothing
    loaded = _isorun_modules_after("import isorun.__main__")
    assert loaded == WARM, loaded


def test_launch_help_loads_only_the_launch_grammar() -> None:
    code = ("import contextlib, io\nfrom isorun.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n"
            "        main(['run', '--help'])\n    except SystemExit as done:\n"
            "        assert done.code == 0, done.code")
    loaded = _isorun_modules_after(code)
    assert loaded == WARM, loaded


def test_version_loads_no_compiler_and_no_subcommand_module() -> None:
    code = ("import sys\nfrom isorun.__main__ import main\ntry:\n    main(['--version'])\n"
            "except SystemExit as done:\n    assert done.code == 0, done.code")
    loaded = _isorun_modules_after(code)
    assert not loaded & HEAVY, loaded & HEAVY


def test_help_lists_every_command_without_loading_the_compiler() -> None:
    code = ("from isorun.__main__ import main\ntry:\n    main(['--help'])\n"
            "except SystemExit as done:\n    assert done.code == 0, done.code")
    loaded = _isorun_modules_after(code)
    assert "isorun.cli.learn" in loaded  # listed with its short help
    assert not loaded & {"isorun.api", "isorun.compile.plan", "isorun.learn.observe"}


def test_check_loads_the_compiler_but_no_subcommand_module() -> None:
    code = ("from isorun.__main__ import main\ntry:\n    main(['check', 'strict'])\n"
            "except SystemExit as done:\n    assert done.code == 0, done.code")
    loaded = _isorun_modules_after(code)
    assert "isorun.compile.plan" in loaded
    assert not loaded & {"isorun.learn.observe", "isorun.cli.learn", "isorun.cli.pytest"}


def test_lazy_command_table_matches_each_modules_commands() -> None:
    by_module: dict[str, set[str]] = {}
    for name, module in cli_module.LAZY_COMMANDS.items():
        by_module.setdefault(module, set()).add(name)
    for module, names in by_module.items():
        commands = importlib.import_module(module).COMMANDS
        assert {command.name for command in commands} == names, module


def test_help_lists_the_lazy_commands_and_each_runs_its_help() -> None:
    out = CliRunner().invoke(cli_module.cli, ["--help"]).stdout
    for name in cli_module.LAZY_COMMANDS:
        assert f"\n  {name} " in out, name
        if name == "pytest":  # its --help is pytest's own (help_option_names = [])
            continue
        result = CliRunner().invoke(cli_module.cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "--debug" in result.stdout, name


def test_the_pytest_plugin_imports_only_its_own_small_modules() -> None:
    # every pytest run in an environment with isorun installed loads the plugin; the
    # session, the trust rules and the sandbox come when --isorun or a marker asks
    loaded = _isorun_modules_after("import pytest\nimport isorun.testing.plugin")
    assert loaded == {"isorun", "isorun.testing", "isorun.testing.child",
                      "isorun.testing.plugin"}, loaded
