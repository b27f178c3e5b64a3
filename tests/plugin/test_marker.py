"""``@pytest.mark.isorun``: one test's body in a forked, sandboxed child."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import missing, unprivileged_user
from tests.plugin._helpers import PYTHON, output, run

pytestmark = pytest.mark.needs("userns", "shim")

SUITE = textwrap.dedent("""
    import os, socket
    import pytest

    @pytest.fixture
    def listener():
        server = socket.create_server(("127.0.0.1", 0))
        yield server.getsockname()
        server.close()

    @pytest.mark.isorun(network="none")
    def test_marked_connect(listener):
        socket.create_connection(listener, timeout=3).close()

    def test_unmarked_connect(listener):
        socket.create_connection(listener, timeout=3).close()

    @pytest.mark.isorun()
    def test_segfault():
        import ctypes
        ctypes.string_at(0)

    @pytest.mark.isorun()
    def test_exit():
        os._exit(3)

    @pytest.mark.isorun()
    def test_write_project():
        open("written.txt", "w").write("x")

    @pytest.mark.isorun()
    def test_read_secret():
        open(os.path.expanduser("~/.ssh/id_rsa")).read()

    @pytest.mark.isorun()
    def test_tmp_path_is_writable(tmp_path):
        (tmp_path / "out").write_text("ok")
        assert (tmp_path / "out").read_text() == "ok"

    @pytest.mark.isorun()
    def test_plain_failure():
        assert 1 == 2

    def test_after_crashes_session_goes_on():
        pass
