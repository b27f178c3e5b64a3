"""pytest plugin shipped with isorun (entry point ``pytest11``).

``pytest --isorun`` (or ``--isorun=PROFILE``) re-executes the whole session inside a
sandbox before any conftest is imported, so a dependency that opens a socket at import
time is already inside. The sandbox inherits the terminal (colours, width, -x, -k, xdist
workers and the exit code are the inner pytest's own); how is isorun.testing.session.

``@pytest.mark.isorun(network="none", writable=[...], profile="test")`` runs one test's
body in a forked child that enters a sandbox first (see :mod:`isorun.testing.sandbox`);
its result comes back to this process, and a failure caused by the sandbox names the
rule that refused it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest

from isorun.testing import child as pytest_inner

#: set inside a session sandbox, so the inner pytest and its xdist workers do not
#: re-execute again (a nested user namespace is refused by the seccomp hardening anyway).
#: Never trusted alone where it would skip the sandbox: see isorun.testing.child.
INNER = pytest_inner.INNER
DEFAULT_PROFILE = "test"
#: the session's testing.outcome.Exiting: marked tests' children that reported and are
#: still exiting (typed Any: testing.outcome is imported only once a marked test runs)
EXITING = pytest.StashKey[Any]()
#: the environment when the session started: a marked test's body sees the profile's
#: environment plus what its fixtures changed since (monkeypatch.setenv)
SESSION_ENV = pytest.StashKey[dict[str, str]]()
#: the session's testing.fork.Forking: one clone3 per marked test, or two forks once
#: clone3 failed (typed Any, as EXITING)
FORKING = pytest.StashKey[Any]()


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
    group.addoption(
        pytest_inner.TRUST_FLAG,
        action="store_true",
        default=False,
        dest="isorun_trust_project",
        help="let the project's configuration loosen the sandbox (isorun_profile file, "
        "isorun_writable or cache_dir outside the project); honoured on the command line only",
    )


# A wrapper, and the innermost one (trylast): it runs after pytest's own wrappers (capture,
# warnings) but before every plain implementation of the hook, tryfirst ones included. A
# plugin's start there, such as pytest-cov erasing the host's .coverage and starting to
# measure, must not happen on the host before the re-exec (issue 16).
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None]:
    _reexec_if_asked(early_config, args)
    return (yield)


def _reexec_if_asked(early_config: pytest.Config, args: list[str]) -> None:
    default = str(early_config.getini("isorun_profile") or DEFAULT_PROFILE)
    profile = pytest_inner.requested_profile(args, default)
    if os.environ.get(INNER) is not None:
        why_not = pytest_inner.why_not_inside()
        pytest_inner.release_namespace()
        if profile is None:
            return
        if why_not is None:
            return  # the launcher's sandbox, proven: this is the inner session
        # Fail closed: a variable set by tox, direnv or pytest-env must not turn
        # "pytest --isorun" into an unconfined run.
        sys.stderr.write(pytest_inner.refusal(why_not) + "\n")
        raise SystemExit(2)
    if profile is None:
        return
    # Here, before conftest.py files are imported: everything the project runs, its
    # conftests and the dependencies they import, runs inside the sandbox. Imported only
    # now: a pytest run without --isorun never needs the session module.
    from isorun.testing import session as pytest_session

    code = pytest_session.reexec(early_config, profile, args)
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(code)


def _where(item: pytest.Item) -> str:
    path, line, _ = item.location
    return f"{path}:{(line or 0) + 1}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Inside a --isorun session, name the rule behind a failure the sandbox caused."""
    report = yield
    profile = os.environ.get(INNER)
    if profile and report.failed and call.excinfo is not None:
        from isorun.testing import rules as pytest_rules
        from isorun.testing import sandbox as pytest_sandbox

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
    from isorun.testing.fork import Forking

    why_not = config.stash.setdefault(FORKING, Forking()).one_fork_unusable()
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
    from isorun.errors import IsorunError
    from isorun.testing import sandbox as pytest_sandbox
    from isorun.testing.fork import Forking
    from isorun.testing.outcome import Exiting

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
    scratch = [str(item.funcargs[n]) for n in ("tmp_path", "tmpdir") if n in item.funcargs]
    policy = pytest_sandbox.Policy(
        profile=str(marker.kwargs.get("profile", DEFAULT_PROFILE)),
        network=None if network is None else str(network),
        writable=tuple(os.path.abspath(p) for p in writable + scratch),
        where=where,
        cwd=str(item.config.invocation_params.dir),
        allow_weaker=bool(item.config.getoption("isorun_allow_weaker", False)),
        scratch=tuple(os.path.abspath(p) for p in scratch),
    )
    exiting = item.config.stash.setdefault(EXITING, Exiting())
    try:
        result = pytest_sandbox.run_in_child(
            policy,
            lambda resolved: _child_body(item, original, resolved),
            exiting,
            item.config.stash.get(SESSION_ENV, None),
            item.config.stash.setdefault(FORKING, Forking()),
        )
    except IsorunError as err:
        # A profile that does not compile, a shim of another ABI: this test's error, in
        # the compiler format, instead of a traceback through the plugin.
        pytest.fail(f"isorun: marker at {where}:\n{err.render()}", pytrace=False)
    if result.outcome == "passed":
        return
    if result.outcome == "skipped":
        pytest.skip(result.text)
    if result.outcome == "xfailed":
        pytest.xfail(result.text)
    xfail = item.get_closest_marker("xfail")
    if result.exc_type and xfail is not None and xfail.kwargs.get("raises") is not None:
        # xfail(raises=X) judges the exception's class: one of the child's class when it
        # is an X (its traceback stays in the child; an xfail report does not show it),
        # else the child's report as any failure.
        rebuilt = _rebuilt(result.exc_type, result.text)
        if isinstance(rebuilt, xfail.kwargs["raises"]):
            raise rebuilt
    pytest.fail(result.text, pytrace=False)


