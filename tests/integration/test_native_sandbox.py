"""Real sandboxes built from ShimSpecs, each check run as root and unprivileged."""

from __future__ import annotations

from collections.abc import Callable

Runner = Callable[[str], None]


def test_every_namespace_is_new(run_case: Runner) -> None:
    run_case("namespaces")


def test_hostname_is_set(run_case: Runner) -> None:
    run_case("hostname")


def test_only_mounted_paths_visible_and_ro_binds_refuse_writes(run_case: Runner) -> None:
    run_case("file_view")


def test_proc_sys_is_read_only(run_case: Runner) -> None:
    run_case("proc_sys_readonly")


def test_all_capabilities_dropped_and_no_new_privs(run_case: Runner) -> None:
    run_case("caps_and_nnp")


def test_descriptors_above_2_closed_except_kept(run_case: Runner) -> None:
    run_case("fds_closed")


def test_environment_is_exactly_the_spec(run_case: Runner) -> None:
    run_case("env_exact")


def test_pid_namespace_shows_only_the_sandbox(run_case: Runner) -> None:
    run_case("pid_namespace")


def test_init_forwards_signals(run_case: Runner) -> None:
    run_case("signal_forwarding")


def test_exit_codes_follow_the_shell(run_case: Runner) -> None:
    run_case("exit_codes")


def test_wall_time_kills_the_sandbox_with_124(run_case: Runner) -> None:
    run_case("wall_time")


def test_rlimits_hold(run_case: Runner) -> None:
    run_case("rlimits")


def test_pids_limit_stops_a_fork_bomb(run_case: Runner) -> None:
    run_case("pids_limit")


def test_memory_limit_stops_a_big_allocation(run_case: Runner) -> None:
    run_case("memory_limit")


def test_missing_bind_source_raises_and_leaves_nothing(run_case: Runner) -> None:
    run_case("failed_step_leaves_nothing")


def test_hostname_without_uts_namespace_is_refused(run_case: Runner) -> None:
    run_case("failed_hostname_names_step")


def test_1000_launches_leak_nothing(run_case: Runner) -> None:
    run_case("many_launches")
