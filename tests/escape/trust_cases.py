"""Attacks on what the host side of isorun reads after a sandbox could have written it:
the working directory on ``python -m``'s sys.path, the plan cache, the exec stage and
the compiler that builds it. Each plants its payload from inside a real ``build``
sandbox (the project is writable there), then runs the next launch on the host and
asserts that the payload did not run there. Run in-process as root by
test_attack_host_trust.py, or under setpriv as an unprivileged user
(``python trust_cases.py CASE``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from attack_cases import (  # type: ignore[import-not-found]  # noqa: E402
    NEXT,
    POISON,
    PY,
    _pythonpath,
    isorun,
    project,
)


@contextmanager
def marker_dir() -> Iterator[Path]:
    """Outside every project, writable by everyone: a payload that ran on the host (as
    the caller) or in a sandbox (as its uid) leaves its file here, the test looks."""
    path = Path(tempfile.mkdtemp(prefix="isorun-atk-marker-", dir="/var/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": _pythonpath(), **extra}


def plant(where: Path, script: str, *args: str) -> None:
    """Run ``sh -c script`` in a build sandbox of ``where`` (its ${CWD} is writable),
    with a plan cache outside the project, so nothing refuses the launch."""
    done = isorun("-p", "build", "--", "/bin/sh", "-c", script, "sh", *args, cwd=where)
    assert done.returncode == 0, ("the build sandbox could not plant its payload",
                                  done.returncode, done.stdout, done.stderr)


#: a module the CLI imports lazily, after python -m put the working directory first
MODULE = "import os\nopen(os.path.join({marker!r}, 'ran'), 'w').write(str(os.getuid()))\n"


def python_m_isorun_imports_nothing_from_the_project() -> None:
    """``python -m isorun`` puts the working directory first on sys.path, before the
    standard library; the CLI imports dataclasses, tomllib and pickle lazily. A build
    run writes ``dataclasses.py`` into the project: the next launch from there must not
    import it on the host."""
    with project("isorun-atk-syspath-") as where, marker_dir() as marker:
        module = MODULE.format(marker=str(marker))
        plant(where, 'for m in dataclasses tomllib pickle enum; do printf %s "$1" > $m.py; '
              "done", module)
        assert (where / "dataclasses.py").read_text() == module  # the control: planted
        nxt = isorun("-p", "strict", "--", "/bin/echo", "next", cwd=where)
        assert not (marker / "ran").exists(), (
            "the host imported a module the sandbox wrote:", nxt.stderr)
        assert (nxt.returncode, nxt.stdout) == (0, "next\n"), (nxt.returncode, nxt.stderr)


def earlier_build_poisons_a_cache_named_later() -> None:
    """The plan cache is refused under a writable mount of the *current* run; here an
    earlier build run (cache elsewhere) rewrites a cache in the project, and a later
    launch names that cache (XDG_CACHE_HOME=$PWD/.cache, a CI habit) and loads it."""
    with project("isorun-atk-latecache-") as where, marker_dir() as marker:
        cache = where / ".cache"
        (where / "poison.py").write_text(POISON)
        (where / "poison.py").chmod(0o644)
        first = isorun("-p", "strict", "--", "true", cwd=where, cache=cache)
        assert first.returncode == 0, first.stderr
        attack = isorun("-p", "build", "--", PY, "poison.py", str(cache / "isorun"),
                        str(marker / "ran"), cwd=where)
        # the control: the sandbox did rewrite the entries (not root's: its sandbox runs
        # as nobody, which cannot read root's 0700 cache directory)
        poisoned = attack.stdout.startswith("poisoned ") and attack.stdout.split()[1] != "0"
        assert poisoned == (os.getuid() != 0), (attack.stdout, attack.stderr)
        nxt = subprocess.run([PY, "-c", NEXT], cwd=where, capture_output=True, text=True,
                             timeout=120, check=False, env=_env(XDG_CACHE_HOME=str(cache)))
        assert not (marker / "ran").exists(), (
            "a launch loaded a plan an earlier sandbox wrote, and ran it on the host:",
            attack.stdout, attack.stderr, nxt.stdout, nxt.stderr)
        assert nxt.stdout.strip() == "0", (nxt.stdout, nxt.stderr)


def _stage_name() -> str:
    """The exec stage's file name, as anyone who can read isorun's source computes it."""
    from isorun.sandbox import exec_stage

    return exec_stage.stage_name()


#: replaces the exec stage, wherever the relative cache put it, with a script that
#: leaves a mark and then does the stage's job badly (it just runs bwrap)
STAGE = """#!/bin/sh
echo "$(id -u)" > {marker}/ran
while [ "$1" != "--" ] && [ $# -gt 0 ]; do shift; done
shift
exec "$@"
"""


def relative_xdg_cache_home_keeps_the_exec_stage_out_of_the_project() -> None:
    """A relative XDG_CACHE_HOME is invalid (XDG base directory spec): the plan cache
    ignores it, and so must the exec stage, which bwrap's launch runs on the host
    before bwrap. Else it is built in the project, build rewrites it, and the next
    bwrap launch runs the sandbox's program on the host."""
    with project("isorun-atk-stage-") as where, marker_dir() as marker:
        home = Path(f"{where}-home")
        home.mkdir(mode=0o755)
        try:
            env = {"XDG_CACHE_HOME": "rel", "HOME": str(home)}
            run = ["--backend", "bwrap", "-p", "build", "--"]
            stage = where / "rel" / "isorun" / _stage_name()
            script = STAGE.format(marker=str(marker))
            first = subprocess.run(
                [PY, "-m", "isorun", *run, "/bin/sh", "-c",
                 'mkdir -p "${1%/*}" && printf %s "$2" > "$1.new" && chmod 755 "$1.new" '
                 '&& mv -f "$1.new" "$1"', "sh", str(stage), script],
                cwd=where, env=_env(**env), capture_output=True, text=True, timeout=120,
                check=False)
            assert first.returncode == 0, (first.returncode, first.stderr)
            assert stage.read_text() == script  # the control: planted where it was built
            nxt = subprocess.run([PY, "-m", "isorun", *run, "/bin/echo", "next"], cwd=where,
                                 env=_env(**env), capture_output=True, text=True,
                                 timeout=120, check=False)
            assert not (marker / "ran").exists(), (
                "the next bwrap launch ran an exec stage the sandbox wrote",
                (marker / "ran").read_text(), nxt.stderr)
            assert (nxt.returncode, nxt.stdout) == (0, "next\n"), (nxt.returncode, nxt.stderr)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def earlier_build_plants_an_exec_stage_named_later() -> None:
    """The exec stage's side of the cache poisoning: an earlier build run (its cache
    elsewhere) writes a stage of its own, the caller's own file, where a later bwrap
    launch that names the project's cache (XDG_CACHE_HOME=$PWD/.cache) looks for it.
    That launch runs the stage on the host before bwrap: it must build its own."""
    with project("isorun-atk-stage2-") as where, marker_dir() as marker:
        cache = where / ".cache"
        stage = cache / "isorun" / _stage_name()
        script = STAGE.format(marker=str(marker))
        plant(where, 'mkdir -p "${1%/*}" && printf %s "$2" > "$1" && chmod 755 "$1" '
              '&& printf 0123456789abcdef0123456789abcdef > "$1.tag"', str(stage), script)
        assert stage.read_text() == script  # the control: planted where it is looked for
        nxt = isorun("--backend", "bwrap", "-p", "strict", "--", "/bin/echo", "next",
                     cwd=where, cache=cache)
        assert not (marker / "ran").exists(), (
            "a bwrap launch ran an exec stage an earlier sandbox wrote",
            (marker / "ran").read_text(), nxt.stderr)
        assert (nxt.returncode, nxt.stdout) == (0, "next\n"), (nxt.returncode, nxt.stderr)
        if os.getuid() != 0:  # root's stage lives in /var/cache/isorun, never here
            assert stage.read_bytes()[:4] == b"\x7fELF", sorted(stage.parent.iterdir())


#: a compiler driver, assembler or header a sandbox left in the project; any of them
#: running (or being read) on the host is the escape
FAKE_TOOL = "#!/bin/sh\necho {name} > {marker}/{name}\nexec /usr/bin/{name} \"$@\"\n"


def exec_stage_is_built_by_the_system_compiler_alone() -> None:
    """The project's ``.venv/bin`` is first on an activated PATH, and gcc reads
    COMPILER_PATH (its assembler and linker), C_INCLUDE_PATH (headers) and TMPDIR (its
    object files): a build run plants a ``cc``, an ``as`` and a ``stdio.h`` there, and the
    next exec stage build must use none of them."""
    from isorun.sandbox import exec_stage

    with project("isorun-atk-cc-") as where, marker_dir() as marker:
        tools = where / ".venv" / "bin"
        script = 'mkdir -p .venv/bin .venv/include && cd .venv/bin'
        for name in ("cc", "gcc", "as", "ld"):
            body = FAKE_TOOL.format(name=name, marker=str(marker))
            script += f" && printf %s {_quote(body)} > {name} && chmod 755 {name}"
        script += " && printf '#error planted header\\n' > ../include/stdio.h"
        plant(where, script)
        assert (tools / "cc").is_file() and (where / ".venv/include/stdio.h").is_file()
        cache = Path(tempfile.mkdtemp(prefix="isorun-atk-stage-"))
        saved = dict(os.environ)
        os.environ.update(PATH=f"{tools}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                          COMPILER_PATH=str(tools), GCC_EXEC_PREFIX=f"{tools}/",
                          C_INCLUDE_PATH=str(where / ".venv" / "include"),
                          TMPDIR=str(where))
        try:
            built = exec_stage.exec_stage_path(cache)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            ran = sorted(p.name for p in marker.iterdir())
            assert ran == [], f"the exec stage build ran the sandbox's {ran} on the host"
            # The stage is the real one: it refuses a bad argument as isorun's stage does.
            done = subprocess.run([built, "--no-such-option"], capture_output=True,
                                  text=True, timeout=30, check=False)
            assert done.returncode == 125 and done.stderr.startswith("isorun"), done
        finally:
            shutil.rmtree(cache, ignore_errors=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def exec_stage_behind_a_link_is_rebuilt() -> None:
    """A symbolic link at the stage's name vouched for whatever it pointed to (the check
    followed it), e.g. a script of the caller's in a project; the stage must be a regular
    file of ours, and one that is not is rebuilt, not run."""
    from isorun.sandbox import exec_stage

    with project("isorun-atk-stagelink-") as where, marker_dir() as marker:
        fake = where / "stage.sh"
        fake.write_text(STAGE.format(marker=str(marker)))
        fake.chmod(0o755)  # the caller's own file, as _trusted wants: only the link is wrong
        cache = Path(tempfile.mkdtemp(prefix="isorun-atk-stage-"))
        cache.chmod(0o755)
        try:
            (cache / _stage_name()).symlink_to(fake)
            built = exec_stage.exec_stage_path(cache)
            assert not os.path.islink(built) and Path(built).read_bytes()[:4] == b"\x7fELF", \
                built
            done = subprocess.run([built, "--no-such-option"], capture_output=True,
                                  text=True, timeout=30, check=False)
            assert not (marker / "ran").exists(), "the linked script ran as the exec stage"
            assert done.returncode == 125, done
        finally:
            shutil.rmtree(cache, ignore_errors=True)


def exec_stage_directory_follows_the_plan_cache_rule() -> None:
    """One rule for both caches: a relative or empty XDG_CACHE_HOME is ignored."""
    from isorun.cache import files as cache_files
    from isorun.sandbox import exec_stage

    for xdg in ("rel", "", "./x", "/abs/where"):
        env = {"HOME": "/home/someone", "XDG_CACHE_HOME": xdg}
        assert str(exec_stage.cache_dir(1000, env)) == cache_files.cache_dir(env), xdg
    assert str(exec_stage.cache_dir(0, {"XDG_CACHE_HOME": "/x"})) == "/var/cache/isorun"


#: written by the sandbox into the project's virtual environment: a .pth line starting
#: with "import" runs at every start of that Python, on the host too. If the sandbox
#: cannot write there (a root caller's venv), it moves the venv aside and puts its own
SITE_PTH = r"""
sp=$(echo .venv/lib/python3*/site-packages)
if ! printf '%s\n' "$1" > "$sp/zz-planted.pth" 2>/dev/null; then
    mv .venv .venv-old && cp -R .venv-old .venv && printf '%s\n' "$1" > "$sp/zz-planted.pth"
fi
"""


def build_cannot_rewrite_the_environment_isorun_runs_in() -> None:
    """isorun installed in the project's virtual environment (``python -m venv .venv``
    there, the usual layout) and build's writable ${CWD}: the sandbox would plant a
    ``.pth`` that the next ``isorun`` runs on the host. Refused before the launch."""
    import sysconfig

    with project("isorun-atk-venv-") as where, marker_dir() as marker:
        subprocess.run([PY, "-m", "venv", "--without-pip", str(where / ".venv")], check=True,
                       timeout=120)
        python = str(where / ".venv" / "bin" / "python")
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                               "['purelib'])"], check=True, capture_output=True, text=True)
        # isorun and its libraries, as `pip install` would have put them there
        Path(site.stdout.strip(), "isorun-dev.pth").write_text(
            "\n".join([*_pythonpath().split(":"), sysconfig.get_paths()["purelib"]]) + "\n")
        payload = f"import os; open({str(marker / 'ran')!r}, 'w').write(str(os.getuid()))"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["XDG_CACHE_HOME"] = f"{where}-cache"

        def launch(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([python, "-m", "isorun", *argv], cwd=where, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)

        attack = launch("-p", "build", "--", "/bin/sh", "-c", SITE_PTH, "sh", payload)
        nxt = launch("-p", "strict", "--", "/bin/echo", "next")
        assert not (marker / "ran").exists(), (
            "the next isorun ran a .pth the sandbox planted in its environment, on the host:",
            attack.returncode, attack.stderr, nxt.stderr)
        assert attack.returncode == 125, (attack.returncode, attack.stderr)
        assert "Python environment" in attack.stderr and "build.toml" in attack.stderr, \
            attack.stderr
        assert (nxt.returncode, nxt.stdout) == (0, "next\n"), (nxt.returncode, nxt.stderr)


#: run inside build: turns the launch index of one profile into the index of another
#: (the spec field names it), keeping the header and its tag: the sandbox cannot read
#: the key to make a new one. A format it does not know is left alone, and says so.
RELABEL = r"""
import os, sys
src, dst, old, new = sys.argv[1:5]
blob = open(src, "rb").read()
magic = b"isorun-launch-index\n"
head = len(magic) + 4 + 8 + 32  # magic, u32 format, u64 body length, the tag
assert blob.startswith(magic) and int.from_bytes(blob[len(magic):len(magic) + 4],
                                                 sys.byteorder) == 3, "another index format"
body = blob[head:]
n = int.from_bytes(body[:4], sys.byteorder)
assert body[4:4 + n] == old.encode(), body[:40]
body = len(new).to_bytes(4, sys.byteorder) + new.encode() + body[4 + n:]
out = (blob[:len(magic) + 4] + len(body).to_bytes(8, sys.byteorder)
       + blob[len(magic) + 12:head] + body)
with open(dst + ".new", "wb") as f:
    f.write(out)
os.chmod(dst + ".new", 0o600)
os.replace(dst + ".new", dst)
print("relabelled")
"""


@contextmanager
def frontend_bin() -> Iterator[Path]:
    """A bin directory any caller can run: a copy of the C front end, the system's
    python3 beside it and isorun-py (the pairing the front end insists on)."""
    frontend = Path(sys.executable).parent / "isorun"  # as tests/integration/test_frontend.py
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = shutil.which(version, path="/usr/bin:/bin")
    assert python is not None and frontend.is_file(), (python, frontend)
    path = Path(tempfile.mkdtemp(prefix="isorun-atk-bin-", dir="/var/tmp"))
    try:
        path.chmod(0o755)
        (path / "python3").symlink_to(python)
        shutil.copy(frontend, path / "isorun")
        script = path / "isorun-py"
        script.write_text(f"#!{path}/python3\nfrom isorun.__main__ import main\nmain()\n")
        script.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def earlier_build_relabels_a_launch_index_named_later() -> None:
    """The C front end's side of the cache poisoning above: an earlier build run rewrites
    the web profile's launch index (host network) into strict's, in a cache the later
    launch names; `isorun -p strict` then runs on the host's network."""
    from isorun.cache import index as cache_index

    with project("isorun-atk-index-") as where, frontend_bin() as bin_dir:
        cache = where / ".cache"
        # The front end needs HOME (without it, the key reads the password database)
        env = _env(XDG_CACHE_HOME=str(cache), HOME=str(bin_dir))
        env.pop("ISORUN_CACHE", None)
        uid = os.getuid()
        web = cache / "isorun" / cache_index.index_name("web", str(where), uid)
        strict = cache / "isorun" / cache_index.index_name("strict", str(where), uid)

        def front(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(bin_dir / "isorun"), *argv], cwd=where, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)

        deadline = time.monotonic() + 30
        while not web.exists():
            assert time.monotonic() < deadline, "no launch index for web"
            done = front("-p", "web", "--", "true")
            assert done.returncode == 0, done.stderr
            time.sleep(0.3)
        (where / "relabel.py").write_text(RELABEL)
        (where / "relabel.py").chmod(0o644)
        attack = isorun("-p", "build", "--", PY, "relabel.py", str(web), str(strict), "web",
                        "strict", cwd=where)
        # the control: the sandbox relabelled the index (root's sandbox runs as nobody, and
        # cannot read root's files, let alone rewrite them)
        assert ("relabelled" in attack.stdout) == (uid != 0), (attack.stdout, attack.stderr)
        host_net = os.readlink("/proc/self/ns/net")
        nxt = front("-p", "strict", "--", "/bin/readlink", "/proc/self/ns/net")
        assert nxt.returncode == 0, (nxt.returncode, nxt.stderr)
        assert nxt.stdout.strip() != host_net, (
            "strict ran on the host's network: the front end launched an index an earlier "
            "sandbox relabelled", attack.stdout, attack.stderr)


