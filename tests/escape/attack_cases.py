"""Attacks on the Landlock mode, safe defaults and wrapper mounts, as the sandboxed
command would make them. Run in-process as root by test_attack_*.py, or re-run under
setpriv as an unprivileged user (``python attack_cases.py CASE``). Each asserts what the
kernel answered inside, beside a control showing the act works where the rule does not
apply, so a case cannot pass by breaking the sandbox instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: the sandbox's host identity in landlock mode: a root caller's sandbox runs as nobody
SANDBOX_UID = 65534 if os.getuid() == 0 else os.getuid()
PY = "/usr/bin/python3"
#: connects to a pathname unix socket and says what came of it
CONNECT = r"""
import errno, socket, sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(b"escaped")
    print("OK")
except OSError as err:
    print(errno.errorcode.get(err.errno, err.errno))
"""
#: socketpair still works: the mode keeps what reaches nothing outside
PAIR = r"""
import socket
a, b = socket.socketpair()
a.sendall(b"x")
print("PAIR", b.recv(1).decode())
"""


def isorun(*argv: str, cwd: Path, cache: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    """The CLI, as a user types it (its warning goes to the captured stderr); the plan
    cache beside ``cwd`` unless ``cache`` says where."""
    where = cache or cwd.parent / f"{cwd.name}-cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(where), "PYTHONPATH": _pythonpath()}
    return subprocess.run([PY, "-m", "isorun", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def warm_launch(plan: Any, script: str) -> tuple[int, str, str]:
    """``sh -c script`` from an already compiled ``plan`` in landlock mode, as a warm
    launch makes it: the cached record goes to the shim with no Python check between
    (the C front end's hit), so only what the shim itself does stands."""
    from isorun.errors import SandboxSetupError
    from isorun.host.facts import probe
    from isorun.sandbox import process
    from isorun.sandbox.landlock_mode import build_mode_spec

    spec = build_mode_spec(plan, ["/bin/sh", "-c", script], os.environ, probe().landlock)
    try:
        proc = process.spawn(spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except SandboxSetupError as err:  # the shim refused: exit 125 on the command line
        return 125, "", str(err)
    out, errors = proc.communicate(timeout=60)
    return proc.returncode or 0, (out or b"").decode(), (errors or b"").decode()


def _pythonpath() -> str:
    """This isorun for the system's Python: the venv's interpreter may lie where an
    unprivileged caller cannot execute it."""
    import sysconfig

    import isorun as package

    src = Path(package.__file__).resolve().parents[1]
    return f"{src}:{sysconfig.get_paths()['purelib']}"


@contextmanager
def project(prefix: str) -> Iterator[Path]:
    """A project directory under /var/tmp that the sandbox's uid owns (build writes it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    if os.getuid() == 0:
        os.chown(path, SANDBOX_UID, SANDBOX_UID)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(f"{path}-cache", ignore_errors=True)


@contextmanager
def unix_listener() -> Iterator[tuple[str, list[bytes]]]:
    """A pathname unix socket outside every grant (a private directory under /tmp), as
    the host's D-Bus session bus or an ssh-agent is; yields its path and what arrived."""
    where = Path(tempfile.mkdtemp(prefix="isorun-atk-sock-", dir="/tmp"))
    where.chmod(0o755)
    path = str(where / "bus")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(4)
    server.settimeout(30)
    got: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
            got.append(conn.recv(64))
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield path, got
    finally:
        server.close()
        thread.join(5)
        shutil.rmtree(where, ignore_errors=True)


def landlock_mode_pathname_unix_socket() -> None:
    """--backend landlock, strict (network = "none"): a host unix socket by path, outside
    every grant, must not answer. Landlock does not govern connect(2) by path, so only
    refusing socket(2) keeps it out; socketpair(2) still works."""
    with project("isorun-atk-unix-") as where, unix_listener() as (path, got):
        # control: the socket answers a process outside the sandbox's rules
        assert subprocess.run([PY, "-c", CONNECT, path], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip() == "OK"
        done = isorun("--backend", "landlock", "--allow-weaker", "-p", "strict", "--",
                      PY, "-c", CONNECT, path, cwd=where)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "EAFNOSUPPORT", (done.stdout, done.stderr)
        assert got == [b"escaped"], got  # only the control's connection arrived
        pair = isorun("--backend", "landlock", "--allow-weaker", "-p", "strict", "--",
                      PY, "-c", PAIR, cwd=where)
        assert pair.stdout.strip() == "PAIR x", (pair.stdout, pair.stderr)


def landlock_mode_web_names_pathname_sockets() -> None:
    """web (host network) in landlock mode: the socket stays reachable, and the run's
    list of losses says so instead of leaving it out."""
    with project("isorun-atk-web-") as where, unix_listener() as (path, _):
        done = isorun("--backend", "landlock", "--allow-weaker", "-p", "web", "--",
                      PY, "-c", CONNECT, path, cwd=where)
        assert done.stdout.strip() == "OK", (done.stdout, done.stderr)
        assert "pathname unix sockets" in done.stderr, done.stderr


def landlock_mode_git_guard() -> None:
    """build in landlock mode: the .git guard (a read-only bind inside the writable
    ${CWD}) cannot hold without a mount tree, since Landlock rights add up along a path.
    A hook planted there runs on the host's next commit, so the run must name the loss
    (and auto refuse); with --allow-weaker the write goes through, as listed."""
    with project("isorun-atk-git-") as where:
        hooks = where / ".git" / "hooks"
        hooks.mkdir(parents=True)
        for folder in (where / ".git", hooks):
            if os.getuid() == 0:
                os.chown(folder, SANDBOX_UID, SANDBOX_UID)
        plant = "echo planted > .git/hooks/pre-commit; echo wrote"
        refused = isorun("--backend", "landlock", "-p", "build", "--", "sh", "-c", plant,
                         cwd=where)
        assert refused.returncode != 0, refused.stdout
        assert f"ro-bind {where}/.git" in refused.stderr, refused.stderr
        assert not (hooks / "pre-commit").exists()
        weaker = isorun("--backend", "landlock", "--allow-weaker", "-p", "build", "--",
                        "sh", "-c", plant, cwd=where)
        assert weaker.stdout == "wrote\n", (weaker.stdout, weaker.stderr)
        assert f"ro-bind {where}/.git" in weaker.stderr, weaker.stderr
        assert "stays writable" in weaker.stderr, weaker.stderr


def landlock_mode_planted_intermediate_link() -> None:
    """test in landlock mode grants ${CWD}/node_modules/.cache by its host path. With
    node_modules planted as a link (by the repository, or an earlier run), the grant must
    not land on the link's target: there the sandbox would write the caller's other
    directories (node_modules -> ~ makes ~/.cache writable)."""
    with project("isorun-atk-link-") as where:
        victim = Path(tempfile.mkdtemp(prefix="isorun-atk-victim-", dir="/var/tmp"))
        try:
            (victim / ".cache").mkdir()
            for folder in (victim, victim / ".cache"):
                folder.chmod(0o777)  # only Landlock stands between the sandbox and it
            target = victim / ".cache" / "planted"
            # an earlier run, with no node_modules yet, compiled the plan (and cached it)
            from isorun import api

            old = os.getcwd()
            os.chdir(where)
            try:
                plan = api.compile_plan("test")
            finally:
                os.chdir(old)
            (where / "node_modules").symlink_to(victim)
            code, out, err = warm_launch(plan, f"echo planted > {target} && echo wrote")
            assert code == 125 and "ELOOP" in err, (code, out, err)
            assert not target.exists()
            # a cold launch says which mount and which link, before anything runs
            from isorun.errors import IsorunError

            os.chdir(where)
            try:
                api.run(["/bin/sh", "-c", f"echo planted > {target}"], profile="test",
                        backend="landlock", allow_weaker=True, capture_output=True,
                        timeout=60)
                refused = ""
            except IsorunError as error:
                refused = error.render()
            finally:
                os.chdir(old)
            assert "test.toml:" in refused and f"{where}/node_modules" in refused, refused
            assert not target.exists()
            # control: a real directory there is granted and written
            (where / "node_modules").unlink()
            (where / "node_modules" / ".cache").mkdir(parents=True)
            for folder in (where / "node_modules", where / "node_modules" / ".cache"):
                folder.chmod(0o777)
            inside = where / "node_modules" / ".cache" / "planted"
            code, out, err = warm_launch(plan, f"echo x > {inside} && echo wrote")
            assert out == "wrote\n", (code, out, err)
        finally:
            shutil.rmtree(victim, ignore_errors=True)


def home_bind_masks_every_git_credential_store() -> None:
    """A profile that binds the home read-only (native backend): git's XDG credential
    store and podman's registry logins are credentials like ~/.git-credentials, and
    must be masked like it; an ordinary file beside them stays readable (control)."""
    from isorun import api

    home = Path(tempfile.mkdtemp(prefix="isorun-atk-home-", dir="/var/tmp"))
    old_home, old_cwd = os.environ.get("HOME"), os.getcwd()
    try:
        home.chmod(0o755)
        secrets = {".git-credentials": "https://u:tok1@example.invalid",
                   ".config/git/credentials": "https://u:tok2@example.invalid",
                   ".config/containers/auth.json": '{"auths": {"r": {"auth": "tok3"}}}',
                   "notes.txt": "not a secret"}
        for rel, text in secrets.items():
            path = home / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o755)
            path.write_text(text)
            path.chmod(0o644)  # readable by a root caller's sandbox (nobody) unless masked
        (home / "proj").mkdir(mode=0o755)
        profile = home / "proj" / "home.toml"
        profile.write_text('extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
                           'dst = "${HOME}"\n')
        os.environ["HOME"] = str(home)
        os.chdir(home / "proj")
        script = "; ".join(f"cat {home / rel}; echo" for rel in secrets)
        done = api.run(["/bin/sh", "-c", script], profile=str(profile), backend="native",
                       capture_output=True, text=True, timeout=60)
        out = str(done.stdout)
        assert "not a secret" in out, (out, done.stderr)  # control: the bind shows home
        for rel, text in secrets.items():
            if rel != "notes.txt":
                assert text not in out, f"{rel} readable inside: {out}"
    finally:
        os.chdir(old_cwd)
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
        shutil.rmtree(home, ignore_errors=True)


#: each way past RLIMIT_DATA to 1.5 GiB of memory, as a program that wants to get past the
#: data limit would try it: MAP_SHARED|MAP_ANONYMOUS (shmem), a memfd written but never
#: mapped, a SysV segment that outlives its process; then the SysV total (segments are
#: created, not touched: the count is what is bounded)
SHARED_HOG = r"""
import ctypes, errno, mmap, os
n = 1536 << 20
def tried(what, act):
    try:
        act()
        print(what, "allocated")
    except OSError as err:
        print(what, errno.errorcode[err.errno])
def shared():
    m = mmap.mmap(-1, n, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    for i in range(0, n, 4096):
        m[i] = 1
def memfd():
    fd = os.memfd_create("hog")
    os.ftruncate(fd, n)
    os.pwrite(fd, b"x", n - 1)
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
def shmget(size):
    if libc.shmget(0, size, 0o1600) < 0:
        raise OSError(ctypes.get_errno(), "shmget")
tried("shared", shared)
tried("memfd", memfd)
tried("sysv", lambda: shmget(n))
made = 0
try:
    for _ in range(5000):
        shmget(256 << 10)
        made += 1
except OSError as err:
    print("segments", made, errno.errorcode[err.errno])
"""
PRIVATE_HOG = "bytearray(1536 << 20); print('touched')"


def strict_memory_bound_holds_for_shared_mappings() -> None:
    """strict's default memory bound (issue #13: "a 2 GiB allocation fails") must hold
    for shared memory too, which RLIMIT_DATA does not count: a shared anonymous mapping
    (RLIMIT_AS), a memfd (refused), a SysV segment (256 KiB at most, 4096 of them in the
    sandbox's IPC namespace: 1 GiB). The private allocation is the control that the
    limits are in force; the 4096 small segments that the kernel's count stops, the
    control that SysV itself works."""
    from isorun import api

    with project("isorun-atk-mem-") as where:
        old = os.getcwd()
        os.chdir(where)
        try:
            private = api.run([PY, "-c", PRIVATE_HOG], profile="strict",
                              capture_output=True, text=True, timeout=120)
            assert "MemoryError" in str(private.stderr), (private.stdout, private.stderr)
            shared = api.run([PY, "-c", SHARED_HOG], profile="strict",
                             capture_output=True, text=True, timeout=120)
            out = str(shared.stdout).splitlines()
            assert out == ["shared ENOMEM", "memfd ENOSYS", "sysv EINVAL",
                           "segments 4096 ENOSPC"], (out, shared.stderr)
            # bwrap and firejail claim rlimits and the filter too (isorun-seccomp-exec)
            from isorun.errors import HostError

            cache_env = os.environ.get("XDG_CACHE_HOME")
            os.environ["XDG_CACHE_HOME"] = f"{where}-cache"  # nobody's home: /nonexistent
            try:
                for backend in ("bwrap", "firejail"):
                    try:
                        done = api.run([PY, "-c", SHARED_HOG], profile="strict",
                                       backend=backend, capture_output=True, text=True,
                                       timeout=120)
                    except HostError:  # not here, or not for this caller
                        continue
                    got = str(done.stdout).splitlines()
                    # without a new IPC namespace of their own (firejail), the host's
                    # segments count too: only the first three lines are the rule's
                    assert got[:3] == out[:3], (backend, got, done.stderr)
            finally:
                if cache_env is None:
                    os.environ.pop("XDG_CACHE_HOME")
                else:
                    os.environ["XDG_CACHE_HOME"] = cache_env
        finally:
            os.chdir(old)


#: fills the send buffers of unix socket pairs in 12 processes (within nproc and nofile):
#: kernel memory (skbs), which no rlimit counts; prints the MiB queued in all
SOCKET_HOG = r"""
import os, socket
N = 20
r, w = os.pipe()
for i in range(N):
    if os.fork() == 0:
        got, socks = 0, []
        try:
            while len(socks) < 480:
                a, b = socket.socketpair()
                socks.append((a, b))
                for s in (a, b):
                    s.setblocking(False)
                    try:
                        while True:
                            got += s.send(b"x" * 65536)
                    except BlockingIOError:
                        pass
        except OSError:
            pass
        os.write(w, b"%d\n" % got)
        os.read(r, 1)  # holds its buffers until the sandbox ends
        os._exit(0)
data = b""
while data.count(b"\n") < N:
    data += os.read(r, 4096)
print(sum(int(x) for x in data.split()) >> 20)
"""


def strict_memory_bound_holds_for_socket_buffers() -> None:
    """Kernel memory: the send buffers of unix sockets are charged to no process's
    rlimit, only to a cgroup. Twelve processes of 480 socket pairs each queued 1.3 to
    1.5 GiB here under strict's 1 GiB bound (issue #13: "a 2 GiB allocation fails");
    the test runs twenty, so that the hole shows with a wide margin, not by chance."""
    from isorun import api

    with project("isorun-atk-skb-") as where:
        old = os.getcwd()
        os.chdir(where)
        try:
            done = api.run([PY, "-c", SOCKET_HOG], profile="strict", capture_output=True,
                           text=True, timeout=120)
        finally:
            os.chdir(old)
        assert done.returncode == 0, done.stderr
        queued = int(str(done.stdout).strip())
        assert queued < 1024, f"{queued} MiB of socket buffers under strict's 1 GiB bound"


def build_cannot_plant_a_git_directory() -> None:
    """build binds ${CWD} writable and guards an existing .git read-only. Where the
    working directory has none (a subdirectory of a monorepo, a fresh checkout of a
    part), the sandbox can create one: the host's next git command there finds it first
    and runs its config (core.fsmonitor runs on `git status`) as the caller. Once the
    sandbox has ended, the launcher moves it aside and says so: a directory, then a
    .git file naming a directory elsewhere (gitdir:), on each launch path (the CLI and
    the API)."""
    from isorun import api

    plants = {"dir": "mkdir .git && echo planted > .git/config",
              "file": "mkdir -p sub/repo && echo 'gitdir: sub/repo' > .git"}
    with project("isorun-atk-gitplant-") as where:
        import contextlib
        import io

        old, said = os.getcwd(), io.StringIO()
        os.chdir(where)
        try:
            # control: the working directory is writable
            out = api.run(["/bin/sh", "-c", "echo x > out"], profile="build",
                          capture_output=True, text=True, timeout=60)
            assert (where / "out").exists(), out.stderr
            with contextlib.redirect_stderr(said):
                done = api.run(["/bin/sh", "-c", plants["dir"]], profile="build",
                               capture_output=True, text=True, timeout=60)
        finally:
            os.chdir(old)
        assert done.returncode == 0, (done.returncode, done.stderr)
        assert not (where / ".git").exists(), (
            f"the sandbox created {where}/.git (rc {done.returncode})")
        moved = sorted(where.glob(".git.isorun-quarantine-*"))
        assert len(moved) == 1 and (moved[0] / "config").exists(), moved
        assert f"the sandbox created {where}/.git" in said.getvalue(), said.getvalue()
        shutil.rmtree(moved[0])
        # bwrap and firejail run under the same Popen, which does the same once they end
        from isorun.errors import HostError

        cache_env = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = f"{where}-cache"  # nobody's home is /nonexistent
        for backend in ("bwrap", "firejail"):
            said = io.StringIO()
            os.chdir(where)
            try:
                with contextlib.redirect_stderr(said):
                    api.run(["/bin/sh", "-c", plants["dir"]], profile="build",
                            backend=backend, capture_output=True, timeout=60)
            except HostError:  # not installed, or not for this caller (firejail as root)
                continue
            finally:
                os.chdir(old)
            assert not (where / ".git").exists(), (backend, said.getvalue())
            assert "the sandbox created" in said.getvalue(), (backend, said.getvalue())
            for path in where.glob(".git.isorun-quarantine-*"):
                shutil.rmtree(path)
        if cache_env is None:
            os.environ.pop("XDG_CACHE_HOME")
        else:
            os.environ["XDG_CACHE_HOME"] = cache_env
        # the CLI, warm (its front end launches the cached plan without Python)
        for _ in range(2):
            cli = isorun("-p", "build", "--", "sh", "-c", plants["file"] + "; echo ran",
                         cwd=where)
            assert cli.stdout == "ran\n", (cli.stdout, cli.stderr)
            assert not (where / ".git").exists(), cli.stderr
            assert "the sandbox created" in cli.stderr, cli.stderr
        # control: an existing .git stays, read-only inside
        (where / ".git").mkdir()
        if os.getuid() == 0:
            os.chown(where / ".git", SANDBOX_UID, SANDBOX_UID)
        cli = isorun("-p", "build", "--", "sh", "-c", "echo x > .git/config", cwd=where)
        assert cli.returncode != 0 and (where / ".git").is_dir(), cli.stderr
        assert "the sandbox created" not in cli.stderr, cli.stderr


def build_cannot_plant_a_nested_git_or_a_pth() -> None:
    """Below the writable working directory, git on the host run in sub/ finds sub/.git
    before the project's own, and a .pth in a virtual environment runs in its every later
    Python. Once the sandbox has ended, the launcher moves aside each nested .git the run
    created or changed (a new directory, an old directory renamed to .git, a hook written
    into an existing nested repository) and names each .pth it wrote; on the CLI's path
    (C) and the API's (Python). Controls: an untouched nested repository and an old .pth
    stay, unnamed."""
    import contextlib
    import io
    import time

    from isorun import api

    site = ".venv/lib/python3.11/site-packages"
    attack = ("mkdir sub/.git && echo planted > sub/.git/config"
              " && mv prepared deep/a/.git"
              " && echo 'echo pwned' > vendor/lib/.git/hooks/post-checkout"
              f" && echo 'import os' > {site}/evil.pth && echo ran")
    for path_name in ("cli", "api"):
        with project("isorun-atk-nested-") as where:
            for folder in ("sub", "deep/a", "prepared", "vendor/lib/.git/hooks",
                           "vendor/other/.git/hooks", site):
                (where / folder).mkdir(parents=True)
            # what an earlier run could have left: a git directory under another name
            (where / "prepared" / "config").write_text("[core]\n\tfsmonitor = touch pwned\n")
            for repo in ("lib", "other"):
                (where / "vendor" / repo / ".git" / "config").write_text("[core]\n")
            (where / site / "ok.pth").write_text("import sys\n")
            if os.getuid() == 0:
                for dirpath, dirnames, filenames in os.walk(where):
                    for name in (*dirnames, *filenames):
                        os.chown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_UID)
            time.sleep(0.05)  # the launch's coarse clock is then past these file times
            if path_name == "cli":
                done = isorun("-p", "build", "--", "sh", "-c", attack, cwd=where)
                out, said = done.stdout, done.stderr
            else:
                old, buffer = os.getcwd(), io.StringIO()
                os.chdir(where)
                try:
                    with contextlib.redirect_stderr(buffer):
                        ran = api.run(["/bin/sh", "-c", attack], profile="build",
                                      capture_output=True, text=True, timeout=60)
                finally:
                    os.chdir(old)
                out, said = str(ran.stdout), buffer.getvalue()
            assert out == "ran\n", (path_name, out, said)
            for planted in ("sub", "deep/a", "vendor/lib"):
                assert not (where / planted / ".git").exists(), (path_name, planted, said)
                assert len(list((where / planted).glob(".git.isorun-quarantine-*"))) == 1, (
                    path_name, planted, said)
                assert f"{where}/{planted}/.git; git on the host" in said, (path_name, said)
            assert f"{where}/{site}/evil.pth" in said, (path_name, said)
            # controls: nothing the run left alone is moved or named
            assert (where / "vendor/other/.git/config").exists(), (path_name, said)
            assert "ok.pth" not in said and "vendor/other" not in said, (path_name, said)


def landlock_mode_names_metadata_changes() -> None:
    """Landlock governs no metadata change: in landlock mode the command can chmod a file
    of its uid outside every grant (which it cannot read). The run must say so in its
    list of losses rather than claim only that metadata stays visible."""
    with project("isorun-atk-chmod-") as where:
        outside = Path(tempfile.mkdtemp(prefix="isorun-atk-meta-", dir="/var/tmp"))
        try:
            victim = outside / "rc"
            victim.write_text("private")
            victim.chmod(0o600)
            if os.getuid() == 0:
                os.chown(victim, SANDBOX_UID, SANDBOX_UID)
            outside.chmod(0o755)
            done = isorun("--backend", "landlock", "--allow-weaker", "-p", "strict", "--",
                          "sh", "-c", f"cat {victim}; chmod 666 {victim} && echo changed",
                          cwd=where)
            assert "private" not in done.stdout, done.stdout  # reading stays refused
            assert done.stdout.strip() == "changed", (done.stdout, done.stderr)
            assert victim.stat().st_mode & 0o777 == 0o666
            assert "stay changeable (chmod" in done.stderr, done.stderr
        finally:
            shutil.rmtree(outside, ignore_errors=True)


@contextmanager
def listener_in(folder: Path) -> Iterator[Path]:
    """A listening unix socket in ``folder``, anyone may connect (as a session bus)."""
    path = folder / "bus"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o777)
    server.listen(4)
    try:
        yield path
    finally:
        server.close()


