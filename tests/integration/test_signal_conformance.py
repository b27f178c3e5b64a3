"""Signals reach the command on every backend, and the status says which (128+N).

SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 kill a command that does not handle
them; SIGWINCH runs the command's handler. Twice: through the API's send_signal (the
plans of test_conformance.py, so firejail runs too, as uid 1000 when root) and through
the CLI, where the launcher must survive the signal and pass it on (native and bwrap;
firejail refuses a root caller's sandbox, which runs as nobody).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isorun import api
from isorun.compile.plan import Plan
from isorun.errors import Unsupported
from isorun.host.facts import probe as probe_facts
from isorun.host.probe import probe_backends
from isorun.sandbox.backends import select_backend
from tests.integration.conftest import unprivileged_user
from tests.integration.test_conformance import BACKENDS, HOSTVIEW, compile_for

KILLING = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2]
#: exec: the signal goes to sleep itself, which dies of it (a shell would wait first)
SLEEPER = "echo ready; exec sleep 30"
WINCHER = "trap 'exit 42' WINCH; echo ready; while :; do sleep 0.05; done"


@pytest.fixture(scope="module")
def hostview(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("profiles") / "hostview.toml"
    path.write_text(HOSTVIEW)
    path.parent.chmod(0o755)
    return str(path)


def _start(backend: str, plan: Plan, script: str) -> object | None:
    """A started sandbox with stdout piped, or None when the backend refuses the plan."""
    try:
        chosen, _ = select_backend(plan, backend, probe_backends(probe_facts()),
                                   allow_weaker=False)
    except Unsupported:
        return None
    argv = ["/bin/sh", "-c", script]
    if backend == "native":
        return api.Popen(argv, profile=plan, backend="native", stdout=subprocess.PIPE)
    return chosen.spawn(plan, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)


def _signalled(proc: object, sig: int) -> int:
    stdout = proc.stdout  # type: ignore[attr-defined]
    assert stdout.readline() == b"ready\n"
    proc.send_signal(sig)  # type: ignore[attr-defined]
    try:
        return int(proc.wait(timeout=20))  # type: ignore[attr-defined]
    finally:
        stdout.close()
        if proc.poll() is None:  # type: ignore[attr-defined]
            proc.kill()  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", BACKENDS)
def test_api_send_signal_reaches_the_command(backend: str, hostview: str) -> None:
    # hostview: the profile firejail can run too (test_conformance.py says why)
    plan = compile_for(hostview)
    for sig in KILLING:
        proc = _start(backend, plan, SLEEPER)
        if proc is None:
            pytest.skip(f"{backend} refuses the profile")
        assert _signalled(proc, sig) == 128 + sig, f"{backend}: {sig.name}"
    proc = _start(backend, plan, WINCHER)
    assert proc is not None
    assert _signalled(proc, signal.SIGWINCH) == 42, f"{backend}: SIGWINCH"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A working directory a root caller's sandbox (uid 65534) may enter."""
    path = Path(tempfile.mkdtemp(prefix="isorun-sig-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


CLI_BACKENDS = [
    pytest.param("native", marks=pytest.mark.needs("userns", "shim"), id="native"),
    pytest.param("bwrap", marks=pytest.mark.needs("userns", "bwrap", "gcc"), id="bwrap"),
]


@pytest.mark.parametrize("who", ["caller", "user"])
@pytest.mark.parametrize("backend", CLI_BACKENDS)
def test_cli_forwards_signals_and_reports_128_plus_n(backend: str, who: str,
                                                     open_dir: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(open_dir / ".cache"), "ISORUN_CACHE": "0"}
    prefix: list[str] = []
    if who == "user":
        user = unprivileged_user()
        if os.geteuid() != 0 or user is None or shutil.which("setpriv") is None:
            pytest.skip("root and setpriv, to run as an unprivileged user")
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                  "--clear-groups"]
        open_dir.chmod(0o777)
    for sig, script, expected in [*((s, SLEEPER, 128 + s) for s in KILLING),
                                  (signal.SIGWINCH, WINCHER, 42)]:
        start = time.monotonic()
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "isorun", "--backend", backend, "--profile",
             "strict", "--",
             "/bin/sh", "-c", script], cwd=open_dir, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", proc.stderr
        proc.send_signal(sig)
        try:
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.stderr.close()
        assert code == expected, f"{backend}: {sig.name}: {code}: {err!r}"
        assert time.monotonic() - start < 20
