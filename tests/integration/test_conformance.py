"""Conformance: the same behaviour on every backend, or a refusal.

Each test runs a real sandbox through native, bwrap and firejail. A backend either passes
the test or refuses the profile with Unsupported; it never runs weaker (``allow_weaker``
is never passed here). Two profiles: ``strict`` (the built-in one, an empty root) and
``hostview`` (strict's rules over the host's root, without a cgroup namespace or the
launcher-death rule: what firejail can enforce), so firejail's mechanisms are exercised
and not only its refusals.

As root, plans are compiled for a regular user (uid 1000 when it exists): firejail will
not run as nobody, and the runners spawn the wrapper as the plan's host uid.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from isorun import api
from isorun.compile.plan import Chdir, Plan
from isorun.errors import Unsupported
from isorun.host.facts import HostFacts
from isorun.host.facts import probe as probe_facts
from isorun.host.facts import variables as host_variables
from isorun.host.probe import UsernsState, probe_backends
from isorun.sandbox.backends import select_backend

PYTHON = "/usr/bin/python3"
HOSTVIEW = """
extends = ["strict"]
override = ["mounts", "filesystem.root", "namespaces.cgroup", "process.die_with_parent"]

[filesystem]
root = "host"
cwd = "/tmp"

[namespaces]
cgroup = false

[process]
die_with_parent = false