""")


#: how the plugin makes a marked test's process: one clone3 straight into the
#: namespaces (sandbox/pyfork.py), or os.fork twice, where clone3 is unusable
FORKS = {"clone3": {}, "os-fork": {"ISORUN_MARKER_FORK": "os"}}


@pytest.fixture(scope="module", params=list(FORKS))
def report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, str]:
    project = tmp_path_factory.mktemp("marker")
    project.chmod(0o755)
    (project / "test_suite.py").write_text(SUITE)
    # Beside the project, not in it: a project that holds the home is refused (issue #13).
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("SECRET")
    proc = run(
        [PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_suite.py"],
        cwd=project,
        env={"HOME": str(home), **FORKS[request.param]},
    )
    # Never a silent fallback: clone3 works on this kernel (pyfork.Unsupported warns).
    assert "clone3 is unusable" not in proc.stdout, output(proc)
    return proc.returncode, output(proc)


def _line(text: str, test: str) -> str:
    return next(
        (ln for ln in text.splitlines() if ln.endswith(f"::{test}") or f"::{test} " in ln), ""
    )


def test_marked_connect_to_host_loopback_fails_with_rule(report: tuple[int, str]) -> None:
    _, text = report
    assert _line(text, "test_marked_connect").startswith("FAILED"), text
    assert "connect() refused: network = none" in text


def test_same_connect_unmarked_passes(report: tuple[int, str]) -> None:
    assert _line(report[1], "test_unmarked_connect").startswith("PASSED"), report[1]


def test_crash_is_that_tests_failure(report: tuple[int, str]) -> None:
    code, text = report
    assert "killed by SIGSEGV" in text
    # pytest's faulthandler, pointed at the test's captured stderr inside the sandbox
    assert "Fatal Python error: Segmentation fault" in text
    assert "exited with status 3" in text
    assert _line(text, "test_after_crashes_session_goes_on").startswith("PASSED"), text
    assert code == 1, text


def test_write_outside_writable_names_rule(report: tuple[int, str]) -> None:
    assert "read-only file system outside writable" in report[1]


def test_host_secret_hidden(report: tuple[int, str]) -> None:
    text = report[1]
    assert "$HOME is an empty private directory" in text
    assert "SECRET" not in text


def test_tmp_path_stays_writable(report: tuple[int, str]) -> None:
    assert _line(report[1], "test_tmp_path_is_writable").startswith("PASSED"), report[1]


def test_plain_failure_keeps_child_traceback(report: tuple[int, str]) -> None:
    assert "assert 1 == 2" in report[1]


# The sandbox's own root, answered by the kernel inside the marked test: a host file the
# test profile does not bind is absent, the body is pid 1 of its own pid namespace and
# /proc shows that namespace only. The unmarked twins see the host.
ROOT_SUITE = textwrap.dedent("""
    import os
    import pytest

    HOST_FILE = {host_file!r}

    def _pids():
        return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())

    @pytest.mark.isorun()
    def test_marked_root_hides_host_file():
        assert os.path.isdir(os.path.dirname(os.__file__))  # the interpreter is bound
        assert not os.path.exists(HOST_FILE)
        assert not os.path.exists(os.path.dirname(HOST_FILE))

    def test_unmarked_sees_host_file():
        assert open(HOST_FILE).read() == "host"

    @pytest.mark.isorun()
    def test_marked_is_pid_1_of_own_namespace():
        assert os.getpid() == 1
        assert _pids() == [1]
        assert os.uname().nodename == "sandbox"

    def test_unmarked_sees_host_pids():
        assert os.getpid() != 1 and len(_pids()) > 1

    @pytest.mark.isorun()
    def test_marked_is_confined():
        import ctypes
        status = dict(
            line.split(":", 1) for line in open("/proc/self/status").read().splitlines()
        )
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2"
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.unshare(0x10000000) == -1  # CLONE_NEWUSER: refused inside

    @pytest.mark.isorun()
    def test_marked_threads_and_subprocesses_work():
        # What the C library keeps per thread must be right in the test's process, which
        # clone3 made without glibc's fork: its thread id (a new thread, a fork, a
        # signal to itself) and its locks.
        import signal, subprocess, threading
        ids = []
        worker = threading.Thread(target=lambda: ids.append(threading.get_native_id()))
        worker.start()
        worker.join()
        assert ids and ids[0] not in (0, 1)
        assert threading.get_native_id() == 1
        done = subprocess.run(["/bin/sh", "-c", "echo $$"], capture_output=True, text=True)
        assert done.returncode == 0 and int(done.stdout) > 1
        got = []
        signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
        signal.raise_signal(signal.SIGUSR1)
        assert got == [1]
        lock = threading.RLock()
        with lock, lock:
            pass

    @pytest.mark.isorun()
    def test_marked_lazy_import_resolves_in_new_root():
        import xml.dom.minidom  # not imported by pytest before the fork
        assert xml.dom.minidom.parseString("<a/>").documentElement.tagName == "a"

    @pytest.mark.isorun()
    def test_marked_uid(tmp_path):
        (tmp_path / "out").write_text("ok")
        print("UID", os.getuid(), "EUID", os.geteuid())
        assert os.getuid() == {uid}

    @pytest.fixture
    def outside(monkeypatch):
        # A fixture: it runs in pytest's process, before the fork.
        monkeypatch.chdir(os.path.dirname(HOST_FILE))

    @pytest.mark.isorun()
    def test_marked_cwd_outside_root(outside):
        pass
