"""The click CLI for everything but the launch path (that is ``isorun.cli.launch``).

Holds no logic the API lacks: each command parses, calls ``isorun.api``, renders.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from isorun import __version__

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Ends every failure in a message and an exit code of the README's table, never a
    trace: the convention of cli.launch.report_failure, shared with the launch path.
    Only a bug in isorun (a bare OSError included) reaches "internal error" (125).
    """

    def invoke(self, ctx: click.Context) -> Any:
        from isorun.cli.launch import report_failure, silence_stdout

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`isorun explain strict | head`): end as a C tool killed
            # by SIGPIPE (128+13), quietly, and without a second error at exit's flush.
            silence_stdout()
            ctx.exit(141)
        except Exception as err:
            ctx.exit(report_failure(err, bool(ctx.obj and ctx.obj.get("debug"))))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            _load_commands(LAZY_COMMANDS[cmd_name])
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        # Every subcommand takes --debug too (isorun check --debug x.toml), and a command
        # added later (plugins of this group) gets it the same way.
        _add_debug_option(cmd)
        super().add_command(cmd, name)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(dict)["debug"] = True


def _add_debug_option(cmd: click.Command) -> None:
    if not any(param.name == "debug" for param in cmd.params):
        cmd.params.append(click.Option(
            ["--debug"], is_flag=True, expose_value=False, callback=_set_debug,
            help="Show the traceback of an internal error."))
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _add_debug_option(sub)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="isorun")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run a command in a sandbox compiled from a TOML profile.

    \b
    isorun --profile strict -- CMD [ARG...]   run CMD in the sandbox
    isorun run --help                         the options of a run (--backend, ...)
    isorun explain strict                     show what a profile enforces
    """
    obj = ctx.ensure_object(dict)
    obj["debug"] = debug or obj.get("debug", False)


@cli.command()
@click.argument("profile")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--backend", default=None, metavar="B",
              help="Also say how backend B enforces it: who applies the Landlock layer, "
                   "and each rule B cannot keep (landlock: the plan that mode runs).")
def explain(profile: str, as_json: bool, backend: str | None) -> None:
    """Show the resolved plan of PROFILE, each rule with the file:line it came from."""
    from isorun import api
    from isorun.profile.includes import is_path

    plan = api.compile_plan(profile)
    notes: list[str] = []
    if backend is not None:
        from isorun.cli.launch import check_backend
        from isorun.sandbox.backends import describe_backend

        check_backend(backend)
        plan, notes = describe_backend(plan, backend)
    if as_json:
        click.echo(json.dumps(plan.to_json(), indent=2, sort_keys=False))
        return
    from isorun.compile.memory_bound import describe_memory

    text = plan.describe(describe_memory(plan))
    if is_path(profile):
        # A file named like a built-in (./web.toml) must not read as the built-in itself.
        head, _, rest = text.partition("\n")
        text = f"{head} (the file {profile}, not a built-in profile)\n{rest}"
    click.echo(text)
    for line in notes:
        click.echo(line)


@cli.command()
def profiles() -> None:
    """List the built-in profiles."""
    from isorun import api

    for name, description in api.builtin_profiles():
        click.echo(f"{name:<10} {description}")


@cli.command()
@click.argument("profile")
def check(profile: str) -> None:
    """Load and compile PROFILE (seccomp filter included); exit 0 when valid, 2 otherwise."""
    from isorun import api

    plan = api.compile_plan(profile)
    _check_bind_sources(plan)
    program = api.seccomp_program(plan)
    # Before the run does: a limit written explicitly fails closed when unenforceable.
    api.check_limits(plan)
    click.echo(f"{profile}: ok ({len(plan.steps)} steps, seccomp filter of "
               f"{len(program) // 8} instructions)")


def _check_bind_sources(plan: Any) -> None:
    """A required bind whose source is missing here: the run would refuse it, so check
    does too, with the line (for this working directory and user: ${CWD}, ${HOME})."""
    import os

    from isorun.api import missing_source_hint
    from isorun.compile.plan import MountStep
    from isorun.errors import Diagnostic, ProfileError

    problems = [
        Diagnostic(step.loc, f"{step.type} source {step.src} does not exist on this host",
                   missing_source_hint(step))
        for step in plan.find(MountStep)
        if step.type in ("ro-bind", "rw-bind", "dev-bind") and not step.optional
        and not os.path.lexists(step.src)
    ]
    if problems:
        raise ProfileError(problems)


@cli.command()
@click.argument("name", required=False)
def syscalls(name: str | None) -> None:
    """List the @groups, a group's members, or where a syscall NAME is allowed.

    \b
    isorun syscalls                 every group, with what it is for
    isorun syscalls @file-system    the syscalls of a group
    isorun syscalls openat          its groups, and what each built-in profile decides
    """
    from isorun import api
    from isorun.errors import Diagnostic, Loc, ProfileError
    from isorun.kernel import syscalls as table

    if name is None:
        for group in table.group_names():
            doc = table.group_doc(group).split(". ")[0].rstrip(".")
            click.echo(f"{group:<20} {len(table.expand(group)):>4}  {doc}")
        return
    try:
        members = table.expand(name)
    except KeyError:
        raise ProfileError(Diagnostic(Loc(name), f"unknown syscall or group {name!r}",
                                      table.suggest(name) or "isorun syscalls lists the "
                                      "groups")) from None
    if name.startswith("@"):
        click.echo(table.group_doc(name))
        for member in sorted(members):
            click.echo(f"  {member}")
        return
    groups = [g for g in table.group_names() if name in table.expand(g)]
    click.echo(f"{name}: in {', '.join(groups) if groups else 'no group'}")
    for profile, _ in api.builtin_profiles():
        click.echo(f"  {profile:<8} {_decision(profile, name)}")


def _decision(profile: str, name: str) -> str:
    """What ``profile`` answers for ``name``: each rule that can match it, in order, with
    its origin and line, then the default."""
    from isorun import api
    from isorun.compile import argspace
    from isorun.compile.plan import LoadSeccomp
    from isorun.compile.seccomp import build_entries

    steps = api.compile_plan(profile).find(LoadSeccomp)
    if not steps:
        return "allow (seccomp is off)"
    policy = steps[0].policy
    parts = []
    for entry in build_entries(policy)[0].get(name, []):
        some = "" if entry.region == argspace.FULL else " (for some arguments)"
        where = f", {entry.loc.short()}" if entry.loc.line else ""
        parts.append(f"{entry.action}{some}: {entry.origin}{where}")
        if entry.region == argspace.FULL:
            break
    else:
        parts.append(f"{policy.default_action}: seccomp.default_action")
    return "; then ".join(parts)


@cli.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(args: tuple[str, ...]) -> None:
    """Run a command: isorun run --profile P -- CMD [ARG...]."""
    from isorun.cli.launch import launch_from_args

    sys.exit(launch_from_args(list(args)))


#: the commands other modules contribute (seccomp export/import/diff, doctor, learn,
#: pytest), by name: a module is imported when its command runs or --help lists it, so
#: `isorun check` does not pay for learn's or pytest's imports. A unit test holds this
#: table to each module's COMMANDS.
LAZY_COMMANDS = {
    "export": "isorun.cli.seccomp", "import": "isorun.cli.seccomp",
    "diff": "isorun.cli.seccomp", "doctor": "isorun.cli.doctor",
    "learn": "isorun.cli.learn", "pytest": "isorun.cli.pytest",
}


def _load_commands(module_name: str) -> None:
    """Add ``COMMANDS`` of ``module_name`` if this installation has the module."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(module_name) is None:
        return
    module = importlib.import_module(module_name)
    # An explicit list: a module's subcommands are click objects too, and must not
    # become top-level commands.
    for command in module.COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)
