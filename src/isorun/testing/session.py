"""``pytest --isorun`` and ``isorun pytest``: the session profile, and launching a whole
pytest run inside it.

What the project's configuration may choose is isorun.testing.trust; the proof that the
inner session is inside is isorun.testing.child; the front door is isorun.cli.pytest.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from isorun.kernel.abi import NOBODY
from isorun.testing import child as pytest_inner
from isorun.testing import trust as pytest_trust
from isorun.testing.child import strip_isorun
from isorun.testing.profiles import project_loosenings, session_profile_text, stable_profile
from isorun.testing.reports import ReportFile, collect_reports, prepare_reports, report_files


def sandbox_owns(path: str) -> None:
    """Create the directory ``path`` the run writes by convention (pytest's cache,
    .hypothesis) when missing, owned by the sandbox's user: the caller, or 65534 when
    the caller is root (host root is never mapped in). An existing path keeps its owner."""
    from isorun.testing.plan import sandbox_ids

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
    from isorun.testing import coverage as pytest_coverage
    from isorun.testing.plan import sandbox_ids

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
    from isorun.testing.coverage import open_directory_below

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
    from isorun.errors import IsorunError

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
    cwd = str(config.invocation_params.dir)
    try:
        header = _judge_session(config, profile, base, cache_ini, args)
    except IsorunError as err:
        sys.stderr.write(err.render() + "\n")
        return err.exit_code
    for line in header:
        sys.stdout.write(line + "\n")
    argv = _inner_argv(config, cache_dir if caching else None)
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


def _judge_session(
    config: pytest.Config, profile: str, base: str, cache_ini: str, args: list[str]
) -> list[str]:
    """Judge the profile file and every way the project loosens the sandbox
    (isorun.testing.trust); returns the header to print, or raises the refusal."""
    rootdir = str(config.rootpath)
    cwd = str(config.invocation_params.dir)
    user_args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    chosen = set(report_files(user_args, cwd))
    pytest_trust.check_profile_file("--isorun", profile, base)
    loosenings = project_loosenings(config, profile, base, cache_ini)
    for path in report_files(args, cwd):
        if path not in chosen:  # the project's addopts named it
            found = pytest_trust.path_loosening(
                "--junitxml", path, rootdir, "addopts", {sys.prefix, sys.base_prefix}
            )
            if found:
                loosenings.append(found)
    return pytest_trust.enforce(
        loosenings, pytest_trust.trusted(config.invocation_params.args, os.environ)
    )


def _inner_argv(config: pytest.Config, cache_dir: str | None) -> list[str]:
    """The inner pytest's command line; ``cache_dir`` (None: no cacheprovider) is made
    the sandbox's, or replaced by a private one where the sandbox cannot write it."""
    argv = [sys.executable, "-m", "pytest", *strip_isorun(config.invocation_params.args)]
    if cache_dir is not None:
        sandbox_owns(cache_dir)
        if not writable_by_sandbox(cache_dir):
            # Running as root: the sandbox is uid 65534 and host root is never mapped in,
            # so a root-owned .pytest_cache is read-only to it. A private cache keeps
            # pytest quiet; --lf/--ff then see only this run (docs/testing.md, "Running
            # as root").
            argv[3:3] = ["-o", "cache_dir=/tmp/.pytest_cache"]
    return argv


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
    from isorun.attached import launch
    from isorun.errors import IsorunError

    try:
        return launch(argv, profile=profile)
    except IsorunError as err:
        # Fail closed: a session asked to run sandboxed never runs without one.
        sys.stderr.write(err.render() + "\n")
        return err.exit_code

