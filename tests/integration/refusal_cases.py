"""The CLI's refusal report (issue #17) on a real kernel, one case per refusal kind.

Run in-process as root, or as ``python refusal_cases.py CASE`` by an unprivileged user
(tests/integration/conftest.py, setpriv); prints OK on success. Each case runs the CLI
through its three launch paths: the C front end (``isorun``, no Python), the Python CLI
(``python -m isorun``: compiles, then hands the launch to isorun-launch), and the
uncached regular path (``ISORUN_CACHE=0``: attached.launch through isorun-launch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
if os.geteuid() == 0:
    PYTHON = [sys.executable]
    PYENV: dict[str, str] = {}
    FRONTEND: tuple[tuple[str, list[str], dict[str, str]], ...] = (
        ("frontend", [str(BIN / "isorun")], {}),)
else:
    # The venv's interpreter lives under /root here: the system one with our packages.
    # The front end would exec the venv's isorun-py on a miss, so it runs as root only.
    import isorun

    PYTHON = [f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    PYENV = {"PYTHONPATH": ":".join(
        [str(Path(isorun.__file__).parent.parent),
         *(p for p in sys.path if p.endswith("site-packages"))])}
    FRONTEND = ()
#: (name, argv prefix, extra environment)
PATHS: tuple[tuple[str, list[str], dict[str, str]], ...] = (
    ("python", [*PYTHON, "-m", "isorun"], PYENV),
    *FRONTEND,
    ("uncached", [*PYTHON, "-m", "isorun"], {**PYENV, "ISORUN_CACHE": "0"}),
)
PY = "/usr/bin/python3"
#: keyctl(KEYCTL_GET_KEYRING_ID...) five times; prints each errno; fails
KEYCTL = ("import ctypes, sys\n"
          "libc = ctypes.CDLL(None, use_errno=True)\n"
          "for _ in range(5):\n"
          "    libc.syscall(250, 0, 0, 0, 0, 0)\n"
          "    print(ctypes.get_errno())\n"
          "print(libc.syscall(435, 0, 0), ctypes.get_errno())\n"  # clone3: ENOSYS
          "print(libc.syscall(999, 0, 0), ctypes.get_errno())\n"  # unknown: ENOSYS
          "sys.exit(1)\n")


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="isorun-refusals-"))
    path.chmod(0o755)  # a root caller's sandbox (65534) must enter it
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(work: Path, prefix: list[str], extra: dict[str, str], *command: str,
        profile: str = "strict", quiet: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "XDG_CACHE_HOME": str(work / ".cache"),
           **extra}
    flags = ["--quiet"] if quiet else []
    return subprocess.run([*prefix, "--profile", profile, *flags, "--", *command], cwd=work,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def each_path(check: Callable[[Path, list[str], dict[str, str]], None]) -> None:
    with workdir() as work:
        for name, prefix, extra in PATHS:
            try:
                check(work, prefix, extra)
            except AssertionError as err:
                raise AssertionError(f"launch path {name}: {err}") from None


def case_seccomp_named_and_counted() -> None:
    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        for _ in range(2):  # the second run is the warm one (a cache hit)
            done = run(work, prefix, extra, PY, "-c", KEYCTL)
            # the errno each call got is exactly the profile's: EPERM, ENOSYS, ENOSYS
            assert done.returncode == 1, done
            assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
            assert ("isorun: seccomp refused 5 calls of keyctl: hardening: the kernel "
                    "keyring is shared across containers (not namespaced) -> EPERM "
                    "(<builtin>/strict.toml:81:1)\n") in done.stderr, done
            assert "seccomp refused 1 call of clone3: hardening: clone3 -> ENOSYS" \
                in done.stderr, done
            assert ("seccomp refused 1 call of syscall 999 (arch 0xc000003e): unknown_action"
                    " = ENOSYS") in done.stderr, done
            # a refused syscall explains it: no guesses about mounts or the network
            assert "if it failed with" not in done.stderr, done
        done = run(work, prefix, extra, "unshare", "-U", "true")
        assert done.returncode == 1, done
        assert "isorun: seccomp refused 1 call of unshare: hardening: namespace flags" \
            in done.stderr, done
        quiet = run(work, prefix, extra, PY, "-c", KEYCTL, quiet=True)
        assert quiet.returncode == 1 and "isorun:" not in quiet.stderr, quiet

    each_path(check)


def case_read_only_mount_named() -> None:
    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        done = run(work, prefix, extra, "sh", "-c", "echo x > /usr/x")
        assert done.returncode == 2 and "Read-only file system" in done.stderr, done
        assert ('isorun: if it failed with "Read-only file system": the sandbox can write '
                "only /tmp, /run, /dev/shm (read-only view: [filesystem] and [[mounts]] at "
                "<builtin>/strict.toml:16:1)") in done.stderr, done
        quiet = run(work, prefix, extra, "sh", "-c", "echo x > /usr/x", quiet=True)
        assert quiet.returncode == 2 and "isorun:" not in quiet.stderr, quiet

    each_path(check)


def _network_mode_line() -> int:
    """The line of strict's ``[network] mode``, where the note points (not a number kept
    here by hand: the profile moves)."""
    lines = (Path(__file__).resolve().parents[2] / "profiles" / "strict.toml").read_text() \
        .splitlines()
    start = lines.index("[network]")
    return next(i + 1 for i in range(start, len(lines)) if lines[i].startswith("mode"))


def case_network_named() -> None:
    connect = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=5)"
    line = _network_mode_line()

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        done = run(work, prefix, extra, PY, "-c", connect)
        assert done.returncode == 1 and "Network is unreachable" in done.stderr, done
        assert ('isorun: if it failed with "Network is unreachable" or a name lookup '
                f'failed: network = "none" (<builtin>/strict.toml:{line}:1) leaves only '
                "loopback") in done.stderr, done

    each_path(check)


def case_success_says_nothing() -> None:
    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        # refused calls in a run that succeeds are not worth a word
        done = run(work, prefix, extra, "sh", "-c", "unshare -U true 2>/dev/null; exit 0")
        assert done.returncode == 0 and done.stderr == "", done
        done = run(work, prefix, extra, "sh", "-c", "exit 7")
        assert done.returncode == 7 and "seccomp" not in done.stderr, done

    each_path(check)


def case_flood_is_bounded() -> None:
    """The adversary loops a refused call and sprays unknown numbers: exact counts, and a
    table of at most 256 kinds (the rest summed on one line)."""
    flood = ("import ctypes, sys\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "for _ in range(20000):\n"
             "    libc.syscall(250, 0, 0, 0, 0, 0)\n"
             "for nr in range(1000, 3000):\n"
             "    libc.syscall(nr, 0, 0)\n"
             "sys.exit(1)\n")

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        done = run(work, prefix, extra, PY, "-c", flood)
        assert done.returncode == 1, done
        assert "isorun: seccomp refused 20000 calls of keyctl:" in done.stderr, done
        lines = done.stderr.splitlines()
        assert len(lines) <= 200, len(lines)
        more = [line for line in lines if "more call(s) of other kinds" in line]
        assert len(more) == 1, done.stderr[-500:]
        counted = sum(1 for line in lines if "call of syscall" in line)
        assert counted + int(more[0].split()[3]) == 2000, (counted, more)

    each_path(check)


def case_kill_stays_kill() -> None:
    """A kill_process rule is the kernel's to carry out: never turned into a notification."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        (work / "kill.toml").write_text(
            'extends = ["strict"]\n\n[[seccomp.rules]]\nsyscalls = ["getppid"]\n'
            'action = "kill_process"\n')
        done = run(work, prefix, extra, PY, "-c",
                   "import ctypes; ctypes.CDLL(None).syscall(110); print('ran')",
                   profile="./kill.toml")
        assert done.returncode == 128 + 31 and done.stdout == "", done  # SIGSYS
        assert "getppid" not in done.stderr, done

    each_path(check)