def strict_from_a_runtime_dir_is_refused() -> None:
    """strict binds ${CWD} read-only, and a read-only bind does not stop connect(2) to a
    unix socket: started from /run (or /run/user/UID, the session's D-Bus bus and
    agents) it would hand the sandbox every service socket there. Refused like the home;
    the control shows a socket in a project directory answers through the bind."""
    with project("isorun-atk-rundir-") as where, listener_in(where) as sock:
        done = isorun("-p", "strict", "--", PY, "-c", CONNECT, str(sock), cwd=where)
        assert done.stdout.strip() == "OK", (done.stdout, done.stderr)  # control
    if os.getuid() != 0:  # nobody can make nothing in /run: /run itself
        done = isorun("-p", "strict", "--", "true", cwd=Path("/run"))
        assert done.returncode == 2 and "runtime directory" in done.stderr, done.stderr
        return
    runtime = Path(tempfile.mkdtemp(prefix="isorun-atk-", dir="/run"))
    try:
        runtime.chmod(0o755)
        with listener_in(runtime) as sock:
            done = isorun("-p", "strict", "--", PY, "-c", CONNECT, str(sock), cwd=runtime)
        assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
        assert "runtime directory" in done.stderr, done.stderr
        assert "OK" not in done.stdout
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(f"{runtime}-cache", ignore_errors=True)


