"""What the backends need to know about this host, and the deeper checks of ``isorun doctor``.

:func:`probe_backends` is cheap enough for every launch (stat calls and sysctl reads, no
subprocess unless a wrapper backend is consulted: their versions are read lazily). The
doctor probes (``read_*``/``try_*``) take the filesystem root as a parameter so the unit
tests feed them recorded ``/proc`` trees.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from isorun.host.facts import HostFacts
from isorun.host.facts import probe as probe_facts
from isorun.kernel import abi

#: sysctls that decide whether a user namespace can be created, and the value that allows
USERNS_SYSCTLS = abi.USERNS_SYSCTLS


@dataclass(frozen=True, slots=True)
class Tool:
    """A wrapper program found on the host."""

    path: str
    version: str
    #: setuid root: works without user namespaces, but runs privileged code for the caller
    setuid: bool


@dataclass(frozen=True, slots=True)
class UsernsState:
    """Whether this caller can create a user namespace, and the sysctl that says no."""

    allowed: bool
    #: the sysctl name=value that forbids it ("" when allowed, or the reason otherwise)
    blocker: str = ""
    fix: str = ""


@dataclass(frozen=True, slots=True)
class BackendFacts:
    """The host as backend selection sees it. Pass explicitly; tests inject their own."""

    host: HostFacts
    userns: UsernsState
    #: the native shim imports and matches this package ("" when it does, else why not);
    #: None: not probed here (the shim is the sandbox layer's), NativeBackend.missing() says
    native_missing: str | None = None
    bwrap: Tool | None = None
    firejail: Tool | None = None
    #: the users firejail admits (``/etc/firejail/firejail.users``); None: everyone
    firejail_users: frozenset[str] | None = field(default=None)
    #: no_new_privs is set on this process: a setuid wrapper cannot gain root
    no_new_privs: bool = False


def read_userns(root: Path = Path("/"), uid: int | None = None) -> UsernsState:
    """Decide from the sysctls. Root needs only max_user_namespaces > 0: the other two
    restrict unprivileged callers (Debian/Ubuntu patches and AppArmor on Ubuntu 23.10+)."""
    uid = os.getuid() if uid is None else uid
    values = {name: _read(root / path.lstrip("/")) for name, path in USERNS_SYSCTLS}
    max_ns = values["user.max_user_namespaces"]
    if max_ns is not None and max_ns.strip() == "0":
        return UsernsState(False, "user.max_user_namespaces=0",
                           "sysctl -w user.max_user_namespaces=15000")
    if uid != 0:
        clone = values["kernel.unprivileged_userns_clone"]
        if clone is not None and clone.strip() == "0":
            return UsernsState(False, "kernel.unprivileged_userns_clone=0",
                               "sysctl -w kernel.unprivileged_userns_clone=1")
        apparmor = values["kernel.apparmor_restrict_unprivileged_userns"]
        if apparmor is not None and apparmor.strip() == "1":
            return UsernsState(False, "kernel.apparmor_restrict_unprivileged_userns=1",
                               "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, "
                               "or give bwrap an AppArmor profile with 'userns,'")
    return UsernsState(True)


def try_userns_clone() -> tuple[bool, str]:
    """Create a user namespace in a forked child and take a sandbox's first steps in it
    (host.facts.userns_probe): the sysctls can say yes while a container's seccomp
    profile or an LSM says no. Returns (worked, "errno name" or "step: errno name")."""
    from isorun.host.facts import PROBE_STEPS, userns_probe

    step, err = userns_probe()
    if not step:
        return True, ""
    name = errno.errorcode.get(err, str(err))
    return False, name if step == PROBE_STEPS[0] else f"{step}: {name}"


#: (path, its stat identity) -> the Tool read from it: ``--version`` is a subprocess per
#: wrapper (milliseconds), and an API caller in a loop would pay it on every launch
#: (issue 18). Keyed by what a changed binary changes (a reinstall replaces the inode; an
#: in-place write or chmod moves ctime), so a new version or setuid bit is read again.
_TOOLS: dict[tuple[object, ...], Tool | None] = {}


def find_tool(name: str, root: Path = Path("/")) -> Tool | None:
    """Locate ``name`` in PATH and read its version (one short subprocess, once per
    binary and process)."""
    path = shutil.which(name)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
           st.st_mode)
    if key in _TOOLS:
        return _TOOLS[key]
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None  # not remembered: a passing failure is tried again next launch
    tool = _TOOLS[key] = Tool(path, parse_version(out), bool(st.st_mode & stat.S_ISUID))
    return tool


def parse_version(text: str) -> str:
    """``bubblewrap 0.8.0`` / ``firejail version 0.9.72`` -> ``0.8.0`` / ``0.9.72``."""
    match = re.search(r"(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else ""


def read_firejail_users(root: Path = Path("/")) -> frozenset[str] | None:
    """firejail-users(5): when the file exists, only the users it names may run firejail."""
    text = _read(root / "etc/firejail/firejail.users")
    if text is None:
        return None
    return frozenset(line.strip() for line in text.splitlines()
                     if line.strip() and not line.lstrip().startswith("#"))


def userns_refusal(root: Path = Path("/"), err: int = 0,
                   step: str = "unshare(CLONE_NEWUSER)") -> UsernsState:
    """Why a forked child cannot create a user namespace though the sysctls allow it, or
    cannot take ``step`` in it, from kernel facts of this process (never from
    environment variables)."""
    status = _read(root / "proc/self/status") or ""
    uid_map = " ".join((_read(root / "proc/self/uid_map") or "").split())
    name = errno.errorcode.get(err, str(err)) if err else "an error"
    filtered = "\nSeccomp:\t2" in status
    if step != "unshare(CLONE_NEWUSER)":
        return UsernsState(False, f"a user namespace can be made, but {step} in it fails "
                           f"with {name}" + (": the seccomp filter on this process (a "
                                             "container engine's default profile) refuses "
                                             "it" if filtered else ""),
                           "run the container with a seccomp profile that allows it "
                           "(--security-opt seccomp=...), or use --backend landlock")
    nested = filtered and uid_map not in ("", "0 0 4294967295")
    if nested:
        return UsernsState(False, f"this process runs inside a sandbox (a user namespace "
                           f"mapping '{uid_map}', under a seccomp filter) that refuses nested "
                           f"user namespaces ({name}); isorun's own hardening does so on "
                           "purpose",
                           "run isorun outside the sandbox, or use --backend landlock (no "
                           "namespaces; --allow-weaker lists what it cannot enforce)")
    if filtered:
        return UsernsState(False, f"a seccomp filter on this process (a container engine's "
                           f"default profile) refuses unshare(CLONE_NEWUSER) ({name})",
                           "run the container with a seccomp profile that allows user "
                           "namespaces (--security-opt seccomp=...), or use --backend "
                           "landlock")
    return UsernsState(False, f"unshare(CLONE_NEWUSER) fails with {name} (an LSM such as "
                       "AppArmor or SELinux, or a namespace limit)",
                       "check the LSM's policy for user namespaces, or use --backend landlock")


def probe_backends(host: HostFacts | None = None) -> BackendFacts:
    """The facts of this host for backend selection."""
    host = probe_facts() if host is None else host
    userns = read_userns(uid=host.uid)
    if userns.allowed and not host.userns:
        from isorun.host.facts import userns_probe

        step, err = userns_probe()
        userns = userns_refusal(err=err, step=step or "unshare(CLONE_NEWUSER)")
    nnp = "\nNoNewPrivs:\t1" in (_read(Path("/proc/self/status")) or "")
    return BackendFacts(host=host, userns=userns, no_new_privs=nnp,
                        bwrap=find_tool("bwrap"),
                        firejail=find_tool("firejail"), firejail_users=read_firejail_users())


def read_seccomp_actions(root: Path = Path("/")) -> frozenset[str]:
    text = _read(root / "proc/sys/kernel/seccomp/actions_avail")
    return frozenset(text.split()) if text else frozenset()


def read_container(root: Path = Path("/")) -> str:
    """The container runtime this process runs in, or "" (systemd's detection files)."""
    for marker, name in (("run/.containerenv", "podman"), (".dockerenv", "docker")):
        if (root / marker).exists():
            return name
    env = _read(root / "proc/1/environ")
    if env:
        for item in env.split("\0"):
            if item.startswith("container="):
                return item.partition("=")[2] or "container"
    cgroup = _read(root / "proc/1/cgroup") or ""
    for word in ("docker", "kubepods", "lxc", "containerd"):
        if word in cgroup:
            return word
    return ""


def read_seccomp_mode(root: Path = Path("/")) -> str:
    """``Seccomp:`` of this process: 0 none, 1 strict, 2 filter (a runtime's profile)."""
    for line in (_read(root / "proc/self/status") or "").splitlines():
        if line.startswith("Seccomp:"):
            return line.split(":", 1)[1].strip()
    return ""


def landlock_abi() -> int:
    """The Landlock ABI version (0: not available), as HostFacts has it."""
    from isorun.host.facts import _landlock_abi

    return _landlock_abi()


@dataclass(frozen=True, slots=True)
class CgroupState:
    version: str  # "v2", "hybrid", "v1" or "none"
    #: the cgroup v2 directory of this process and whether we can make children there
    v2_dir: str = ""
    v2_writable: bool = False
    v2_controllers: tuple[str, ...] = ()
    #: v1 hierarchies mounted, by controller
    v1_controllers: tuple[str, ...] = ()


def read_cgroups(root: Path = Path("/")) -> CgroupState:
    mounts = _read(root / "proc/self/mountinfo") or ""
    v2_mount = ""
    v1: list[str] = []
    for line in mounts.splitlines():
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        if not kind or len(fields) < 5:
            continue
        if kind[0] == "cgroup2":
            v2_mount = fields[4]
        elif kind[0] == "cgroup":
            opts = kind[2].split(",") if len(kind) > 2 else []
            v1 += [o for o in opts if o not in ("rw", "ro", "relatime", "noatime", "nosuid",
                                                "nodev", "noexec") and "=" not in o]
    own = ""
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            own = line[3:]
    version = ("hybrid" if v2_mount and v1 else "v2" if v2_mount else "v1" if v1 else "none")
    if not v2_mount:
        return CgroupState(version, v1_controllers=tuple(sorted(set(v1))))
    directory = root / v2_mount.lstrip("/") / own.lstrip("/")
    controllers = tuple((_read(directory / "cgroup.controllers") or "").split())
    writable = os.access(directory, os.W_OK) and os.access(directory / "cgroup.procs", os.W_OK)
    return CgroupState(version, str(directory), writable, controllers,
                       tuple(sorted(set(v1))))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
