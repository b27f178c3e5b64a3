"""Safe by default (issue #13), shown on real sandboxes through the CLI, as root and as an
unprivileged user (uid 1000 where it exists).

* The working directory: from $HOME, / and /tmp the built-in profiles refuse; a profile
  that binds the home on purpose runs with every credential location masked.
* Bounds under plain strict: a fork bomb stops at limits.nproc, a 2 GiB allocation fails,
  a 2 GiB write to /, /dev, /dev/shm or /tmp fails. Every limit is small enough that the
  test cannot hurt the host (256 processes, 1 GiB per process, tmpfs of 64k to 256 MiB).
* build keeps .git read-only; an overlay leaves nothing behind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import isorun
from tests.integration.conftest import missing, userns_available

pytestmark = pytest.mark.needs("userns", "shim")

TIMEOUT = 120
#: the unprivileged caller: uid 1000 (a normal user's id) when it exists
USERS = ("cloudsdk", "nobody")
PACKAGE = str(Path(isorun.__file__).resolve().parent.parent)
SITE = next(p for p in sys.path if p.endswith("site-packages"))
#: a system interpreter the unprivileged user can run (this venv's may live under /root)
SYSTEM_PYTHON = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}",
                             path="/usr/bin:/bin")  # fmt: skip
#: files planted in the fake home, each with a secret the sandbox must not print
SECRETS = (".ssh/id_rsa", ".aws/credentials", ".netrc", ".gnupg/private-keys-v1.d/k.key",
           ".config/gcloud/credentials.db", ".kube/config", ".docker/config.json",
           ".git-credentials", ".local/share/keyrings/login.keyring")


def _user() -> pwd.struct_passwd | None:
    for name in USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@pytest.fixture(params=["root", "user"])
def who(request: pytest.FixtureRequest) -> str:
    if not userns_available():
        missing("user namespaces")
    if os.geteuid() != 0:
        missing("root (the unprivileged runs switch users with setpriv)")
    if request.param == "user" and (_user() is None or shutil.which("setpriv") is None
                                    or SYSTEM_PYTHON is None):
        missing("an unprivileged user, setpriv and a system python3")
    value: str = request.param
    return value


@pytest.fixture
def world(who: str) -> Iterator[Path]:
    """A fake home (with planted keys, readable by anyone so only isorun protects them)
    and a project in it, owned by the caller, under a 0755 directory both can reach."""
    top = Path(tempfile.mkdtemp(prefix="isorun-p13-", dir="/var/tmp"))
    top.chmod(0o755)
    home = top / "home"
    project = home / "project"
    (project / ".git" / "hooks").mkdir(parents=True)
    (project / "src.txt").write_text("original\n")
    for rel in SECRETS:
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"SECRET-{rel}\n")
    user = _user()
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
        if who == "user" and user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
        elif who == "root" and path.is_relative_to(project):
            # A root caller's sandbox runs as 65534 (planner._identity): its project is
            # one that user may write, as the test profile's comments say.
            os.chown(path, 65534, 65534)
    try:
        yield home
    finally:
        shutil.rmtree(top)


def isorun_cli(who: str, home: Path, cwd: str | Path, *args: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``isorun ARGS`` (the Python CLI) started as ``who`` from ``cwd`` with HOME=home."""
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"), **(env or {})}
    if who == "root":
        argv = [sys.executable, "-m", "isorun", *args]
    else:
        user = _user()
        assert user is not None and SYSTEM_PYTHON is not None
        base["PYTHONPATH"] = f"{PACKAGE}:{SITE}"
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                "--clear-groups", SYSTEM_PYTHON, "-m", "isorun", *args]
    return subprocess.run(argv, env=base, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


#: reads every planted secret and the agent socket from inside; prints what it could read
READ_SECRETS = """
import os, socket, sys
home = sys.argv[1]
for rel in sys.argv[2].split(","):
    try:
        with open(os.path.join(home, rel)) as f:
            data = f.read()
        if "SECRET" in data:
            print("READ", rel)
    except OSError:
        pass
for rel in (".ssh", ".aws", ".gnupg"):
    try:
        if os.listdir(os.path.join(home, rel)):
            print("LISTED", rel)
    except OSError:
        pass
agent = os.environ.get("AGENT", "")
if agent:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(agent)
        print("AGENT ANSWERED")
    except OSError:
        pass
print("done")
"""


@pytest.mark.parametrize("profile", ["strict", "build", "test"])
@pytest.mark.parametrize("where", ["home", "/", "/tmp"])
def test_unsafe_working_directory_is_refused_with_a_hint(world: Path, who: str, profile: str,
                                                         where: str) -> None:
    cwd = world if where == "home" else where
    done = isorun_cli(who, world, cwd, "--profile", profile, "--", "cat",
                      str(world / ".ssh" / "id_rsa"))
    assert "SECRET" not in done.stdout
    assert done.returncode == 2, done.stderr
    assert "hint: cd into the project directory first" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bound_home_keeps_credentials_masked(world: Path, who: str) -> None:
    """A profile that binds the home on purpose runs, and nothing of SECRETS (nor the
    ssh-agent socket) can be read, listed or connected to inside."""
    agent_dir = world / "agent.XYZ"
    agent_dir.mkdir()
    agent = socket.socket(socket.AF_UNIX)
    agent.bind(str(agent_dir / "agent.sock"))
    agent.listen(1)
    user = _user()
    if who == "user" and user is not None:
        os.chown(agent_dir, user.pw_uid, user.pw_gid)
        os.chown(agent_dir / "agent.sock", user.pw_uid, user.pw_gid)
    os.chmod(agent_dir / "agent.sock", 0o777)
    profile = world / "project" / "home.toml"
    profile.write_text(f'extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\ndst = "{world}"\n')
    try:
        env = {"SSH_AUTH_SOCK": str(agent_dir / "agent.sock")}
        explain = isorun_cli(who, world, world / "project", "explain", str(profile), env=env)
        assert explain.returncode == 0, explain.stderr
        assert f"mask {world}/.ssh (credential location" in explain.stdout
        assert "ssh-agent socket" in explain.stdout
        done = isorun_cli(who, world, world / "project", "--profile", str(profile), "--",
                          "env", f"AGENT={agent_dir}/agent.sock", "python3", "-c",
                          READ_SECRETS, str(world), ",".join(SECRETS), env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["done"], done.stdout
        # the control: the project next to them is readable
        seen = isorun_cli(who, world, world / "project", "--profile", str(profile), "--",
                          "cat", str(world / "project" / "src.txt"))
        assert seen.stdout == "original\n", seen.stderr
    finally:
        agent.close()


def test_a_profile_naming_a_credential_gets_it(world: Path, who: str) -> None:
    profile = world / "project" / "ssh.toml"
    profile.write_text(f'extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
                       f'dst = "{world}/.ssh"\n')
    done = isorun_cli(who, world, world / "project", "--profile", str(profile), "--", "cat",
                      str(world / ".ssh" / "id_rsa"))
    assert (done.returncode, done.stdout) == (0, "SECRET-.ssh/id_rsa\n"), done.stderr


#: an exponential fork bomb for 3 s, then the largest number of processes seen
FORK_BOMB = """
import os, time
deadline = time.monotonic() + 3
if os.fork() == 0:
    while time.monotonic() < deadline:
        try:
            os.fork()
        except OSError:
            time.sleep(0.005)
    time.sleep(5)
    os._exit(0)
most = 0
while time.monotonic() < deadline + 1:
    most = max(most, sum(1 for n in os.listdir("/proc") if n.isdigit()))
    time.sleep(0.05)
print(most)
"""

#: a 2 GiB allocation, then 2 GiB written to each path; prints what the kernel answered
EXHAUST = """
import errno, os, sys
try:
    block = bytearray(2 << 30)
    print("alloc ok")
except MemoryError:
    print("alloc MemoryError")
chunk = b"x" * (1 << 20)
for path in sys.argv[1:]:
    written = 0
    try:
        with open(path, "wb") as f:
            while written < 2 << 30:
                written += f.write(chunk)
            f.flush()
        print(path, "wrote 2 GiB")
    except OSError as err:
        print(path, errno.errorcode[err.errno], written >> 20)
    try:
        os.unlink(path)
    except OSError:
        pass
"""


def test_strict_bounds_a_fork_bomb(world: Path, who: str) -> None:
    done = isorun_cli(who, world, world / "project", "--profile", "strict", "--",
                      "python3", "-c", FORK_BOMB)
    assert done.returncode == 0, done.stderr
    # limits.nproc = 256 counts the sandbox's processes and threads, its pid 1 included
    assert 100 < int(done.stdout) <= 256, done.stdout


@pytest.mark.parametrize("backend", ["native", "bwrap"])
def test_more_processes_than_nproc_outside_do_not_stop_a_launch(world: Path, who: str,
                                                                 backend: str) -> None:
    # limits.nproc bounds the sandbox, not the caller: a user who already runs more
    # processes than that (a desktop session may) must still start one. The bwrap
    # backend once set the limit before bwrap made its user namespace, where the kernel
    # counts every process of the caller's uid: bwrap failed with EAGAIN.
    if backend == "bwrap" and shutil.which("bwrap") is None:
        missing("bwrap")
    holder = _as(who, ["/bin/sh", "-c", "for i in $(seq 300); do sleep 120 & done; wait"])
    try:
        uid = 0 if who == "root" else _user().pw_uid  # type: ignore[union-attr]
        _wait_for(lambda: _processes_of(uid) >= 300)
        done = isorun_cli(who, world, world / "project", "--backend", backend, "--profile",
                          "strict", "--", "python3", "-c", FORK_BOMB)
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    assert done.returncode == 0, done.stderr
    # and the limit still holds inside
    assert 100 < int(done.stdout) <= 256, done.stdout


def _as(who: str, argv: list[str]) -> subprocess.Popen[bytes]:
    if who != "root":
        user = _user()
        assert user is not None
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                "--clear-groups", *argv]
    return subprocess.Popen(argv, start_new_session=True, cwd="/")


def _processes_of(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        try:
            count += name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid
        except OSError:
            continue
    return count


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the processes did not start in time"
        time.sleep(0.05)


def test_strict_refuses_2_gib_of_memory_and_of_writes(world: Path, who: str) -> None:
    done = isorun_cli(who, world, world / "project", "--profile", "strict", "--", "python3",
                      "-c", EXHAUST, "/big", "/dev/big", "/dev/shm/big", "/tmp/big")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["alloc"] == "MemoryError"
    assert lines["/big"].startswith("EROFS")
    # ENOSPC at the tmpfs's size: /dev 64 KiB, /dev/shm 64 MiB, /tmp 256 MiB
    assert lines["/dev/big"] == "ENOSPC 0"
    assert lines["/dev/shm/big"] == "ENOSPC 64"
    assert lines["/tmp/big"] == "ENOSPC 256"


def test_explain_strict_states_each_limit_and_its_mechanism(world: Path, who: str) -> None:
    done = isorun_cli(who, world, world / "project", "explain", "strict")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "rlimit nproc = 256 (RLIMIT_NPROC: processes and threads" in out
    assert "rlimit data = 1073741824 (RLIMIT_DATA, per process" in out
    assert "not shared memory, tmpfs files or kernel memory" in out
    assert "new root: empty tmpfs (size 8m" in out
    assert "remount the new root read-only" in out
    assert "tmpfs /dev/shm (size 64m" in out


def test_build_keeps_git_read_only(world: Path, who: str) -> None:
    done = isorun_cli(who, world, world / "project", "--profile", "build", "--", "sh", "-c",
                      "echo built > out.txt; mv .git moved || echo kept; "
                      "echo evil > .git/hooks/x")
    assert done.returncode != 0
    assert ".git/hooks/x: Read-only file system" in done.stderr
    # nor can the sandbox move the guarded .git aside and plant a new one
    assert done.stdout == "kept\n" and not (world / "project" / "moved").exists()
    assert (world / "project" / "out.txt").read_text() == "built\n"
    assert not (world / "project" / ".git" / "hooks" / "x").exists()
    explain = isorun_cli(who, world, world / "project", "explain", "build")
    assert "kept read-only: git runs its hooks and config on the host" in explain.stdout


def test_overlay_writes_vanish_at_exit(world: Path, who: str) -> None:
    project = world / "project"
    profile = world / "overlay.toml"
    profile.write_text('extends = ["strict"]\n[[mounts]]\ntype = "overlay"\n'
                       'dst = "${CWD}"\nsize = "16m"\n')
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    script = ("mkdir -p made/deep && echo new > made/deep/f && cat made/deep/f"
              " && echo changed > src.txt && cat src.txt && rm -r .git"
              # the changes' tmpfs lives on the detached stage, out of the command's reach
              " && ! ls -d /overlay-* 2>/dev/null")
    done = isorun_cli(who, world, project, "--profile", str(profile), "--", "sh", "-c",
                      script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "new\nchanged\n"
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before
    assert (project / "src.txt").read_text() == "original\n"
    # the overlay's changes are bounded by its size
    full = isorun_cli(who, world, project, "--profile", str(profile), "--", "sh", "-c",
                      "dd if=/dev/zero of=big bs=1M count=64")
    assert "No space left on device" in full.stderr


def test_an_explicit_cgroup_limit_is_checked_before_the_run(world: Path, who: str) -> None:
    """limits.memory / limits.pids keep failing closed where no cgroup can be made (an
    unprivileged caller without a delegated cgroup v2, as on this host), and check and
    doctor say so first, with a fix that works without one; root gets cgroup v1."""
    profile = world / "project" / "limited.toml"
    profile.write_text('extends = ["strict"]\n[limits]\nmemory = "512m"\npids = 64\n')
    check = isorun_cli(who, world, world / "project", "check", str(profile))
    doctor = isorun_cli(who, world, world / "project", "doctor", "--profile", str(profile))
    run = isorun_cli(who, world, world / "project", "--profile", str(profile), "--", "true")
    if check.returncode == 0:
        # a writable cgroup here (root: cgroup v1 memory and pids): the run gets it
        assert "limits of" not in doctor.stdout
        assert run.returncode == 0, run.stderr
        return
    if who == "root":
        pytest.fail(f"root could not make a cgroup: {check.stderr}")
    assert check.returncode == 125
    assert "cannot enforce limits.memory and limits.pids (limited.toml:" in check.stderr
    assert "limits.data (RLIMIT_DATA)" in check.stderr
    assert "[fail] limits of" in doctor.stdout and "limits.nproc" in doctor.stdout
    assert run.returncode == 125 and "cannot enforce cgroup limits" in run.stderr


def test_the_readme_web_profile_runs_for_every_caller(world: Path, who: str) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"```toml\n(# web\.toml.*?)```", readme, re.S)
    assert found is not None
    profile = world / "project" / "web.toml"
    profile.write_text(found.group(1))
    check = isorun_cli(who, world, world / "project", "check", str(profile))
    assert check.returncode == 0, check.stderr
    run = isorun_cli(who, world, world / "project", "--profile", str(profile), "--", "true")
    assert run.returncode == 0, run.stderr


def test_a_writable_root_is_still_bounded(world: Path, who: str) -> None:
    profile = world / "project" / "rw-root.toml"
    profile.write_text('extends = ["strict"]\n[filesystem]\nroot_read_only = false\n'
                       'root_size = "1m"\n')
    done = isorun_cli(who, world, world / "project", "--profile", str(profile), "--", "sh",
                      "-c", "echo x > /made && cat /made; dd if=/dev/zero of=/big bs=64k "
                      "count=64")
    assert done.stdout == "x\n", done.stderr
    assert "No space left on device" in done.stderr


def test_a_planted_symlink_does_not_reach_a_masked_credential(world: Path, who: str) -> None:
    """The attacker's run plants links to the credentials in the writable project; the
    next run (same profile) follows them inside its own tree, where they are masked."""
    profile = world / "project" / "home-rw.toml"
    profile.write_text(f'extends = ["build"]\n[[mounts]]\ntype = "rw-bind"\ndst = "{world}"\n')
    # The plan cache outside the writable home: inside it, the launch is refused (the
    # sandbox could rewrite cached plans, tests/escape/test_attack_safe_defaults.py).
    cache = world.parent / "cache"
    cache.mkdir()
    user = _user()
    if who == "user" and user is not None:
        os.chown(cache, user.pw_uid, user.pw_gid)
    env = {"XDG_CACHE_HOME": str(cache)}
    plant = isorun_cli(who, world, world / "project", "--profile", str(profile), "--", "sh",
                       "-c", f"ln -s {world}/.ssh keys && ln -s {world}/.netrc netrc; "
                       f"mv {world}/.ssh {world}/moved || echo refused", env=env)
    assert plant.returncode == 0, plant.stderr
    assert plant.stdout == "refused\n"
    read = isorun_cli(who, world, world / "project", "--profile", str(profile), "--", "sh",
                      "-c", "cat keys/id_rsa netrc; ls keys", env=env)
    assert "SECRET" not in read.stdout and read.stdout.strip() == "", read.stdout