#: run argv[1:] under an allow-all seccomp filter whose listener stays open, as a container
#: runtime's supervisor holds one (LXD, sysbox): the kernel then refuses isorun's own
OUTER = """
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
insn = ctypes.create_string_buffer(struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000))
prog = struct.pack("=HxxxxxxQ", 1, ctypes.addressof(insn))
fd = libc.syscall(317, 1, 8, ctypes.c_char_p(prog))  # seccomp(SET_MODE_FILTER, NEW_LISTENER)
assert fd >= 0, ctypes.get_errno()
os.dup2(fd, 100)  # inheritable: the listener outlives the execve
os.execvpe(sys.argv[1], sys.argv[1:], os.environ)
"""


def case_outer_listener_leaves_no_report() -> None:
    """Nested under an outer listener: the same enforcement and errno, no report, said."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        outer = [PYTHON[0], "-c", OUTER, *prefix]
        done = run(work, outer, extra, PY, "-c", KEYCTL)
        assert done.returncode == 1, done
        assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
        assert "isorun: no seccomp report: a seccomp listener above this sandbox" \
            in done.stderr, done

    each_path(check)


def case_landlock_backend_reports() -> None:
    """The landlock backend (no namespaces) launches through isorun-launch too: the same
    seccomp report, and its own note (EACCES outside the grants, not EROFS)."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        flags = [*prefix, "--backend", "landlock", "--allow-weaker"]
        done = run(work, flags, extra, PY, "-c", KEYCTL)
        assert done.returncode == 1, done
        assert "isorun: seccomp refused 5 calls of keyctl: hardening" in done.stderr, done
        done = run(work, flags, extra, "sh", "-c", "echo x > /usr/x")
        assert done.returncode == 2 and "Permission denied" in done.stderr, done
        assert ('isorun: if it failed with "Permission denied": the landlock backend grants '
                "only the paths of the profile's mounts") in done.stderr, done
        assert "Read-only file system" not in done.stderr, done

    with workdir() as work:
        # --backend is never cached: the Python CLI's regular path
        check(work, [*PYTHON, "-m", "isorun"], PYENV)