#: run inside build: rewrites each plan-cache entry it can reach so that loading its plan
#: (a pickle) runs a command; the checksum is no secret, the file stays the caller's own
POISON = r"""
import hashlib, marshal, os, pickle, sys
directory, marker = sys.argv[1], sys.argv[2]
MAGIC = b"isorun-plan-cache\n"
class Payload:
    def __reduce__(self):
        return (os.system, (f"id > {marker}",))
done = 0
for name in os.listdir(directory):
    path = os.path.join(directory, name)
    blob = open(path, "rb").read()
    head = len(MAGIC) + 1 + 32
    if not blob.startswith(MAGIC):
        continue
    entry = marshal.loads(blob[head:])
    entry["plan"] = pickle.dumps(Payload())
    payload = marshal.dumps(entry)
    with open(path + ".new", "wb") as out:
        out.write(blob[:len(MAGIC) + 1] + hashlib.sha256(payload).digest() + payload)
    os.chmod(path + ".new", 0o600)
    os.replace(path + ".new", path)
    done += 1
print("poisoned", done)
"""
#: the next launch, through the Python API (which loads the cached plan)
NEXT = "from isorun import api; print(api.run(['/bin/true'], profile='strict').returncode)"


def build_cannot_poison_the_plan_cache() -> None:
    """XDG_CACHE_HOME inside the project (a CI habit) and build's writable ${CWD}: the
    sandbox could rewrite the plan cache, and the next launch would unpickle what it
    wrote, on the host, outside any sandbox. Refused before the sandbox starts."""
    with project("isorun-atk-cache-") as where:
        cache = where / ".cache"
        marker = Path(tempfile.mkdtemp(prefix="isorun-atk-marker-", dir="/var/tmp"))
        try:
            marker.chmod(0o777)
            (where / "poison.py").write_text(POISON)
            (where / "poison.py").chmod(0o644)
            first = isorun("-p", "strict", "--", "true", cwd=where, cache=cache)
            assert first.returncode == 0, first.stderr
            attack = isorun("-p", "build", "--", PY, "poison.py", str(cache / "isorun"),
                            str(marker / "ran"), cwd=where, cache=cache)
            nxt = subprocess.run([PY, "-c", NEXT], cwd=where, capture_output=True,
                                 text=True, timeout=120, check=False,
                                 env={**os.environ, "XDG_CACHE_HOME": str(cache),
                                      "PYTHONPATH": _pythonpath()})
            assert not (marker / "ran").exists(), (
                "the next launch ran the sandbox's code on the host:",
                (marker / "ran").read_text(), attack.stdout, nxt.stdout)
            assert attack.returncode == 125, (attack.returncode, attack.stdout)
            assert "plan cache" in attack.stderr and "build.toml" in attack.stderr, \
                attack.stderr
        finally:
            shutil.rmtree(marker, ignore_errors=True)


