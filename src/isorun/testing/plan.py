"""What a marked test's sandbox is: the plan its profile compiles to, once per session,
and the per-test record (writable paths, working directory) the child applies.

The process side (fork, the child's steps, the result) is isorun.testing.sandbox; the
messages that name a rule a test broke are isorun.testing.rules.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from isorun.kernel.abi import CLONE_NEWNET, MS_NODEV, MS_NOSUID

#: step numbers of the per-test writable binds, past any plan's (failures name the bind)
WRITABLE_STEP = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    """What a profile compiles to, once per session: the shim's record and the policy."""

    #: isorun.sandbox.spec.spec_record of the plan, without the per-test parts
    record: dict[str, Any]
    #: the environment the profile gives, for the child's os.environ
    env: dict[str, str]
    network: str
    visible: tuple[str, ...]
    #: no user namespace here: the landlock backend's record (no mounts; the test's
    #: writable paths become Landlock grants instead of binds)
    landlock: bool = False
    #: the C structs of recent tests by their inputs, with the memory they point to:
    #: most tests of a session build the same one (~0.25 ms each time)
    structs: dict[tuple[Any, ...], tuple[Any, list[Any]]] = field(
        default_factory=dict, compare=False
    )


def _base_profile(profile: str) -> str:
    # A path is resolved now: the generated profile lives in isorun's cache directory.
    if profile.endswith(".toml") or os.sep in profile:
        return os.path.abspath(profile)
    return profile


def marker_profile_text(profile: str, network: str | None, paths: list[str]) -> str:
    """The TOML the marker compiles: ``profile``, the interpreter's import ``paths``
    read-only (lazily imported modules must resolve inside the new root), and the
    ``network`` keyword when it differs from the profile's."""
    lines = [f"extends = [{json.dumps(_base_profile(profile))}]"]
    if network is not None:
        lines.append('override = ["network.mode"]')
    lines.append("")
    for path in paths:
        lines += ["[[mounts]]", 'type = "ro-bind"', f"dst = {json.dumps(path)}", ""]
    if network is not None:
        lines += ["[network]", f"mode = {json.dumps(network)}", ""]
    return "\n".join(lines)


@functools.cache
def compile_session(profile: str, network: str | None, cwd: str, paths: tuple[str, ...],
                    allow_weaker: bool = False) -> Session:
    """The marker's plan for ``profile``, compiled once per session, working directory
    and set of import paths (about 90 ms with the filter; a test then adds ~nothing)."""
    import tempfile

    from isorun import api
    from isorun.host import facts as host_facts
    from isorun.sandbox import native
    from isorun.sandbox.spec import spec_record
    from isorun.testing.profiles import stable_profile

    if network not in (None, "none", "host"):
        raise ValueError(f'network must be "none" or "host", got {network!r}')
    text = marker_profile_text(profile, network, list(paths))

    def compile_at(path: str) -> Any:
        plan = api.compile_plan(path)
        return plan, api.cached_program(plan)

    # The planner resolves ${CWD} from the working directory, which a fixture may have
    # moved (monkeypatch.chdir); the profile means the session's.
    here = os.getcwd()
    os.chdir(cwd)
    try:
        path = stable_profile(text)
        if path is not None:
            plan, bpf = compile_at(path)
        else:
            with tempfile.TemporaryDirectory(prefix="isorun-marker-") as scratch:
                path = os.path.join(scratch, "marker.toml")
                with open(path, "w") as f:
                    f.write(text)
                plan, bpf = compile_at(path)
    finally:
        os.chdir(here)
    facts = host_facts.probe()
    if not facts.userns:
        return _landlock_session(plan, facts.landlock, allow_weaker)
    record = spec_record(native.build_spec(plan, ["pytest"], os.environ, bpf))
    env = dict(os.fsdecode(e).partition("=")[::2] for e in record["env"])
    visible = tuple(os.fsdecode(m[1]) for m in record["mounts"])
    net = "none" if record["clone_flags"] & CLONE_NEWNET else "host"
    return Session(record, env, net, visible)