def case_limits_named() -> None:
    """wall_time and cpu (memory and pids need root's cgroup: test_limit_report.py)."""
    with workdir() as work:
        (work / "p.toml").write_text('extends = ["strict"]\n\n[limits]\nwall_time = 1\n')
        done = run(work, [*PYTHON, "-m", "isorun"], PYENV, "sleep", "30",
                   profile="./p.toml")
        assert done.returncode == 124, done
        assert "isorun: limits.wall_time = 1 s (p.toml:4) killed the command" in done.stderr
        (work / "c.toml").write_text('extends = ["strict"]\n\n[limits]\ncpu = 1\n')
        done = run(work, [*PYTHON, "-m", "isorun"], PYENV, "sh", "-c", "while :; do :; done",
                   profile="./c.toml")
        assert done.returncode == 137, done
        assert "isorun: limits.cpu = 1 s (c.toml:4) killed the command after" in done.stderr


def case_vanished_bind_source_hinted() -> None:
    """A required bind source that was there when the plan was made (check passed, the
    cache holds it) and is gone at the run: the refusal names the line and says what to
    create or mark optional, on every launch path (the warm ones included)."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        source = work / "src"
        source.mkdir()
        source.chmod(0o755)
        (work / "mb.toml").write_text(f'extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
                                      f'src = "{source}"\ndst = "/mnt/x"\n')
        done = run(work, prefix, extra, "true", profile="./mb.toml")
        assert done.returncode == 0, done  # control: the mount works while it is there
        source.rmdir()
        done = run(work, prefix, extra, "true", profile="./mb.toml")
        assert done.returncode == 125, done
        assert (f"isorun: error: mount: openat2: ENOENT (No such file or directory): bind "
                f"/mnt/x from {source} (mb.toml:2)\n  hint: create {source}, or mark the "
                "mount optional = true (dst /mnt/x)") in done.stderr, done.stderr

    each_path(check)


#: the wrapper backends whose exec stage hands the report's listener to the CLI
#: (sandbox/refusal_watch.py): firejail refuses root's sandbox (it runs as nobody), and
#: nobody as its caller, so it runs for uid 1000 only
WRAPPERS = ("bwrap", "firejail") if os.geteuid() == 1000 else ("bwrap",)


def each_wrapper(check: Callable[[Path, list[str], dict[str, str]], None]) -> None:
    """``check`` on each wrapper backend, through the Python CLI (--backend is never
    cached) with its launch record off and on (ISORUN_CACHE=0: attached.launch's compile)."""
    with workdir() as work:
        for backend in WRAPPERS:
            for cache in ("1", "0"):
                prefix = [*PYTHON, "-m", "isorun", "--backend", backend, "--allow-weaker"]
                try:
                    check(work, prefix, {**PYENV, "ISORUN_CACHE": cache})
                except AssertionError as err:
                    raise AssertionError(f"backend {backend} (cache {cache}): {err}") \
                        from None


def case_wrapper_seccomp_named_and_counted() -> None:
    """The errno each refused call gets is the profile's own, and the CLI names the rule
    of each, counted, as isorun-launch does on the native backend."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        done = run(work, prefix, extra, PY, "-c", KEYCTL)
        assert done.returncode == 1, done
        assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
        assert ("isorun: seccomp refused 5 calls of keyctl: hardening: the kernel "
                "keyring is shared across containers (not namespaced) -> EPERM "
                "(<builtin>/strict.toml:81:1)\n") in done.stderr, done
        assert "seccomp refused 1 call of clone3: hardening: clone3 -> ENOSYS" \
            in done.stderr, done
        assert ("seccomp refused 1 call of syscall 999 (arch 0xc000003e): unknown_action"
                " = ENOSYS") in done.stderr, done
        assert "if it failed with" not in done.stderr, done
        quiet = run(work, prefix, extra, PY, "-c", KEYCTL, quiet=True)
        # (--allow-weaker's list of what firejail gives up stays)
        assert quiet.returncode == 1 and "seccomp" not in quiet.stderr, quiet
        assert quiet.stdout.split() == done.stdout.split(), quiet
        # refused calls in a run that succeeds are not worth a word
        done = run(work, prefix, extra, "sh", "-c", "unshare -U true 2>/dev/null; exit 0")
        assert done.returncode == 0 and "seccomp" not in done.stderr, done

    each_wrapper(check)


def case_wrapper_flood_is_bounded() -> None:
    """The adversary loops a refused call and sprays unknown numbers: exact counts, and
    a table of at most 256 kinds, the rest summed on one line."""
    flood = ("import ctypes, sys\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "for _ in range(20000):\n"
             "    libc.syscall(250, 0, 0, 0, 0, 0)\n"
             "for nr in range(1000, 3000):\n"
             "    libc.syscall(nr, 0, 0)\n"
             "sys.exit(1)\n")

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        done = run(work, prefix, extra, PY, "-c", flood)
        assert done.returncode == 1, done
        assert "isorun: seccomp refused 20000 calls of keyctl:" in done.stderr, done
        # (firejail's --allow-weaker list comes first)
        lines = [line for line in done.stderr.splitlines() if "seccomp refused" in line]
        assert len(lines) <= 200, len(lines)
        more = [line for line in lines if "more call(s) of other kinds" in line]
        assert len(more) == 1, done.stderr[-500:]
        counted = sum(1 for line in lines if "call of syscall" in line)
        assert counted + int(more[0].split()[3]) == 2000, (counted, more)

    each_wrapper(check)


def case_wrapper_kill_stays_kill() -> None:
    """A kill_process rule is the kernel's to carry out, never a notification."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        (work / "kill.toml").write_text(
            'extends = ["strict"]\n\n[[seccomp.rules]]\nsyscalls = ["getppid"]\n'
            'action = "kill_process"\n')
        done = run(work, prefix, extra, PY, "-c",
                   "import ctypes; ctypes.CDLL(None).syscall(110); print('ran')",
                   profile="./kill.toml")
        assert done.returncode == 128 + 31 and done.stdout == "", done  # SIGSYS
        assert "getppid" not in done.stderr, done

    each_wrapper(check)