def home_from_passwd_is_refused_whatever_home_says() -> None:
    """HOME set elsewhere (a service unit, sudo -E, a CI job's env) while the working
    directory is the caller's real home, the password database's: strict would bind
    ~/.ssh and every other secret there. Refused as when HOME names it; the control runs
    from a project with the same HOME."""
    import pwd

    real = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
    if not real.is_dir():  # nobody's /nonexistent: the compiler decides alone
        from isorun import api
        from isorun.errors import ProfileError
        from isorun.host.facts import probe, variables

        env = {**os.environ, "HOME": "/var/tmp"}
        try:
            api.compile_plan(api.load_profile("strict"), probe(),
                             variables(probe(), env, cwd=str(real)))
            raise AssertionError(f"strict compiled for {real} with HOME=/var/tmp")
        except ProfileError as err:
            assert "your home directory" in err.render(), err.render()
        return
    fake = Path(tempfile.mkdtemp(prefix="isorun-atk-fakehome-", dir="/var/tmp"))
    old = os.environ.get("HOME")
    try:
        os.environ["HOME"] = str(fake)
        with project("isorun-atk-passwd-") as where:
            done = isorun("-p", "strict", "--", "true", cwd=where)
            assert done.returncode == 0, done.stderr  # control
            done = isorun("-p", "strict", "--", "ls", "-a", str(real), cwd=real,
                          cache=where / "cache")
            assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
            assert "your home directory" in done.stderr, done.stderr
            assert done.stdout == "", done.stdout
    finally:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old
        shutil.rmtree(fake, ignore_errors=True)


