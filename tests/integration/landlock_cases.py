"""Landlock checks that run both as root and unprivileged (issue 18, issue 13 item 5).

Run in-process by tests/integration/test_landlock.py (root) or re-run under setpriv as
an unprivileged user (``python landlock_cases.py CASE``), like native_cases.py. Each
attack is asserted from what the kernel answered inside the sandbox, next to a control
showing the same act works where the rule does not apply.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from isorun import api
from isorun.compile import plan as p
from isorun.sandbox import native, process

MS_RDONLY = 1
#: what the sandbox's host identity is: a root caller's sandbox runs as nobody
SANDBOX_UID = 65534 if os.getuid() == 0 else os.getuid()
PY = "/usr/bin/python3"
#: a probe run inside: prints the errno name of the act, or OK
PROBE = r"""
import errno, os, socket, sys
what, arg = sys.argv[1], sys.argv[2]
try:
    if what == "read":
        open(arg).read()
    elif what == "write":
        open(arg, "w").write("x")
    elif what == "inet":
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    elif what == "tcp":
        socket.create_connection(("127.0.0.1", int(arg)), timeout=5).close()
    elif what == "abstract":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\0" + arg)
    elif what == "signal":
        os.kill(int(arg), 0)
    print("OK")
except OSError as err:
    print(errno.errorcode.get(err.errno, err.errno))
"""


@contextmanager
def project(base: str = "/var/tmp") -> Iterator[Path]:
    """A project directory every sandbox identity can enter, made the working directory
    (strict binds ${CWD}); removed afterwards. Under /var/tmp, not /tmp: strict's tmpfs
    at /tmp grants writing beneath it, and a Landlock rule's rights reach every path
    below it, so a read-only bind under /tmp is kept read-only by its mount alone."""
    old = os.getcwd()
    path = Path(tempfile.mkdtemp(prefix="isorun-ll-", dir=base))
    path.chmod(0o755)
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)
        subprocess.run(["rm", "-rf", str(path)], check=False)


def profile(directory: Path, text: str) -> str:
    path = directory / "profile.toml"
    path.write_text(text)
    return str(path)


def probe(plan: str | p.Plan, what: str, arg: str = "-", **kwargs: Any) -> str:
    done = api.run([PY, "-c", PROBE, what, arg], profile=plan, capture_output=True,
                   text=True, timeout=60, **kwargs)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return str(done.stdout).strip()


@contextmanager
def abstract_listener() -> Iterator[str]:
    name = f"isorun-ll-{secrets.token_hex(6)}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(8)
    try:
        yield name
    finally:
        server.close()


@contextmanager
def tcp_listeners(count: int) -> Iterator[list[int]]:
    servers = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        servers.append(s)
    try:
        yield [s.getsockname()[1] for s in servers]
    finally:
        for s in servers:
            s.close()


def tamper_ro_bind_is_still_refused() -> None:
    """A mount-tree bug that leaves a read-only bind writable (simulated by dropping
    MS_RDONLY from the spec the shim gets) still cannot be written: Landlock's rule for
    the bind grants read and execute only."""
    with project() as where:
        data = where / "data"
        data.mkdir()
        data.chmod(0o777)
        plan = api.compile_plan(api.load_profile(profile(where, f"""
extends = ["strict"]
[[mounts]]
type = "ro-bind"
dst = "{data}"
""")))
        target = str(data / "planted")
        spec = native.build_spec(plan, [PY, "-c", PROBE, "write", target], os.environ,
                                 api.cached_program(plan))
        dst = os.fsencode(data)
        assert any(m.dst == dst and m.flags & MS_RDONLY for m in spec.mounts)
        broken = replace(spec, mounts=tuple(
            replace(m, flags=m.flags & ~MS_RDONLY) if m.dst == dst else m
            for m in spec.mounts))

        def run(spec: object) -> str:
            proc = process.spawn(spec, stdout=subprocess.PIPE)  # type: ignore[arg-type]
            out, _ = proc.communicate(timeout=60)
            return (out or b"").decode().strip()

        out = run(broken)
        assert out == "EACCES", out
        assert not (data / "planted").exists()
        # control: the same broken tree without the Landlock layer lets the write through
        assert run(replace(broken, landlock_abi=0)) == "OK"
        assert (data / "planted").exists()


def web_cannot_reach_host_abstract_socket() -> None:
    """web shares the host network; Landlock scoping refuses connecting to an abstract
    unix socket made outside the sandbox (issue 13 item 5, containerd CVE-2020-15257)."""
    with project() as where, abstract_listener() as name:
        assert probe(api.compile_plan("web"), "abstract", name) == "EPERM"
        off = api.compile_plan(api.load_profile(profile(where, """
