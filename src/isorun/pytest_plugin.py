"""pytest plugin shipped with isorun (entry point ``pytest11``).

``pytest --isorun`` (or ``--isorun=PROFILE``) re-executes the whole session inside a
sandbox before any conftest is imported, so a dependency that opens a socket at import
time is already inside. The sandbox inherits the terminal (colours, width, -x, -k, xdist
workers and the exit code are the inner pytest's own).

``@pytest.mark.isorun(network="none", writable=[...], profile="test")`` runs one test's
body in a forked child that enters a sandbox first (see :mod:`isorun.pytest_sandbox`);
its result comes back to this process, and a failure caused by the sandbox names the
rule that refused it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

#: set inside a session sandbox, so the inner pytest and its xdist workers do not
#: re-execute again (a nested user namespace is refused by the seccomp hardening anyway)
INNER = "ISORUN_PYTEST_INNER"
#: the sandbox's uid on the host when the caller is root (planner.NOBODY)
NOBODY = 65534
DEFAULT_PROFILE = "test"
#: the session's pytest_sandbox.Exiting: marked tests' children that reported and are
#: still exiting (typed Any: pytest_sandbox is imported only once a marked test runs)
EXITING = pytest.StashKey[Any]()
#: the environment when the session started: a marked test's body sees the profile's
#: environment plus what its fixtures changed since (monkeypatch.setenv)
SESSION_ENV = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("isorun", "kernel-enforced sandbox (isorun)")
    # nargs="?" lets "--isorun=strict" name a profile; a bare "--isorun" is rewritten to
    # "--isorun=<ini default>" in pytest_load_initial_conftests, so it never swallows the
    # next argument (a test path) as a profile name.
    group.addoption(
        "--isorun",
        nargs="?",
        const=DEFAULT_PROFILE,
        default=None,
        metavar="PROFILE",
        dest="isorun",
        help="re-run this session inside an isorun sandbox (default profile: "
        "the isorun_profile ini value, else 'test')",
    )
    group.addoption(
        "--isorun-allow-weaker",
        action="store_true",
        default=False,
        dest="isorun_allow_weaker",
        help="where no user namespace can be made, run @pytest.mark.isorun tests in "
        "landlock mode (no namespaces) without the rules it lists, instead of failing",
    )
    parser.addini("isorun_profile", "profile of --isorun without a value", default="")
    parser.addini(
        "isorun_writable",
        "paths (relative to rootdir) the --isorun session may write besides the profile's",
        type="linelist",
        default=[],
    )


def _requested_profile(args: list[str], default: str) -> str | None:
    """The profile --isorun asks for, normalising a bare --isorun in ``args`` in place."""
    profile = None
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--isorun":
            args[index] = f"--isorun={default}"
            profile = default
        elif arg.startswith("--isorun="):
            profile = arg.partition("=")[2] or default
    return profile


def _strip_isorun(args: tuple[str, ...] | list[str]) -> list[str]:
    return [a for a in args if a != "--isorun" and not a.startswith("--isorun=")]


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    default = str(early_config.getini("isorun_profile") or DEFAULT_PROFILE)
    profile = _requested_profile(args, default)
    if profile is None or os.environ.get(INNER):
        return
    # Here, before conftest.py files are imported: everything the project runs, its
    # conftests and the dependencies they import, runs inside the sandbox.
    code = _reexec(early_config, profile)
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(code)


def session_profile_text(base: str, rootdir: str, cache_dir: str, writable: list[str]) -> str:
    """The TOML of the session profile: ``base`` plus what this pytest run needs."""
    lines = [f"extends = [{json.dumps(base)}]", ""]

    def mount(kind: str, path: str, optional: bool) -> None:
        lines.extend(["[[mounts]]", f'type = "{kind}"', f"dst = {json.dumps(path)}"])
        if optional:
            lines.append("optional = true")
        lines.append("")

    # The rootdir (its pyproject/conftest) may lie above the working directory that the
    # profile binds; the interpreter must be visible whatever profile was chosen.
    mount("ro-bind", rootdir, False)
    for path in interpreter_paths():
        mount("ro-bind", path, False)
    mount("rw-bind", cache_dir, True)
    for path in writable:
        mount("rw-bind", path, True)
    lines.extend(["[environment]", f"set = {{ {INNER} = {json.dumps(base)} }}", ""])
    return "\n".join(lines)


def _where(item: pytest.Item) -> str:
    path, line, _ = item.location
    return f"{path}:{(line or 0) + 1}"


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


def _writable_by_sandbox(path: str) -> bool:
    """Whether the sandbox's user may write ``path`` (the caller, or 65534 as root)."""
    if os.geteuid() != 0:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == NOBODY or bool(st.st_mode & 0o002)