def _rebuilt(exc_type: str, text: str) -> BaseException:
    """An exception of the class named ``module:qualname`` carrying ``text``, made
    without calling its __init__ (whose signature is the test's business); a Failed
    with the text when the class cannot be found here."""
    import importlib

    module_name, _, qualname = exc_type.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        found = None
    if isinstance(found, type) and issubclass(found, BaseException):
        try:
            err = found.__new__(found)
            err.args = (text,)
            return err
        except TypeError:
            pass
    return pytest.fail.Exception(text, pytrace=False)


def _child_body(
    item: pytest.Function, original: Callable[[], Any], policy: Any
) -> tuple[str, str, str]:
    """Runs in the sandboxed child: (outcome, report text, the failure's class)."""
    import unittest

    try:
        original()
        # A unittest.TestCase method does not raise: pytest's result object keeps its
        # failure, skip or expected failure on the item (``_excinfo``), and pytest's own
        # makereport, in the parent, would never see the child's list: a failing
        # TestCase method came back as passed.
        pending = getattr(item, "_excinfo", None)
        if not pending:
            return "passed", "", ""
        excinfo = pending.pop(0)
    except BaseException:
        excinfo = pytest.ExceptionInfo.from_current()
    value = excinfo.value
    if isinstance(value, pytest.skip.Exception):
        return "skipped", str(value.msg), ""
    if isinstance(value, unittest.SkipTest):
        return "skipped", str(value), ""
    if isinstance(value, pytest.xfail.Exception):
        return "xfailed", str(value.msg), ""
    from isorun.testing import rules as pytest_rules

    text = str(item.repr_failure(excinfo))
    rule = pytest_rules.explain(excinfo.value, policy)
    cls = type(excinfo.value)
    # The rule first, else the exception: the first line is what the short summary
    # shows (not the first line of the test's source).
    first = rule or excinfo.exconly().partition("\n")[0]
    return (
        "failed",
        f"{first}\n\n{text}" + (f"\n\n{rule}" if rule else ""),
        f"{cls.__module__}:{cls.__qualname__}",
    )
