"""click commands of the backends: ``isorun doctor``. The lead registers them on the CLI
group; the logic is in :mod:`isorun.doctor`."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--profile", default="strict", show_default=True,
              help="Profile to pick a backend for.")
def doctor(as_json: bool, profile: str) -> None:
    """Check what this host lets isorun enforce, each problem with its fix."""
    from isorun import doctor as _doctor

    checks = _doctor.diagnose(profile=profile)
    if as_json:
        click.echo(json.dumps(_doctor.to_json(checks), indent=2))
    else:
        click.echo(_doctor.render_text(checks))
    raise SystemExit(_doctor.exit_code(checks))


#: what isorun.cli.main registers on the top-level group
COMMANDS = (doctor,)
