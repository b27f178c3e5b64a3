"""Root callers: a root-started sandbox runs as 65534 (README, "Root"). Each case either
works or refuses with a located message and an exact hint:

- ``build`` from a root-owned directory: the command cannot write it, and the launch says
  so before it runs (a note naming the bind, the owner and the [unsafe] switch); with
  ``[unsafe] map_root = true`` it writes;
- from a directory 65534 may not enter (``/root``): the chdir failure names the line and
  the fixes;
- from ``/``: refused at compile time (compile/exposure.py: a bind of ${CWD} would be the
  host's whole root);
- an unprivileged user's build writes its own directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isorun import api
from isorun.errors import ProfileError
from isorun.host import facts as host_facts
from tests.integration.conftest import unprivileged_user

pytestmark = pytest.mark.needs("userns", "shim")


def _cli(*args: str, cwd: Path | str, user: int | None = None, frontend: bool = False
         ) -> subprocess.CompletedProcess[str]:
    """``python -m isorun``, or the C front end (the venv's ``isorun``) with ``frontend``."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "XDG_CACHE_HOME": "/tmp/isorun-root-cwd-cache",
           "HOME": "/tmp"}
    prefix = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}",
                                      "--clear-groups"]
    command = ([str(Path(sys.executable).parent / "isorun")] if frontend
               else [sys.executable, "-m", "isorun"])
    return subprocess.run([*prefix, *command, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="isorun-root-cwd-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_working_directory_slash_is_refused_at_compile_time() -> None:
    facts = host_facts.probe()
    variables = {**host_facts.variables(facts), "CWD": "/"}
    with pytest.raises(ProfileError) as caught:
        api.compile_plan("build", facts, variables)
    text = caught.value.render()
    # the working directory policy of issue #13 (compile/exposure.py) says it
    assert "error: the working directory / is " in text and "this rw-bind of ${CWD}" in text
    assert "hint: cd into the project directory first" in text


@pytest.mark.needs("root")
def test_root_build_in_root_owned_directory_says_why_it_cannot_write(directory: Path) -> None:
    directory.chmod(0o755)
    done = _cli("--profile", "build", "--", "touch", "out", cwd=directory)
    assert done.returncode == 1, done.stderr
    assert ("started by root, the sandbox runs as uid 65534 (nobody), which cannot write "
            f"{directory} (owner uid 0, mode 755) that <builtin>/build.toml:6") in done.stderr
    assert "[unsafe] map_root = true" in done.stderr
    profile = directory / "rootbuild.toml"
    profile.write_text('extends = ["build"]\n[unsafe]\nmap_root = true\n')
    done = _cli("--profile", "./rootbuild.toml", "--", "touch", "out", cwd=directory)
    assert done.returncode == 0, done.stderr
    assert (directory / "out").stat().st_uid == 0


@pytest.mark.needs("root")
def test_root_from_a_directory_nobody_may_enter(directory: Path) -> None:
    directory.chmod(0o700)
    done = _cli("--profile", "strict", "--", "true", cwd=directory)
    assert done.returncode == 125
    assert "cwd: chdir: EACCES (Permission denied) (<builtin>/strict.toml:18)" in done.stderr
    assert f"which may not enter {directory}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.needs("root", "setpriv")
def test_unprivileged_build_writes_its_own_directory(directory: Path) -> None:
    user = unprivileged_user()
    if user is None:
        pytest.skip("no unprivileged user")
    directory.chmod(0o755)
    os.chown(directory, user.pw_uid, user.pw_gid)
    done = _cli("--profile", "build", "--", "touch", "out", cwd=directory, user=user.pw_uid)
    assert done.returncode == 0, done.stderr
    assert (directory / "out").stat().st_uid == user.pw_uid
    assert "note:" not in done.stderr


@pytest.mark.needs("root")
def test_root_web_data_made_after_the_first_run_says_why_it_cannot_write(
        directory: Path) -> None:
    """web's optional ./data bind: the first run (no data yet) must not leave a launch
    record that later runs take without looking, so a root-owned data made afterwards
    gets the same note as build's directory."""
    directory.chmod(0o755)
    # the C front end keeps no index of a directory changed in the last 2 s
    # (cache.index.INDEX_SETTLE_NS): let the first runs leave a warm launch behind
    time.sleep(2.2)
    for _ in range(2):
        first = _cli("--profile", "web", "--", "true", cwd=directory, frontend=True)
        assert first.returncode == 0, first.stderr
    (directory / "data").mkdir(mode=0o755)
    for frontend in (True, True, False):  # the C front end, warm, and the Python CLI
        done = _cli("--profile", "web", "--", "touch", "data/x", cwd=directory,
                    frontend=frontend)
        assert done.returncode == 1, done.stderr
        assert ("started by root, the sandbox runs as uid 65534 (nobody), which cannot write "
                f"{directory}/data (owner uid 0, mode 755) that <builtin>/web.toml:12 binds "
                "writable\n  hint: run isorun as the user who owns it, or extend the profile "
                "with [unsafe] map_root = true") in done.stderr, done.stderr
    # control: a data directory nobody owns is written, with no note
    os.chown(directory / "data", 65534, 65534)
    done = _cli("--profile", "web", "--", "touch", "data/x", cwd=directory)
    assert done.returncode == 0 and "note:" not in done.stderr, done.stderr
    # and chowned back after a launch record was made with it: the Python CLI looks again
    # (the C front end's index does not: docs/everyday-use.md, "Still misbehaving")
    os.chown(directory / "data", 0, 0)
    done = _cli("--profile", "web", "--", "touch", "data/y", cwd=directory)
    assert done.returncode == 1 and f"cannot write {directory}/data" in done.stderr, (
        done.stderr)