extends = ["web"]
override = ["landlock.enabled"]
[landlock]
enabled = false
""")))
        assert not off.find(p.Landlock)
        assert probe(off, "abstract", name) == "OK"  # control: reachable without scoping


def _mode(plan: str | p.Plan, what: str, arg: str = "-") -> str:
    return probe(plan, what, arg, backend="landlock", allow_weaker=True)


def landlock_backend_escapes_are_blocked() -> None:
    """--backend landlock (no namespaces): each escape it claims to block is refused."""
    with project() as where:
        secret_dir = Path(tempfile.mkdtemp(prefix="isorun-ll-outside-", dir="/tmp"))
        try:
            secret_dir.chmod(0o777)
            secret = secret_dir / "secret"
            secret.write_text("s3cret")
            secret.chmod(0o644)
            strict = api.compile_plan("strict")
            granted = where / "granted"
            granted.write_text("fine")
            granted.chmod(0o644)
            assert _mode(strict, "read", str(granted)) == "OK"  # control: a granted path
            assert _mode(strict, "read", str(secret)) == "EACCES"
            assert _mode(strict, "write", str(secret_dir / "planted")) == "EACCES"
            assert not (secret_dir / "planted").exists()
            assert _mode(strict, "inet") == "EAFNOSUPPORT"
            with abstract_listener() as name:
                # socket(2) itself is refused: no unix socket by path or by name
                assert _mode(strict, "abstract", name) == "EAFNOSUPPORT"
            sleeper = subprocess.Popen(["sleep", "60"], **_as_sandbox_uid())
            try:
                assert _mode(strict, "signal", str(sleeper.pid)) == "EPERM"
                os.kill(sleeper.pid, 0)  # control: the process is there to be signalled
            finally:
                sleeper.kill()
                sleeper.wait()
            with tcp_listeners(2) as (allowed, other):
                ports = api.compile_plan(api.load_profile(profile(where, f"""
extends = ["web"]
[network]
tcp_connect = [{allowed}]
""")))
                assert _mode(ports, "tcp", str(allowed)) == "OK"
                assert _mode(ports, "tcp", str(other)) == "EACCES"
        finally:
            subprocess.run(["rm", "-rf", str(secret_dir)], check=False)


def _as_sandbox_uid() -> dict[str, Any]:
    if os.getuid() == 0:
        return {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []}
    return {}


NESTED = r"""
set -u
PROBE=@PROBE@
isorun() { PYTHONPATH=@PYTHONPATH@ /usr/bin/python3 -m isorun "$@"; }
PY=/usr/bin/python3
echo secret > /tmp/outer-secret
sleep 60 & sleeper=$!
"$PY" -c 'import socket,time; s=socket.socket(socket.AF_UNIX)
s.bind("\0isorun-outer"); s.listen(); time.sleep(60)' &
listener=$!
sleep 0.5
isorun -p strict -- true 2>/tmp/auto.err; echo "auto $?"
grep -c "namespace" /tmp/auto.err
probe() { isorun --allow-weaker -p strict -- /usr/bin/python3 -c "$PROBE" "$@" 2>/dev/null; }
echo "read $(probe read /tmp/outer-secret)"
echo "write $(probe write /tmp/planted)"
echo "inet $(probe inet -)"
echo "abstract $(probe abstract isorun-outer)"
echo "signal $(probe signal $sleeper)"
kill $sleeper $listener
"""


def nested_sandbox_falls_back_to_landlock() -> None:
    """isorun inside an isorun sandbox, whose hardening refuses a nested user namespace:
    auto refuses, naming the rules; --allow-weaker runs in Landlock mode, blocking each
    escape that mode claims to block."""
    import shlex

    # The worktree as the project: the outer test profile binds it, and with it the
    # sources of this (editable) isorun and its venv's packages for the inner launch,
    # run by the system's Python (the venv's may live under a 0700 /root that an
    # unprivileged caller's sandbox cannot bind).
    import sysconfig

    import isorun

    old = os.getcwd()
    os.chdir(Path(isorun.__file__).resolve().parents[2])
    path = f"{Path(isorun.__file__).resolve().parents[1]}:{sysconfig.get_paths()['purelib']}"
    script = (NESTED.replace("@PROBE@", shlex.quote(PROBE))
              .replace("@PYTHONPATH@", shlex.quote(path)))
    try:
        done = api.run(["/bin/sh", "-c", script], profile="test", capture_output=True,
                       text=True, timeout=240)
    finally:
        os.chdir(old)
    out = str(done.stdout)
    assert done.returncode == 0, (out, done.stderr)
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines["auto"] != "0", out
    assert int(out.splitlines()[1]) >= 4, out  # pid, net, ipc, uts namespaces named
    assert lines == {"auto": lines["auto"], "read": "EACCES", "write": "EACCES",
                     "inet": "EAFNOSUPPORT", "abstract": "EAFNOSUPPORT",
                     "signal": "EPERM"}, out


MARKED = """
import errno, os, socket
import pytest

