"""The landlock backend attacked from inside, as root's and an unprivileged caller's
sandbox (cases in attack_cases.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.escape.conftest import case_runner, missing

CASES_FILE = Path(__file__).resolve().parent / "attack_cases.py"

Runner = Callable[[str], None]


@pytest.fixture
def run_attack(mode: str) -> Runner:
    from isorun.host.facts import probe

    abi = probe().landlock
    if abi < 6:
        missing(f"Landlock ABI 6 (this kernel has {abi})")
    runner: Runner = case_runner(mode, CASES_FILE)
    return runner


def test_landlock_mode_refuses_a_host_pathname_unix_socket(run_attack: Runner) -> None:
    """network = none: a host listener by path (a D-Bus bus, an ssh-agent) is
    unreachable; Landlock does not govern connect(2) by path."""
    run_attack("landlock_mode_pathname_unix_socket")


def test_landlock_mode_web_lists_pathname_sockets_as_lost(run_attack: Runner) -> None:
    run_attack("landlock_mode_web_names_pathname_sockets")


def test_landlock_mode_names_the_git_guard_it_cannot_keep(run_attack: Runner) -> None:
    """A read-only bind inside a writable one (build's .git guard) is listed as lost."""
    run_attack("landlock_mode_git_guard")


def test_landlock_mode_refuses_a_planted_link_in_a_grant_path(run_attack: Runner) -> None:
    """node_modules -> elsewhere under test's node_modules/.cache grant: refused (ELOOP),
    the link's target untouched; issue #12's class on Landlock grants."""
    run_attack("landlock_mode_planted_intermediate_link")


def test_landlock_mode_names_chmod_outside_the_grants(run_attack: Runner) -> None:
    """chmod of the uid's own file outside every grant works (Landlock has no metadata
    right): the list of losses says so."""
    run_attack("landlock_mode_names_metadata_changes")


def test_landlock_mode_cannot_prlimit_a_host_process(run_attack: Runner) -> None:
    """prlimit(2) of a host process of the same uid (no pid namespace, not scoped by
    Landlock): refused by seccomp; setrlimit on itself still works."""
    run_attack("landlock_mode_cannot_prlimit_a_host_process")
