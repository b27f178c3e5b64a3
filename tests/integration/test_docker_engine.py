"""An exported profile under a real engine (rootful podman + runc, offline busybox image).

Uses ``shared/tools`` (``ISORUN_SHARED``, default ``<repo>/../shared``): podman-setup.sh
prepares podman and the image, docker-seccomp-check.sh runs a command under a profile and
exits with the command's status (125: the engine refused the profile).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from isorun.compile.render.docker import export_docker
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("ISORUN_SHARED", ROOT.parent / "shared")) / "tools"
MUST = os.environ.get("CI") == "true"
CHECK = TOOLS / "docker-seccomp-check.sh"


@pytest.fixture(scope="module")
def engine() -> Path:
    problem = ""
    if not CHECK.exists():
        problem = f"{CHECK} missing"
    elif os.getuid() != 0:
        problem = "rootful podman needs root"
    elif shutil.which("podman") is None and shutil.which("apt-get") is None:
        problem = "no podman and no apt-get to install it"
    else:
        setup = subprocess.run(
            [str(TOOLS / "podman-setup.sh")], capture_output=True, text=True, timeout=600
        )
        if setup.returncode != 0:
            problem = f"podman-setup.sh failed: {setup.stderr[-500:]}"
    if problem:
        if MUST:
            pytest.fail(problem)
        pytest.skip(problem)
    return CHECK


def run(profile: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), str(profile), "--", *cmd], capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    policy = Seccomp(
        allow=("@system-service",),
        deny=("mkdir", "mkdirat"),
        rules=(SeccompRule(("getpriority",), Action("errno", 13), (ArgCond(0, "eq", 1),)),),
    )
    path = tmp_path_factory.mktemp("seccomp") / "isorun.json"
    path.write_text(export_docker(policy))
    return path


def test_denied_mkdir_fails_with_eperm(engine: Path, profile: Path) -> None:
    result = run(profile, "mkdir", "/tmp/x")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Operation not permitted" in result.stdout + result.stderr


def test_allowed_commands_still_work(engine: Path, profile: Path) -> None:
    result = run(profile, "sh", "-c", "echo hi > /tmp/f && cat /tmp/f")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hi" in result.stdout


def test_argument_rule_holds(engine: Path, profile: Path) -> None:
    denied = run(profile, "sysc", "getpriority", "1", "0")
    assert denied.returncode == 1 and "EACCES" in denied.stdout, denied.stdout
    allowed = run(profile, "sysc", "getpriority", "0", "0")
    assert allowed.returncode == 0, allowed.stdout


def test_hardening_personality_and_tiocsti(engine: Path, profile: Path) -> None:
    assert "EPERM" in run(profile, "sysc", "personality", "0x40000").stdout
    assert run(profile, "sysc", "personality", "0xffffffff").returncode == 0
    tiocsti = run(profile, "sysc", "ioctl", "0", "0x100005412", "s:x").stdout
    assert "EPERM" in tiocsti, tiocsti


def test_unknown_number_gets_enosys(engine: Path, profile: Path) -> None:
    assert "ENOSYS" in run(profile, "sysc", "1000").stdout


def test_malformed_profile_is_rejected(engine: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [')
    result = run(bad, "true")
    assert result.returncode == 125, result.stdout + result.stderr


@pytest.fixture(scope="module", params=["podman", "docker"])
def engine_name(request: pytest.FixtureRequest, engine: Path) -> str:
    """podman (set up by ``engine``) and the private dockerd 20.10 of the shared tools."""
    if request.param == "docker":
        setup = subprocess.run(
            [str(TOOLS / "podman-setup.sh"), "--with-docker"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if setup.returncode != 0:
            if MUST:
                pytest.fail(f"podman-setup.sh --with-docker failed: {setup.stderr[-500:]}")
            pytest.skip("no private dockerd")
    return str(request.param)


def run_direct(
    profile: Path, *args: str, engine: str = "podman"
) -> subprocess.CompletedProcess[str]:
    """CMD exec'd by runc itself (no wrapping shell, whose own calls would hide what the
    runtime needs)."""
    return subprocess.run(
        [str(CHECK), "--engine", engine, "-q", str(profile), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "SECCOMP_CHECK_NO_WRAP": "1"},
    )


def learn_docker(tmp: Path, runtime: str, *cmd: str, cwd: Path | None = None) -> Path:
    """``isorun learn --docker`` under strict (its sandbox sees the working directory)."""
    out = tmp / f"learned-{runtime}.json"
    result = subprocess.run(
        [sys.executable, "-m", "isorun", "learn", "-o", str(tmp / f"learned-{runtime}.toml"),
         "--docker", str(out), "--runtime", runtime, "--", *cmd],
        capture_output=True, text=True, timeout=300, cwd=cwd,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def static_exit() -> Iterator[Path]:
    """A static program that only calls _exit(0): nothing of its own hides the runtime's
    calls (issue #14)."""
    if shutil.which("gcc") is None:
        if MUST:
            pytest.fail("gcc missing")
        pytest.skip("gcc missing")
    # readable from strict's sandbox (pytest's own tmp dirs are 0700 for root)
    tmp = Path(tempfile.mkdtemp(prefix="isorun-static-"))
    tmp.chmod(0o755)
    (tmp / "exit.c").write_text("#include <unistd.h>\nint main(void) { _exit(0); }\n")
    subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(tmp / "exit"), str(tmp / "exit.c")],
        check=True,
        timeout=120,
    )
    yield tmp / "exit"
    shutil.rmtree(tmp)


