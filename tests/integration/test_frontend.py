"""The `isorun` command's C front end: what the Python CLI does, without Python on a hit.

Each test runs the installed ``isorun`` (the environment's bin, next to this Python) on
real sandboxes and compares it with the Python CLI (``python -m isorun``). A launch index
is only written for files that have not changed for 2 s (isorun.cache.index.index_blob), so
:func:`_warm` repeats a launch until the index is there.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from isorun.cache import index as cache_index
from isorun.host import mac
from tests.integration.conftest import missing, unprivileged_user

pytestmark = pytest.mark.needs("userns", "shim")

FRONTEND = Path(sys.executable).parent / "isorun"
PYTHON_CLI = [sys.executable, "-m", "isorun"]
ECHO = ["--profile", "strict", "--", "/bin/echo", "hi"]
TIMEOUT = 60
#: where an index's body starts: magic, u32 format, u64 length, the tag
BODY_START = len(cache_index.INDEX_MAGIC) + 4 + 8 + mac.TAG_SIZE


@pytest.fixture(autouse=True)
def _installed() -> None:
    if not FRONTEND.is_file() or FRONTEND.read_bytes()[:4] != b"\x7fELF":
        missing(f"the C front end at {FRONTEND} (pip install -e . installs it)")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The working directory and cache of a test (a fresh cache: every test starts cold)."""
    (tmp_path / "work").mkdir()
    return tmp_path


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(home / "cache"))
    env.pop("ISORUN_CACHE", None)
    env.pop("ISORUN_FRONTEND_MISS", None)
    return {**env, **extra}


def _run(
    argv: list[str], home: Path, cwd: Path | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=_env(home, **extra), cwd=cwd or home / "work",
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip


def _traced(
    argv: list[str], home: Path, cwd: Path | None = None, **extra: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run under strace; the result and every program execve'd, in the sandbox too."""
    if shutil.which("strace") is None:
        missing("strace")
    trace = home / f"trace.{time.monotonic_ns()}"
    done = _run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), *argv],
                home, cwd, **extra)  # fmt: skip
    execs = re.findall(r'execve\("([^"]*)"', trace.read_text())
    return done, execs


def _python_ran(execs: list[str]) -> bool:
    return any("python" in Path(p).name or p.endswith("isorun-py") for p in execs)


def _index(home: Path, spec: str = "strict", cwd: Path | None = None, uid: int = -1) -> Path:
    name = cache_index.index_name(spec, str(cwd or home / "work"), os.getuid() if uid < 0 else uid)
    return home / "cache" / "isorun" / name


def _warm(home: Path, spec: str = "strict", cwd: Path | None = None, **extra: str) -> Path:
    """Launch until the launch index for ``spec`` exists (files may be too fresh at first:
    a profile the test just wrote, a source file someone just saved)."""
    index = _index(home, spec, cwd)
    _run([*PYTHON_CLI, "--profile", spec, "--", "/bin/true"], home, cwd, **extra)
    deadline = time.monotonic() + 20
    while not index.exists():
        assert time.monotonic() < deadline, f"no launch index for {spec} after 20 s"
        time.sleep(0.3)
        _run([str(FRONTEND), "--profile", spec, "--", "/bin/true"], home, cwd, **extra)
    return index


def _same(a: subprocess.CompletedProcess[str], b: subprocess.CompletedProcess[str]) -> None:
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


def test_hit_starts_no_python(home: Path) -> None:
    _warm(home)
    done, execs = _traced([str(FRONTEND), *ECHO], home)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert execs[0] == str(FRONTEND) and "/bin/echo" in execs
    assert not _python_ran(execs), execs


