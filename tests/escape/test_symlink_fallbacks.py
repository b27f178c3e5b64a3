"""Issue #12 on the wrapper backends: a symlink planted at a writable bind path of a
built-in profile never takes a bwrap or firejail mount outside its literal path.

The cases (symlink_cases.py) run as root in-process and as uid 1000 through setpriv.
Links: relative ``..`` chains of depth 1 to 5, an absolute link, a link loop, a dangling
link, a link to a file and a link as an intermediate component (node_modules with the
node_modules/.cache bind), at the test profile's .tox and the web profile's data. Then a
real directory there (runs, or bwrap refuses a destination it cannot make safely), and a
race: the source flipping between a directory and a link while bwrap launches.
"""

from __future__ import annotations

import os
import pwd
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.escape.symlink_cases import CASES, USER

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "symlink_cases.py"


@pytest.fixture(params=["root", "user"])
def caller(request: pytest.FixtureRequest) -> str:
    """Who launches: root, or uid 1000 (firejail refuses nobody, the escape suite's
    usual unprivileged user)."""
    value: str = request.param
    if os.geteuid() != 0:
        pytest.skip("needs root (and, for the user runs, setpriv to become uid 1000)")
    if value == "user":
        try:
            pwd.getpwuid(USER)
        except KeyError:
            pytest.skip(f"no user with uid {USER}")
    return value


def run(caller: str, case: str, timeout: float = 280) -> None:
    if caller == "root":
        module: dict[str, Any] = runpy.run_path(str(CASES_FILE))
        module["CASES"][case]()
        return
    home = pwd.getpwuid(USER).pw_dir
    done = subprocess.run(
        ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups",
         sys.executable, str(CASES_FILE), case],
        capture_output=True, text=True, timeout=timeout, cwd="/", check=False,
        env={"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": home,
             "PYTHONPATH": str(HERE.parent.parent)})
    assert done.returncode == 0 and done.stdout.endswith("OK\n"), (
        f"case {case} failed as uid {USER}:\n{done.stdout}\n{done.stderr}")

NEEDS = {"bwrap": ("userns", "bwrap", "gcc", "setpriv"),
         "firejail": ("userns", "firejail", "gcc", "setpriv")}


def _params(prefix: str) -> list[object]:
    out: list[object] = []
    for name in CASES:
        if not name.startswith(prefix):
            continue
        backend = name.split("-")[1]
        out.append(pytest.param(name, marks=pytest.mark.needs(*NEEDS[backend]), id=name))
    return out


@pytest.mark.parametrize("case", _params("planted-"))
def test_planted_symlink_is_refused_and_nothing_outside_changes(caller: str,
                                                                 case: str) -> None:
    run(caller, case)


@pytest.mark.parametrize("case", _params("real-"))
def test_real_directory_binds_or_bwrap_refuses_an_unsafe_destination(caller: str,
                                                                      case: str) -> None:
    run(caller, case)


@pytest.mark.needs("userns", "bwrap", "gcc", "setpriv")
def test_bwrap_source_swapped_during_launch_is_caught_by_the_inner_check(caller: str
                                                                          ) -> None:
    run(caller, "race")


@pytest.mark.parametrize("case", _params("swap-"))
def test_source_swapped_right_after_the_walk_stops_the_run(caller: str, case: str) -> None:
    run(caller, case)
