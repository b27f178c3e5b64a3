"""A symlink planted in the project must never carry a mount outside its literal path.

Issue #12: ``ln -s ../.. .tox`` in a repository made the test profile's rw bind of
``${CWD}/.tox`` a writable view of the caller's home. Each case builds a fresh project,
plants one link where a built-in profile binds something writable, runs a command that
writes through that path, and asks the kernel afterwards: nothing outside the literal
path changed, and the launch was refused (exit 125, the mount's profile line, the link
and where it points, a hint). A real directory at the same path is the control: the same
command then writes there, so a refusal is not just a command that could not write.

The cases are data (:data:`BINDS`, :data:`PLANTS`, :data:`ROUTES`) so another backend's
suite can run the same ones: a route is a function ``(profile, project, command) ->
(exit code, stderr)``. Runs in-process as root, or as ``python symlink_cases.py CASE``
under setpriv as uid 1000 (tests/escape/test_symlink_mounts.py).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: (profile, path under ${CWD} the profile rw-binds, profile file for the message)
BINDS: tuple[tuple[str, str], ...] = (
    *(
        ("test", name)
        for name in (
            ".tox",
            ".nox",
            "build",
            "htmlcov",
            ".pytest_cache",
            ".hypothesis",
            ".coverage",
            "coverage.xml",
            "node_modules/.cache",
        )
    ),
    ("web", "data"),
)

#: the CLI's plan cache, under base
CACHE = "xdg-cache"
#: the project sits this deep below its base directory (base/d1/d2/proj)
DEPTH = ("d1", "d2", "proj")


@dataclass(frozen=True)
class Layout:
    """base/outside holds what must stay untouched; base/d1/d2/proj is the project."""

    base: Path
    outside: Path
    project: Path

    @property
    def marker(self) -> Path:
        return self.outside / "marker"


def make_layout() -> Layout:
    # Under /tmp, not pytest's 0700 tmp_path: the sandbox's uid must reach the project.
    base = Path(tempfile.mkdtemp(prefix="isorun-symlink-"))
    base.chmod(0o755)
    outside = base / "outside"
    outside.mkdir()
    # Writable by anyone, the sandbox's uid included: if a mount reached it, the
    # command's write would land, and the check below would see it.
    outside.chmod(0o777)
    (outside / ".cache").mkdir()
    (outside / ".cache").chmod(0o777)
    (outside / "marker").write_text("original\n")
    (outside / "marker").chmod(0o666)
    project = base.joinpath(*DEPTH)
    project.mkdir(parents=True)
    for d in (base / "d1", base / "d1" / "d2", project):
        d.chmod(0o777)
    return Layout(base, outside, project)


def snapshot(layout: Layout) -> dict[str, tuple[int, int, bytes]]:
    """Every name under base but the plan cache: (mode, size, content)."""
    seen: dict[str, tuple[int, int, bytes]] = {}
    for path in [layout.base, *layout.base.rglob("*")]:
        if path.is_relative_to(layout.base / CACHE):
            continue  # the CLI's plan cache (XDG_CACHE_HOME)
        st = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        seen[str(path.relative_to(layout.base))] = (st.st_mode, st.st_size, content)
    return seen


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def _plant_up(levels: int) -> Callable[[Layout, str], str]:
    def plant(layout: Layout, bind: str) -> str:
        target = "/".join([".."] * levels)
        _link(layout.project / bind, target)
        return target

    return plant


def _plant_absolute(where: Callable[[Layout], Path]) -> Callable[[Layout, str], str]:
    def plant(layout: Layout, bind: str) -> str:
        target = str(where(layout))
        _link(layout.project / bind, target)
        return target

    return plant


def _plant_loop(layout: Layout, bind: str) -> str:
    path = layout.project / bind
    _link(path, path.name)
    return path.name


def _plant_loop2(layout: Layout, bind: str) -> str:
    path = layout.project / bind
    _link(path, path.name + ".2")
    _link(path.with_name(path.name + ".2"), path.name)
    return path.name + ".2"


def _plant_intermediate(layout: Layout, bind: str) -> str:
    # node_modules -> outside, where a .cache exists: only the first component is a link.
    first = bind.split("/")[0]
    assert first != bind, "a one-component path has no intermediate component"
    _link(layout.project / first, str(layout.outside))
    return str(layout.outside)


#: name -> plant(layout, bind) -> the link's target as written; every depth of "..",
#: up to and past "/"
PLANTS: dict[str, Callable[[Layout, str], str]] = {
    **{f"up{n}": _plant_up(n) for n in range(1, 8)},
    "absolute_outside": _plant_absolute(lambda lay: lay.outside),
    "absolute_root": _plant_absolute(lambda lay: Path("/")),
    "intermediate": _plant_intermediate,
    "file": _plant_absolute(lambda lay: lay.marker),
    "loop": _plant_loop,
    "loop2": _plant_loop2,
    "dangling": _plant_absolute(lambda lay: lay.outside / "created-by-sandbox"),
}


def _command(bind: str) -> list[str]:
    # Every way the command could use the path: write a file in it, write the path
    # itself (a file bind), make a directory there. Errors ignored: the checks look at
    # what happened on the host.
    script = (
        f'p="{bind}"; echo planted > "$p/marker"; echo planted > "$p"; '
        'mkdir "$p/made-by-sandbox"; echo planted > "$p/.cache/marker"; exit 0'
    )
    return ["sh", "-c", script]


def _env(layout: Layout) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C",
        "HOME": str(layout.base),
        "XDG_CACHE_HOME": str(layout.base / CACHE),
    }


def route_cli(profile: str, layout: Layout, command: list[str]) -> tuple[int, str]:
    """The ``isorun`` command: cold, Python compiles and launches; warm (the same call
    again, :data:`RUNS`), the C front end launches the cached record, and on a set-up
    failure Python launches again and reports."""
    isorun = shutil.which("isorun", path=os.path.dirname(sys.executable))
    assert isorun is not None, "the isorun command is not installed next to python"
    done = subprocess.run([isorun, "--profile", profile, "--", *command],
                          cwd=layout.project, env=_env(layout), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    return done.returncode, done.stderr


def _in_project(layout: Layout, call: Callable[[], tuple[int, str]]) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(layout.project)
    try:
        return call()
    finally:
        os.chdir(old)


def route_api(profile: str, layout: Layout, command: list[str]) -> tuple[int, str]:
    """isorun.api.run: the parent side in isorun-launch (launch.c)."""
    from isorun import api
    from isorun.errors import SandboxSetupError

    def call() -> tuple[int, str]:
        plan = api.compile_plan(profile)
        try:
            return api.run(command, profile=plan, capture_output=True).returncode, ""
        except SandboxSetupError as err:
            return err.exit_code, err.render()

    return _in_project(layout, call)


def route_clone(profile: str, layout: Layout, command: list[str]) -> tuple[int, str]:
    """process.spawn: the parent side in Python (parent.spawn_in_parent)."""
    from isorun import api
    from isorun.errors import SandboxSetupError
    from isorun.sandbox import native, process

    def call() -> tuple[int, str]:
        plan = api.compile_plan(profile)
        spec = native.build_spec(plan, command, {"PATH": "/usr/bin:/bin"}, api.cached_program(plan))
        try:
            proc = process.spawn(spec, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except SandboxSetupError as err:
            return err.exit_code, api.locate_error(err, plan).render()
        with proc:
            return proc.wait(timeout=60), ""

    return _in_project(layout, call)


ROUTES: dict[str, Callable[[str, Layout, list[str]], tuple[int, str]]] = {
    "cli": route_cli,
    "api": route_api,
    "clone": route_clone,
}
#: how often a check launches through each route: the CLI's second run is the warm one
RUNS = {"cli": 2}


def check_refused(profile: str, bind: str, plant: str, route: str) -> None:
    """Plant, launch, and check with the host's own view that nothing leaked."""
    layout = make_layout()
    try:
        target = PLANTS[plant](layout, bind)
        before = snapshot(layout)
        for _ in range(RUNS.get(route, 1)):
            code, stderr = ROUTES[route](profile, layout, _command(bind))
            after = snapshot(layout)
            changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            # Whatever ran, nothing under base changed: not the marker, nothing made.
            assert not changed, (changed, code, stderr)
            assert code == 125, (code, stderr)
        assert layout.marker.read_text() == "original\n"
        assert f"{profile}.toml:" in stderr, stderr
        assert "ELOOP" in stderr and "symbolic link" in stderr, stderr
        assert "hint: remove the link, or bind its target explicitly" in stderr, stderr
        link = layout.project / bind
        named = (
            link
            if plant != "intermediate" or "/" not in bind
            else (layout.project / bind.split("/")[0])
        )
        assert f"{named} is a symbolic link (to {target})" in stderr, stderr
    finally:
        shutil.rmtree(layout.base)