def test_hit_moves_a_planted_git_aside(home: Path) -> None:
    """build on a hit, no Python: a .git the sandbox made where none was is moved aside
    by the launcher once the sandbox has ended, and it says so (shim/launcher/git_guard.c)."""
    work = home / "work"
    work.chmod(0o777)  # a root caller's sandbox writes as 65534
    _warm(home, "build")
    plant = "mkdir .git && echo '[core] fsmonitor = id' > .git/config && echo ran"
    done, execs = _traced([str(FRONTEND), "-p", "build", "--", "/bin/sh", "-c", plant], home)
    assert not _python_ran(execs), "expected a hit"
    assert done.stdout == "ran\n", done.stderr
    assert not (work / ".git").exists()
    moved = list(work.glob(".git.isorun-quarantine-*"))
    assert len(moved) == 1 and (moved[0] / "config").is_file(), moved
    assert f"the sandbox created {work}/.git where there was none" in done.stderr


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["/bin/echo", "hi"], 0),
        (["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], 3),
        (["/bin/sh", "-c", "kill -TERM $$"], 143),
        (["/bin/sh", "-c", "kill -SEGV $$"], 139),
        (["no-such-command"], 127),
        (["/nonexistent/command"], 127),
        (["/etc/hostname"], 126),
    ],
    ids=["success", "exit-3", "sigterm", "sigsegv", "not-found", "no-such-path", "not-exec"],
)
def test_same_result_as_python_cli(home: Path, command: list[str], code: int) -> None:
    _warm(home)
    front, execs = _traced([str(FRONTEND), "--profile", "strict", "--", *command], home)
    assert not _python_ran(execs), "expected a hit"
    python = _run([*PYTHON_CLI, "--profile", "strict", "--", *command], home)
    assert front.returncode == code
    _same(front, python)


@pytest.mark.parametrize(
    "form",
    [
        ["--profile", "strict", "/bin/echo", "hi"],
        ["--profile=strict", "--", "/bin/echo", "hi"],
        ["-p", "strict", "/bin/echo", "hi"],
        ["--debug", "-p=strict", "/bin/echo", "hi"],
        ["run", "--profile", "strict", "/bin/echo", "hi"],
        ["--allow-weaker", "--profile", "nosuch", "--profile", "strict", "/bin/echo", "hi"],
    ],
)
def test_launch_forms_hit(home: Path, form: list[str]) -> None:
    _warm(home)
    done, execs = _traced([str(FRONTEND), *form], home)
    assert (done.returncode, done.stdout) == (0, "hi\n")
    assert not _python_ran(execs), execs


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "strict"],
        ["--help"],
        ["run", "--help"],
        ["-p=strict", "/bin/true"],  # click's, as in __main__: -p=... first is not a launch
        ["--verbose", "--profile", "strict", "/bin/true"],
        ["--backend", "native", "--profile", "strict", "/bin/true"],
        ["--profile", "strict"],
        ["--profile", "strict", "--bogus", "/bin/true"],
        ["--profile", "strict", "--", ""],
    ],
)
def test_other_commands_run_the_python_cli(home: Path, args: list[str]) -> None:
    _warm(home)
    front, execs = _traced([str(FRONTEND), *args], home)
    assert _python_ran(execs), execs
    _same(front, _run([*PYTHON_CLI, *args], home))


def test_cache_off_runs_the_python_cli(home: Path) -> None:
    _warm(home)
    done, execs = _traced([str(FRONTEND), *ECHO], home, ISORUN_CACHE="0")
    assert (done.returncode, done.stdout) == (0, "hi\n")
    assert _python_ran(execs)


def test_setup_failure_is_reported_by_python(home: Path) -> None:
    # A required bind source that does not exist: the plan compiles and is cached, and
    # the launch fails in the child. The front end then runs the Python CLI, which names
    # the profile line; the command never ran, so running it again is safe.
    profile = home / "work" / "p.toml"
    profile.write_text(
        'extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
        'src = "/nonexistent-isorun-source"\ndst = "/mnt/x"\n'
    )
    _warm(home, "./p.toml")
    front, execs = _traced([str(FRONTEND), "--profile", "./p.toml", "/bin/true"], home)
    assert _python_ran(execs)
    python = _run([*PYTHON_CLI, "--profile", "./p.toml", "/bin/true"], home)
    assert front.returncode == 125
    assert "p.toml:2" in front.stderr and "mount" in front.stderr
    _same(front, python)


TRAP = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done"


