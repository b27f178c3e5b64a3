"""Issue #12: a symlink planted in the project never carries a mount outside its path.

Each built-in profile's writable binds, with links of every kind planted there
(tests/escape/native_symlink_cases.py), launched through the CLI, the API (isorun-launch) and
the Python parent, as root and as uid 1000; then a launch race against a process that
swaps a directory and a link at the bind path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import native_symlink_cases  # type: ignore[import-not-found]  # noqa: E402

#: the brief's unprivileged caller: a plain user with a uid of its own, not nobody (the
#: uid a root caller's sandbox runs as)
UID = 1000


def _run(case: str, mode: str) -> None:
    if mode == "root":
        if os.geteuid() != 0:
            pytest.skip("needs root")
        native_symlink_cases.CASES[case]()
        return
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as uid 1000")
    done = subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", sys.executable,
         str(HERE / "native_symlink_cases.py"), case],
        capture_output=True, text=True, timeout=600, cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C"}, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.endswith("OK\n"), (
        f"case {case} failed as uid {UID}:\n{done.stdout}\n{done.stderr}"
    )


@pytest.fixture(params=["root", "user"])
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.mark.needs("shim", "userns")
@pytest.mark.parametrize("case", native_symlink_cases.bind_ids())
def test_planted_symlink_in_writable_bind_is_refused(case: str, mode: str) -> None:
    _run(case, mode)


@pytest.mark.needs("shim", "userns")
def test_build_cwd_reached_through_a_link_still_works(mode: str) -> None:
    _run("build_cwd_link", mode)


@pytest.mark.needs("shim", "userns")
def test_link_in_a_destination_inside_the_new_root_is_refused(mode: str) -> None:
    _run("destination_link", mode)


@pytest.mark.needs("shim", "userns")
@pytest.mark.parametrize("route", list(native_symlink_cases.ROUTES))
def test_swap_race_cve_2021_30465(route: str, mode: str) -> None:
    _run(f"swap_race:{route}", mode)