def case_wrapper_refused_hand_over_leaves_no_report() -> None:
    """A profile that refuses sendmsg would leave the stage's hand-over waiting on a
    listener only it holds: the stage loads the plain filter instead (same errnos), and
    the CLI says there is no report."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        (work / "nosend.toml").write_text(
            'extends = ["strict"]\n\n[[seccomp.rules]]\nsyscalls = ["sendmsg"]\n'
            'action = "errno:EACCES"\n')
        done = run(work, prefix, extra, PY, "-c", KEYCTL, profile="./nosend.toml")
        assert done.returncode == 1, done
        assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
        assert ("isorun: no seccomp report: the profile refuses sendmsg, which hands the "
                "report's listener to isorun") in done.stderr, done
        assert "seccomp refused" not in done.stderr, done

    each_wrapper(check)


def case_wrapper_outer_listener_leaves_no_report() -> None:
    """Nested under an outer listener: the same enforcement and errno, no report, said.
    bwrap only: an unprivileged caller's outer filter needs no_new_privs, under which
    setuid firejail cannot start at all (the backend says so)."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        if "firejail" in prefix:
            return
        outer = [PYTHON[0], "-c", OUTER, *prefix]
        done = run(work, outer, extra, PY, "-c", KEYCTL)
        assert done.returncode == 1, done
        assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
        assert "isorun: no seccomp report: a seccomp listener above this sandbox" \
            in done.stderr, done

    each_wrapper(check)


