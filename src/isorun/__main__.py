"""Entry point of ``isorun`` (and ``python -m isorun``): a launch or a click subcommand.

The launch path (``isorun --profile P cmd``) is parsed by hand in ``isorun.cli.launch``;
every other subcommand goes to the click CLI in ``isorun.cli.main``, imported only then
(click costs more to import than a warm launch takes).
"""

from __future__ import annotations

import os
import sys

from isorun.cli import launch
from isorun.shim import abi as shim_abi

#: set by the C front end (shim/launcher/frontend.c) when it ran this CLI because its launch index
#: was missing or stale; removed at once, so no command ever sees it in its environment
FRONTEND_MISS = shim_abi.FRONTEND_MISS
#: set by isorun-launch (and the front end) after a set-up failure of a launch this CLI
#: handed to it: launch without it this once, so the failure is worded with its profile
#: line (see cli.launch._exec_reporting); removed at once, as FRONTEND_MISS
SETUP_RETRY = "ISORUN_SETUP_RETRY"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    missed = os.environ.pop(FRONTEND_MISS, None) is not None
    retrying = os.environ.pop(SETUP_RETRY, None) is not None
    try:
        sys.exit(_dispatch(args, missed, retrying))
    except BrokenPipeError:
        # The reader went away (`isorun explain strict | head`): end as a C tool killed by
        # SIGPIPE would (128+13), with no message and no second error when Python flushes
        # stdout at exit.
        launch.silence_stdout()
        sys.exit(141)


def _dispatch(args: list[str], missed: bool, retrying: bool) -> int:
    # --debug may stand before the subcommand (isorun --debug check x.toml) as well as
    # after it; the first other word decides between the launch grammar and click.
    first = next((a for a in args if a != "--debug"), None)
    if first == "run":
        debug = [a for a in args[:args.index("run")] if a == "--debug"]
        args = args[args.index("run") + 1:]
        if args[:1] in (["--help"], ["-h"]):
            sys.stdout.write(launch.LAUNCH_HELP)
            return 0
        return launch.launch_from_args(debug + args, missed, retrying)
    if first is not None and (
        first in launch.LAUNCH_OPTIONS
        or first.startswith(("--profile=", "--backend="))
        or (first in launch.LAUNCH_FLAGS and first not in ("--help", "-h"))
    ):
        return launch.launch_from_args(args, missed, retrying)
    problem = launch.cwd_problem()
    if problem is not None and first not in (None, "--help", "-h", "--version"):
        launch.write_stderr(problem)
        return 2
    from isorun.cli.main import cli

    return int(cli.main(args=args, prog_name="isorun", standalone_mode=True) or 0)


def _forget_working_directory() -> None:
    """Take the working directory off ``sys.path`` for ``python -m isorun``.

    ``-m`` puts it first, ahead of the standard library, and this CLI imports most of its
    modules later, lazily (dataclasses, tomllib, pickle, ...): a ``dataclasses.py`` that
    an earlier sandbox wrote into the project (build binds it writable) would run here,
    on the host, outside any sandbox. Kept when isorun itself was imported from there
    (``cd src; python -m isorun``): that code is already running, and
    cache.index.index_blob needs to see it to refuse writing an index for it.
    """
    if sys.flags.safe_path or not sys.path:
        return
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # a deleted working directory: nothing to import from there
        here = None
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    first = os.path.realpath(sys.path[0] or ".") if here is not None else None
    if first == here and os.path.realpath(package_parent) != here:
        del sys.path[0]


if __name__ == "__main__":
    _forget_working_directory()
    main()
