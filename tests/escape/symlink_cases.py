"""Planted-symlink cases for the wrapper backends (issue #12), run by
test_symlink_fallbacks.py as root in-process and as uid 1000 through setpriv
(``python symlink_cases.py CASE`` prints OK).

Each case builds a project five directories below a fresh workspace, plants a link at
one of a built-in profile's writable bind paths, and launches the profile on bwrap or
firejail. The command inside tries to write through every writable path. What the kernel
says afterwards decides: no file outside the literal path was created or changed, and the
run either was refused (exit 125's error, naming the profile line, the link and its
target) or ran with the link untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from isorun import api
from isorun.compile.plan import Plan
from isorun.errors import HostError, IsorunError
from isorun.host.facts import HostFacts
from isorun.host.facts import probe as probe_facts
from isorun.host.facts import variables as host_variables
from isorun.host.probe import probe_backends
from isorun.sandbox.backends import select_backend
from isorun.sandbox.safepath import SymlinkRefused

NOBODY = 65534
DEPTH = 5
#: the writable bind paths each built-in profile has at the project root
TARGETS = {"test": ".tox", "web": "data"}
VICTIM = "orig\n"
#: as root, the sandbox of a plan for uid 1000 (firejail will not run as nobody)
USER = 1000


def facts_for(backend: str) -> HostFacts:
    facts = probe_facts()
    if facts.root and backend == "firejail":
        return HostFacts(uid=USER, gid=USER, arch=facts.arch, kernel=facts.kernel)
    return facts


def workspace() -> tuple[Path, Path]:
    """(base, project): project = base/l1/l2/l3/l4/proj, a victim file at every level."""
    base = Path(tempfile.mkdtemp(prefix="isorun-sym-", dir="/tmp"))
    base.chmod(0o755)
    level = base
    for i in range(1, DEPTH):
        (level / "victim").write_text(VICTIM)
        level = level / f"l{i}"
        level.mkdir(mode=0o755)
    (level / "victim").write_text(VICTIM)
    project = level / "proj"
    project.mkdir(mode=0o755)
    (base / "home").mkdir(mode=0o755)
    return base, project


def plan_for(profile: str, project: Path, base: Path, facts: HostFacts) -> Plan:
    variables = host_variables(facts)
    variables.update(CWD=str(project), HOME=str(base / "home"), PYTHON_PREFIX="/usr",
                     PYTHON_BASE_PREFIX="/usr")
    return api.compile_plan(api.load_profile(profile), facts, variables)


def plant(project: Path, name: str, target: str) -> Path:
    link = project / name
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)
    if os.geteuid() == 0:
        # as a sandbox of an earlier run would have left it: it runs as the overflow uid
        os.lchown(link, NOBODY, NOBODY)
    return link


SCRIPT = ("for p in {paths}; do echo pwned > \"$p/pwned\"; echo pwned >> \"$p/victim\"; "
          "echo pwned >> \"$p\"; done 2>/dev/null; true")


def launch(backend: str, plan: Plan, paths: list[str], facts: HostFacts
           ) -> tuple[int, str] | IsorunError:
    """Run the writer; its exit status and stderr, or the refusal."""
    # The wrappers run weaker here (firejail has no new root; neither scopes the host
    # network's abstract sockets for web): what these tests judge is the mounts alone.
    weaker = backend in ("bwrap", "firejail")
    try:
        chosen, _ = select_backend(plan, backend, probe_backends(facts), allow_weaker=weaker)
        proc = chosen.spawn(plan, ["/bin/sh", "-c", SCRIPT.format(paths=" ".join(paths))],
                            allow_weaker=weaker,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    except IsorunError as err:
        return err
    _, err_ = proc.communicate(timeout=60)
    return proc.wait(), err_.decode()


def escaped(base: Path, allowed: set[Path]) -> list[str]:
    """Every trace of the writer outside the directories it may write."""
    found = []
    for root, _dirs, files in os.walk(base):
        here = Path(root)
        for name in files:
            path = here / name
            if here in allowed:
                continue
            if name == "pwned" or (name == "victim" and path.read_text() != VICTIM):
                found.append(str(path))
    return found


def check_refusal(err: IsorunError, link: Path, target: str) -> None:
    assert isinstance(err, SymlinkRefused), f"refused, but not for the link: {err.render()}"
    text = err.render()
    assert err.exit_code == 125
    assert str(link) in text and repr(target) in text, text
    assert ".toml:" in text and "hint: remove the link" in text, text


def planted(backend: str, profile: str, kind: str) -> None:
    """One planted link; the run must refuse with the link named, and change nothing."""
    base, project = workspace()
    facts = facts_for(backend)
    name, target = TARGETS[profile], ""
    if kind.startswith("rel"):
        target = "/".join([".."] * int(kind[3:]))
    elif kind == "absolute":
        target = str(base / "l1")
    elif kind == "loop":
        target = name
    elif kind == "dangling":
        target = "../nowhere"
    elif kind == "file":
        name, target = (".coverage", "../victim") if profile == "test" else (name, "../victim")
    elif kind == "intermediate":
        # node_modules -> ../.. with the node_modules/.cache bind: l3/.cache gets bound
        name, target = "node_modules", "../.."
        (project.parent.parent / ".cache").mkdir()
        (project.parent.parent / ".cache" / "victim").write_text(VICTIM)
    try:
        link = plant(project, name, target)
        plan = plan_for(profile, project, base, facts)
        writable = [".tox", ".coverage", "node_modules/.cache", "data", "build"]
        outcome = launch(backend, plan, [str(project / w) for w in writable], facts)
        assert isinstance(outcome, IsorunError), f"ran with a planted link: {outcome}"
        check_refusal(outcome, link, target)
        assert os.readlink(link) == target, "the link itself was changed"
        assert escaped(base, set()) == [], escaped(base, set())
    finally:
        shutil.rmtree(base)


def real_directory(backend: str, profile: str) -> None:
    """No link: the bind works where the backend can make it safely, else bwrap refuses
    and says why; nothing lands outside the literal directory either way."""
    base, project = workspace()
    facts = facts_for(backend)
    name = TARGETS[profile]
    try:
        directory = project / name
        directory.mkdir()
        if os.geteuid() == 0:
            os.chown(directory, NOBODY if backend == "bwrap" else USER,
                     NOBODY if backend == "bwrap" else USER)
        plan = plan_for(profile, project, base, facts)
        outcome = launch(backend, plan, [str(directory)], facts)
        project_owner = project.stat().st_uid
        if backend == "bwrap" and project_owner != 0:
            # the project is someone's: bwrap would create the mount point through a link
            # swapped in there, so the plan is refused, with the rule and the fix
            assert isinstance(outcome, HostError), outcome
            text = outcome.render()
            assert f"{project}/{name}" in text and "bwrap 0.8 creates" in text, text
            assert "--backend native" in text, text
        else:
            assert not isinstance(outcome, IsorunError), outcome.render()
            code, err = outcome
            assert code == 0, err
            assert (directory / "pwned").read_text() == "pwned\n"
        assert escaped(base, {directory}) == [], escaped(base, {directory})
    finally:
        shutil.rmtree(base)


RACE_PROFILE = """
extends = ["strict"]