#: a profile the native backend launches through Python's own clone (a wall-clock
#: timer; a cgroup does the same as root), not isorun-launch
WALL = 'extends = ["strict"]\n\n[limits]\nwall_time = 60\n'


def each_clone(check: Callable[[Path, list[str], dict[str, str]], None]) -> None:
    """``check`` on the native backend's in-process clone (sandbox/process.py), through
    the Python CLI with its plan cache on and off; the profile is ./wall.toml."""
    with workdir() as work:
        (work / "wall.toml").write_text(WALL)
        for cache in ("1", "0"):
            try:
                check(work, [*PYTHON, "-m", "isorun"], {**PYENV, "ISORUN_CACHE": cache})
            except AssertionError as err:
                raise AssertionError(f"cache {cache}: {err}") from None


def case_clone_seccomp_named_and_counted() -> None:
    """A wall_time profile: the clone takes the report's listener as learn mode does."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        done = run(work, prefix, extra, PY, "-c", KEYCTL, profile="./wall.toml")
        assert done.returncode == 1, done
        assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
        assert ("isorun: seccomp refused 5 calls of keyctl: hardening: the kernel "
                "keyring is shared across containers (not namespaced) -> EPERM "
                "(<builtin>/strict.toml:81:1)\n") in done.stderr, done
        assert ("seccomp refused 1 call of syscall 999 (arch 0xc000003e): unknown_action"
                " = ENOSYS") in done.stderr, done
        assert "if it failed with" not in done.stderr, done
        quiet = run(work, prefix, extra, PY, "-c", KEYCTL, profile="./wall.toml",
                    quiet=True)
        assert quiet.returncode == 1 and "isorun:" not in quiet.stderr, quiet
        assert quiet.stdout.split() == done.stdout.split(), quiet
        done = run(work, prefix, extra, "sh", "-c", "unshare -U true 2>/dev/null; exit 0",
                   profile="./wall.toml")
        assert done.returncode == 0 and done.stderr == "", done
        # the timer still kills, and says so
        (work / "short.toml").write_text(WALL.replace("60", "1"))
        done = run(work, prefix, extra, "sleep", "30", profile="./short.toml")
        assert done.returncode == 124 and "limits.wall_time = 1 s" in done.stderr, done

    each_clone(check)


def case_clone_kill_stays_kill() -> None:
    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        (work / "kill.toml").write_text(
            WALL + '\n[[seccomp.rules]]\nsyscalls = ["getppid"]\naction = "kill_process"\n')
        done = run(work, prefix, extra, PY, "-c",
                   "import ctypes; ctypes.CDLL(None).syscall(110); print('ran')",
                   profile="./kill.toml")
        assert done.returncode == 128 + 31 and done.stdout == "", done  # SIGSYS
        assert "getppid" not in done.stderr, done

    each_clone(check)


def case_clone_outer_listener_leaves_no_report() -> None:
    """Under an outer listener the clone's child loads the plain program (the same
    errnos), the parent takes no descriptor the command opened since, and says so."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        outer = [PYTHON[0], "-c", OUTER, *prefix]
        # the command opens files at once: the number the child announced is then
        # taken by something else, which the hand-over must not mistake for a listener
        opener = ("import os\nfds = [os.open('/dev/null', os.O_RDONLY) for _ in range(8)]\n"
                  + KEYCTL)
        done = run(work, outer, extra, PY, "-c", opener, profile="./wall.toml")
        assert done.returncode == 1, done
        assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
        assert "isorun: no seccomp report: a seccomp listener above this sandbox" \
            in done.stderr, done

    each_clone(check)