def _reexec(config: pytest.Config, profile: str) -> int:
    rootdir = str(config.rootpath)
    caching = config.pluginmanager.has_plugin("cacheprovider")
    cache_dir = str(
        config.rootpath / (str(config.getini("cache_dir")) if caching else ".pytest_cache")
    )
    writable = [os.path.join(rootdir, p) for p in config.getini("isorun_writable")]
    base = profile
    if profile.endswith(".toml") or os.sep in profile:
        base = os.path.abspath(profile)
    argv = [sys.executable, "-m", "pytest", *_strip_isorun(config.invocation_params.args)]
    if caching and not _writable_by_sandbox(cache_dir):
        # Running as root: the sandbox is uid 65534 and host root is never mapped in, so
        # a root-owned .pytest_cache is read-only to it. A private cache keeps pytest
        # quiet; --lf/--ff then see only this run (docs/testing.md, "Running as root").
        argv[3:3] = ["-o", "cache_dir=/tmp/.pytest_cache"]
    # PYTEST_ADDOPTS reaches the inner run through the profile's keep list; a --isorun
    # in it must not make the inner pytest read the next argument as a profile name.
    addopts = os.environ.get("PYTEST_ADDOPTS")
    if addopts and "--isorun" in addopts:
        os.environ["PYTEST_ADDOPTS"] = " ".join(_strip_isorun(addopts.split()))
    text = session_profile_text(base, rootdir, cache_dir, writable)
    # chdir: ${CWD} in the profile is where pytest was invoked.
    os.chdir(config.invocation_params.dir)
    path = stable_profile(text)
    if path is not None:
        return _launch(argv, path)
    with tempfile.TemporaryDirectory(prefix="isorun-pytest-") as scratch:
        path = os.path.join(scratch, "session.toml")
        with open(path, "w") as f:
            f.write(text)
        return _launch(argv, path)


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

    from isorun import cache

    if os.environ.get("ISORUN_CACHE", "1") == "0":
        return None
    directory = os.path.join(cache.cache_dir(), "pytest")
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Inside a --isorun session, name the rule behind a failure the sandbox caused."""
    report = yield
    profile = os.environ.get(INNER)
    if profile and report.failed and call.excinfo is not None:
        from isorun import pytest_rules, pytest_sandbox

        policy = pytest_sandbox.Policy(
            profile=profile, network=pytest_rules.network_mode(), writable=(), where=_where(item)
        )
        rule = pytest_rules.explain(call.excinfo.value, policy)
        if rule:
            report.sections.append(("isorun", rule.replace("marker at", "test at")))
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SESSION_ENV] = dict(os.environ)
    config.addinivalue_line(
        "markers",
        "isorun(network='none', writable=[], profile='test'): run this test's "
        "body in a forked child inside its own sandbox",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """With -v: how marked tests get their process (what `make bench` measures)."""
    if config.option.verbose < 1 or os.environ.get(INNER):
        return []
    from isorun import pytest_sandbox

    why_not = pytest_sandbox.one_fork_unusable()
    if why_not is None:
        return ["isorun: a marked test forks once (clone3 into its namespaces)"]
    return [f"isorun: a marked test forks twice (os.fork; clone3 unusable: {why_not})"]


def pytest_unconfigure(config: pytest.Config) -> None:
    exiting = config.stash.get(EXITING, None)
    if exiting is not None:
        exiting.reap(block=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("isorun")
    if marker is None or not isinstance(item, pytest.Function):
        return
    if marker.args:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.isorun takes keywords only: network=, writable=, profile="
        )
    unknown = set(marker.kwargs) - {"network", "writable", "profile"}
    if unknown:
        raise pytest.UsageError(
            f"{item.nodeid}: unknown @pytest.mark.isorun keyword(s) "
            f"{sorted(unknown)}; known: network, writable, profile"
        )
    original: Callable[[], Any] = item.runtest
    # Replacing the instance's runtest keeps setup and teardown (fixtures) in this
    # process; only the call phase runs in the sandboxed child.
    item.runtest = functools.partial(_run_sandboxed, item, original, marker)  # type: ignore[method-assign]


def _run_sandboxed(item: pytest.Function, original: Callable[[], Any], marker: pytest.Mark) -> None:
    from isorun import pytest_sandbox
    from isorun.errors import IsorunError

    where = _where(item)
    if os.environ.get(INNER):
        # Fail closed: the session's seccomp hardening refuses the user namespace a
        # per-test sandbox needs, and the session's profile may be looser than the marker.
        pytest.fail(
            f"isorun: @pytest.mark.isorun ({where}) cannot run inside pytest --isorun: "
            "the session's sandbox refuses nested namespaces\n"
            "  hint: run the marked tests without --isorun, or deselect them "
            "(-m 'not isorun') in the sandboxed session",
            pytrace=False,
        )
    network = marker.kwargs.get("network")
    writable = [str(p) for p in marker.kwargs.get("writable", ())]
    for name in ("tmp_path", "tmpdir"):
        if name in item.funcargs:
            writable.append(str(item.funcargs[name]))
    policy = pytest_sandbox.Policy(
        profile=str(marker.kwargs.get("profile", DEFAULT_PROFILE)),
        network=None if network is None else str(network),
        writable=tuple(os.path.abspath(p) for p in writable),
        where=where,
        cwd=str(item.config.invocation_params.dir),
        allow_weaker=bool(item.config.getoption("isorun_allow_weaker", False)),
    )
    exiting = item.config.stash.setdefault(EXITING, pytest_sandbox.Exiting())
    try:
        result = pytest_sandbox.run_in_child(
            policy,
            lambda resolved: _child_body(item, original, resolved),
            exiting,
            item.config.stash.get(SESSION_ENV, None),
        )
    except IsorunError as err:
        # A profile that does not compile, a shim of another ABI: this test's error, in
        # the compiler format, instead of a traceback through the plugin.
        pytest.fail(f"isorun: marker at {where}:\n{err.render()}", pytrace=False)
    if result.outcome == "passed":
        return
    if result.outcome == "skipped":
        pytest.skip(result.text)
    pytest.fail(result.text, pytrace=False)


def _child_body(item: pytest.Function, original: Callable[[], Any], policy: Any) -> tuple[str, str]:
    """Runs in the sandboxed child: (outcome, report text)."""
    excinfo: pytest.ExceptionInfo[BaseException] | None = None
    try:
        original()
        return "passed", ""
    except pytest.skip.Exception as err:
        return "skipped", str(err.msg)
    except BaseException:
        excinfo = pytest.ExceptionInfo.from_current()
    from isorun import pytest_rules

    text = str(item.repr_failure(excinfo))
    rule = pytest_rules.explain(excinfo.value, policy)
    # The rule first: it is what the short summary line shows.
    return "failed", (f"{rule}\n\n{text}\n\n{rule}" if rule else text)
