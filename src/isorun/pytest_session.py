"""``pytest --isorun`` and ``isorun pytest``: the session profile, and launching a whole
pytest run inside it.

What the project's configuration may choose is isorun.pytest_trust; the proof that the
inner session is inside is isorun.pytest_inner; the front door is isorun.cli_pytest.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from isorun import pytest_inner, pytest_trust
from isorun.pytest_inner import requested_profile, strip_isorun

INNER = pytest_inner.INNER
#: the sandbox's uid on the host when the caller is root (planner.NOBODY)
NOBODY = 65534

def session_profile_text(
    base: str,
    rootdir: str,
    cache_dir: str,
    writable: list[str],
    python_paths: list[str] | None = None,
    reports: Sequence[ReportFile] = (),
    coverage: CoverageData | None = None,
    environment: Mapping[str, str] | None = None,
) -> str:
    """The TOML of the session profile: ``base`` plus what this pytest run needs."""
    lines = [f"extends = [{json.dumps(base)}]", ""]

    def mount(kind: str, path: str, optional: bool, src: str = "") -> None:
        lines.extend(["[[mounts]]", f'type = "{kind}"', f"dst = {json.dumps(path)}"])
        if src and src != path:
            lines.append(f"src = {json.dumps(src)}")
        if optional:
            lines.append("optional = true")
        lines.append("")

    # The rootdir (its pyproject/conftest) may lie above the working directory that the
    # profile binds; the interpreter must be visible whatever profile was chosen. Never
    # a directory that shows the caller's home or its credentials (a .pth line of an
    # installed package may name any directory): those are left out, with a warning.
    home = os.path.expanduser("~")
    if not pytest_trust.exposes_home(rootdir, home):
        mount("ro-bind", rootdir, False)
    paths = interpreter_paths() if python_paths is None else python_paths
    kept, dropped = pytest_trust.drop_exposing(paths, home)
    for line in dropped:
        sys.stderr.write(line + "\n")
    for path in kept:
        mount("ro-bind", path, False)
    mount("rw-bind", cache_dir, True)
    for path in writable:
        mount("rw-bind", path, True)
    for report in reports:
        mount("rw-bind", report.path, False, report.src)
    extra = dict(environment or {})
    if coverage is not None:
        mount("rw-bind", coverage.inside, False)
        extra["COVERAGE_FILE"] = coverage.data_file
    # The launcher's user namespace goes in at NS_FD: the inner session's proof that it
    # is inside (isorun.pytest_inner), which the variable alone is not.
    lines.extend(["[process]", f"pass_fds = [{pytest_inner.NS_FD}]", ""])
    # The writable paths go in too, for the messages of the rules (pytest_rules): the
    # inner pytest cannot see the launcher's list otherwise.
    shown = os.pathsep.join([cache_dir, *writable])
    extra.update({INNER: base, "ISORUN_PYTEST_WRITABLE": shown})
    pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(extra.items()))
    lines.extend(["[environment]", f"set = {{ {pairs} }}", ""])
    return "\n".join(lines)


def interpreter_paths() -> list[str]:
    """The interpreter's prefixes and every import path (editable installs and .pth
    entries may point anywhere), outermost first, without paths inside another."""
    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    paths.update(os.path.realpath(p) for p in sys.path if p and os.path.isdir(p))
    out: list[str] = []
    for path in sorted(paths):
        if path != "/" and not any(path.startswith(o.rstrip("/") + "/") for o in out):
            out.append(path)
    return out


#: options naming a report file the run writes (pytest takes "--opt=V" and "--opt V")
REPORT_OPTIONS = ("--junitxml", "--junit-xml")


def report_files(args: list[str], cwd: str) -> list[str]:
    """The absolute paths of the report files ``args`` name (--junitxml)."""
    out = []
    for index, arg in enumerate(args):
        if arg == "--":
            break
        for option in REPORT_OPTIONS:
            if arg == option and index + 1 < len(args):
                out.append(args[index + 1])
            elif arg.startswith(option + "="):
                out.append(arg.partition("=")[2])
    return [os.path.abspath(os.path.join(cwd, p)) for p in out]


def sandbox_owns(path: str) -> None:
    """Create the directory ``path`` the run writes by convention (pytest's cache,
    .hypothesis) when missing, owned by the sandbox's user: the caller, or 65534 when
    the caller is root (host root is never mapped in). An existing path keeps its owner."""
    from isorun.pytest_plan import sandbox_ids

    try:
        os.mkdir(path, 0o755)
    except OSError:
        return  # it exists, or the parent is missing or read-only: pytest says what failed
    if os.geteuid() == 0:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchown(fd, *sandbox_ids())
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class ReportFile:
    """A report file the run writes (--junitxml), bound writable so it persists."""

    #: where the user wants it: the bind's destination
    path: str
    #: what is bound there: ``path`` itself, or, as root, a private file copied back
    src: str
    #: as root, the private 0700 directory holding ``src``, removed after the copy
    scratch: str = ""


def prepare_report(path: str) -> ReportFile | None:
    """Make ``path`` exist (empty, when missing) so it can be a mount point, and the file
    to bind there, or None when it is not a regular file reached without a link (then it
    is not bound, and pytest reports what it could not write).

    As root, the sandbox's uid 65534 may not write a root-owned file, and lending the
    file itself (a chown) would open it to every host process running as nobody for the
    run. So it gets a fresh file of its own in a 0700 directory only root can walk (the
    launcher clones bind sources it cannot reach), and :func:`collect_reports` copies it
    into ``path`` afterwards.
    """
    import stat
    import tempfile

    from isorun.pytest_plan import sandbox_ids

    parent = os.path.dirname(path)
    if os.path.realpath(parent) != parent:
        return None  # a link on the way: the file would be made elsewhere
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        return None
    if os.geteuid() != 0:
        return ReportFile(path, path)
    scratch = tempfile.mkdtemp(prefix="isorun-report-")
    src = os.path.join(scratch, "report")
    fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.fchown(fd, *sandbox_ids())
    finally:
        os.close(fd)
    return ReportFile(path, src, scratch)


def prepare_reports(paths: list[str]) -> list[ReportFile]:
    """The report files of ``paths`` that can be bound writable."""
    return [r for r in (prepare_report(p) for p in paths) if r is not None]


def collect_reports(reports: Sequence[ReportFile]) -> None:
    """As root, copy each private report into the file the user named (opened without
    following a link, truncated), then remove the private directory."""
    import shutil

    for report in reports:
        if not report.scratch:
            continue
        try:
            with (
                open(os.open(report.src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as src,
                open(os.open(report.path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_NONBLOCK), "wb") as dst,
            ):  # fmt: skip
                shutil.copyfileobj(src, dst)
        except OSError as err:
            sys.stderr.write(f"isorun: warning: could not copy the report to {report.path}: "
                             f"{err.strerror}\n")  # fmt: skip
        finally:
            shutil.rmtree(report.scratch, ignore_errors=True)


def hypothesis_environment(cwd: str) -> dict[str, str]:
    """Hypothesis's storage in the private /tmp, as pytest's cache, when the sandbox
    cannot write ``.hypothesis``: missing (the project is read-only; a whole session
    makes it first, :func:`sandbox_owns`, a marked test cannot), or, as root, the
    root-owned one a bare run left, read-only to uid 65534. Otherwise Hypothesis warns
    (an error under filterwarnings = error) and keeps no examples."""
    path = os.path.join(cwd, ".hypothesis")
    if os.path.isdir(path) and writable_by_sandbox(path):
        return {}
    return {"HYPOTHESIS_STORAGE_DIRECTORY": "/tmp/.hypothesis"}


def wants_coverage(args: Sequence[str]) -> bool:
    """Whether ``args`` start coverage.py through pytest-cov (``--cov``, ``--cov=SRC``)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--cov" or arg.startswith("--cov="):
            return True
    return False


