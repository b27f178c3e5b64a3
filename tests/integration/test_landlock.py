"""The Landlock layer on the native backend and the landlock backend, on the real kernel,
as root and as an unprivileged user (cases in landlock_cases.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import missing, root_or_uid1000_runner

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


def _podman_run(*argv: str, project: str) -> subprocess.CompletedProcess[str]:
    """``argv`` in a rootful podman container under the engine's default seccomp profile,
    with the host's /usr (and this isorun) bound read-only: enough to run isorun there."""
    import sysconfig

    import isorun

    repo = Path(isorun.__file__).resolve().parents[2]
    path = f"{repo / 'src'}:{sysconfig.get_paths()['purelib']}"
    binds = [f"{p}:{p}:ro" for p in ("/usr", "/lib", "/lib64", str(repo),
                                     sysconfig.get_paths()["purelib"])]
    cmd = ["podman", "run", "--rm", "--network", "none", "--runtime", "runc",
           # rootful podman asks for nofile=1048576 otherwise, refused where root lacks
           # CAP_SYS_RESOURCE (as in sandboxed VMs; shared/tools/docker-seccomp-check.sh)
           "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
           *(a for b in binds for a in ("-v", b)), "-v", f"{project}:/proj", "-w", "/proj",
           "-e", f"PYTHONPATH={path}", "-e", "HOME=/tmp", PODMAN_IMAGE,
           "/usr/bin/python3", "-m", "isorun", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


PODMAN_IMAGE = "localhost/busybox-seccomp:latest"


def test_in_a_podman_container_auto_refuses_and_weaker_runs_in_landlock_mode(
        tmp_path: Path) -> None:
    """podman's default seccomp profile lets a user namespace be made but refuses
    sethostname in it (issue 18): auto must not pick native there."""
    if os.geteuid() != 0 or shutil.which("podman") is None or subprocess.run(
            ["podman", "image", "exists", PODMAN_IMAGE], check=False,
            capture_output=True, timeout=60).returncode != 0:
        missing(f"rootful podman with {PODMAN_IMAGE} (shared/tools/podman-setup.sh)")
    tmp_path.chmod(0o755)
    refused = _podman_run("-p", "strict", "--", "/bin/echo", "hi", project=str(tmp_path))
    assert refused.returncode != 0, refused.stdout
    assert "backend 'landlock' cannot enforce" in refused.stderr, refused.stderr
    assert "sethostname in it fails with EPERM" in refused.stderr, refused.stderr
    weaker = _podman_run("--allow-weaker", "-p", "strict", "--", "/bin/sh", "-c",
                         "echo hi; echo x > /proj/planted", project=str(tmp_path))
    assert weaker.stdout == "hi\n", (weaker.stdout, weaker.stderr)
    assert "Permission denied" in weaker.stderr  # the project is bound read-only
    assert not (tmp_path / "planted").exists()


@pytest.fixture(params=["root", "uid1000"])
def run_wrapper_case(request: pytest.FixtureRequest) -> Runner:
    """Run a landlock_cases.py case as root (the runners spawn the wrapper as uid 1000)
    or as uid 1000 itself: firejail will not run as nobody, the usual unprivileged user."""

    from isorun.host.facts import probe

    if probe().landlock < 6:
        missing(f"Landlock ABI 6 (this kernel has {probe().landlock})")
    return root_or_uid1000_runner(request.param, Path(__file__).parent / "landlock_cases.py")


@pytest.mark.needs("userns", "bwrap", "gcc")
def test_bwrap_stage_applies_the_landlock_layer(run_wrapper_case: Runner) -> None:
    """A broken mount tree still refuses the write, and a host abstract socket is out of
    reach under web's host network, on bwrap (issue 18)."""
    run_wrapper_case("bwrap_stage_applies_landlock")


@pytest.mark.needs("userns", "firejail", "gcc")
def test_firejail_stage_applies_the_landlock_layer(run_wrapper_case: Runner) -> None:
    """The same on firejail, and a write outside every writable path of the host's tree
    (which firejail keeps as the root) is refused too (issue 18)."""
    run_wrapper_case("firejail_stage_applies_landlock")