[[mounts]]
type = "proc"
dst = "/proc"
"""
# No tmpfs at /tmp: every tmpfs has a size (issue #13) and firejail's --private-tmp takes
# none, so firejail would refuse it; no case here writes to /tmp.

BACKENDS = [
    pytest.param("native", marks=pytest.mark.needs("userns", "shim"), id="native"),
    pytest.param("bwrap", marks=pytest.mark.needs("userns", "bwrap", "gcc"), id="bwrap"),
    pytest.param("firejail", marks=pytest.mark.needs("userns", "firejail", "gcc"),
                 id="firejail"),
]
PROFILES = ["strict", "hostview"]


def _sandbox_facts() -> HostFacts:
    facts = probe_facts()
    if not facts.root:
        return facts
    try:
        pwd.getpwuid(1000)
    except KeyError:
        return facts
    return HostFacts(uid=1000, gid=1000, arch=facts.arch, kernel=facts.kernel)


FACTS = _sandbox_facts()


@pytest.fixture(scope="module")
def hostview(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("profiles") / "hostview.toml"
    path.write_text(HOSTVIEW)
    path.parent.chmod(0o755)
    return str(path)


@dataclass(frozen=True)
class Done:
    returncode: int
    out: str
    err: str
    backend: str


def compile_for(profile: str, **extra: str) -> Plan:
    variables = host_variables(FACTS)
    variables.update(extra)
    return api.compile_plan(api.load_profile(profile), FACTS, variables)


def sandbox(backend: str, plan: Plan, argv: Sequence[str], *,
            env: dict[str, str] | None = None, timeout: float = 30) -> Done | None:
    """Run ``argv``; None when the backend refuses the plan (Unsupported)."""
    facts = probe_backends(probe_facts())
    try:
        chosen, lost = select_backend(plan, backend, facts, allow_weaker=False)
    except Unsupported as err:
        assert err.backend == backend and err.lost, "a refusal must name what it loses"
        return None
    assert lost == [], "a run without allow_weaker never loses rules"
    if backend == "native":
        done = api.run(list(argv), profile=plan, backend="native", capture_output=True,
                       timeout=timeout, env=env)
        return Done(done.returncode, done.stdout.decode(), done.stderr.decode(), backend)
    proc = chosen.spawn(plan, argv, env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err_ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return Done(proc.wait(), out.decode(), err_.decode(), backend)


def run_in(backend: str, profile: str, hostview: str, script: str,
           **kw: object) -> Done | None:
    plan = compile_for(hostview if profile == "hostview" else profile)
    return sandbox(backend, plan, ["/bin/sh", "-c", script], **kw)  # type: ignore[arg-type]


def py_in(backend: str, profile: str, hostview: str, code: str) -> Done | None:
    plan = compile_for(hostview if profile == "hostview" else profile)
    return sandbox(backend, plan, [PYTHON, "-c", code])


def ok(done: Done | None) -> Done | None:
    if done is not None:
        assert done.returncode == 0, f"{done.backend}: rc {done.returncode}: {done.err}"
    return done


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_view_shows_only_profile_mounts(backend: str, hostview: str) -> None:
    done = ok(py_in(backend, "strict", hostview, "import os; print(' '.join(os.listdir('/')))"))
    if done is None:
        return
    cwd_top = os.getcwd().strip("/").split("/")[0]
    allowed = {"usr", "bin", "sbin", "lib", "lib64", "etc", "proc", "dev", "tmp", "run",
               cwd_top}
    assert set(done.out.split()) <= allowed
    assert "root" not in done.out.split() and "home" not in done.out.split()


@pytest.mark.parametrize("backend", BACKENDS)
def test_writes_outside_writable_mounts_are_refused(backend: str, hostview: str) -> None:
    cwd = os.getcwd()
    done = ok(run_in(backend, "strict", hostview,
                     f"touch /usr/x 2>/dev/null && echo usr; touch {cwd}/.isorun-x "
                     "2>/dev/null && echo cwd; touch /tmp/x && echo tmp"))
    if done is not None:
        assert done.out.split() == ["tmp"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_proc_sys_is_read_only(backend: str, profile: str, hostview: str) -> None:
    done = ok(run_in(backend, profile, hostview,
                     "echo x > /proc/sys/kernel/hostname 2>/dev/null && echo wrote; "
                     "grep -c ' /proc/sys ro,' /proc/self/mountinfo || true"))
    if done is not None:
        assert "wrote" not in done.out


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_network_is_loopback_only(backend: str, profile: str, hostview: str) -> None:
    code = ("import socket, errno\n"
            "print(sorted(n for _, n in socket.if_nameindex()))\n"
            "s = socket.socket()\n"
            "try:\n"
            "    s.connect(('1.1.1.1', 53)); print('connected')\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno])\n")
    done = ok(py_in(backend, profile, hostview, code))
    if done is not None:
        names, result = done.out.splitlines()
        assert names == "['lo']"
        assert result == "ENETUNREACH"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_capabilities_are_empty_and_no_new_privs_set(backend: str, profile: str,
                                                     hostview: str) -> None:
    done = ok(run_in(backend, profile, hostview, "cat /proc/self/status"))
    if done is None:
        return
    status = dict(line.split(":\t", 1) for line in done.out.splitlines() if ":\t" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, cap
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


SECCOMP_PROBE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    rc = libc.syscall(nr, *args)
    return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
print(call(39))                 # getpid: allowed
print(call(250, 0, 0, 0, 0))    # keyctl: not in @docker-default -> default errno:EPERM
print(call(1000))               # beyond the syscall table -> unknown errno:ENOSYS
print(call(272, 0x10000000))    # unshare(CLONE_NEWUSER): hardening -> EPERM
print(call(101, 16, 0, 0, 0))   # ptrace(PTRACE_ATTACH, 0): hardening -> EPERM
"""


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_seccomp_decisions_and_errnos_match(backend: str, profile: str,
                                            hostview: str) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers in the probe are x86_64's")
    done = ok(py_in(backend, profile, hostview, SECCOMP_PROBE))
    if done is not None:
        assert done.out.split() == ["ok", "EPERM", "ENOSYS", "EPERM", "EPERM"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_pid_namespace_hides_host_processes(backend: str, profile: str,
                                            hostview: str) -> None:
    done = ok(run_in(backend, profile, hostview,
                     "ls /proc | grep -c '^[0-9]*$'; echo $$"))
    if done is not None:
        count, pid = (int(x) for x in done.out.split())
        assert count <= 6 and pid <= 5


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_hostname_is_the_profiles(backend: str, profile: str, hostview: str) -> None:
    done = ok(run_in(backend, profile, hostview, "cat /proc/sys/kernel/hostname"))
    if done is not None:
        assert done.out.strip() == "sandbox"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_environment_is_exactly_the_profiles(backend: str, profile: str,
                                             hostview: str) -> None:
    caller = {"TERM": "dumb", "LC_ALL": "C", "SECRET_TOKEN": "hunter2", "PATH": "/nope"}
    plan = compile_for(hostview if profile == "hostview" else profile)
    done = ok(sandbox(backend, plan, ["/usr/bin/env"], env=caller))
    if done is None:
        return
    env = dict(line.split("=", 1) for line in done.out.splitlines())
    if backend == "bwrap":
        # bwrap always exports PWD, set to the working directory the plan chose (bwrap(1)
        # has no option against it). It carries nothing of the caller's; anything else
        # extra would fail below.
        chdir = plan.find(Chdir)[0].path
        assert env.pop("PWD", chdir) == chdir
    assert env == {"TERM": "dumb", "LC_ALL": "C", "PATH": "/usr/local/bin:/usr/bin:/bin",
                   "HOME": "/tmp", "TMPDIR": "/tmp"}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inherited_descriptors_are_closed(backend: str, profile: str, hostview: str) -> None:
    leak = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        done = ok(py_in(backend, profile, hostview,
                        "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"))
    finally:
        os.close(leak)
    if done is not None:
        # 0-2, plus the directory listdir holds open while it reads
        assert done.out.strip() == "[0, 1, 2, 3]"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_rlimits_soft_and_hard(backend: str, profile: str, hostview: str) -> None:
    done = ok(run_in(backend, profile, hostview,
                     "ulimit -Sn; ulimit -Hn; ulimit -Sc; ulimit -Hc"))
    if done is not None:
        assert done.out.split() == ["1024", "1024", "0", "0"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_exit_code_and_signal_are_reported(backend: str, profile: str, hostview: str) -> None:
    done = run_in(backend, profile, hostview, "exit 7")
    if done is None:
        return
    assert done.returncode == 7
    killed = run_in(backend, profile, hostview, "kill -9 $$")
    assert killed is not None and killed.returncode == 128 + 9


@pytest.mark.parametrize("backend", BACKENDS)
def test_wall_time_kills_the_sandbox(backend: str, hostview: str, tmp_path: Path) -> None:
    profile = tmp_path / "slow.toml"
    profile.write_text(f'extends = ["{hostview}"]\n[limits]\nwall_time = 1\n')
    tmp_path.chmod(0o755)
    plan = compile_for(str(profile))
    start = time.monotonic()
    done = sandbox(backend, plan, ["/bin/sh", "-c", "sleep 30"])
    if done is not None:
        assert done.returncode == 124
        assert time.monotonic() - start < 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_refusals_are_only_where_expected(backend: str, hostview: str) -> None:
    """Guard against a suite that passes by refusing: hostview runs everywhere, strict
    everywhere but firejail (no empty root, no parent-death signal through setuid)."""
    facts = probe_backends(probe_facts())
    select_backend(compile_for(hostview), backend, facts, allow_weaker=False)
    if backend == "firejail":
        with pytest.raises(Unsupported) as info:
            select_backend(compile_for("strict"), backend, facts, allow_weaker=False)
        assert "native" in info.value.lost[0].alternatives
    else:
        select_backend(compile_for("strict"), backend, facts, allow_weaker=False)


@pytest.mark.needs("firejail", "gcc")
def test_userns_off_auto_falls_back_to_a_setuid_wrapper_and_runs(hostview: str) -> None:
    """User namespaces off, simulated by the facts selection sees (a real sysctl would
    change the host for everyone): native and a non-setuid bwrap are passed over with the
    reason, a setuid wrapper runs the plan without a user namespace, and the command still
    has the caller's own ids and no capabilities."""
    real = probe_backends(probe_facts())
    off = replace(real, userns=UsernsState(False, "user.max_user_namespaces=0",
                                           "sysctl -w user.max_user_namespaces=15000"))
    plan = compile_for(hostview)
    said: list[str] = []
    backend, lost = select_backend(plan, "auto", off, allow_weaker=False, log=said.append)
    assert lost == []
    assert said[0] == ("isorun: backend native: not usable here: user namespaces are "
                       "disabled (user.max_user_namespaces=0)")
    expected = "bwrap" if real.bwrap is not None and real.bwrap.setuid else "firejail"
    assert backend.name == expected
    proc = backend.spawn(plan, ["/bin/sh", "-c", "id -u; cat /proc/self/uid_map; "
                                "grep CapEff /proc/self/status"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, facts=off)
    out, err = proc.communicate(timeout=30)
    assert proc.wait() == 0, err
    uid, uid_map, cap = out.decode().splitlines()
    assert int(uid) == FACTS.uid
    assert uid_map.split() == ["0", "0", "4294967295"]  # the host's own user namespace
    assert cap.split()[1] == "0000000000000000"