[[mounts]]
type = "rw-bind"
src = "{src}"
dst = "/data"
optional = true
"""


#: swaps a directory and its planted link as fast as it can, as their owner; standalone
#: (the system Python), so it runs whatever uid can read this virtual environment
FLIP = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), (sys.argv[1] + ".other").encode()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    if libc.renameat2(-100, a, -100, b, 2) != 0:  # RENAME_EXCHANGE
        raise OSError(ctypes.get_errno(), "renameat2")
"""


def race() -> None:
    """bwrap, launched again and again while the bind source flips between a directory
    and a link to the victim: every launch refuses, fails the inner check, or binds the
    real directory; the victim is never written."""
    backend = "bwrap"
    base, project = workspace()
    facts = facts_for(backend)
    owner = USER if os.geteuid() == 0 else os.geteuid()
    src = project / "src"
    victim = base / "target"  # beside the project, so a walk of it never meets the flips
    try:
        victim.mkdir()
        (victim / "victim").write_text(VICTIM)
        src.mkdir()
        os.symlink(str(victim), str(src) + ".other")
        if os.geteuid() == 0:
            for path in (project, src):
                os.chown(path, owner, owner)
            os.lchown(str(src) + ".other", owner, owner)
        # both writable by the sandbox's uid, so a mount of the wrong one would show
        os.chmod(src, 0o777)
        os.chmod(victim, 0o777)
        profile = base / "race.toml"
        profile.write_text(RACE_PROFILE.format(src=src))
        variables = host_variables(facts)
        # a working directory of its own: the home as ${CWD} is refused (#13)
        (base / "cwd").mkdir(exist_ok=True)
        variables.update(CWD=str(base / "cwd"), HOME=str(base / "home"))
        plan = api.compile_plan(api.load_profile(str(profile)), facts, variables)
        argv = ["/usr/bin/python3", "-c", FLIP, str(src), "30"]
        if os.geteuid() == 0:
            argv = ["setpriv", f"--reuid={owner}", f"--regid={owner}", "--clear-groups",
                    *argv]
        flipper = subprocess.Popen(argv, cwd="/")
        tally = {"refused": 0, "check": 0, "ran": 0, "other": 0}
        try:
            for _ in range(40):
                outcome = launch(backend, plan, ["/data"], facts)
                if isinstance(outcome, IsorunError):
                    tally["refused"] += 1
                    assert isinstance(outcome, SymlinkRefused | HostError), outcome.render()
                elif outcome[0] == 125 and "mount check" in outcome[1]:
                    tally["check"] += 1
                elif outcome[0] == 0:
                    tally["ran"] += 1
                else:
                    tally["other"] += 1  # bwrap itself failed on a path mid-swap
                assert not (victim / "pwned").exists(), tally
        finally:
            flipper.kill()
            flipper.wait()
        sys.stderr.write(f"race tally: {tally}\n")
        assert escaped(victim, set()) == [], escaped(victim, set())
        assert escaped(base, {src, Path(str(src) + ".other")}) == []
    finally:
        shutil.rmtree(base)