@pytest.mark.parametrize("cli", ["frontend", "python", "uncached"])
def test_sigterm_reaches_the_command(home: Path, cli: str) -> None:
    # "uncached" is attached.launch, the path of a cache miss: its handler once deadlocked on
    # the handle's lock, held by wait() across a blocking waitpid.
    _warm(home)
    launcher = [str(FRONTEND)] if cli == "frontend" else PYTHON_CLI
    extra = {"ISORUN_CACHE": "0"} if cli == "uncached" else {}
    proc = subprocess.Popen([*launcher, "--profile", "strict", "--", "/bin/sh", "-c", TRAP],
                            env=_env(home, **extra), cwd=home / "work", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        if cli == "frontend":
            # The process that waits for the command is the front end itself, no Python.
            assert os.readlink(f"/proc/{proc.pid}/exe") == str(FRONTEND.resolve())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    assert (proc.returncode, out, err) == (7, "got TERM\n", "")


def test_edited_profile_misses(home: Path) -> None:
    profile = home / "work" / "p.toml"
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "one"\n')
    _warm(home, "./p.toml")
    first, execs = _traced([str(FRONTEND), "--profile", "./p.toml", "/bin/hostname"], home)
    assert (first.stdout, _python_ran(execs)) == ("one\n", False)
    # Same size, so only the stat times and the content tell.
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "two"\n')
    second, execs = _traced([str(FRONTEND), "--profile", "./p.toml", "/bin/hostname"], home)
    assert (second.returncode, second.stdout, _python_ran(execs)) == (0, "two\n", True)


def test_other_working_directory_misses(home: Path) -> None:
    _warm(home)
    other = home / "other"
    other.mkdir()
    done, execs = _traced([str(FRONTEND), "--profile", "strict", "/bin/pwd"], home, other)
    assert (done.stdout, _python_ran(execs)) == (f"{other}\n", True)


def test_changed_kept_variable_misses(home: Path) -> None:
    _warm(home, TERM="xterm")
    argv = [str(FRONTEND), "--profile", "strict", "/bin/sh", "-c", "echo $TERM"]
    changed, execs = _traced(argv, home, TERM="vt100")
    assert (changed.stdout, _python_ran(execs)) == ("vt100\n", True)
    same, execs = _traced(argv, home, TERM="xterm")
    assert (same.stdout, _python_ran(execs)) == ("xterm\n", False)


def test_c_locale_caller_hits_with_pythons_lc_ctype(home: Path) -> None:
    # With the C locale, Python sets LC_CTYPE=C.UTF-8 in its own environment at start-up
    # (PEP 538), so the record's environment has it; the front end must see the same.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LANG", "LC_"))}
    plain = {**base, "XDG_CACHE_HOME": str(home / "cache")}
    plain.pop("ISORUN_CACHE", None)
    argv = ["--profile", "strict", "/bin/sh", "-c", "echo ctype=$LC_CTYPE"]

    def run(cli: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *argv], env=plain, cwd=home / "work",
                              capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip

    python = run(PYTHON_CLI)
    assert python.stdout == "ctype=C.UTF-8\n", python.stderr
    index = _index(home)
    deadline = time.monotonic() + 20
    while not index.exists():
        assert time.monotonic() < deadline, "no launch index"
        time.sleep(0.3)
        run([str(FRONTEND)])
    front = run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(home / "t"),
                 str(FRONTEND)])  # fmt: skip
    assert not _python_ran(re.findall(r'execve\("([^"]*)"', (home / "t").read_text()))
    _same(front, python)


def test_changed_home_misses(home: Path) -> None:
    _warm(home)
    other = home / "otherhome"
    other.mkdir()
    done, execs = _traced([str(FRONTEND), *ECHO], home, HOME=str(other))
    assert (done.stdout, _python_ran(execs)) == ("hi\n", True)


def test_touched_source_file_misses(home: Path) -> None:

    _warm(home)
    # The content stays; its times change, as an editor's save or a checkout does.
    from isorun.cache import record as cache_record

    os.utime(cache_record.__file__)
    done, execs = _traced([str(FRONTEND), *ECHO], home)
    assert (done.returncode, done.stdout, _python_ran(execs)) == (0, "hi\n", True)


def _foreign_owner(index: Path) -> None:
    os.chown(index, 65534, 65534)


def _symlink(index: Path) -> None:
    real = index.with_name("real")
    index.rename(real)
    index.symlink_to(real)


def _fifo(index: Path) -> None:
    index.unlink()
    os.mkfifo(index, 0o600)


def _directory(index: Path) -> None:
    index.unlink()
    index.mkdir(0o700)


def _flip(index: Path) -> None:
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0x40
    index.write_bytes(bytes(data))


