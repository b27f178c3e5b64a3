"""The CLI names the rule behind a refusal when the command fails (issue #17, item 5):
seccomp refusals counted with their rule and profile line, the mount and network rules
behind EROFS and ENETUNREACH, the limits; ``--quiet`` turns it off. Each case runs as
root and as an unprivileged user (setpriv), through every CLI launch path
(refusal_cases.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.integration.conftest import HERE, case_runner

pytestmark = pytest.mark.needs("userns", "shim")


@pytest.fixture
def run_refusal_case(mode: str) -> Callable[[str], None]:
    return case_runner(mode, HERE / "refusal_cases.py")


@pytest.mark.parametrize("case", ["seccomp_named_and_counted", "read_only_mount_named",
                                  "network_named", "success_says_nothing", "flood_is_bounded",
                                  "kill_stays_kill", "outer_listener_leaves_no_report",
                                  "limits_named", "vanished_bind_source_hinted",
                                  "clone_seccomp_named_and_counted", "clone_kill_stays_kill",
                                  "clone_outer_listener_leaves_no_report"])
def test_refusal_report(run_refusal_case: Callable[[str], None], case: str) -> None:
    run_refusal_case(case)


def test_landlock_backend_reports(run_refusal_case: Callable[[str], None]) -> None:
    from isorun.host.facts import probe

    if probe().landlock < 1:
        from tests.integration.conftest import missing

        missing("Landlock")
    run_refusal_case("landlock_backend_reports")


@pytest.fixture(params=["root", "uid1000"])
def run_wrapper_case(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """As root (bwrap) or as uid 1000 (bwrap and firejail: firejail refuses root's
    sandbox, which runs as nobody, and nobody as its caller)."""
    from tests.integration.conftest import root_or_uid1000_runner

    return root_or_uid1000_runner(request.param, HERE / "refusal_cases.py")


@pytest.mark.needs("bwrap", "gcc")
@pytest.mark.parametrize("case", ["wrapper_seccomp_named_and_counted",
                                  "wrapper_flood_is_bounded", "wrapper_kill_stays_kill",
                                  "wrapper_refused_hand_over_leaves_no_report",
                                  "wrapper_outer_listener_leaves_no_report",
                                  "command_holds_no_report_descriptor"])
def test_wrapper_refusal_report(run_wrapper_case: Callable[[str], None], case: str) -> None:
    """The wrappers' exec stage hands the listener over: bwrap as root and uid 1000,
    firejail as uid 1000 (refusal_cases.WRAPPERS)."""
    run_wrapper_case(case)


@pytest.mark.needs("root")  # pids needs a writable cgroup (v1 here: root)
def test_cgroup_profile_reports() -> None:
    case_runner("root", HERE / "refusal_cases.py")("cgroup_seccomp_named")