def swap_after_walk(backend: str) -> None:
    """The race won every time: the bind source is a directory when isorun walks it and a
    link right after (the walk is wrapped to swap it). bwrap (a source bound at /data) or
    firejail (web's data dir, whose link then points at the project, and firejail's
    --read-write remounts it writable) follows the link; the stage's check inside stops
    the run with exit 125 before the command writes anything."""
    from isorun.sandbox import wrapper_mounts
    from isorun.sandbox.backend import bwrap as bwrap_backend
    from isorun.sandbox.backend import firejail as firejail_backend

    base, project = workspace()
    facts = facts_for(backend)
    owner = USER if os.geteuid() == 0 else os.geteuid()
    real = project / ("src" if backend == "bwrap" else "data")
    victim = base / "target" if backend == "bwrap" else project
    victim.mkdir(exist_ok=True)
    real.mkdir()
    if os.geteuid() == 0:
        for path in (project, real):
            os.chown(path, owner, owner)
    for path in (real, victim):
        os.chmod(path, 0o777)
    original = wrapper_mounts.check_sources

    def walk_then_swap(plan: Plan, *, launch: bool = True) -> wrapper_mounts.Checked:
        checked = original(plan, launch=launch)
        if launch and real.is_dir() and not real.is_symlink():
            real.rename(str(real) + ".moved")
            os.symlink(str(victim) if backend == "bwrap" else "..", real)
        return checked

    try:
        if backend == "bwrap":
            profile = base / "race.toml"
            profile.write_text(RACE_PROFILE.format(src=real))
            variables = host_variables(facts)
            # a working directory of its own: the home as ${CWD} is refused (#13)
            (base / "cwd").mkdir(exist_ok=True)
            variables.update(CWD=str(base / "cwd"), HOME=str(base / "home"))
            plan = api.compile_plan(api.load_profile(str(profile)), facts, variables)
            paths = ["/data"]
        else:
            plan = plan_for("web", project, base, facts)
            paths = [str(real), str(project)]
        # the runner's own name for it (its backend module imports it), patched for
        # this launch
        namespace = vars(bwrap_backend if backend == "bwrap" else firejail_backend)
        namespace["check_sources"] = walk_then_swap
        try:
            outcome = launch(backend, plan, paths, facts)
        finally:
            namespace["check_sources"] = original
        assert not isinstance(outcome, IsorunError), outcome.render()
        code, err = outcome
        assert code == 125 and "mount check" in err, (code, err)
        assert not (victim / "pwned").exists()
        assert escaped(base, set()) == [], escaped(base, set())
    finally:
        shutil.rmtree(base)


def _cases() -> dict[str, object]:
    cases: dict[str, object] = {"race": race}
    for backend in ("bwrap", "firejail"):
        cases[f"swap-{backend}"] = lambda b=backend: swap_after_walk(b)
    for backend in ("bwrap", "firejail"):
        for profile in TARGETS:
            kinds = [f"rel{d}" for d in range(1, DEPTH + 1)]
            kinds += ["absolute", "loop", "dangling", "file"]
            if profile == "test":
                kinds.append("intermediate")
            for kind in kinds:
                cases[f"planted-{backend}-{profile}-{kind}"] = (
                    lambda b=backend, p=profile, k=kind: planted(b, p, k))
            cases[f"real-{backend}-{profile}"] = (
                lambda b=backend, p=profile: real_directory(b, p))
    return cases


CASES = _cases()

if __name__ == "__main__":
    CASES[sys.argv[1]]()  # type: ignore[operator]
    sys.stdout.write("OK\n")