def _flipped_at(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _truncate(size: Callable[[int], int]) -> Callable[[Path], None]:
    def cut(index: Path) -> None:
        data = index.read_bytes()
        index.write_bytes(data[: size(len(data))])

    return cut


BAD_INDEX: dict[str, Callable[[Path], None]] = {
    "foreign-owner": _foreign_owner,
    "group-writable": lambda index: index.chmod(0o620),
    "world-writable": lambda index: index.chmod(0o602),
    "symlink": _symlink,
    "fifo": _fifo,
    "directory": _directory,
    "corrupt": _flip,
    "tag-flipped": lambda index: index.write_bytes(_flipped_at(index.read_bytes(),
                                                               BODY_START - 7)),
    "truncated": _truncate(lambda n: n // 2),
    "one-byte-short": _truncate(lambda n: n - 1),
    "header-only": _truncate(lambda n: BODY_START),
    "empty": _truncate(lambda n: 0),
    "cache-dir-group-writable": lambda index: index.parent.chmod(0o770),
}


@pytest.mark.parametrize("damage", BAD_INDEX, ids=list(BAD_INDEX))
def test_bad_index_is_ignored(home: Path, damage: str) -> None:
    if damage == "foreign-owner" and os.geteuid() != 0:
        missing("root (to give the index another owner)")
    index = _warm(home)
    BAD_INDEX[damage](index)
    done, execs = _traced([str(FRONTEND), *ECHO], home)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert _python_ran(execs)


def _with_tag(blob: bytes, name: str) -> bytes:
    """``blob`` tagged anew under this user's key as ``name``: what only isorun can do."""
    secret = mac.key()
    assert secret is not None
    body = blob[BODY_START:]
    return blob[: BODY_START - mac.TAG_SIZE] + mac.tag(secret, b"index", name, body) + body


def test_garbage_with_a_valid_tag_is_a_miss(home: Path) -> None:
    # Past the tag (were the key ever to leak), the parser meets whatever the bytes say:
    # lengths and counts out of range, NULs in paths. Each must be a miss and the Python
    # CLI's correct result. The flat record at the end is isorun-launch's to validate.
    from tests.unit.test_launch_index import decode

    index = _warm(home)
    good = index.read_bytes()
    record = decode(good)["record"]
    assert isinstance(record, bytes)
    end = len(good) - len(record) - 4  # the record's length field
    rng = random.Random(7)
    for _ in range(12):
        data = bytearray(good)
        for _ in range(rng.choice((1, 4))):
            at = rng.randrange(BODY_START, end)
            data[at] = rng.choice([v for v in (0x00, 0xFF, data[at] ^ 0x01, 0x7F) if v != data[at]])
        index.write_bytes(_with_tag(bytes(data), index.name))
        index.chmod(0o600)
        done, execs = _traced([str(FRONTEND), *ECHO], home)
        assert (done.returncode, done.stdout) == (0, "hi\n")
        assert _python_ran(execs)


def _relabelled(blob: bytes, old: str, new: str) -> bytes:
    """The index ``blob`` with its spec field ``old`` rewritten as ``new``, its tag kept."""
    body = blob[BODY_START:]
    n = int.from_bytes(body[:4], sys.byteorder)
    assert body[4 : 4 + n] == old.encode()
    body = len(new).to_bytes(4, sys.byteorder) + new.encode() + body[4 + n :]
    head = blob[: len(cache_index.INDEX_MAGIC) + 4] + len(body).to_bytes(8, sys.byteorder)
    return head + blob[BODY_START - mac.TAG_SIZE : BODY_START] + body


@pytest.mark.parametrize("tag", ["kept", "of-its-old-name"])
def test_relabelled_index_is_a_miss(home: Path, tag: str) -> None:
    """web's index (host network) filed as strict's: the spec field rewritten, with the
    tag it had, or even with a valid tag for the name it was filed under before. The
    front end misses and strict runs in its own network namespace. The control: the same
    bytes tagged for strict's name would launch (the tag is all that refuses them)."""
    web, strict = _warm(home, "web"), _warm(home, "strict")
    blob = _relabelled(web.read_bytes(), "web", "strict")
    if tag == "of-its-old-name":
        blob = _with_tag(blob, web.name)
    strict.write_bytes(blob)
    argv = [str(FRONTEND), "--profile", "strict", "/bin/readlink", "/proc/self/ns/net"]
    host = os.readlink("/proc/self/ns/net")
    done, execs = _traced(argv, home)
    assert done.returncode == 0 and done.stdout.strip() not in ("", host), done
    assert _python_ran(execs)
    strict.write_bytes(_with_tag(blob, strict.name))  # what a holder of the key could do
    done, execs = _traced(argv, home)
    assert (done.returncode, done.stdout.strip()) == (0, host) and not _python_ran(execs)


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A home and working directory of the unprivileged user, and a bin directory it can
    run: this venv's interpreter may live where it cannot (a root user's pyenv), so the
    system's python3 stands in, with this package and the venv's libraries on PYTHONPATH,
    and a copy of the front end next to it (the pairing the front end insists on)."""
    yield from _user_home(unprivileged_user())


def _user_home(user: pwd.struct_passwd | None) -> Iterator[Path]:
    python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}",
                          path="/usr/bin:/bin")  # fmt: skip
    if os.geteuid() != 0 or user is None or shutil.which("setpriv") is None or not python:
        missing("root, setpriv and a system python3, to run as an unprivileged user")
    assert user is not None and python is not None
    path = Path(tempfile.mkdtemp(prefix="isorun-frontend-"))
    try:
        path.chmod(0o755)
        (path / "work").mkdir()
        os.chown(path, user.pw_uid, user.pw_gid)
        os.chown(path / "work", user.pw_uid, user.pw_gid)
        (path / "bin").mkdir()
        (path / "bin" / "python3").symlink_to(python)
        shutil.copy(FRONTEND, path / "bin" / "isorun")
        script = path / "bin" / "isorun-py"
        script.write_text(f"#!{path}/bin/python3\nfrom isorun.__main__ import main\nmain()\n")
        script.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize("where", ["home", "xdg"])
def test_unprivileged_caller(nobody_home: Path, where: str) -> None:
    import isorun

    user = unprivileged_user()
    assert user is not None
    home, work, bin_dir = nobody_home, nobody_home / "work", nobody_home / "bin"
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    site = next(p for p in sys.path if p.endswith("site-packages"))
    package = str(Path(isorun.__file__).parent.parent)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(home),
           "PYTHONPATH": f"{package}:{site}"}  # fmt: skip
    cache_root = home / ".cache"
    if where == "xdg":
        cache_root = home / "xdg"
        env["XDG_CACHE_HOME"] = str(cache_root)

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *argv], env=env, cwd=work, capture_output=True,
                              text=True, timeout=TIMEOUT)  # fmt: skip

    probe = ["--profile", "strict", "/bin/sh", "-c", "id -u; echo $HOME"]
    python = run([str(bin_dir / "python3"), "-m", "isorun", *probe])
    assert python.returncode == 0, python.stderr
    index = cache_root / "isorun" / cache_index.index_name("strict", str(work), user.pw_uid)
    deadline = time.monotonic() + 20
    while not index.exists():
        assert time.monotonic() < deadline, "no launch index for the unprivileged user"
        time.sleep(0.3)
        run([str(bin_dir / "isorun"), "--profile", "strict", "/bin/true"])
    st = index.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (user.pw_uid, 0o600)
    trace = home / "trace"
    front = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), *as_user,
         str(bin_dir / "isorun"), *probe],
        env=env, cwd=work, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    execs = re.findall(r'execve\("([^"]*)"', trace.read_text())
    assert str(bin_dir / "isorun") in execs and not _python_ran(execs), execs
    _same(front, python)
    # A miss (another working directory) as this user: the Python CLI next to it runs.
    other = run([str(bin_dir / "isorun"), "--profile", "strict", "--", "/bin/pwd"])
    assert (other.returncode, other.stdout) == (0, f"{work}\n")


#: run as the user: invalidates its isorun key (keyctl KEYCTL_INVALIDATE), or prints the
#: key's serial number ("none" without one)
KEY_TOOL = r"""
import ctypes, os, sys
from isorun.host import mac
add_key, keyctl = mac.SYSCALLS[os.uname().machine]
call = ctypes.CDLL(None, use_errno=True).syscall
call.restype = ctypes.c_long
L = ctypes.c_long
serial = call(L(keyctl), L(10), L(-4), b"user", mac.KEY_NAME, L(0))
if sys.argv[1] == "drop" and serial >= 0:
    assert call(L(keyctl), L(21), L(serial)) == 0
print(serial if serial >= 0 else "none")
"""


@pytest.fixture
def uid_1000_home() -> Iterator[Path]:
    """As nobody_home, for uid 1000: a user whose keyring no other test uses, so that
    taking its key away cannot turn another test's hit into a miss."""
    try:
        user: pwd.struct_passwd | None = pwd.getpwuid(1000)
    except KeyError:
        user = None
    yield from _user_home(user)


def test_missing_key_is_a_miss_and_a_new_key_is_made(uid_1000_home: Path) -> None:
    """The key gone (a reboot clears the keyring): the front end's index is a miss, the
    Python CLI runs the launch correctly and makes a new key, and the launch after that
    is a hit again under the new key."""
    import isorun

    user = pwd.getpwuid(1000)
    home, work, bin_dir = uid_1000_home, uid_1000_home / "work", uid_1000_home / "bin"
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    site = next(p for p in sys.path if p.endswith("site-packages"))
    package = str(Path(isorun.__file__).parent.parent)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(home),
           "PYTHONPATH": f"{package}:{site}"}  # fmt: skip
    index = home / ".cache" / "isorun" / cache_index.index_name("strict", str(work), 1000)
    probe = ["--profile", "strict", "/bin/echo", "hi"]

    def key(action: str) -> str:
        done = subprocess.run([*as_user, str(bin_dir / "python3"), "-c", KEY_TOOL, action],
                              env=env, cwd=work, capture_output=True, text=True,
                              timeout=TIMEOUT, check=True)  # fmt: skip
        return done.stdout.strip()

    def front() -> tuple[subprocess.CompletedProcess[str], bool]:
        trace = home / f"trace.{time.monotonic_ns()}"
        done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace),
                               *as_user, str(bin_dir / "isorun"), *probe], env=env, cwd=work,
                              capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
        return done, _python_ran(re.findall(r'execve\("([^"]*)"', trace.read_text()))

    if shutil.which("strace") is None:
        missing("strace")
    key("drop")  # start from none, whatever an earlier run left
    deadline = time.monotonic() + 20
    while True:
        done, python = front()
        assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
        if not python:
            break
        assert time.monotonic() < deadline, "no hit for uid 1000"
        time.sleep(0.3)
    old = key("show")
    assert old != "none" and index.exists()
    assert key("drop") == old
    assert key("show") == "none"
    done, python = front()
    assert (done.returncode, done.stdout, python) == (0, "hi\n", True), done.stderr
    new = key("show")
    assert new not in ("none", old), (old, new)  # made again, by the Python CLI
    done, python = front()
    assert (done.returncode, done.stdout, python) == (0, "hi\n", False), done.stderr


