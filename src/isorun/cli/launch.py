"""The launch grammar (``isorun [run] --profile P [OPTIONS] [--] CMD [ARG...]``), parsed by
hand, and the launch from the plan cache.

click costs ~26 ms to import, more than bubblewrap takes to start a whole sandbox, so the
one command people run over and over does not load it: ``isorun.__main__`` imports this
module, never the click CLI (``isorun.cli.main``), for a launch. The grammar is small and
fixed:

    isorun [--debug] [run] (--profile|-p) P [--backend B] [--allow-weaker] [--verbose]
           [--quiet] [--debug] [--help] [--] CMD [ARG...]

Imports nothing of isorun at module level: ``isorun.errors`` alone costs more than a warm
launch takes.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

LAUNCH_FLAGS = {"--allow-weaker", "--verbose", "-v", "--quiet", "-q", "--debug", "--help",
                "-h"}
LAUNCH_OPTIONS = {"--profile", "-p", "--backend"}


#: ``isorun run --help`` and ``isorun --profile P --help``
LAUNCH_HELP = """\
Usage: isorun [run] --profile P [OPTIONS] [--] CMD [ARG...]

  Run CMD in a sandbox compiled from profile P and return its exit status (128+N when
  a signal N killed it).

Options:
  -p, --profile P   a built-in profile (strict, build, test, web) or a path ./file.toml
  --backend B       auto (default): the strongest backend that enforces every rule on this
                    host, the native shim, else bwrap, else firejail; or name one of
                    native, bwrap, firejail. A backend that cannot enforce a rule refuses
                    to run and names the rule, its profile line and the backends that can.
  --allow-weaker    run on a backend that cannot enforce every rule anyway, printing each
                    rule given up (never silently)
  -v, --verbose     say which backend runs and why, and what the plan cache did
  -q, --quiet       when the command fails, say nothing of what the sandbox refused
                    (by default: the syscalls seccomp refused, counted, with their rule
                    and line; the limit that stopped it; the mount or network rule behind
                    a read-only file system or an unreachable network). Also runs
                    refused syscalls without the report's listener (the kernel answers)
  --debug           show the traceback of an internal error
  -h, --help        show this message

  isorun explain P shows what the profile enforces; isorun doctor what this host can.
"""


def cwd_problem() -> str | None:
    """The message when the working directory is gone: profiles resolve ${CWD} from it,
    and a sandbox cannot start in a directory that no longer exists."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return ("isorun: error: the working directory no longer exists (it was deleted or"
                " moved away)\n  hint: cd to an existing directory and run again\n")
    except OSError as err:
        return (f"isorun: error: cannot read the working directory: {err.strerror}\n"
                "  hint: cd to a directory you may read and run again\n")
    return None