def cache_of_another_user_is_not_read() -> None:
    """Root with XDG_CACHE_HOME in a directory another user owns (``sudo -E`` keeps the
    user's): that user hands root a poisoned entry and a launch index, valid in every
    byte (copied from root's own, then rewritten). Neither may be loaded: the files, and
    for the front end the directory, must be root's."""
    assert os.getuid() == 0, "root's case"
    with project("isorun-atk-foreign-") as where, marker_dir() as marker, \
            frontend_bin() as bin_dir:
        own = Path(f"{where}-cache")  # root's own cache, as isorun() puts it
        env = _env(XDG_CACHE_HOME=str(own), HOME=str(bin_dir))
        env.pop("ISORUN_CACHE", None)

        def front(cache: Path, spec: str = "web") -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(bin_dir / "isorun"), "-p", spec, "--", "/bin/readlink",
                                   "/proc/self/ns/net"], cwd=where, timeout=120, check=False,
                                  env={**env, "XDG_CACHE_HOME": str(cache)},
                                  capture_output=True, text=True)

        deadline = time.monotonic() + 30
        while not any(own.glob("isorun/*.launch")):
            assert time.monotonic() < deadline, "no launch index for root"
            assert front(own).returncode == 0
            time.sleep(0.3)
        foreign = where / "xdg"  # the other user's, as their ~/.cache would be
        shutil.copytree(own, foreign)
        subprocess.run([PY, "-c", POISON, str(foreign / "isorun"), str(marker / "ran")],
                       check=True, capture_output=True, timeout=60)
        from isorun.cache import index as cache_index

        web, strict = (foreign / "isorun" / cache_index.index_name(spec, str(where), 0)
                       for spec in ("web", "strict"))
        subprocess.run([PY, "-c", RELABEL, str(web), str(strict), "web", "strict"],
                       check=True, capture_output=True, timeout=60)
        for path in [foreign, *foreign.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)
        host_net = os.readlink("/proc/self/ns/net")
        nxt = subprocess.run([PY, "-c", NEXT.replace("strict", "web")], cwd=where,
                             capture_output=True, text=True, timeout=120, check=False,
                             env={**env, "XDG_CACHE_HOME": str(foreign)})
        done = front(foreign, "strict")
        assert not (marker / "ran").exists(), ("root loaded another user's plan", nxt.stderr)
        assert nxt.stdout.strip() == "0", (nxt.stdout, nxt.stderr)
        assert done.returncode == 0 and done.stdout.strip() != host_net, (
            "the front end ran another user's index (web's, relabelled strict)", done.stderr)
        assert all(p.stat().st_uid == 65534 for p in foreign.rglob("*")), \
            "root wrote into another user's cache directory"


