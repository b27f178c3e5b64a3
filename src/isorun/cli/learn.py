"""``isorun learn``: write a minimal profile from what a command does, or check one.

Holds no logic: parsing here, everything else in :mod:`isorun.learn.observe` (observing) and
:mod:`isorun.learn.profile` (the profile, Docker JSON and verdict).
"""

from __future__ import annotations

import os
import sys

import click


@click.command("learn", context_settings={"ignore_unknown_options": True})
@click.option("--profile", "-p", "base", default="strict", show_default=True,
              help="Base profile: its sandbox runs the command and the result extends it.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False),
              help="Write the learned profile here (default: stdout, after the command).")
@click.option("--docker", "docker", type=click.Path(dir_okay=False),
              help="Also write the learned seccomp filter as Docker JSON.")
@click.option("--widen-only", is_flag=True,
              help="Observe only what the base refuses and add just that to it.")
@click.option("--merge", "merges", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Fold a profile learned before into the result (repeatable).")
@click.option("--check", "check", metavar="PROFILE",
              help="Write nothing: run under PROFILE, let refused calls run, list them, and"
                   " exit 1 if there were any.")
@click.option("--grant-fs", is_flag=True,
              help="Bind read-only the host paths opened outside the mounts (default: only"
                   " suggest them).")
@click.option("--timeout", type=float, default=None, help="Kill the command after SECONDS.")
@click.option("--runtime", "runtimes", multiple=True, default=("all",), show_default=True,
              help="With --docker: the OCI runtime(s) whose own post-filter syscalls the"
                   " JSON allows (runc-1.1, runc-1.1-nnp, runc-1.2, runc-1.3, runc-1.4, crun,"
                   " all, none;"
                   " repeatable).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def learn(base: str, output: str | None, docker: str | None, widen_only: bool,
          merges: tuple[str, ...], check: str | None, grant_fs: bool, timeout: float | None,
          runtimes: tuple[str, ...], command: tuple[str, ...]) -> None:
    """Run COMMAND in the sandbox and learn the syscalls it makes.

    \b
    isorun learn -o app.toml -- ./app --serve     allow exactly what ./app did
    isorun learn --widen-only -p strict -- make   add to strict what make needed
    isorun learn --check app.toml -- ./app        CI ratchet: fail on anything new
    """
    # here, not at the top: `isorun --help` imports this module to list the command, and
    # the observer and the profile writer load the whole compiler (~30 ms, #17)
    import tempfile

    from isorun.learn import observe as lm
    from isorun.learn import profile as lp

    if check is not None:
        if output or docker or merges or widen_only or grant_fs:
            raise click.UsageError("--check writes nothing; drop -o/--docker/--merge/"
                                   "--widen-only/--grant-fs")
        obs = lm.observe(command, check, "check", timeout=timeout)
        refused = lp.refusals(obs)
        for refusal in refused:
            click.echo(f"  {refusal.render()}", err=True)
        if refused:
            click.echo(f"isorun: learn --check: {len(refused)} distinct call(s) that {check}"
                       " refuses", err=True)
            sys.exit(1)
        click.echo(f"isorun: learn --check: {check} allows everything the command did"
                   " (only execve was notified)", err=True)
        sys.exit(obs.returncode)
    if docker:
        lp.runtime_syscalls(runtimes)  # an unknown name is a usage error before the run
    obs = lm.observe(command, base, "widen" if widen_only else "learn", timeout=timeout)
    if merges:
        obs = lm.merge([*(lm.read_learned(path) for path in merges), obs])
    text, learned = lp.render_profile(obs, out_path=output, grant_fs=grant_fs)
    if output:
        _write_file(output, text)
    else:
        sys.stdout.write(text)
    if docker:
        if output:
            json_text, added = lp.export_docker_json(output, runtime=runtimes)
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=os.getcwd(),
                                             delete=False) as tmp:
                tmp.write(text)
            try:
                json_text, added = lp.export_docker_json(tmp.name, runtime=runtimes)
            finally:
                os.unlink(tmp.name)
        _write_file(docker, json_text)
        if added:
            click.echo(f"isorun: {docker} also allows {len(added)} syscalls the container"
                       f" runtime ({', '.join(runtimes)}) makes after loading the filter:"
                       f" {' '.join(added)}. Most are needed because engines run"
                       " containers without no-new-privileges, so the runtime loads the"
                       " filter before it drops capabilities and ids; run the container"
                       " with `--security-opt no-new-privileges` and learn with"
                       " `--runtime runc-1.1-nnp` to grant only the few it still makes"
                       " (data/engines.toml says how each list was measured)",
                       err=True)
    n = len(learned.allow) + len({r.syscalls[0] for r in learned.rules})
    click.echo(f"isorun: learned {n} syscalls from {obs.total} calls"
               f" (Docker's default allows {lp.docker_default_count()});"
               f" the command exited {obs.returncode}", err=True)
    for note in learned.notes:
        click.echo(f"isorun: not granted: {note}", err=True)
    _report_status(obs.returncode, command)


def _report_status(returncode: int, command: tuple[str, ...]) -> None:
    """Exit with the command's status, saying why a learned result may be partial."""
    if returncode == 0:
        return
    if returncode == 127:
        click.echo(f"isorun: learn: {command[0]!r} was not found or could not be executed"
                   " (status 127); what was learned covers only the sandbox's start", err=True)
    elif returncode < 0 or returncode > 128:
        sig = -returncode if returncode < 0 else returncode - 128
        click.echo(f"isorun: learn: the command was killed by signal {sig}; what was learned"
                   " covers only what it did until then", err=True)
    else:
        click.echo(f"isorun: learn: the command failed (status {returncode}); what was"
                   " learned covers only what it did until then", err=True)
    sys.exit(returncode if 0 < returncode < 256 else 128 + abs(returncode) % 128)


def _write_file(path: str, text: str) -> None:
    """Write an output the user named; a path that cannot be written is their error to
    fix (exit 2), not isorun's."""
    from isorun.errors import UsageError

    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from err


COMMANDS = [learn]