def _landlock_session(plan: Any, abi: int, allow_weaker: bool) -> Session:
    """The session of a host where no user namespace can be made (a CI container, inside
    another sandbox): the landlock backend's record, refused unless the user allowed
    its losses (--isorun-allow-weaker), which are then printed once."""
    import sys

    from isorun.compile.plan import Landlock, Loopback
    from isorun.errors import HostError, Unsupported
    from isorun.sandbox.backends import describe_lost
    from isorun.sandbox.landlock_mode import build_mode_spec, lost_rules
    from isorun.sandbox.spec import spec_record

    if abi < 1 or not plan.find(Landlock):
        raise HostError("@pytest.mark.isorun", "no user namespace can be made here and "
                        "there is no Landlock to confine the test with instead",
                        "run where user namespaces are allowed (isorun doctor says why not)")
    lost = lost_rules(plan, abi)
    if lost and not allow_weaker:
        raise Unsupported("landlock", lost)
    if lost:
        sys.stderr.write(describe_lost("landlock", lost) + "\n")
    record = spec_record(build_mode_spec(plan, ["pytest"], os.environ, abi))
    env = dict(os.fsdecode(e).partition("=")[::2] for e in record["env"])
    visible = tuple(os.fsdecode(r[0]) for r in record["landlock_rules"] if r[0])
    return Session(record, env, "none" if plan.find(Loopback) else "host", visible,
                   landlock=True)


def sandbox_ids() -> tuple[int, int]:
    """(uid, gid) a marked test's or session's sandbox runs as on the host: the rule of
    compile.planner.host_ids for this process (the test profile never maps root)."""
    from isorun.compile.planner import host_ids

    return host_ids(os.geteuid() == 0, False, os.getuid(), os.getgid())


def per_test_record(session: Session, writable: tuple[str, ...]) -> dict[str, Any]:
    """The session's record plus this test's writable binds and working directory."""
    from isorun.sandbox.spec import MountKind

    extra = tuple(
        # Last: a writable path must win over whatever the profile put above it (a tmpfs
        # /tmp over tmp_path). Optional: the test may not have created it.
        (int(MountKind.BIND), os.fsencode(p), os.fsencode(p), MS_NOSUID | MS_NODEV, b"",
         0o755, True, WRITABLE_STEP + i, -1)
        for i, p in enumerate(writable)
    )  # fmt: skip
    # The test's own working directory (monkeypatch.chdir), not the session's: a
    # directory the root does not show fails set-up at "cwd", named.
    grants: tuple[Any, ...] = ()
    if session.record.get("landlock_fs"):
        from isorun.compile import landlock

        # Landlock handles file access: a writable path needs its grant as much as its
        # mount (the session's rules only know the profile's mounts). Without a mount
        # namespace (landlock mode) the grant is on the host path itself; with one, the
        # bind's destination is that same path.
        rights = landlock.mask((*landlock.READ, *landlock.WRITE, "execute"),
                               landlock.ACCESS_FS)
        grants = tuple((os.fsencode(p), 0, rights, True) for p in writable)
    if session.landlock:
        return {**session.record, "cwd": os.fsencode(os.getcwd()),
                "landlock_rules": session.record["landlock_rules"] + grants}
    # Before the read-only remount of the root, which stays last: a writable path whose
    # mount point is not there yet is made in the root.
    mounts = session.record["mounts"]
    cut = len(mounts)
    while cut and mounts[cut - 1][0] == MountKind.REMOUNT_RO:
        cut -= 1
    return {**session.record, "mounts": mounts[:cut] + extra + mounts[cut:],
            "cwd": os.fsencode(os.getcwd()),
            "landlock_rules": session.record.get("landlock_rules", ()) + grants}  # fmt: skip


