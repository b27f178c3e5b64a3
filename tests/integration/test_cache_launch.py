"""The CLI launch from a cold and a warm plan cache: same behaviour, no compiler when warm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs("userns", "shim")

ISORUN = [sys.executable, "-c", "import sys; from isorun.__main__ import main; main()"]
#: modules a warm launch must not import: the CLI framework, the TOML parser, libseccomp
#: bindings, the loader and planner, and the dataclass-heavy plan modules
HEAVY = {
    "click", "tomli", "pyseccomp", "isorun.cli.main", "isorun.api", "isorun.profile.loader",
    "isorun.profile.includes", "isorun.compile.planner", "isorun.compile.seccomp",
    "isorun.compile._libseccomp", "isorun.compile.plan", "isorun.compile.steps",
    "isorun.sandbox.process", "isorun.sandbox.sandbox_process", "isorun.attached",
    "isorun.cache.plans",
    # the failure decoding and the error classes (with dataclasses and inspect): loaded
    # only when a start failed
    "isorun.sandbox.failure", "isorun.errors",
    # the compiler's view of the host, and the dataclasses (inspect, ast, dis) it needs:
    # several milliseconds, where the raw facts key suffices
    "isorun.host.facts", "dataclasses",
}  # fmt: skip


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    env.pop("ISORUN_CACHE", None)
    return env


def _isorun(cache: Path, *args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [ISORUN[0], *(["-X", "importtime"] if importtime else []), *ISORUN[1:], *args]
    return subprocess.run(argv, env=_env(cache), capture_output=True, text=True, timeout=60)


def _imported(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_echo_output_identical_cold_and_warm(tmp_path: Path) -> None:
    cold = _isorun(tmp_path, "--profile", "strict", "--", "/bin/echo", "hi")
    warm = _isorun(tmp_path, "--profile", "strict", "--", "/bin/echo", "hi")
    assert (cold.returncode, cold.stdout, cold.stderr) == (0, "hi\n", "")
    assert (warm.returncode, warm.stdout, warm.stderr) == (0, "hi\n", "")


def test_warm_launch_takes_the_cached_path(tmp_path: Path) -> None:
    _isorun(tmp_path, "--profile", "strict", "--", "/bin/true")
    warm = _isorun(tmp_path, "--verbose", "--profile", "strict", "--", "/bin/true")
    assert warm.returncode == 0
    assert "(cached plan)" in warm.stderr


def test_warm_launch_imports_nothing_heavy(tmp_path: Path) -> None:
    cold = _isorun(tmp_path, "--profile", "strict", "--", "/bin/true", importtime=True)
    assert HEAVY & _imported(cold.stderr), "the cold run should have compiled"
    warm = _isorun(tmp_path, "--profile", "strict", "--", "/bin/true", importtime=True)
    assert warm.returncode == 0
    imported = _imported(warm.stderr)
    assert "isorun.cache.record" in imported
    assert not HEAVY & imported


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["/bin/sh", "-c", "exit 3"], 3),
        (["/bin/sh", "-c", "kill -TERM $$"], 143),
        (["no-such-command"], 127),
        (["/etc/hostname"], 126),
    ],
)
def test_exit_codes_identical_cold_and_warm(tmp_path: Path, command: list[str], code: int) -> None:
    cold = _isorun(tmp_path, "--profile", "strict", "--", *command)
    warm = _isorun(tmp_path, "--profile", "strict", "--", *command)
    assert cold.returncode == warm.returncode == code
    assert cold.stderr == warm.stderr


def test_sandbox_is_the_same_when_warm(tmp_path: Path) -> None:
    probe = "id -u; hostname; cat /proc/self/status | grep -E '^(Seccomp|NoNewPrivs|CapEff):'; env"
    cold = _isorun(tmp_path, "--profile", "strict", "--", "/bin/sh", "-c", probe)
    warm = _isorun(tmp_path, "--profile", "strict", "--", "/bin/sh", "-c", probe)
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout == warm.stdout
    assert "Seccomp:\t2" in warm.stdout


def test_edited_profile_is_recompiled(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "first"\n')
    first = _isorun(tmp_path, "--profile", str(profile), "--", "/bin/hostname")
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "second"\n')
    second = _isorun(tmp_path, "--profile", str(profile), "--", "/bin/hostname")
    assert (first.stdout, second.stdout) == ("first\n", "second\n")


def test_changed_kept_variable_reaches_the_command(tmp_path: Path) -> None:
    def term(value: str) -> str:
        env = dict(_env(tmp_path), TERM=value)
        argv = [*ISORUN, "--profile", "strict", "--", "/bin/sh", "-c", "echo $TERM"]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60).stdout

    assert term("xterm") == "xterm\n"
    assert term("vt100") == "vt100\n"


def test_setup_error_identical_cold_and_warm(tmp_path: Path) -> None:
    # A required bind source that does not exist fails in the child (mount), after the
    # cache was written: the warm launch must name the same step and profile line.
    profile = tmp_path / "p.toml"
    profile.write_text(
        'extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
        'src = "/nonexistent-isorun-source"\ndst = "/mnt/x"\n'
    )
    cold = _isorun(tmp_path, "--profile", str(profile), "--", "/bin/true")
    warm = _isorun(tmp_path, "--verbose", "--profile", str(profile), "--", "/bin/true")
    assert cold.returncode == warm.returncode == 125
    assert "(cached plan)" in warm.stderr
    assert "mount:" in cold.stderr and "p.toml:2" in cold.stderr
    assert cold.stderr in warm.stderr
