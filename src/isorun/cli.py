"""The click CLI for everything but the launch path (see ``__main__``).

Holds no logic the API lacks: each command parses, calls ``isorun.api``, renders.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from isorun import __version__, api
from isorun.errors import IsorunError

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Renders IsorunError as the compiler-style message and its exit code, never a trace."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IsorunError as err:
            click.echo(err.render(), err=True)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            ctx.exit(err.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OSError as err:
            click.echo(f"isorun: error: {err}", err=True)
            ctx.exit(2)
        except Exception:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo("isorun: internal error, please report it with the output of --debug",
                       err=True)
            ctx.exit(125)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="isorun")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run a command in a sandbox compiled from a TOML profile.

    \b
    isorun --profile strict -- CMD [ARG...]   run CMD in the sandbox
    isorun explain strict                     show what a profile enforces
    """
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("profile")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def explain(profile: str, as_json: bool) -> None:
    """Show the resolved plan of PROFILE, each rule with the file:line it came from."""
    plan = api.compile_plan(profile)
    if as_json:
        click.echo(json.dumps(plan.to_json(), indent=2, sort_keys=False))
    else:
        click.echo(plan.describe())


@cli.command()
def profiles() -> None:
    """List the built-in profiles."""
    for name, description in api.builtin_profiles():
        click.echo(f"{name:<10} {description}")


@cli.command()
@click.argument("profile")
def check(profile: str) -> None:
    """Load and compile PROFILE (seccomp filter included); exit 0 when valid, 2 otherwise."""
    plan = api.compile_plan(profile)
    program = api.seccomp_program(plan)
    # Before the run does: a limit written explicitly fails closed when unenforceable.
    api.check_limits(plan)
    click.echo(f"{profile}: ok ({len(plan.steps)} steps, seccomp filter of "
               f"{len(program) // 8} instructions)")


@cli.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(args: tuple[str, ...]) -> None:
    """Run a command: isorun run --profile P -- CMD [ARG...]."""
    from isorun.__main__ import _launch

    sys.exit(_launch(list(args)))


#: modules that contribute click commands (seccomp export/import/diff, doctor, learn)
COMMAND_MODULES = ("isorun.cli_seccomp", "isorun.cli_backends", "isorun.cli_learn")


def _register_commands() -> None:
    """Add ``COMMANDS`` of each module in COMMAND_MODULES that this installation has."""
    import importlib
    import importlib.util

    for module_name in COMMAND_MODULES:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        # An explicit list: a module's subcommands are click objects too, and must not
        # become top-level commands.
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()