def check_real_directory_is_written(profile: str, bind: str, route: str) -> None:
    """The control: with a real directory (or file) there, the same command writes it."""
    layout = make_layout()
    try:
        path = layout.project / bind
        if bind in (".coverage", "coverage.xml"):
            path.write_text("")
            path.chmod(0o666)
        else:
            path.mkdir(parents=True)
            for d in (path, path.parent):
                d.chmod(0o777)
        for _ in range(RUNS.get(route, 1)):
            code, stderr = ROUTES[route](profile, layout, _command(bind))
            assert code == 0, (code, stderr)
        written = path if path.is_file() else path / "marker"
        assert written.read_text() == "planted\n", (code, stderr)
        assert layout.marker.read_text() == "original\n"
    finally:
        shutil.rmtree(layout.base)


def check_build_cwd_through_a_link(route: str) -> None:
    """The build profile binds ${CWD} itself: a caller whose working directory is reached
    through a link keeps working (the variable is resolved on the trusted side), and the
    write lands in the link's target, the real project."""
    layout = make_layout()
    try:
        link = layout.base / "via-link"
        link.symlink_to(layout.project)
        moved = Layout(layout.base, layout.outside, link)
        code, stderr = ROUTES[route]("build", moved, ["sh", "-c", "echo built > out"])
        assert code == 0, (code, stderr)
        assert (layout.project / "out").read_text() == "built\n"
    finally:
        shutil.rmtree(layout.base)