def case_cgroup_seccomp_named() -> None:
    """A cgroup profile (pids: root's cgroup) launches through the clone as well."""
    with workdir() as work:
        (work / "pids.toml").write_text('extends = ["strict"]\n\n[limits]\npids = 64\n')
        done = run(work, [*PYTHON, "-m", "isorun"], PYENV, PY, "-c", KEYCTL,
                   profile="./pids.toml")
        assert done.returncode == 1, done
        assert done.stdout.split() == ["1"] * 5 + ["-1", "38", "-1", "38"], done
        assert "isorun: seccomp refused 5 calls of keyctl: hardening" in done.stderr, done


#: the command's descriptors (after a refused call, so the listener exists): none may be
#: the report's socket or listener, which would let it answer its own refused calls
FDS = ("import ctypes, os, sys\n"
       "ctypes.CDLL(None).syscall(250, 0, 0, 0, 0, 0)\n"
       "for fd in sorted(os.listdir('/proc/self/fd')):\n"
       "    try:\n"
       "        print(fd, os.readlink('/proc/self/fd/' + fd))\n"
       "    except OSError as err:\n"
       "        print(fd, err)\n"
       "sys.exit(1)\n")


def case_command_holds_no_report_descriptor() -> None:
    """The attacker's view: neither the hand-over's socket nor the listener reaches the
    command (close-on-exec), on the wrappers and the clone alike."""

    def check(work: Path, prefix: list[str], extra: dict[str, str]) -> None:
        profile = "./wall.toml" if "--backend" not in prefix else "strict"
        (work / "wall.toml").write_text(WALL)
        done = run(work, prefix, extra, PY, "-c", FDS, profile=profile)
        assert done.returncode == 1, done
        assert "isorun: seccomp refused 1 call of keyctl" in done.stderr, done
        for line in done.stdout.splitlines():
            fd, what = line.split(" ", 1)
            assert int(fd) <= 3, done.stdout  # 0-2, and the directory listdir opened
            assert "socket" not in what and "anon_inode" not in what, done.stdout

    each_wrapper(check)
    each_clone(check)


CASES: dict[str, Callable[[], None]] = {
    name[len("case_"):]: fn for name, fn in list(globals().items()) if name.startswith("case_")
}

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    print("OK")
