"""What a project may choose about its own test sandbox: only what tightens it.

The project directory is written by the code under test (a pull request, a dependency,
an earlier run), so its configuration (pyproject.toml, pytest.ini, tox.ini, setup.cfg,
``addopts``) is input, not policy. A setting that loosens the test profile (a writable
path outside the project, a profile file from the repository, host network, seccomp off,
pytest's cache directory outside the project) is refused unless the user trusts the
project: ``--isorun-trust-project`` on their own command line, or
``ISORUN_TRUST_PROJECT=1`` in their environment. The session header then prints each
loosening in effect.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from isorun.errors import UsageError
from isorun.testing.child import TRUST_FLAG as TRUST_FLAG  # re-exported: its users read it here

TRUST_ENV = "ISORUN_TRUST_PROJECT"
#: the profile a project may name without trust: the default itself
DEFAULT_PROFILE = "test"


@dataclass(frozen=True, slots=True)
class Loosening:
    """One setting from the project that makes the test sandbox weaker."""

    #: the setting as written: ``isorun_writable = /home/u``
    setting: str
    #: where it was read: ``pyproject.toml``, ``addopts``
    source: str
    #: what it gives the tests
    why: str

    def describe(self) -> str:
        return f"{self.setting} (from {self.source}): {self.why}"


class ProjectLoosensError(UsageError):
    """The project's configuration asks for a weaker sandbox and the user did not trust it."""

    def __init__(self, loosenings: Sequence[Loosening]) -> None:
        self.loosenings = tuple(loosenings)
        super().__init__("; ".join(x.describe() for x in self.loosenings))

    def render(self) -> str:
        lines = [
            "isorun: error: the project's configuration would loosen its own test sandbox "
            "(the code under test can write these files):"
        ]
        lines += [f"  {x.describe()}" for x in self.loosenings]
        lines.append(
            f"  hint: remove the setting, or, if you trust this checkout, pass {TRUST_FLAG} "
            f"on your command line (or set {TRUST_ENV}=1 in your own environment)"
        )
        return "\n".join(lines)


def trusted(argv: Iterable[str], env: Mapping[str, str]) -> bool:
    """Whether the user trusts the project: the flag on the command line they typed, or
    the variable in their environment (which a tox ``setenv`` or pytest-env could also
    set: docs/testing.md says so)."""
    return TRUST_FLAG in list(argv) or env.get(TRUST_ENV) == "1"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def path_loosening(
    key: str, value: str, rootdir: str, source: str, prefixes: Iterable[str] = ()
) -> Loosening | None:
    """The loosening of binding ``value`` (relative to ``rootdir``) writable, or None.

    Resolved with realpath: a symlink in the project pointing at ``~`` is judged by
    where it leads. Inside the project, the project itself, its ``.git`` (hooks run on
    the host at the next commit) and the interpreter's installation (a venv in the
    project: the host runs it next) are loosenings too.
    """
    root = os.path.realpath(rootdir)
    real = os.path.realpath(os.path.join(rootdir, value))
    setting = f"{key} = {value}"
    if not _inside(real, root):
        return Loosening(setting, source, f"{real} is outside the project {root}")
    if real == root:
        return Loosening(setting, source, "the whole project, its sources and conftest.py")
    if ".git" in os.path.relpath(real, root).split(os.sep) or os.path.exists(
        os.path.join(real, ".git")
    ):
        return Loosening(setting, source, "the repository's .git (hooks run on the host)")
    for prefix in prefixes:
        prefix = os.path.realpath(prefix)
        if _inside(prefix, real) or _inside(real, prefix):
            return Loosening(setting, source, f"the interpreter's installation {prefix}")
    return None