@pytest.mark.isorun
def test_confined(tmp_path):
    (tmp_path / "ok").write_text("fine")  # the test's own writable path is granted
    with pytest.raises(PermissionError):  # the outer sandbox's /tmp is writable, not ours
        open("/tmp/planted", "w")
    with pytest.raises(OSError) as info:
        socket.socket(socket.AF_INET)
    assert info.value.errno == errno.EAFNOSUPPORT
    with pytest.raises(PermissionError):  # the outer sandbox's pid 1, outside our domain
        os.kill(1, 0)
"""


def marker_runs_in_landlock_mode_without_user_namespaces() -> None:
    """@pytest.mark.isorun where no user namespace can be made (pytest inside an isorun
    sandbox): refused naming the rules, and with --isorun-allow-weaker confined by
    Landlock and seccomp instead."""
    import isorun

    with project() as where:
        (where / "test_marked.py").write_text(MARKED)
        repo = Path(isorun.__file__).resolve().parents[2]
        outer = profile(where, f'extends = ["test"]\n[[mounts]]\ntype = "ro-bind"\n'
                               f'dst = "{repo}"\n')
        # The system's Python with this isorun and its venv on PYTHONPATH (which the
        # test profile keeps): the venv's interpreter may live under a 0700 /root.
        import sysconfig

        env = {**os.environ, "PYTHONPATH": f"{repo / 'src'}:{sysconfig.get_paths()['purelib']}"}
        argv = ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "test_marked.py"]
        refused = api.run(argv, profile=outer, capture_output=True, text=True, timeout=240,
                          env=env)
        out = str(refused.stdout)
        assert refused.returncode == 1, (out, refused.stderr)
        assert "backend 'landlock' cannot enforce" in out and "pid namespace" in out, out
        allowed = api.run([*argv, "--isorun-allow-weaker"], profile=outer,
                          capture_output=True, text=True, timeout=240, env=env)
        assert allowed.returncode == 0, (allowed.stdout, allowed.stderr)
        assert "1 passed" in str(allowed.stdout)


def _wrapper_plan(spec: str) -> p.Plan:
    """``spec`` compiled for the wrappers' sandbox identity: as root, uid 1000 (firejail
    will not run as nobody; the runners spawn the wrapper as the plan's host uid)."""
    from isorun.host.facts import HostFacts, variables
    from isorun.host.facts import probe as probe_facts

    facts = probe_facts()
    if facts.root:
        facts = HostFacts(uid=1000, gid=1000, arch=facts.arch, kernel=facts.kernel)
    return api.compile_plan(api.load_profile(spec), facts, variables(facts))