#: a profile that mounts below a directory an earlier mount brought in from the host
_NESTED_PROFILE = """
extends = ["strict"]

[[mounts]]
type = "rw-bind"
src = "${CWD}"
dst = "/work"

[[mounts]]
type = "tmpfs"
dst = "/work/sub/cache"
"""


def check_destination_link(route: str) -> None:
    """A link in a destination: ``sub`` in the project, which the profile binds at
    /work, climbs out of the new root and into the host's (still attached at set-up)
    with enough "..". Creating /work/sub/cache through it would make a directory on
    the host; the child refuses the link instead, and says where it is."""
    layout = make_layout()
    try:
        profile = layout.base / "nested.toml"
        profile.write_text(_NESTED_PROFILE)
        # Far enough up from anywhere the new root may sit, then down to outside.
        ups = "/".join([".."] * 12)
        for prefix in ("old", "."):
            link = layout.project / "sub"
            if link.is_symlink():
                link.unlink()
            link.symlink_to(f"{ups}/{prefix}{layout.outside}")
            before = snapshot(layout)
            for _ in range(RUNS.get(route, 1)):
                code, stderr = ROUTES[route](str(profile), layout, ["true"])
                assert snapshot(layout) == before, (code, stderr)
                assert code == 125, (code, stderr)
                assert "ELOOP" in stderr and "a symbolic link in /work/sub/cache" in stderr
                assert "nested.toml:" in stderr, stderr
    finally:
        shutil.rmtree(layout.base)