#: run inside build: rewrites the project's virtual environment's pyvenv.cfg (moving a
#: venv it cannot write aside, as a root caller's sandbox must)
PYVENV = r"""
printf 'home = %s\n' "$1" > .venv/pyvenv.cfg 2>/dev/null || {
    mv .venv .venv-old && mkdir .venv && printf 'home = %s\n' "$1" > .venv/pyvenv.cfg; }
"""


def planted_pyvenv_cfg_binds_nothing_more_for_test() -> None:
    """The test profile binds ${PYTHON_BASE_PREFIX}, which the active virtual
    environment's pyvenv.cfg names (``home``). That file is in the project: build
    rewrites it to name a directory outside (or the caller's home, given a python3 in
    ~/bin), and the next test run must not see that directory."""
    with project("isorun-atk-pyvenv-") as where, marker_dir() as outside:
        subprocess.run([PY, "-m", "venv", "--without-pip", str(where / ".venv")], check=True,
                       timeout=120)
        home = Path(f"{where}-home")
        (home / "bin").mkdir(parents=True)
        try:
            for folder in (home, outside):
                (folder / "token").write_text("s3cret\n")
                (folder / "token").chmod(0o644)
                folder.chmod(0o755)
            (home / "bin" / "python3").write_text("#!/bin/sh\n")
            (home / "bin" / "python3").chmod(0o755)
            env = _env(HOME=str(home), VIRTUAL_ENV=str(where / ".venv"),
                       XDG_CACHE_HOME=f"{where}-cache")
            for named, secret in ((outside, outside), (home / "bin", home)):
                plant(where, PYVENV, str(named))
                assert (where / ".venv" / "pyvenv.cfg").read_text() == f"home = {named}\n"
                done = subprocess.run(
                    [PY, "-m", "isorun", "-p", "test", "--", "/bin/cat", str(secret / "token")],
                    cwd=where, env=env, capture_output=True, text=True, timeout=120,
                    check=False)
                assert "s3cret" not in done.stdout, (
                    f"pyvenv.cfg the sandbox wrote (home = {named}) bound {secret} into test")
                assert done.returncode == 1 and "No such file" in done.stderr, done.stderr
        finally:
            shutil.rmtree(home, ignore_errors=True)