@contextmanager
def _tampered(target: str) -> Iterator[None]:
    """Both wrappers' renders with the read-only mount of ``target`` made writable (a
    deliberately wrong mount tree), and the exec stage's read-only check of it dropped,
    so only the Landlock layer stands between the command and a write there."""
    from isorun.sandbox.backend import bwrap as bwrap_backend
    from isorun.sandbox.backend import firejail as firejail_backend

    def tamper(argv: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for i, arg in enumerate(argv):
            if arg == f"--read-only={target}":
                continue  # firejail
            if arg == "--ro-bind" and argv[i + 2] == target:
                arg = "--bind"  # bwrap
            elif arg.endswith(f":{target}") and argv[i - 1] == "--expect":
                dev, ino, flags, path = arg.split(":", 3)
                arg = ":".join((dev, ino, flags.replace("r", ""), path))
            out.append(arg)
        return tuple(out)

    real_bwrap, real_firejail = bwrap_backend.render_bwrap, firejail_backend.render_firejail
    bwrap_backend.render_bwrap = lambda *a, **k: replace(  # type: ignore[assignment]
        real_bwrap(*a, **k), argv=tamper(real_bwrap(*a, **k).argv))
    firejail_backend.render_firejail = lambda *a, **k: replace(  # type: ignore[assignment]
        real_firejail(*a, **k), argv=tamper(real_firejail(*a, **k).argv))
    try:
        yield
    finally:
        bwrap_backend.render_bwrap = real_bwrap
        firejail_backend.render_firejail = real_firejail


@contextmanager
def _without_landlock() -> Iterator[None]:
    """The runners hand the exec stage no ruleset (the control: as before issue 18)."""
    from isorun.sandbox.backend import bwrap as bwrap_backend
    from isorun.sandbox.backend import firejail as firejail_backend

    real = bwrap_backend.landlock_fd, firejail_backend.landlock_fd
    bwrap_backend.landlock_fd = lambda plan, stack: None  # type: ignore[assignment]
    firejail_backend.landlock_fd = lambda plan, stack: None  # type: ignore[assignment]
    try:
        yield
    finally:
        bwrap_backend.landlock_fd, firejail_backend.landlock_fd = real


def _wrapper_escapes(backend: str) -> None:
    """The native backend's Landlock escapes, on a wrapper backend whose exec stage
    applies the plan's ruleset (issue 18): a write the broken mount tree allows, a write
    outside every writable path of the host's tree (firejail keeps it as the root), a
    host abstract unix socket under the host network (web). Each next to its control:
    the same act, the stage given no ruleset, goes through."""
    # Not below /tmp or /var/tmp: firejail mounts its own over both (uid 1000's home
    # when unprivileged: /srv is root's)
    base = "/srv" if os.getuid() == 0 else os.path.expanduser("~")
    outside = Path(tempfile.mkdtemp(prefix="isorun-ll-wrapper-", dir=base))
    try:
        outside.chmod(0o777)
        data = outside / "data"
        data.mkdir()
        data.chmod(0o777)
        with project(base) as where:
            plan = _wrapper_plan(profile(where, f"""
extends = ["strict"]
[[mounts]]
type = "ro-bind"
dst = "{data}"
"""))

            def attempt(target: Path, *, landlock: bool) -> str:
                with _tampered(str(data)):
                    if landlock:
                        return probe(plan, "write", str(target), backend=backend,
                                     allow_weaker=True)
                    with _without_landlock():
                        return probe(plan, "write", str(target), backend=backend,
                                     allow_weaker=True)

            assert attempt(data / "planted", landlock=True) == "EACCES"
            assert not (data / "planted").exists()
            assert attempt(data / "planted", landlock=False) == "OK"
            if backend == "firejail":
                assert attempt(outside / "planted", landlock=True) == "EACCES"
                assert not (outside / "planted").exists()
                assert attempt(outside / "planted", landlock=False) == "OK"
            web = _wrapper_plan("web")
            with abstract_listener() as name:
                assert probe(web, "abstract", name, backend=backend,
                             allow_weaker=True) == "EPERM"
                with _without_landlock():
                    assert probe(web, "abstract", name, backend=backend,
                                 allow_weaker=True) == "OK"
    finally:
        subprocess.run(["rm", "-rf", str(outside)], check=False)


def bwrap_stage_applies_landlock() -> None:
    _wrapper_escapes("bwrap")


def firejail_stage_applies_landlock() -> None:
    _wrapper_escapes("firejail")


CASES: dict[str, Callable[[], None]] = {
    f.__name__: f for f in (
        tamper_ro_bind_is_still_refused, web_cannot_reach_host_abstract_socket,
        landlock_backend_escapes_are_blocked, nested_sandbox_falls_back_to_landlock,
        marker_runs_in_landlock_mode_without_user_namespaces, bwrap_stage_applies_landlock,
        firejail_stage_applies_landlock)
}  # fmt: skip

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    print("OK")
