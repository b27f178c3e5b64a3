"""``isorun --profile test -- python ...`` runs the caller's virtual environment
(``VIRTUAL_ENV``), read-only, not the one isorun is installed in (#16)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.plugin._helpers import PYTHON, ROOT, output, run

pytestmark = pytest.mark.needs("userns", "shim")

PROBE = (
    "import os, sys; print('prefix', sys.prefix); "
    f"print('own', os.path.exists({str(ROOT / '.venv')!r})); "
    "open(os.path.join(sys.prefix, 'written'), 'w')"
)


@pytest.mark.parametrize("cache", ["1", "0"])
def test_profile_test_runs_the_callers_venv(cache: str) -> None:
    top = Path(tempfile.mkdtemp(prefix="isorun-caller-venv-", dir="/var/tmp"))
    project, venv, home = top / "project", top / "venv", top / "home"
    try:
        project.mkdir()
        home.mkdir()
        # A venv apart from isorun's, made from the same base (no pip: fast).
        subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
        env = {
            "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv}/bin:/usr/bin:/bin",
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "ISORUN_CACHE": cache,
        }
        argv = [PYTHON, "-m", "isorun", "--profile", "test", "--", "python", "-c", PROBE]
        for _ in range(2):  # the second launch may come from the plan cache
            proc = run(argv, cwd=project, env=env)
            assert f"prefix {venv}" in proc.stdout, output(proc)
            # isorun's own installation is not what the sandbox sees
            assert "own False" in proc.stdout, output(proc)
            # read-only: the command may not change the caller's venv
            assert "Read-only file system" in proc.stderr, output(proc)
            assert not (venv / "written").exists()
        # A VIRTUAL_ENV that names no virtual environment is not bound.
        env["VIRTUAL_ENV"] = str(home)
        proc = run(argv, cwd=project, env=env)
        assert proc.returncode != 0, output(proc)
        assert f"prefix {venv}" not in proc.stdout, output(proc)
    finally:
        shutil.rmtree(top)


def test_venv_helper_reads_pyvenv_cfg(tmp_path: Path) -> None:
    from isorun.host import venv

    assert venv.prefixes({}) == (sys.prefix, sys.base_prefix)
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert venv.prefixes({"VIRTUAL_ENV": str(tmp_path)}) == (str(tmp_path), "/usr")
    assert venv.prefixes({"VIRTUAL_ENV": "relative"})[0] != "relative"
    # never the home directory or above it: its bind would show the whole home
    home = tmp_path / "home"
    home.mkdir()
    for named in (tmp_path, home):
        (named / "pyvenv.cfg").write_text("home = /usr/bin\n")
        env = {"VIRTUAL_ENV": str(named), "HOME": str(home)}
        assert venv.prefixes(env) == (sys.prefix, sys.base_prefix)
    assert venv.active_venv({"VIRTUAL_ENV": "/", "HOME": str(home)}) == ""


@pytest.mark.needs("root")
def test_tox_env_in_a_0700_dot_tox_as_root_names_the_fix() -> None:
    # tox creates .tox 0700; as root the sandbox is uid 65534, which cannot walk it to
    # mount the tox env (VIRTUAL_ENV) inside: refused, naming the directory and the fix.
    top = Path(tempfile.mkdtemp(prefix="isorun-tox-", dir="/var/tmp"))
    project, home = top / "project", top / "home"
    venv = project / ".tox" / "py"
    try:
        top.chmod(0o755)
        home.mkdir()
        venv.parent.mkdir(parents=True)
        (project / ".tox").chmod(0o700)
        subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
        env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:/usr/bin:/bin",
               "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}  # fmt: skip
        argv = [PYTHON, "-m", "isorun", "--profile", "test", "--", "python", "-c", "print(7)"]
        for _ in range(2):  # cold, then from the plan cache
            proc = run(argv, cwd=project, env=env)
            assert proc.returncode == 125, output(proc)
            assert f"hint: {project / '.tox'} is mode 0700" in proc.stderr, output(proc)
            assert f"chmod o+x {project / '.tox'}" in proc.stderr, output(proc)
            assert "Traceback" not in proc.stderr, output(proc)
        (project / ".tox").chmod(0o701)  # the hint's fix works
        proc = run(argv, cwd=project, env=env)
        assert proc.returncode == 0 and proc.stdout == "7\n", output(proc)
    finally:
        shutil.rmtree(top)