#: run inside build: the project's interpreter becomes a script (moving a venv it
#: cannot write aside, as a root caller's sandbox must)
FAKE_PYTHON = r"""
[ -w .venv/bin ] || { mv .venv .venv-old && cp -R .venv-old .venv; }
rm -f .venv/bin/python
printf '#!/bin/sh\nid -u > %s/ran\nexec %s "$@"\n' "$1" "$2" > .venv/bin/python
chmod 755 .venv/bin/python
"""


def isorun_pytest_runs_no_interpreter_a_sandbox_replaced() -> None:
    """``isorun pytest`` asks the active virtual environment's interpreter for its import
    paths, on the host, before any sandbox. That venv is in the project: build replaces
    ``.venv/bin/python`` with a script, which the next ``isorun pytest`` must not run."""
    with project("isorun-atk-pytestpy-") as where, marker_dir() as marker:
        subprocess.run([PY, "-m", "venv", "--without-pip", str(where / ".venv")], check=True,
                       timeout=120)
        (where / "test_x.py").write_text("def test_x():\n    pass\n")
        plant(where, FAKE_PYTHON, str(marker), PY)
        assert "ran" in (where / ".venv" / "bin" / "python").read_text()  # the control
        done = subprocess.run([PY, "-m", "isorun", "pytest", "-q"], cwd=where, timeout=120,
                              env=_env(VIRTUAL_ENV=str(where / ".venv"),
                                       XDG_CACHE_HOME=f"{where}-cache"),
                              capture_output=True, text=True, check=False)
        assert not (marker / "ran").exists(), (
            "isorun pytest ran the project's interpreter, as a sandbox left it, on the host",
            (marker / "ran").read_text(), done.stderr[-500:])


