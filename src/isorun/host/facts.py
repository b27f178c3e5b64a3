"""What the planner needs to know about the host and the caller, gathered in one place.

Facts are passed explicitly (never read from globals inside the planner) so tests can
inject recorded ones, and so the compiled-plan cache can key on them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from isorun.host import venv
from isorun.host.home import passwd_home
from isorun.kernel import abi


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The caller and the kernel, as the planner sees them."""

    uid: int
    gid: int
    #: machine name from uname, e.g. x86_64
    arch: str
    #: kernel release from uname
    kernel: str
    #: this caller can make a user namespace: /proc/sys/user/max_user_namespaces > 0 (and
    #: not restricted by sysctl/AppArmor), and, where a seccomp filter or no_new_privs
    #: already confines it (root included), a forked child really made one and took a
    #: sandbox's first steps in it
    userns: bool = True
    #: the kernel's Landlock ABI version, 0 when it has none (landlock(7)); the default is
    #: the newest isorun knows, for facts a test writes by hand
    landlock: int = 7

    @property
    def root(self) -> bool:
        return self.uid == 0


def probe() -> HostFacts:
    """Read the facts of this host. Cheap: a few stat/read calls, no subprocess."""
    # os.uname, not platform.uname: the same two fields without importing platform,
    # whose regular expressions cost milliseconds of every cold compile.
    uname = os.uname()
    return HostFacts(uid=os.getuid(), gid=os.getgid(), arch=uname.machine,
                     kernel=uname.release, userns=_userns_enabled(),
                     landlock=_landlock_abi())


def _userns_sysctls() -> bool:
    # (file, the smallest value that allows user namespaces); the second one restricts
    # unprivileged callers only. These are the sysctls the plan cache keys on.
    max_namespaces, unprivileged_clone = abi.KEYED_USERNS_SYSCTLS
    checks = [(max_namespaces, 1)]
    if os.getuid() != 0:
        checks.append((unprivileged_clone, 1))
    for path, minimum in checks:
        try:
            with open(path) as f:
                if int(f.read().strip()) < minimum:
                    return False
        except (OSError, ValueError):
            continue
    return True


def _userns_enabled() -> bool:
    """The sysctls allow it, and, where something already filters this process (a
    container's seccomp profile, an outer sandbox: Seccomp or NoNewPrivs set in
    /proc/self/status), a forked child really creates one. Unconfined, the sysctls are
    the whole story and no fork is paid."""
    if not _userns_sysctls():
        return False
    return not confined() or userns_probe() == ("", 0)


def confined() -> bool:
    """This process runs under a seccomp filter or with no_new_privs (kernel facts)."""
    try:
        with open("/proc/self/status") as f:
            status = f.read()
    except OSError:
        return False
    return "\nSeccomp:\t2" in status or "\nNoNewPrivs:\t1" in status


#: what userns_probe tries in its child, in order (exit status = index * 50 + errno)
PROBE_STEPS = ("unshare(CLONE_NEWUSER)", "sethostname", "mount(MS_PRIVATE)")


def userns_probe() -> tuple[str, int]:
    """("", 0) when a forked child can make a user namespace and, in it, take the first
    steps a sandbox needs (a UTS and a mount namespace, sethostname, a private mount
    tree); else (the step that failed, its errno). A container engine's seccomp profile
    may allow the namespace and refuse sethostname in it (podman's default does)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports through its exit status
        # a user, UTS and mount namespace, then MS_REC | MS_PRIVATE on /
        index = 0
        rc = int(libc.unshare(abi.CLONE_NEWUSER | abi.CLONE_NEWUTS | abi.CLONE_NEWNS))
        if rc == 0:
            index, rc = 1, int(libc.sethostname(b"isorun", 6))
        if rc == 0:
            index, rc = 2, int(libc.mount(None, b"/", None, 0x4000 | 0x40000, None))
        os._exit(0 if rc == 0 else index * 50 + (min(ctypes.get_errno(), 49) or 49))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "", 0
    if not 0 < code < 50 * len(PROBE_STEPS):
        return PROBE_STEPS[0], 0
    return PROBE_STEPS[code // 50], code % 50


@functools.cache  # the running kernel's, for the life of the process
def _landlock_abi() -> int:
    """landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) (landlock(7)):
    the ABI version, or an error (0 here) where the kernel has no Landlock."""
    import ctypes  # only here: about 2 ms, paid by a compile, never by a warm launch

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # 444 on every architecture (asm-generic unified table); 1: ..._VERSION
    rc = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return int(rc) if rc > 0 else 0


def variables(facts: HostFacts, environ: dict[str, str] | None = None,
              cwd: str | None = None) -> dict[str, str]:
    """The ``${NAME}`` variables a profile may use, resolved for this caller (in ``cwd``,
    when given, instead of the working directory)."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    return {
        "HOME": os.path.realpath(home),
        # The home the password database gives this uid, which $HOME (anyone's to set:
        # a service unit, sudo, a test's env) may differ from; the credential masks and
        # the working-directory policy cover both (compile/exposure.py).
        "PASSWD_HOME": passwd_home(facts.uid),
        "CWD": os.path.realpath(os.getcwd() if cwd is None else cwd),
        "TMPDIR": os.path.realpath(env.get("TMPDIR") or "/tmp"),
        "UID": str(facts.uid),
        "GID": str(facts.gid),
        "USER": env.get("USER") or env.get("LOGNAME") or str(facts.uid),
        # The caller's active virtual environment (VIRTUAL_ENV) and the Python it was
        # made from, else the running interpreter's (isorun.host.venv); either may lie
        # outside the project and under a hidden $HOME (pyenv): the test profile binds
        # both read-only so the caller's Python runs inside.
        "PYTHON_PREFIX": os.path.realpath(venv.prefixes(env)[0]),
        "PYTHON_BASE_PREFIX": os.path.realpath(venv.prefixes(env)[1]),
        # The ssh-agent socket, as given: masked wherever a bind would show it
        # (compile/exposure.py), and bound by a profile that names ${SSH_AUTH_SOCK}.
        "SSH_AUTH_SOCK": env.get("SSH_AUTH_SOCK", ""),
    }
