"""The Landlock layer on the native backend and the landlock backend, on the real kernel,
as root and as an unprivileged user (cases in landlock_cases.py)."""

from __future__ import annotations

from collections.abc import Callable

Runner = Callable[[str], None]


def test_landlock_refuses_a_write_the_broken_mount_tree_allows(run_landlock_case: Runner
                                                               ) -> None:
    run_landlock_case("tamper_ro_bind_is_still_refused")


def test_web_cannot_reach_a_host_abstract_socket_cve_2020_15257(run_landlock_case: Runner
                                                                 ) -> None:
    run_landlock_case("web_cannot_reach_host_abstract_socket")


def test_landlock_backend_blocks_each_escape_it_claims(run_landlock_case: Runner) -> None:
    run_landlock_case("landlock_backend_escapes_are_blocked")


def test_nested_isorun_refuses_under_auto_and_runs_weaker_in_landlock_mode(
        run_landlock_case: Runner) -> None:
    run_landlock_case("nested_sandbox_falls_back_to_landlock")


def test_marker_without_user_namespaces_refuses_or_runs_in_landlock_mode(
        run_landlock_case: Runner) -> None:
    run_landlock_case("marker_runs_in_landlock_mode_without_user_namespaces")