def working_directory_policy_sees_through_links_and_deletion() -> None:
    """build from the home directory is refused; reaching it through a symbolic link
    (relative or absolute) must be too, and a working directory deleted before the
    launch is an error a person can act on, not a bind of whatever is there now."""
    with project("isorun-atk-cwd-") as home:
        (home / "proj").mkdir()
        links = [Path(f"{home}-abs"), Path(f"{home}-rel")]
        links[0].symlink_to(home)
        links[1].symlink_to(home.name)
        try:
            env = _env(HOME=str(home), XDG_CACHE_HOME=f"{home}-cache")
            for link in links:
                done = subprocess.run([PY, "-m", "isorun", "-p", "build", "--", "true"],
                                      cwd=link, env=env, capture_output=True, text=True,
                                      timeout=120, check=False)
                assert done.returncode == 2 and "home directory" in done.stderr, (
                    link, done.returncode, done.stderr)
            gone = home / "gone"
            gone.mkdir()
            done = subprocess.run(
                ["/bin/sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "$@"', "sh",
                 PY, "-m", "isorun", "-p", "build", "--", "true"],
                env=env, capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 2 and "no longer exists" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr, done.stderr
        finally:
            for link in links:
                link.unlink()


#: run inside a sandbox: looks for isorun's key (isorun.host.mac.KEY_NAME) from each keyring a
#: process can name, and reads it where found; one word a keyring: FOUND, or the errno
KEY_PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
call = libc.syscall
call.restype = ctypes.c_long
add_key, keyctl = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
L = ctypes.c_long
out = []
for ring in (-4, -5, -3, -2, -1):  # user, user-session, session, process, thread
    serial = call(L(keyctl), L(10), L(ring), b"user", b"isorun:cache-mac:1", L(0))
    code = ctypes.get_errno()
    if serial >= 0:
        buf = ctypes.create_string_buffer(64)
        out.append(f"FOUND:{call(L(keyctl), L(11), L(serial), buf, L(64))}")
    else:
        out.append(errno.errorcode.get(code, str(code)))
# and a key of the same name in the user keyring, which would replace ours were add_key
# and our key's permissions to let it
made = call(L(add_key), b"user", b"isorun:cache-mac:1", b"x" * 32, L(32), L(-4))
out.append("ADDED" if made >= 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
print(" ".join(out))
"""


def key_is_out_of_every_sandboxs_reach() -> None:
    """isorun.host.mac's key, which vouches for every cache entry and launch index, from
    inside strict, build and test (and strict on the landlock backend, which shares the
    caller's user namespace, so only seccomp stands between it and the keyring): never
    found, read or replaced. The control: the same probe on the host finds it."""
    from isorun.host import mac

    secret = mac.key(create=True)
    assert secret is not None, "no key: keyctl refused to this caller?"
    with project("isorun-atk-key-") as where:
        (where / "probe.py").write_text(KEY_PROBE)
        (where / "probe.py").chmod(0o644)
        host = subprocess.run([PY, str(where / "probe.py")], capture_output=True, text=True,
                              timeout=60, check=True).stdout.split()
        assert host[0] == "FOUND:32", host  # the control: our own keyring, from the host
        runs = [("-p", "strict"), ("-p", "build"), ("-p", "test"),
                ("--backend", "landlock", "--allow-weaker", "-p", "strict")]
        for run in runs:
            done = isorun(*run, "--", PY, str(where / "probe.py"), cwd=where)
            assert done.returncode == 0, (run, done.stderr)
            words = done.stdout.split()
            assert words == ["EPERM"] * 6, (run, words, done.stderr)
        mac._cached = None
        assert mac.key() == secret, "a sandbox replaced the key"


CASES: dict[str, Callable[[], None]] = {
    f.__name__: f for f in (
        python_m_isorun_imports_nothing_from_the_project,
        earlier_build_poisons_a_cache_named_later,
        relative_xdg_cache_home_keeps_the_exec_stage_out_of_the_project,
        earlier_build_plants_an_exec_stage_named_later,
        exec_stage_is_built_by_the_system_compiler_alone,
        exec_stage_behind_a_link_is_rebuilt,
        exec_stage_directory_follows_the_plan_cache_rule,
        build_cannot_rewrite_the_environment_isorun_runs_in,
        earlier_build_relabels_a_launch_index_named_later,
        cache_of_another_user_is_not_read,
        planted_pyvenv_cfg_binds_nothing_more_for_test,
        isorun_pytest_runs_no_interpreter_a_sandbox_replaced,
        working_directory_policy_sees_through_links_and_deletion,
        key_is_out_of_every_sandboxs_reach)
}  # fmt: skip

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    print("OK")
