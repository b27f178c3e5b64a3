"""The session profile of ``pytest --isorun`` and ``isorun pytest``: its TOML, where it
is stored between runs, and the settings of the project that loosen it.

Below the session (which launches pytest in it) and the marker's plan (which extends
the same interpreter paths), so neither imports the other for these.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence

from isorun.testing import child, trust
from isorun.testing.child import requested_profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pytest

    from isorun.testing.reports import ReportFile
    from isorun.testing.session import CoverageData


def session_profile_text(
    base: str,
    rootdir: str,
    cache_dir: str,
    writable: list[str],
    python_paths: list[str] | None = None,
    reports: Sequence[ReportFile] = (),
    coverage: CoverageData | None = None,
    environment: Mapping[str, str] | None = None,
) -> str:
    """The TOML of the session profile: ``base`` plus what this pytest run needs."""
    lines = [f"extends = [{json.dumps(base)}]", ""]

    def mount(kind: str, path: str, optional: bool, src: str = "") -> None:
        lines.extend(["[[mounts]]", f'type = "{kind}"', f"dst = {json.dumps(path)}"])
        if src and src != path:
            lines.append(f"src = {json.dumps(src)}")
        if optional:
            lines.append("optional = true")
        lines.append("")

    # The rootdir (its pyproject/conftest) may lie above the working directory that the
    # profile binds; the interpreter must be visible whatever profile was chosen. Never
    # a directory that shows the caller's home or its credentials (a .pth line of an
    # installed package may name any directory): those are left out, with a warning.
    home = os.path.expanduser("~")
    if not trust.exposes_home(rootdir, home):
        mount("ro-bind", rootdir, False)
    paths = interpreter_paths() if python_paths is None else python_paths
    kept, dropped = trust.drop_exposing(paths, home)
    for line in dropped:
        sys.stderr.write(line + "\n")
    for path in kept:
        mount("ro-bind", path, False)
    mount("rw-bind", cache_dir, True)
    for path in writable:
        mount("rw-bind", path, True)
    for report in reports:
        mount("rw-bind", report.path, False, report.src)
    extra = dict(environment or {})
    if coverage is not None:
        mount("rw-bind", coverage.inside, False)
        extra["COVERAGE_FILE"] = coverage.data_file
    # The launcher's user namespace goes in at NS_FD: the inner session's proof that it
    # is inside (isorun.testing.child), which the variable alone is not.
    lines.extend(["[process]", f"pass_fds = [{child.NS_FD}]", ""])
    # The writable paths go in too, for the messages of the rules (isorun.testing.rules): the
    # inner pytest cannot see the launcher's list otherwise.
    shown = os.pathsep.join([cache_dir, *writable])
    extra.update({child.INNER: base, "ISORUN_PYTEST_WRITABLE": shown})
    pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(extra.items()))
    lines.extend(["[environment]", f"set = {{ {pairs} }}", ""])
    return "\n".join(lines)


def interpreter_paths() -> list[str]:
    """The interpreter's prefixes and every import path (editable installs and .pth
    entries may point anywhere), outermost first, without paths inside another."""
    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    paths.update(os.path.realpath(p) for p in sys.path if p and os.path.isdir(p))
    out: list[str] = []
    for path in sorted(paths):
        if path != "/" and not any(path.startswith(o.rstrip("/") + "/") for o in out):
            out.append(path)
    return out


def _override_given(args: list[str], key: str) -> bool:
    """Whether the user's own command line sets ini ``key`` (-o key=..., --override-ini)."""
    for index, arg in enumerate(args):
        value = arg
        if arg in ("-o", "--override-ini") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--override-ini="):
            value = arg.partition("=")[2]
        elif arg.startswith("-o") and arg != "-o":
            value = arg[2:]
        if value.startswith(key + "="):
            return True
    return False


def project_loosenings(
    config: pytest.Config, profile: str, base: str, cache_dir: str
) -> list[trust.Loosening]:
    """Each setting that came from the project, not the user's command line, and loosens
    the sandbox (isorun.testing.trust)."""
    user_args = list(config.invocation_params.args)
    user_args += os.environ.get("PYTEST_ADDOPTS", "").split()
    source = config.inipath.name if config.inipath else "the project's configuration"
    rootdir = str(config.rootpath)
    prefixes = {sys.prefix, sys.base_prefix}
    out: list[trust.Loosening] = []
    # The profile: the user's when their command line names it; else a bare --isorun
    # took the ini value, or the project's addopts asked for one.
    if requested_profile(list(user_args), "") in (None, "") and not _override_given(
        user_args, "isorun_profile"
    ):
        out += trust.profile_loosenings(base, rootdir, source)
        if out and base != profile:
            out = [replace_setting(x, profile) for x in out]
    if not _override_given(user_args, "isorun_writable"):
        for value in config.getini("isorun_writable"):
            found = trust.path_loosening(
                "isorun_writable", str(value), rootdir, source, prefixes
            )
            if found:
                out.append(found)
    if not _override_given(user_args, "cache_dir"):
        found = trust.path_loosening("cache_dir", cache_dir, rootdir, source, prefixes)
        if found:
            out.append(found)
    return out


def replace_setting(x: trust.Loosening, profile: str) -> trust.Loosening:
    """``x`` naming the profile as the project wrote it, not its absolute path."""
    from dataclasses import replace

    return replace(x, setting=f"isorun_profile = {profile}")


def stable_profile(text: str) -> str | None:
    """The session profile at a path that stays the same between runs, or None.

    The plan cache is keyed by the profile's path: a fresh temporary file each session
    missed it every time and recompiled (about 200 ms of the one-time cost). The file is
    named by the hash of its text, in a ``pytest`` directory of the isorun cache that only
    this user can write (made 0700, checked like the cache's own); an existing file is
    used only if it is ours, not writable by others, and holds exactly ``text``. Any
    doubt: None, and the caller writes a temporary file as before. ``ISORUN_CACHE=0``
    (no disk cache) writes nothing there either.
    """
    import hashlib
    import stat

    from isorun.cache import files as cache_files

    if os.environ.get("ISORUN_CACHE", "1") == "0":
        return None
    directory = os.path.join(cache_files.cache_dir(), "pytest")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        data = text.encode()
        path = os.path.join(directory, f"session-{hashlib.sha256(data).hexdigest()[:32]}.toml")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        else:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid == os.geteuid() and not st.st_mode & 0o022 and f.read() == data:
                    return path
        # Write beside, then rename: a concurrent session never reads half a profile.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".session-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path
    except OSError:
        return None