def resolve_mounts(record: dict[str, Any], opened: list[int]) -> dict[str, Any]:
    """Every bind source resolved without following a link the sandbox's side could have
    written (mounts.resolve_mounts_in_parent, issue #12), refused with the profile line
    otherwise. As root, also cloned by this process when the sandbox's uid 65534 cannot
    walk to it (behind a 0700 directory: /root's pyenv, pytest's tmp_path under
    /tmp/pytest-of-root); the others stay binds by path. A rootfs directory it cannot
    reach likewise (then a tree over an empty tmpfs root).

    Not every bind cloned, as a launch does: open_tree costs ~12 us a mount and a launch
    pays it once, a marked test every time. A source the check wrongly thinks reachable
    fails the bind in the child (EACCES, set-up failed): never a weaker sandbox.
    """
    from isorun.sandbox import mounts

    return mounts.resolve_mounts_in_parent(record, opened,
                                           clone=lambda src: not _reachable(src))  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _reachable(src: bytes) -> bool:
    """Whether uid/gid 65534, with no capability over host files, can walk to ``src``:
    every directory on the way searchable by others (host root is unmapped inside, so
    owner and group bits never apply to it)."""
    path = b""
    for part in src.strip(b"/").split(b"/"):
        try:
            st = os.stat(path or b"/")
        except FileNotFoundError:
            # A missing source the child can tell is missing (ENOENT, not EACCES): it
            # skips an optional one, and names a required one as not found.
            return True
        except OSError:
            return False
        if not st.st_mode & 0o001:
            return False
        path += b"/" + part
    return True


@functools.cache
def import_paths(path: tuple[str, ...]) -> tuple[str, ...]:
    """The interpreter's directories, once per value of sys.path (each call stats them),
    without one that would show the caller's home or credentials (testing.trust)."""
    import sys

    from isorun.testing.profiles import interpreter_paths
    from isorun.testing.trust import drop_exposing

    kept, dropped = drop_exposing(interpreter_paths(), os.path.expanduser("~"))
    for line in dropped:
        sys.stderr.write(line + "\n")
    return tuple(kept)


def hand_scratch_to_sandbox(paths: tuple[str, ...], uid: int, gid: int) -> tuple[str, ...]:
    """As root, give pytest's per-test scratch directories (tmp_path) to the sandbox's
    uid 65534; returns the ones handed over, for :func:`hand_back`.

    Host root is never mapped into the sandbox (a root-owned file it could chmod u+s
    would be a setuid-root file on the host), so ownership is the only way it can write
    there. Only the directory itself, opened without following a link, and only a
    directory this process owns under the temp directory: what a fixture put inside
    keeps its owner, and nothing outside pytest's scratch ever changes hands.
    """
    import tempfile

    tmp = os.path.realpath(tempfile.gettempdir()) + os.sep
    handed = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
            if real.startswith(tmp) and os.fstat(fd).st_uid == os.geteuid():
                os.fchown(fd, uid, gid)
                handed.append(path)
        finally:
            os.close(fd)
    return tuple(handed)


def hand_back(paths: tuple[str, ...], uid: int) -> None:
    """After the test: the handed directories, and what the sandbox's ``uid`` made in
    them, go back to this process's owner, as an unmarked test would have left them.

    Walked by descriptor (os.fwalk without following links) and changed with
    fchownat(AT_SYMLINK_NOFOLLOW): a directory the test swapped for a link leads
    nowhere. The kernel clears set-user-ID and set-group-ID bits on a chown.
    """
    me = (os.geteuid(), os.getegid())
    for path in paths:
        try:
            for _, dirs, files, dirfd in os.fwalk(path, follow_symlinks=False):
                for name in (*dirs, *files):
                    try:
                        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                        if st.st_uid == uid:
                            os.chown(name, *me, dir_fd=dirfd, follow_symlinks=False)
                    except OSError:
                        continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_uid == uid:
                os.fchown(fd, *me)
        finally:
            os.close(fd)
