"""Escape attempts against the native backend, as root and unprivileged."""

from __future__ import annotations

from collections.abc import Callable

Runner = Callable[[str], None]


def test_chroot_escape(run_escape: Runner) -> None:
    run_escape("chroot_escape")


def test_proc_1_root_does_not_reach_the_host(run_escape: Runner) -> None:
    run_escape("proc_1_root_is_not_the_host")


def test_ptrace_and_kill_of_host_process(run_escape: Runner) -> None:
    run_escape("ptrace_and_kill_host_process")


def test_setuid_binary_regains_nothing(run_escape: Runner) -> None:
    run_escape("setuid_binary_regains_nothing")


def test_mount_umount_remount_refused(run_escape: Runner) -> None:
    run_escape("mount_umount_remount_refused")


def test_nested_user_namespace_gains_no_host_powers(run_escape: Runner) -> None:
    run_escape("nested_userns_gains_no_host_powers")


def test_sysctl_writes_refused(run_escape: Runner) -> None:
    run_escape("sysctl_writes_refused")


def test_inherited_descriptors_closed(run_escape: Runner) -> None:
    run_escape("inherited_descriptors_closed")


def test_tiocsti_cve_2019_10063(run_escape: Runner) -> None:
    run_escape("tiocsti_cve_2019_10063")