def test_set_user_id_copy_refuses_to_run(nobody_home: Path) -> None:
    user = unprivileged_user()
    assert user is not None
    if os.statvfs(nobody_home).f_flag & os.ST_NOSUID:
        missing(f"a file system without nosuid for {nobody_home}")
    suid = nobody_home / "bin" / "isorun-suid"
    shutil.copy(FRONTEND, suid)
    suid.chmod(0o4755)
    done = subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
         str(suid), "--profile", "strict", "/bin/true"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(nobody_home)}, cwd=nobody_home / "work",
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 125
    assert "refusing to run set-user-ID" in done.stderr


def _lone_copy(tmp_path: Path, python: bool) -> tuple[Path, dict[str, str]]:
    """A copy of the front end with no isorun-py next to it, with or without a python3."""
    import isorun

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(FRONTEND, bin_dir / "isorun")
    if python:
        (bin_dir / "python3").symlink_to(sys.executable)
    site = next(p for p in sys.path if p.endswith("site-packages"))
    package = str(Path(isorun.__file__).parent.parent)
    return bin_dir / "isorun", {**os.environ, "PYTHONPATH": f"{package}:{site}"}


def test_without_isorun_py_python3_next_to_it_runs_the_cli(tmp_path: Path) -> None:
    front, env = _lone_copy(tmp_path, python=True)
    done = subprocess.run([str(front), "explain", "strict"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    python = subprocess.run([*PYTHON_CLI, "explain", "strict"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _same(done, python)


def test_without_any_python_next_to_it_says_how_to_fix(tmp_path: Path) -> None:
    front, env = _lone_copy(tmp_path, python=False)
    done = subprocess.run([str(front), "explain", "strict"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 125
    assert done.stderr == (
        f"isorun: cannot start the Python CLI: {tmp_path}/bin/isorun-py: No such file or "
        "directory, and no python3 there either\n"
        "  hint: reinstall isorun (pip install .) so isorun and isorun-py sit in one bin "
        "directory\n"
    )
