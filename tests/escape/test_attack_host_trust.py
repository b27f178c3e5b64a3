"""What the host side reads after a sandbox could have written it (cases in
trust_cases.py), as root's and an unprivileged caller's launch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.escape.conftest import case_runner

CASES_FILE = Path(__file__).resolve().parent / "trust_cases.py"

Runner = Callable[[str], None]


@pytest.fixture
def run_attack(mode: str) -> Runner:
    runner: Runner = case_runner(mode, CASES_FILE)
    return runner


@pytest.mark.needs("userns", "shim", "setpriv")
def test_python_m_isorun_imports_no_module_a_sandbox_planted(run_attack: Runner) -> None:
    """`python -m isorun` in a project build wrote: the working directory is off sys.path."""
    run_attack("python_m_isorun_imports_nothing_from_the_project")


@pytest.mark.needs("userns", "shim", "setpriv")
def test_cache_poisoned_by_an_earlier_run_is_not_loaded(run_attack: Runner) -> None:
    """A cache directory an earlier build run could write, named by a later launch: its
    entries are the caller's own files, so only their tag (isorun.host.mac) can refuse them."""
    run_attack("earlier_build_poisons_a_cache_named_later")


@pytest.mark.needs("userns", "shim", "setpriv", "bwrap", "gcc")
def test_relative_xdg_cache_home_keeps_the_exec_stage_out_of_reach(run_attack: Runner) -> None:
    run_attack("relative_xdg_cache_home_keeps_the_exec_stage_out_of_the_project")


@pytest.mark.needs("userns", "shim", "setpriv", "bwrap", "gcc")
def test_exec_stage_planted_by_an_earlier_run_is_not_run(run_attack: Runner) -> None:
    """An absolute XDG_CACHE_HOME that changed between runs: the stage is the caller's own
    file there, and only its tag (isorun.host.mac) tells it from one a sandbox wrote."""
    run_attack("earlier_build_plants_an_exec_stage_named_later")


@pytest.mark.needs("userns", "shim", "setpriv", "gcc")
def test_exec_stage_build_runs_no_compiler_tool_a_sandbox_planted(run_attack: Runner) -> None:
    run_attack("exec_stage_is_built_by_the_system_compiler_alone")


@pytest.mark.needs("gcc")
def test_exec_stage_behind_a_symbolic_link_is_rebuilt(run_attack: Runner) -> None:
    run_attack("exec_stage_behind_a_link_is_rebuilt")


def test_exec_stage_and_plan_cache_share_the_xdg_rule() -> None:
    import runpy

    runpy.run_path(str(CASES_FILE))["CASES"]["exec_stage_directory_follows_the_plan_cache_rule"]()


@pytest.mark.needs("userns", "shim", "setpriv")
def test_build_cannot_rewrite_the_virtual_environment_isorun_runs_in(run_attack: Runner) -> None:
    """isorun's own installation in the project (its .venv): a writable mount over it is
    refused, as one over the plan cache is."""
    run_attack("build_cannot_rewrite_the_environment_isorun_runs_in")


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _nested(path: Path) -> None:
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")


def _dotted(path: Path) -> None:
    # quadratic in 3.11's tomllib: about 20 minutes of host CPU for 400 KB
    path.write_text("a" + ".a" * 200_000 + " = 1\n")