@dataclass(frozen=True, slots=True)
class CoverageData:
    """Where coverage.py writes its data inside the sandbox, and where it goes after.

    Its data file is an SQLite database: SQLite writes a journal beside the file, so a
    bind of the file alone (or of a missing one) is not enough, and the project stays
    read-only. The run gets a private directory instead (``COVERAGE_FILE`` points in
    it), and :func:`collect_coverage` copies the data files into the caller's place.
    """

    #: the data file on the host: ``$COVERAGE_FILE``, else ``.coverage`` where pytest starts
    path: str
    #: the directory bound writable, owned by the sandbox's user
    inside: str
    #: the private 0700 directory holding ``inside``, removed after the copy
    scratch: str
    #: the project's root when ``path`` came from its coverage configuration: the copy
    #: then walks down from there without following links; "" for the caller's choice
    root: str = ""

    @property
    def data_file(self) -> str:
        return os.path.join(self.inside, os.path.basename(self.path))


def prepare_coverage(
    args: Sequence[str], cwd: str, env: Mapping[str, str], rootdir: str
) -> CoverageData | None:
    """The private data directory of a run with ``--cov``, or None without it.

    Raises pytest_coverage.CoverageConfigError when the project's coverage configuration
    names a data file isorun will not write (outside the project, through a link)."""
    if not wants_coverage(args):
        return None
    from isorun import pytest_coverage
    from isorun.pytest_plan import sandbox_ids

    path = pytest_coverage.data_file(args, cwd, rootdir, env)
    configured = not env.get("COVERAGE_FILE") and path != os.path.join(cwd, ".coverage")
    scratch = tempfile.mkdtemp(prefix="isorun-coverage-")
    inside = os.path.join(scratch, "data")
    os.mkdir(inside, 0o700)
    if os.geteuid() == 0:
        # The sandbox's uid 65534 writes it; the 0700 root-owned scratch keeps every
        # other host process out (the launcher clones bind sources it cannot reach).
        os.chown(inside, *sandbox_ids(), follow_symlinks=False)
    return CoverageData(path, inside, scratch, os.path.realpath(rootdir) if configured else "")