def plan_loosenings(plan: object, rootdir: str) -> list[str]:
    """What a compiled plan allows beyond a confined test run: host network, no seccomp
    or its hardening, no user namespace, kept capabilities, writable binds outside the
    project."""
    from isorun.compile import plan as p

    assert isinstance(plan, p.Plan)
    root = os.path.realpath(rootdir)
    out = []
    clone = plan.find(p.Clone)
    namespaces = clone[0].namespaces if clone else ()
    if "net" not in namespaces:
        out.append("host network (no network namespace)")
    if "user" not in namespaces:
        out.append("no user namespace")
    seccomp = plan.find(p.LoadSeccomp)
    if not seccomp:
        out.append("seccomp off")
    elif not seccomp[0].policy.hardening:
        out.append("seccomp hardening off")
    for caps in plan.find(p.DropCaps):
        if caps.keep:
            out.append(f"capabilities kept: {', '.join(caps.keep)}")
    for root_step in plan.find(p.NewRoot):
        if root_step.kind == "host":
            out.append("the host's root file system (no new root)")
    for mount in plan.find(p.MountStep):
        if mount.type in ("rw-bind", "dev-bind"):
            src = os.path.realpath(mount.src or mount.dst)
            if not _inside(src, root):
                out.append(f"writable {src} outside the project")
    return out


def profile_loosenings(profile: str, rootdir: str, source: str) -> list[Loosening]:
    """The loosenings of running the project's tests under ``profile`` (a built-in name
    or an absolute path) chosen by the project: a profile file is one by itself (the
    repository writing its own rules), and every rule it or a built-in profile relaxes
    beyond the test profile is another."""
    from isorun import api
    from isorun.errors import IsorunError

    if profile == DEFAULT_PROFILE:
        return []
    setting = f"isorun_profile = {profile}"
    out = []
    if profile.endswith(".toml") or os.sep in profile:
        out.append(Loosening(setting, source, "a profile file from the repository"))
    # Compiled with ${CWD} the caller's working directory, as the session will be.
    baseline = set(plan_loosenings(api.compile_plan(DEFAULT_PROFILE), rootdir))
    try:
        found = plan_loosenings(api.compile_plan(profile), rootdir)
    except IsorunError as err:
        return [*out, Loosening(setting, source, f"does not compile: {err}")]
    out += [Loosening(setting, source, why) for why in found if why not in baseline]
    return out


def enforce(loosenings: Sequence[Loosening], trust: bool) -> list[str]:
    """The header lines of the loosenings in effect, or ProjectLoosensError."""
    if loosenings and not trust:
        raise ProjectLoosensError(loosenings)
    return [f"isorun: trusted project loosens the sandbox: {x.describe()}" for x in loosenings]


def check_profile_file(option: str, profile: str, path: str) -> None:
    """A profile named by path must exist before the session profile extends it: the
    error then names the option the user wrote, not a generated file in isorun's cache."""
    if (profile.endswith(".toml") or os.sep in profile) and not os.path.isfile(path):
        raise UsageError(
            f"{option}={profile}: no such profile file ({path})\n"
            "  hint: give a path to a profile file, or a built-in name (isorun profiles)"
        )


#: directories of $HOME that hold credentials: never bound into a test sandbox because
#: an import path (a .pth line of an installed package) or a rootdir points there
SECRET_DIRS = (
    ".ssh", ".aws", ".gnupg", ".config", ".netrc", ".docker", ".kube", ".azure",
    ".password-store", ".pypirc", ".git-credentials", ".local/share/keyrings",
)  # fmt: skip


def exposes_home(path: str, home: str) -> str:
    """Why binding ``path`` read-only would show the caller's secrets, or "": it is
    $HOME or a directory above it, or lies in one of :data:`SECRET_DIRS`."""
    real = os.path.realpath(path)
    home = os.path.realpath(home)
    if not home or home == "/":
        return ""
    if _inside(home, real):
        return f"{real} holds your home directory {home}"
    for name in SECRET_DIRS:
        if _inside(real, os.path.join(home, name)):
            return f"{real} is inside {os.path.join(home, name)}"
    return ""


def drop_exposing(paths: Iterable[str], home: str) -> tuple[list[str], list[str]]:
    """(the paths safe to bind, a line for each one dropped)."""
    kept, dropped = [], []
    for path in paths:
        why = exposes_home(path, home)
        if why:
            dropped.append(f"isorun: warning: not binding import path {path}: {why}")
        else:
            kept.append(path)
    return kept, dropped
