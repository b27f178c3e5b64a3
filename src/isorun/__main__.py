"""Entry point. The launch path (``isorun --profile P cmd``) is parsed here by hand.

click costs ~60 ms to import, more than bubblewrap takes to start a whole sandbox, so the
one command people run over and over does not load it. Every other subcommand goes to
the click CLI in ``cli.py``. The launch grammar is small and fixed:

    isorun [run] (--profile|-p) P [--backend B] [--allow-weaker] [--verbose] [--debug]
           [--] CMD [ARG...]
"""

from __future__ import annotations

import os
import sys

_LAUNCH_FLAGS = {"--allow-weaker", "--verbose", "-v", "--debug"}
_LAUNCH_OPTIONS = {"--profile", "-p", "--backend"}


#: set by the C front end (shim/frontend.c) when it ran this CLI because its launch index
#: was missing or stale; removed at once, so no command ever sees it in its environment
FRONTEND_MISS = "ISORUN_FRONTEND_MISS"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    missed = os.environ.pop(FRONTEND_MISS, None) is not None
    if args[:1] == ["run"]:
        args = args[1:]
        if args[:1] in (["--help"], ["-h"]):
            sys.stdout.write(__doc__.split("\n\n", 2)[2] if __doc__ else "")
            sys.exit(0)
        sys.exit(_launch(args, missed))
    if args and (
        args[0] in _LAUNCH_OPTIONS
        or args[0].startswith(("--profile=", "--backend="))
        or args[0] in _LAUNCH_FLAGS
    ):
        sys.exit(_launch(args, missed))
    from isorun.cli import cli

    cli.main(args=args, prog_name="isorun")


def _usage(message: str) -> Exception:
    from isorun.errors import UsageError

    return UsageError(message)


def _launch(args: list[str], missed: bool = False) -> int:
    # isorun.errors is imported only when something fails: its dataclasses and typing
    # imports cost more than a warm launch takes.
    options: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    try:
        while i < len(args):
            arg = args[i]
            if arg == "--":
                i += 1
                break
            name, eq, value = arg.partition("=")
            if name in _LAUNCH_OPTIONS:
                if not eq:
                    if i + 1 >= len(args):
                        raise _usage(f"{name} needs a value")
                    value = args[i + 1]
                    i += 1
                options["--profile" if name == "-p" else name] = value
            elif arg in _LAUNCH_FLAGS:
                flags.add("--verbose" if arg == "-v" else arg)
            elif arg.startswith("-"):
                raise _usage(
                    f"unknown option {arg!r} before the command; put the command "
                    f"after -- if it starts with a dash"
                )
            else:
                break
            i += 1
        command = args[i:]
        if "--profile" not in options:
            raise _usage("no profile: give --profile NAME or --profile ./file.toml")
        if not command:
            raise _usage("no command to run: isorun --profile P -- CMD [ARG...]")
        code = _launch_cached(
            command, options["--profile"], options.get("--backend"), "--verbose" in flags, missed
        )
        if code is not None:
            return code
        from isorun.api import launch

        return launch(
            command,
            profile=options["--profile"],
            backend=options.get("--backend"),
            allow_weaker="--allow-weaker" in flags,
            verbose="--verbose" in flags,
        )
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        from isorun.errors import IsorunError

        if isinstance(err, IsorunError):
            sys.stderr.write(err.render() + "\n")
            if "--debug" in flags:
                import traceback

                traceback.print_exc()
            return err.exit_code
        sys.stderr.write("isorun: internal error, please report it with the output of --debug\n")
        if "--debug" in flags or os.environ.get("ISORUN_DEBUG"):
            import traceback

            traceback.print_exc()
        return 125


def _launch_cached(
    command: list[str], profile: str, backend: str | None, verbose: bool, missed: bool = False
) -> int | None:
    """Launch from the plan cache without importing the compiler; None on a miss.

    The regular path then compiles, writes the entry (and its launch index), and
    launches. ``missed``: the C front end found no usable launch index although the entry
    may be fine (a profile touched but not changed, an index from before a restart of the
    settle clock); a hit then rewrites the index, so the next launch skips Python again.
    """
    if backend is not None or os.environ.get("ISORUN_CACHE", "1") == "0":
        return None
    from isorun import cache, launch

    def note(message: str) -> None:
        sys.stderr.write(message + "\n")

    _, entry = cache.lookup(profile, note if verbose else None)
    if entry is None:
        # A miss: compile and store the entry here, then launch its record as a hit
        # does. api.launch would compile the same plan, but its process handle imports
        # subprocess, threading and socket, milliseconds of every first launch.
        from isorun.api import compiled

        entry = compiled(profile, note if verbose else None)[2]
        if entry is None:
            return None  # not cacheable: api.launch compiles it again and says why
        missed = False  # storing the entry wrote its launch index
    record = launch.usable(entry.get("launch"), command)
    if record is None:
        if verbose:
            note("isorun: cache: plan cached, but not launchable directly; regular path")
        return None
    if verbose:
        note(f"isorun: profile {entry.get('profile')}, backend native (cached plan)")
    if missed:
        from isorun import launch_index

        launch_index.write_index(entry, note if verbose else None)
    try:
        return launch.run(record, command)
    except Exception as err:
        located = launch.locate(err, entry)
        if located is None:
            raise
        raise located from None


if __name__ == "__main__":
    main()