def write_stderr(text: str) -> None:
    """Write a message to stderr if there is one: with descriptor 2 closed, sys.stderr is
    None, and the exit code must still be the documented one, not a failure to print."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _usage(message: str) -> Exception:
    from isorun.errors import UsageError

    return UsageError(message)


def launch_from_args(args: list[str], missed: bool = False, retrying: bool = False) -> int:
    """Parse the launch grammar and launch; the exit code. ``missed``: the C front end ran
    this CLI because its launch index was missing or stale. ``retrying``: isorun-launch
    failed to set this launch up and handed it back, so launch here, without it, and word
    the failure with its profile line."""
    # isorun.errors is imported only when something fails: its dataclasses and typing
    # imports cost more than a warm launch takes.
    options: dict[str, str] = {}
    flags: set[str] = set()  # filled as parsed: --debug counts even when parsing fails
    try:
        head, command = _parse_launch(args, options, flags)
        if "--help" in head or "-h" in head:
            sys.stdout.write(LAUNCH_HELP)
            return 0
        _check_launch(options, command)
        problem = cwd_problem()
        if problem is not None:
            write_stderr(problem)
            return 2
        code = _launch_cached(
            command, options["--profile"], options.get("--backend"), "--verbose" in flags, missed,
            allow_weaker="--allow-weaker" in flags,
            quiet="--quiet" in flags,
            retrying=retrying,
        )
        if code is not None:
            return code
        from isorun.attached import launch

        return launch(
            command,
            profile=options["--profile"],
            backend=options.get("--backend"),
            allow_weaker="--allow-weaker" in flags,
            verbose="--verbose" in flags,
            quiet="--quiet" in flags,
        )
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if isinstance(err, BrokenPipeError):
            raise
        return report_failure(err, "--debug" in flags or bool(os.environ.get("ISORUN_DEBUG")))


def _parse_launch(
    args: list[str], options: dict[str, str], flags: set[str]
) -> tuple[list[str], list[str]]:
    """(isorun's arguments, the command): the options before the command go into
    ``options`` (by their long name) and ``flags``."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[:i], args[i + 1:]
        name, eq, value = arg.partition("=")
        if name in LAUNCH_OPTIONS:
            if not eq:
                if i + 1 >= len(args):
                    raise _usage(f"{name} needs a value")
                value = args[i + 1]
                i += 1
            options["--profile" if name == "-p" else name] = value
        elif arg in LAUNCH_FLAGS:
            flags.add({"-v": "--verbose", "-q": "--quiet"}.get(arg, arg))
        elif arg.startswith("-"):
            raise _usage(
                f"unknown option {arg!r} before the command; put the command "
                f"after -- if it starts with a dash"
            )
        else:
            break
        i += 1
    return args[:i], args[i:]


def _check_launch(options: dict[str, str], command: list[str]) -> None:
    """Refuse a launch that names no profile or no command, or an unknown backend."""
    if "--profile" not in options:
        raise _usage("no profile: give --profile NAME or --profile ./file.toml")
    if not command:
        raise _usage("no command to run: isorun --profile P -- CMD [ARG...]")
    if not command[0]:
        raise _usage("the command name is empty: isorun --profile P -- CMD [ARG...]")
    if "--backend" in options:
        check_backend(options["--backend"])


def report_failure(err: Exception, debug: bool) -> int:
    """Say what failed and return the exit code: the one convention of both handlers,
    the launch grammar's (:func:`launch_from_args`) and the click commands' (cli.main), so
    an error has the same code whichever way isorun was started.

    An IsorunError carries its message and code (2: profile or usage; 125: host, backend,
    set-up). A command that outlived ``--timeout``: 124. Anything else, a bare OSError
    included, is a bug in isorun (125): an OSError a person can act on is wrapped where it
    happens into an IsorunError that names what failed and how to fix it.
    """
    from isorun.errors import IsorunError
    from isorun.kernel.abi import EXIT_SETUP, EXIT_WALL_TIME

    if isinstance(err, IsorunError):
        write_stderr(err.render() + "\n")
        code = err.exit_code
    else:
        # looked up only when raised: a command that timed out has imported subprocess,
        # and a launch need not (import time)
        subprocess = sys.modules.get("subprocess")
        if subprocess is not None and isinstance(err, subprocess.TimeoutExpired):
            write_stderr(f"isorun: error: the command did not finish within {err.timeout:g} s"
                         " (--timeout) and was killed\n")
            code = EXIT_WALL_TIME
        else:
            detail = f" ({type(err).__name__}: {err})" if isinstance(err, OSError) else ""
            write_stderr("isorun: internal error, please report it with the output of "
                         f"--debug{detail}\n")
            code = EXIT_SETUP
    if debug:
        import traceback

        write_stderr(traceback.format_exc())
    return code


def check_backend(name: str) -> None:
    """A UsageError for a --backend no backend answers to (never the cached path, so the
    import is free)."""
    from isorun.errors import did_you_mean
    from isorun.sandbox.backends import BACKENDS

    known = ("auto", *BACKENDS)
    if name not in known:
        hint = did_you_mean(name, known)
        hint = f"; {hint}" if hint else ""
        raise _usage(f"unknown backend {name!r}: use one of {', '.join(known)}{hint}")


def _launch_cached(
    command: list[str], profile: str, backend: str | None, verbose: bool, missed: bool = False,
    allow_weaker: bool = False,
    quiet: bool = False,
    retrying: bool = False,
) -> int | None:
    """Launch from the plan cache without importing the compiler; None on a miss.

    The regular path then compiles, writes the entry (and its launch index), and
    launches. ``missed``: the C front end found no usable launch index although the entry
    may be fine (a profile touched but not changed, an index from before a restart of the
    settle clock); a hit then rewrites the index, so the next launch skips Python again.
    ``backend``: None, or auto and landlock, which may run the landlock backend's record
    (:func:`_launch_landlock`); any other goes the regular way.
    """
    if backend not in (None, "auto", "landlock") or os.environ.get("ISORUN_CACHE", "1") == "0":
        return None
    from isorun.cache import record as cache_record
    from isorun.cache import store as cache_store

    def note(message: str) -> None:
        sys.stderr.write(message + "\n")

    _, entry = cache_store.lookup(profile, note if verbose else None)
    if entry is None:
        # A miss: compile and store the entry here, then launch its record as a hit
        # does. attached.launch would compile the same plan, but its process handle imports
        # subprocess, threading and socket, milliseconds of every first launch.
        from isorun.api import compiled

        entry = compiled(profile, note if verbose else None)[2]
        if entry is None:
            return None  # not cacheable: attached.launch compiles it again and says why
        missed = False  # storing the entry wrote its launch index
    if backend is not None or entry.get("launch") is None:
        return _launch_landlock(entry, command, backend, allow_weaker, note if verbose else None,
                                quiet, retrying)
    record = cache_record.usable(entry.get("launch"), command)
    if record is None:
        if verbose:
            note("isorun: cache: plan cached, but not launchable directly; regular path")
        return None
    if verbose:
        note(f"isorun: profile {entry.get('profile')}, backend native (cached plan)")
    if missed:
        from isorun.cache import index as cache_index

        cache_index.write_index(entry, note if verbose else None)
    return _run_cached(record, command, entry, quiet, retrying)


def _launch_landlock(entry: dict[str, object], command: list[str], backend: str | None,
                     allow_weaker: bool, log: Callable[[str], None] | None,
                     quiet: bool = False, retrying: bool = False) -> int | None:
    """The landlock backend's cached launch, when the regular path would choose that
    backend now (isorun.cache.record.landlock_choice decides afresh on every Python launch);
    then its launch index, so the C front end serves the next one. None otherwise."""
    from isorun.cache import entry as cache_entry
    from isorun.cache import index as cache_index
    from isorun.cache import record as cache_record
    from isorun.cache import store as cache_store

    plan = cache_entry.load_plan(entry)
    choice = cache_record.landlock_choice(plan, backend)
    if choice is None:
        return None
    mode, warning, needs_weaker = choice
    if needs_weaker and not allow_weaker:
        return None  # the regular path refuses, naming each rule and who keeps it
    # Made on first use (most hosts never need it), and again when a variable the
    # profile keeps changed since: the Python CLI runs then anyway, and the front end can
    # serve the next launch again.
    stored = entry.get("launch_landlock")
    if stored is None or cache_record.usable(stored, command) is None:
        made = cache_record.make_landlock_record(plan, log)
        if made is None:
            return None
        entry = {**entry, "launch_landlock": made}
        cache_store.store(entry, log)
    record = cache_record.usable(entry.get("launch_landlock"), command)
    if record is None:
        return None
    if log is not None:
        log(f"isorun: profile {entry.get('profile')}, backend landlock (cached plan)")
    cache_index.write_index(entry, log, backend=backend or "", landlock=(mode, warning,
                                                                         needs_weaker))
    if warning:
        sys.stderr.write(warning + "\n")
    return _run_cached(record, command, entry, quiet, retrying)


def _run_cached(record: dict[str, object], command: list[str], entry: dict[str, object],
                quiet: bool, retrying: bool) -> int:
    """Launch a cached record: through isorun-launch when it has a refusal report to
    say (it execs, and returns only when isorun-launch is missing), else here."""
    from isorun.cache import record as cache_record
    from isorun.sandbox import foreground

    if not quiet and not retrying and (record.get("report_bpf") or record.get("notes")):
        _exec_reporting(record, command)
    try:
        return foreground.run(record, command)
    except Exception as err:
        located = cache_record.locate(err, entry)
        if located is None:
            raise
        raise located from None


def _exec_reporting(record: dict[str, object], command: list[str]) -> None:
    """Become isorun-launch for this launch, which says the refusal report when the command
    fails (shim/launcher/launch_report.c), as the C front end does on the same record.
    Returns only when isorun-launch is not there (then foreground.run launches it without
    the report)."""
    from isorun.sandbox import flat

    # isorun-launch is installed beside the package's modules, one directory up from here
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    launcher = os.path.join(package, "isorun-launch")
    if not os.access(launcher, os.X_OK):
        return
    from isorun.host.anonfile import anon_file

    # A memfd, not a pipe: the record (the seccomp program and the rule table) may exceed
    # a pipe's buffer, and nobody is left to read the rest once we exec.
    fd = anon_file("isorun-record", inheritable=True)
    os.write(fd, flat.encode(record))
    os.lseek(fd, 0, os.SEEK_SET)
    sys.stdout.flush()
    sys.stderr.flush()
    # sys.orig_argv: this CLI's command line as it was started, to run again after a
    # set-up failure (isorun-launch's --retry)
    retry = sys.orig_argv
    os.execv(launcher, [launcher, "--cli-record-fd", str(fd), "--refusals", "--retry",
                        str(len(retry)), *retry, "--", *command])
