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
                                  "limits_named", "vanished_bind_source_hinted"])
def test_refusal_report(run_refusal_case: Callable[[str], None], case: str) -> None:
    run_refusal_case(case)


def test_landlock_backend_reports(run_refusal_case: Callable[[str], None]) -> None:
    from isorun.host.facts import probe

    if probe().landlock < 1:
        from tests.integration.conftest import missing

        missing("Landlock")
    run_refusal_case("landlock_backend_reports")