def collect_coverage(data: CoverageData | None) -> None:
    """Copy the run's data files (``.coverage``, and ``.coverage.*`` of parallel mode)
    beside the caller's data file, opened without following a link; then remove the
    private directory. Nothing is copied when the run wrote nothing."""
    import shutil

    if data is None:
        return
    from isorun.pytest_coverage import open_directory_below

    base = os.path.basename(data.path)
    directory = os.path.dirname(data.path)
    dir_fd = -1
    try:
        names = sorted(n for n in os.listdir(data.inside) if n == base or n.startswith(base + "."))
        if data.root:
            dir_fd = open_directory_below(data.root, directory)
        else:
            dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for name in names:
            if name.endswith("-journal"):
                continue
            src_fd = os.open(os.path.join(data.inside, name), os.O_RDONLY | os.O_NOFOLLOW
                             | os.O_NONBLOCK | os.O_CLOEXEC)  # fmt: skip
            with open(src_fd, "rb") as src:
                dst_fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                                 | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)  # fmt: skip
                with open(dst_fd, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except OSError as err:
        sys.stderr.write(f"isorun: warning: could not copy the coverage data to "
                         f"{data.path}: {err.strerror}\n")  # fmt: skip
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
        shutil.rmtree(data.scratch, ignore_errors=True)


def writable_by_sandbox(path: str) -> bool:
    """Whether the sandbox's user may write ``path`` (the caller, or 65534 as root)."""
    if os.geteuid() != 0:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == NOBODY or bool(st.st_mode & 0o002)


def _override_given(args: list[str], key: str) -> bool:
    """Whether the user's own command line sets ini ``key`` (-o key=..., --override-ini)."""
    for index, arg in enumerate(args):
        value = arg
        if arg in ("-o", "--override-ini") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--override-ini="):
            value = arg.partition("=")[2]
        elif arg.startswith("-o") and arg != "-o":
            value = arg[2:]
        if value.startswith(key + "="):
            return True
    return False


def project_loosenings(
    config: pytest.Config, profile: str, base: str, cache_dir: str
) -> list[pytest_trust.Loosening]:
    """Each setting that came from the project, not the user's command line, and loosens
    the sandbox (isorun.pytest_trust)."""
    user_args = list(config.invocation_params.args)
    user_args += os.environ.get("PYTEST_ADDOPTS", "").split()
    source = config.inipath.name if config.inipath else "the project's configuration"
    rootdir = str(config.rootpath)
    prefixes = {sys.prefix, sys.base_prefix}
    out: list[pytest_trust.Loosening] = []
    # The profile: the user's when their command line names it; else a bare --isorun
    # took the ini value, or the project's addopts asked for one.
    if requested_profile(list(user_args), "") in (None, "") and not _override_given(
        user_args, "isorun_profile"
    ):
        out += pytest_trust.profile_loosenings(base, rootdir, source)
        if out and base != profile:
            out = [replace_setting(x, profile) for x in out]
    if not _override_given(user_args, "isorun_writable"):
        for value in config.getini("isorun_writable"):
            found = pytest_trust.path_loosening(
                "isorun_writable", str(value), rootdir, source, prefixes
            )
            if found:
                out.append(found)
    if not _override_given(user_args, "cache_dir"):
        found = pytest_trust.path_loosening("cache_dir", cache_dir, rootdir, source, prefixes)
        if found:
            out.append(found)
    return out


def replace_setting(x: pytest_trust.Loosening, profile: str) -> pytest_trust.Loosening:
    """``x`` naming the profile as the project wrote it, not its absolute path."""
    from dataclasses import replace

    return replace(x, setting=f"isorun_profile = {profile}")


def _host_modules_warning(config: pytest.Config, args: list[str]) -> str:
    """The modules outside the standard library, pytest and isorun that ran on the host
    before the sandbox (installed pytest11 plugins, -p modules), or ""."""
    how: dict[str, str] = {}
    for plugin, dist in config.pluginmanager.list_plugin_distinfo():
        name = getattr(plugin, "__name__", "").partition(".")[0]
        if name:
            how[name] = f"pytest11 entry point of {dist.project_name}"
    for index, arg in enumerate(args):
        if arg == "-p" and index + 1 < len(args):
            how.setdefault(args[index + 1].partition(".")[0], "-p")
        elif arg.startswith("-p") and len(arg) > 2:
            how.setdefault(arg[2:].partition(".")[0], "-p")
    found = pytest_inner.host_modules(list(sys.modules), how)
    if not found:
        return ""
    return (
        "isorun: warning: pytest --isorun starts the sandbox after pytest has loaded its "
        f"plugins; these {len(found)} module(s) already ran on the host, unconfined:\n"
        + "".join(f"  {line}\n" for line in found)
        + "  hint: run `isorun pytest ARGS` instead: pytest, its plugins and conftest.py "
        "files then start inside the sandbox\n"
    )


def reexec(config: pytest.Config, profile: str, args: list[str]) -> int:
    """Run this session again inside the sandbox; ``args``: pytest's, addopts included."""
    rootdir = str(config.rootpath)
    caching = config.pluginmanager.has_plugin("cacheprovider")
    cache_ini = str(config.getini("cache_dir")) if caching else ".pytest_cache"
    cache_dir = str(config.rootpath / cache_ini)
    # Where each leads: a link in the project would be a mount point the launcher refuses.
    writable = [
        os.path.realpath(os.path.join(rootdir, p)) for p in config.getini("isorun_writable")
    ]
    base = profile
    if profile.endswith(".toml") or os.sep in profile:
        base = os.path.abspath(profile)
    warning = _host_modules_warning(config, args)
    if warning:
        sys.stderr.write(warning)
    from isorun.errors import IsorunError

    cwd = str(config.invocation_params.dir)
    user_args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    chosen = set(report_files(user_args, cwd))
    try:
        pytest_trust.check_profile_file("--isorun", profile, base)
        loosenings = project_loosenings(config, profile, base, cache_ini)
        for path in report_files(args, cwd):
            if path not in chosen:  # the project's addopts named it
                found = pytest_trust.path_loosening(
                    "--junitxml", path, rootdir, "addopts", {sys.prefix, sys.base_prefix}
                )
                if found:
                    loosenings.append(found)
        header = pytest_trust.enforce(
            loosenings, pytest_trust.trusted(config.invocation_params.args, os.environ)
        )
    except IsorunError as err:
        sys.stderr.write(err.render() + "\n")
        return err.exit_code
    for line in header:
        sys.stdout.write(line + "\n")
    argv = [sys.executable, "-m", "pytest", *strip_isorun(config.invocation_params.args)]
    if caching:
        sandbox_owns(cache_dir)
    if caching and not writable_by_sandbox(cache_dir):
        # Running as root: the sandbox is uid 65534 and host root is never mapped in, so
        # a root-owned .pytest_cache is read-only to it. A private cache keeps pytest
        # quiet; --lf/--ff then see only this run (docs/testing.md, "Running as root").
        argv[3:3] = ["-o", "cache_dir=/tmp/.pytest_cache"]
    if "hypothesis" in sys.modules or "_hypothesis_pytestplugin" in sys.modules:
        # Hypothesis writes its example database in the working directory.
        sandbox_owns(os.path.join(cwd, ".hypothesis"))
    try:
        coverage = prepare_coverage(args, cwd, os.environ, rootdir)
    except IsorunError as err:
        sys.stderr.write(err.render() + "\n")
        return err.exit_code
    reports = prepare_reports(report_files(args, cwd))
    # PYTEST_ADDOPTS reaches the inner run through the profile's keep list; a --isorun
    # in it must not make the inner pytest read the next argument as a profile name.
    addopts = os.environ.get("PYTEST_ADDOPTS")
    if addopts and "--isorun" in addopts:
        os.environ["PYTEST_ADDOPTS"] = " ".join(strip_isorun(addopts.split()))
    text = session_profile_text(
        base, rootdir, cache_dir, writable, reports=reports, coverage=coverage,
        environment=hypothesis_environment(cwd),
    )  # fmt: skip
    # chdir: ${CWD} in the profile is where pytest was invoked.
    os.chdir(config.invocation_params.dir)
    return launch_session(argv, text, reports, coverage)


def launch_session(
    argv: list[str],
    text: str,
    reports: Sequence[ReportFile] = (),
    coverage: CoverageData | None = None,
) -> int:
    """Launch ``argv`` under the session profile ``text``, handing over the proof;
    ``reports`` and ``coverage``: the run's output files, collected after it."""
    try:
        return _launch_session(argv, text)
    finally:
        collect_reports(reports)
        collect_coverage(coverage)


def _launch_session(argv: list[str], text: str) -> int:
    from isorun.errors import UsageError

    try:
        pytest_inner.hand_over_namespace()
    except OSError as err:
        sys.stderr.write(
            UsageError(f"cannot hand the sandbox its proof: {err.strerror}").render()
            + f"\n  hint: close descriptor {pytest_inner.NS_FD} before starting pytest\n"
        )
        return UsageError.exit_code
    try:
        path = stable_profile(text)
        if path is not None:
            return _launch(argv, path)
        with tempfile.TemporaryDirectory(prefix="isorun-pytest-") as scratch:
            path = os.path.join(scratch, "session.toml")
            with open(path, "w") as f:
                f.write(text)
            return _launch(argv, path)
    finally:
        os.close(pytest_inner.NS_FD)


def _launch(argv: list[str], profile: str) -> int:
    from isorun import api
    from isorun.errors import IsorunError

    try:
        return api.launch(argv, profile=profile)
    except IsorunError as err:
        # Fail closed: a session asked to run sandboxed never runs without one.
        sys.stderr.write(err.render() + "\n")
        return err.exit_code


def stable_profile(text: str) -> str | None:
    """The session profile at a path that stays the same between runs, or None.

    The plan cache is keyed by the profile's path: a fresh temporary file each session
    missed it every time and recompiled (about 200 ms of the one-time cost). The file is
    named by the hash of its text, in a ``pytest`` directory of the isorun cache that only
    this user can write (made 0700, checked like the cache's own); an existing file is
    used only if it is ours, not writable by others, and holds exactly ``text``. Any
    doubt: None, and the caller writes a temporary file as before. ``ISORUN_CACHE=0``
    (no disk cache) writes nothing there either.
    """
    import hashlib
    import stat

    from isorun.cache import files as cache_files

    if os.environ.get("ISORUN_CACHE", "1") == "0":
        return None
    directory = os.path.join(cache_files.cache_dir(), "pytest")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        data = text.encode()
        path = os.path.join(directory, f"session-{hashlib.sha256(data).hexdigest()[:32]}.toml")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        else:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid == os.geteuid() and not st.st_mode & 0o022 and f.read() == data:
                    return path
        # Write beside, then rename: a concurrent session never reads half a profile.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".session-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path
    except OSError:
        return None