""")


@pytest.fixture(scope="module")
def host_file() -> Iterator[str]:
    # Under /var/tmp: a host directory every user can read that the test profile binds
    # nowhere (it binds /usr, /etc, the project, the interpreter; /tmp is its own).
    directory = tempfile.mkdtemp(prefix="isorun-marker-", dir="/var/tmp")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "host.txt")
    with open(path, "w") as f:
        f.write("host")
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(directory)


def _root_report(
    host_file: str, as_user: pwd.struct_passwd | None, fork: str
) -> tuple[int, str]:
    # Directly under /tmp and world-readable: pytest's own tmp_path parents are 0700,
    # and an unprivileged run must read the project.
    project = Path(tempfile.mkdtemp(prefix="isorun-marker-root-"))
    # A home of its own beside the project: a working directory that is the home (or
    # holds it) is refused (issue #13).
    home = Path(tempfile.mkdtemp(prefix="isorun-marker-home-"))
    try:
        project.chmod(0o755)
        home.chmod(0o755)
        if as_user is not None:
            os.chown(home, as_user.pw_uid, as_user.pw_gid)
        uid = 65534 if as_user is None else as_user.pw_uid
        (project / "test_root.py").write_text(ROOT_SUITE.format(host_file=host_file, uid=uid))
        argv = [PYTHON, "-m", "pytest", "-rA", "-s", "-p", "no:cacheprovider", "test_root.py"]
        env = {"HOME": str(home), **FORKS[fork]}
        if as_user is not None:
            argv = ["setpriv", f"--reuid={as_user.pw_uid}", f"--regid={as_user.pw_gid}",
                    "--clear-groups", *argv]  # fmt: skip
            env["PATH"] = "/usr/bin:/bin"
        proc = run(argv, cwd=project, env=env)
        return proc.returncode, output(proc)
    finally:
        shutil.rmtree(project)
        shutil.rmtree(home)


def _check_root_report(report: tuple[int, str]) -> None:
    code, text = report
    for test in (
        "test_marked_root_hides_host_file",
        "test_unmarked_sees_host_file",
        "test_marked_is_pid_1_of_own_namespace",
        "test_unmarked_sees_host_pids",
        "test_marked_lazy_import_resolves_in_new_root",
        "test_marked_threads_and_subprocesses_work",
        "test_marked_is_confined",
        "test_marked_uid",
    ):
        assert _line(text, test).startswith("PASSED"), f"{test}:\n{text}"
    assert _line(text, "test_marked_cwd_outside_root").startswith("FAILED"), text
    assert "could not enter the sandbox" in text
    assert "hint: the test's working directory" in text
    assert "clone3 is unusable" not in text
    assert code == 1, text


@pytest.mark.needs("root")
@pytest.mark.parametrize("fork", list(FORKS))
def test_marker_gives_new_root_as_root(host_file: str, fork: str) -> None:
    _check_root_report(_root_report(host_file, None, fork))


@pytest.mark.needs("root", "setpriv")
@pytest.mark.parametrize("fork", list(FORKS))
def test_marker_gives_new_root_unprivileged(host_file: str, fork: str) -> None:
    user = unprivileged_user()
    if user is None:
        missing("an unprivileged user to switch to")
    _check_root_report(_root_report(host_file, user, fork))


@pytest.mark.parametrize(("env", "says"), [
    ({}, "forks once (clone3"),
    (FORKS["os-fork"], "forks twice (os.fork; clone3 unusable: ISORUN_MARKER_FORK=os)"),
    # A thread of the suite's own (a watchdog, an executor) rules clone3 out.
    ({"ISORUN_TEST_THREAD": "1"}, "forks twice (os.fork; clone3 unusable: the process has 2 thr"),
])  # fmt: skip
def test_header_says_how_marked_tests_fork(tmp_path: Path, env: dict[str, str], says: str) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "conftest.py").write_text(
        "import os, threading, time\n"
        "if os.environ.get('ISORUN_TEST_THREAD'):\n"
        "    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    )
    (tmp_path / "test_one.py").write_text(
        "import os, pytest\n\n@pytest.mark.isorun()\ndef test_marked():\n"
        "    assert os.getpid() == 1\n"
    )
    proc = run([PYTHON, "-m", "pytest", "-v", "-p", "no:cacheprovider"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, output(proc)
    assert f"isorun: a marked test {says}" in proc.stdout, output(proc)


def test_marker_inside_isorun_session_fails_closed(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "test_nested.py").write_text(
        "import pytest\n\n@pytest.mark.isorun()\ndef test_marked():\n    pass\n"
    )
    proc = run([PYTHON, "-m", "pytest", "--isorun", "-q", "-p", "no:cacheprovider"], cwd=tmp_path)
    assert proc.returncode == 1, output(proc)
    assert "cannot run inside pytest --isorun" in proc.stdout, output(proc)


def test_marker_unknown_profile_is_that_tests_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "test_bad.py").write_text(
        "import pytest\n\n@pytest.mark.isorun(profile='no-such')\ndef test_bad():\n    pass\n"
        "\ndef test_other():\n    pass\n"
    )
    proc = run([PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider"], cwd=tmp_path)
    assert proc.returncode == 1, output(proc)
    assert "marker at test_bad.py:3" in proc.stdout, output(proc)
    assert "no built-in profile named 'no-such'" in proc.stdout, output(proc)
    assert "PASSED test_bad.py::test_other" in proc.stdout, output(proc)


def test_marker_writable_path_outside_the_tree_under_a_read_only_root(tmp_path: Path) -> None:
    # /var is not in the sandbox's tree: the writable bind's mount point is made in the
    # root, so it must come before the root's read-only remount (issue #13).
    outside = Path(tempfile.mkdtemp(prefix="isorun-marker-w-", dir="/var/tmp"))
    try:
        outside.chmod(0o777)
        tmp_path.chmod(0o755)
        (tmp_path / "test_w.py").write_text(
            "import pytest\n\n"
            f"@pytest.mark.isorun(writable=[{str(outside)!r}])\n"
            "def test_w():\n"
            f"    open({str(outside / 'out')!r}, 'w').write('ok')\n"
            "    with pytest.raises(OSError):\n"
            "        open('/var/elsewhere', 'w')\n"
        )
        proc = run([PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider"], cwd=tmp_path)
        assert proc.returncode == 0, output(proc)
        assert (outside / "out").read_text() == "ok"
    finally:
        shutil.rmtree(outside)


ROOTFS_SUITE = textwrap.dedent("""
    import os, pytest

    @pytest.mark.isorun(profile={profile!r})
    def test_in_rootfs():
        assert open("/etc/marker").read() == "inside\\n"
        assert os.listdir("/bin") == ["busybox"]
        assert os.getpid() == 1