@pytest.mark.parametrize("how", [_fifo, _zero, _nested, _dotted], ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("where", ["top", "extends"])
def test_pathological_profile_file_is_refused_quickly(tmp_path: Path, how: Callable[[Path], None],
                                                      where: str) -> None:
    """A profile (or a file it extends, e.g. one in the project) that is a FIFO, a link to
    /dev/zero, nested 100,000 deep or a 200,000-part dotted key: an error naming the file,
    in seconds, never a hang, an exhausted memory or a traceback."""
    bad = tmp_path / "bad.toml"
    how(bad)
    top = bad
    if where == "extends":
        top = tmp_path / "top.toml"
        top.write_text('extends = ["./bad.toml"]\n')
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "isorun", "-p", str(top), "--", "true"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "bad.toml" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.needs("userns", "shim")
@pytest.mark.parametrize("swap", ["rewrite", "rename"])
def test_profile_edit_hiding_its_size_and_mtime_misses_the_launch_index(
        tmp_path: Path, swap: str) -> None:
    """The C front end trusts a profile by its stat(2) fingerprint. Who can write the
    profile edits it and puts size and mtime back (utimensat), in place or by renaming
    another file over it: ctime (or the inode) still tells, and the launch recompiles."""
    from tests.integration.conftest import missing
    from tests.integration.test_frontend import FRONTEND, _run, _warm

    if not FRONTEND.is_file():
        missing(f"the C front end at {FRONTEND}")
    (tmp_path / "work").mkdir()
    profile = tmp_path / "work" / "p.toml"
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "one"\n')
    _warm(tmp_path, "./p.toml")
    old = profile.stat()
    argv = [str(FRONTEND), "--profile", "./p.toml", "/bin/hostname"]
    assert _run(argv, tmp_path).stdout == "one\n"
    text = 'extends = ["strict"]\n[identity]\nhostname = "two"\n'
    if swap == "rewrite":
        profile.write_text(text)
    else:
        other = tmp_path / "work" / "q.toml"
        other.write_text(text)
        os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
        os.rename(other, profile)
    os.utime(profile, ns=(old.st_atime_ns, old.st_mtime_ns))
    now = profile.stat()
    assert (now.st_size, now.st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    done = _run(argv, tmp_path)
    assert (done.returncode, done.stdout) == (0, "two\n"), done.stderr


@pytest.mark.needs("userns", "shim", "setpriv")
def test_launch_index_relabelled_by_an_earlier_run_is_not_launched(run_attack: Runner) -> None:
    """web's launch index filed as strict's by an earlier build run: the tag covers the
    spec field and the file's name, so the C front end misses and Python compiles strict."""
    run_attack("earlier_build_relabels_a_launch_index_named_later")


@pytest.mark.needs("root", "userns", "shim")
def test_root_reads_no_cache_another_user_planted() -> None:
    import runpy

    runpy.run_path(str(CASES_FILE))["CASES"]["cache_of_another_user_is_not_read"]()


@pytest.mark.needs("userns", "shim", "setpriv")
def test_pyvenv_cfg_a_sandbox_wrote_widens_no_test_bind(run_attack: Runner) -> None:
    """${PYTHON_BASE_PREFIX} comes from the project's pyvenv.cfg: only a directory with
    a Python interpreter, never / or the home, may be bound from it."""
    run_attack("planted_pyvenv_cfg_binds_nothing_more_for_test")


@pytest.mark.needs("userns", "shim", "setpriv")
def test_isorun_pytest_runs_no_project_interpreter_a_sandbox_replaced(run_attack: Runner) -> None:
    run_attack("isorun_pytest_runs_no_interpreter_a_sandbox_replaced")


@pytest.mark.needs("userns", "shim", "setpriv")
def test_working_directory_policy_through_links_and_deletion(run_attack: Runner) -> None:
    run_attack("working_directory_policy_sees_through_links_and_deletion")


@pytest.mark.needs("userns", "shim", "setpriv", "landlock")
def test_cache_key_is_out_of_every_sandboxs_reach(run_attack: Runner) -> None:
    """As root (its sandbox runs as nobody) and as nobody."""
    run_attack("key_is_out_of_every_sandboxs_reach")


@pytest.mark.needs("root", "userns", "shim", "setpriv", "landlock")
def test_cache_key_is_out_of_every_sandboxs_reach_as_uid_1000() -> None:
    """As a user with a home and a uid of its own (1000): its key, its keyring."""
    import pwd

    from tests.escape.conftest import missing

    try:
        user = pwd.getpwuid(1000)
    except KeyError:
        missing("a user with uid 1000")
    case_runner("user", CASES_FILE, user)("key_is_out_of_every_sandboxs_reach")