@pytest.mark.parametrize("runtime", ["runc-1.1", "all"])
def test_learned_static_exit_starts_under_runc(
    engine_name: str, static_exit: Path, tmp_path: Path, runtime: str
) -> None:
    learned = learn_docker(tmp_path, runtime, str(static_exit), cwd=static_exit.parent)
    mount = f"{static_exit}:/exit:ro"
    result = run_direct(learned, "-v", mount, "--", "/exit", engine=engine_name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_learned_profile_without_the_runtime_calls_does_not_start(
    engine_name: str, static_exit: Path, tmp_path: Path
) -> None:
    # the reason the runtime data exists: runc's init is filtered too
    learned = learn_docker(tmp_path, "none", str(static_exit), cwd=static_exit.parent)
    mount = f"{static_exit}:/exit:ro"
    result = run_direct(learned, "-v", mount, "--", "/exit", engine=engine_name)
    assert result.returncode != 0, result.stdout + result.stderr


def test_learned_busybox_ls_starts_under_runc(engine_name: str, tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        if MUST:
            pytest.fail("busybox missing")
        pytest.skip("busybox missing")
    learned = learn_docker(tmp_path, "runc-1.1", busybox, "ls", "-la", "/")
    result = run_direct(learned, "--", "/bin/busybox", "ls", "-la", "/", engine=engine_name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bin" in result.stdout


def test_compact_strict_export_is_enforced(engine_name: str, tmp_path: Path) -> None:
    """strict's export ORs single conditions into one entry per action (repeated index):
    runc must read them as the alternatives they are. clone3 keeps ENOSYS under Docker
    20.10 too, which ignores defaultErrnoRet (its rule is spelled out)."""
    from isorun import api

    path = tmp_path / "strict.json"
    path.write_text(export_docker(api.load_profile("strict").seccomp))

    def sysc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CHECK), "--engine", engine_name, str(path), "--", "sysc", *args],
            capture_output=True,
            text=True,
            timeout=180,
        )

    assert "EPERM" in sysc("personality", "0x40000").stdout
    # personality takes an unsigned int: the kernel reads 0x100000008 as 8, and the
    # export compares the low 32 bits as the native filter does (#13), so both allow it
    assert sysc("personality", "0x100000008").returncode == 0
    assert sysc("personality", "8").returncode == 0
    assert sysc("personality", "0xffffffff").returncode == 0
    assert "EPERM" in sysc("ioctl", "0", "0x100005412", "s:x").stdout
    assert "EPERM" in sysc("ioctl", "0", "0x541c", "s:x").stdout
    other = sysc("ioctl", "0", "0x5413", "s:x").stdout  # TIOCGWINSZ: not EPERM
    assert "EPERM" not in other and "ENOSYS" not in other, other
    assert "ENOSYS" in sysc("clone3", "0", "0").stdout


def test_no_new_privileges_needs_only_the_nnp_runtime_calls(
    engine_name: str, static_exit: Path, tmp_path: Path
) -> None:
    """With no-new-privileges runc loads the filter after dropping privileges: the short
    runc-1.1-nnp list is enough there, and not enough without it."""
    learned = learn_docker(tmp_path, "runc-1.1-nnp", str(static_exit), cwd=static_exit.parent)
    mount = f"{static_exit}:/exit:ro"
    nnp = ("--security-opt", "no-new-privileges", "-v", mount, "--", "/exit")
    assert run_direct(learned, *nnp, engine=engine_name).returncode == 0
    without = run_direct(learned, "-v", mount, "--", "/exit", engine=engine_name)
    assert without.returncode != 0


#: the host's programs, run in the busybox image with the host's /usr bound read-only
HOST_USR = ("-v", "/usr:/usr:ro", "-v", "/lib64:/lib64:ro", "-v", "/usr/lib:/lib:ro")
PROGRAMS = {
    "python3": ["/usr/bin/python3", "-c", "import json; print(json.dumps([1]))"],
    "git": ["/usr/bin/git", "-c", "safe.directory=*", "status", "--short"],
    "curl": ["/usr/bin/curl", "-s", "file:///etc/hostname"],
}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_learned_host_programs_start_under_runc(
    engine_name: str, tmp_path: Path, program: str
) -> None:
    argv = PROGRAMS[program]
    if not Path(argv[0]).exists():
        if MUST:
            pytest.fail(f"{argv[0]} missing")
        pytest.skip(f"{argv[0]} missing")
    work = Path(tempfile.mkdtemp(prefix="isorun-prog-"))
    try:
        work.chmod(0o755)
        subprocess.run(["git", "init", "-q", str(work)], check=True, timeout=60)
        learned = learn_docker(tmp_path, "all", *argv, cwd=work)
        mount = ("-v", f"{work}:/work", "-w", "/work")
        result = run_direct(learned, *HOST_USR, *mount, "--", *argv, engine=engine_name)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        shutil.rmtree(work)