def check_swap_race(route: str, launches: int = 40) -> None:
    """A process flips the bind path between a directory and a link to outside (two
    rename(2)s a loop) while we launch again and again: each launch either refuses or
    binds the directory, and nothing outside is ever written."""
    layout = make_layout()
    bind = ".tox"
    path = layout.project / bind
    real = layout.project / "real"
    real.mkdir()
    real.chmod(0o777)
    evil = layout.project / "evil"
    evil.symlink_to(layout.outside)
    # A fork, not a new interpreter: uid 1000 may not be able to execute this one.
    flipper = os.fork()
    if flipper == 0:
        try:
            _flip(path, real, evil)
        finally:
            os._exit(0)
    try:
        for _ in range(launches):
            code, stderr = ROUTES[route]("test", layout, _command(bind))
            # 125: set-up refused what it found (a link: ELOOP; the path renamed away
            # between the checks: ENOENT, or EROFS creating it in the read-only project)
            assert code in (0, 125), (code, stderr)
            assert layout.marker.read_text() == "original\n"
            assert not (layout.outside / "made-by-sandbox").exists()
            assert not (layout.outside / ".cache" / "marker").exists()
        assert sorted(os.listdir(layout.outside)) == [".cache", "marker"]
    finally:
        os.kill(flipper, signal.SIGKILL)
        os.waitpid(flipper, 0)
        shutil.rmtree(layout.base)


def _flip(path: Path, real: Path, evil: Path) -> None:
    """Swap the directory and the link at ``path`` as fast as possible, forever (two
    renames each way, which also leave moments with nothing there)."""
    while True:
        os.rename(real, path)
        os.rename(path, real)
        os.rename(evil, path)
        os.rename(path, evil)


#: which plants each route runs: every one through isorun-launch (the API's route), a
#: few through the Python parent and the CLI, whose checks are the same walk
ROUTE_PLANTS: dict[str, tuple[str, ...]] = {
    "api": tuple(PLANTS),
    "clone": ("up2", "up7", "absolute_outside", "intermediate", "file", "loop", "dangling"),
    "cli": ("up3", "absolute_root", "intermediate", "dangling"),
}


def usable_routes() -> list[str]:
    """The CLI re-executes the interpreter, which uid 1000 cannot when it lives in root's
    0700 home (a pyenv under /root, as on the test machines): that route is then left
    out for that caller, the two others still run."""
    routes = list(ROUTES)
    if not os.access(os.path.realpath(sys.executable), os.X_OK):
        routes.remove("cli")
    return routes


def bind_ids() -> list[str]:
    """One case per writable bind of a built-in profile, ``refused:PROFILE:PATH``."""
    return [f"refused:{profile}:{bind}" for profile, bind in BINDS]


def run_case(case: str) -> None:
    kind, *args = case.split(":")
    if kind == "refused":
        profile, bind = args
        for route in usable_routes():
            plants = ROUTE_PLANTS[route]
            check_real_directory_is_written(profile, bind, route)
            for plant in plants:
                if plant == "intermediate" and "/" not in bind:
                    continue  # a one-component path has no intermediate of its own
                check_refused(profile, bind, plant, route)
    elif kind == "build_cwd_link":
        for route in usable_routes():
            check_build_cwd_through_a_link(route)
    elif kind == "destination_link":
        for route in usable_routes():
            check_destination_link(route)
    elif kind == "swap_race":
        if args[0] in usable_routes():
            check_swap_race(args[0])
    else:
        raise AssertionError(f"unknown case {case!r}")


CASES: dict[str, Callable[[], None]] = {
    case: functools.partial(run_case, case)
    for case in [
        *bind_ids(),
        "build_cwd_link",
        "destination_link",
        *(f"swap_race:{route}" for route in ROUTES),
    ]
}

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    sys.stdout.write("OK\n")