""")


@pytest.mark.needs("root")
def test_marker_rootfs_behind_0700_directory_as_root() -> None:
    # As for a launch (tests/integration/test_rootfs.py): uid 65534 cannot walk into the
    # 0700 directory, so the parent clones the rootfs and the child attaches that tree.
    base = Path(tempfile.mkdtemp(prefix="isorun-marker-rootfs-"))
    try:
        base.chmod(0o755)
        rootfs = base / "private" / "rootfs"
        for name in ("bin", "proc", "tmp", "etc"):
            (rootfs / name).mkdir(parents=True)
        shutil.copy2(os.path.realpath(shutil.which("busybox") or "/bin/busybox"),
                     rootfs / "bin" / "busybox")  # fmt: skip
        (rootfs / "etc" / "marker").write_text("inside\n")
        project = base / "project"
        project.mkdir()
        (base / "home").mkdir()
        # The marker binds the interpreter, the project and the working directory at
        # their host paths; a rootfs owned by host root must have those mount points, as
        # the overflow uid cannot create them.
        import sys

        for path in (*sys.path, sys.prefix, sys.base_prefix, str(project)):
            if path.startswith("/"):
                (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        rootfs.chmod(0o755)
        (base / "private").chmod(0o700)
        profile = base / "private" / "rootfs.toml"
        profile.write_text(
            f'[filesystem]\nroot = "{rootfs}"\ncwd = "/"\n\n'
            '[[mounts]]\ntype = "proc"\ndst = "/proc"\n\n'
            '[[mounts]]\ntype = "tmpfs"\ndst = "/tmp"\n\n'
            '[seccomp]\nallow = ["@docker-default"]\n'
        )
        (project / "test_rootfs.py").write_text(ROOTFS_SUITE.format(profile=str(profile)))
        proc = run([PYTHON, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_rootfs.py"],
                   cwd=project, env={"HOME": str(base / "home")})  # fmt: skip
        assert proc.returncode == 0, output(proc)
        assert _line(output(proc), "test_in_rootfs").startswith("PASSED"), output(proc)
    finally:
        shutil.rmtree(base)