#: lowers the open-file limit of another process, then its own (the control)
PRLIMIT = r"""
import errno, resource, sys
try:
    resource.prlimit(int(sys.argv[1]), resource.RLIMIT_NOFILE, (0, 0))
    print("other OK")
except OSError as err:
    print("other", errno.errorcode[err.errno])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
print("self", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def landlock_mode_cannot_prlimit_a_host_process() -> None:
    """No pid namespace in landlock mode, and Landlock scopes signals and ptrace but not
    prlimit(2): the sandbox must not set the limits of a host process of its uid."""
    with project("isorun-atk-prlimit-") as where:
        kwargs: dict[str, Any] = {}
        if os.getuid() == 0:
            kwargs = {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []}
        victim = subprocess.Popen(["sleep", "60"], **kwargs)
        try:
            done = isorun("--backend", "landlock", "--allow-weaker", "-p", "strict", "--",
                          PY, "-c", PRLIMIT, str(victim.pid), cwd=where)
            limits = Path(f"/proc/{victim.pid}/limits").read_text()
        finally:
            victim.kill()
            victim.wait()
        assert done.stdout.split("\n")[:2] == ["other EPERM", "self 64"], (
            done.stdout, done.stderr)
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3] != "0", line


CASES: dict[str, Callable[[], None]] = {
    f.__name__: f for f in (
        landlock_mode_pathname_unix_socket, landlock_mode_web_names_pathname_sockets,
        landlock_mode_git_guard, landlock_mode_planted_intermediate_link,
        home_bind_masks_every_git_credential_store,
        strict_memory_bound_holds_for_shared_mappings, build_cannot_plant_a_git_directory,
        build_cannot_plant_a_nested_git_or_a_pth,
        landlock_mode_names_metadata_changes, strict_from_a_runtime_dir_is_refused,
        build_cannot_poison_the_plan_cache, landlock_mode_cannot_prlimit_a_host_process,
        home_from_passwd_is_refused_whatever_home_says,
        strict_memory_bound_holds_for_socket_buffers)
}  # fmt: skip

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    print("OK")
