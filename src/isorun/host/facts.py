"""What the planner needs to know about the host and the caller, gathered in one place.

Facts are passed explicitly (never read from globals inside the planner) so tests can
inject recorded ones, and so the compiled-plan cache can key on them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The caller and the kernel, as the planner sees them."""

    uid: int
    gid: int
    #: machine name from uname, e.g. x86_64
    arch: str
    #: kernel release from uname
    kernel: str
    #: /proc/sys/user/max_user_namespaces > 0 (and not restricted by sysctl/AppArmor)
    userns: bool = True

    @property
    def root(self) -> bool:
        return self.uid == 0


def probe() -> HostFacts:
    """Read the facts of this host. Cheap: a few stat/read calls, no subprocess."""
    # os.uname, not platform.uname: the same two fields without importing platform,
    # whose regular expressions cost milliseconds of every cold compile.
    uname = os.uname()
    return HostFacts(uid=os.getuid(), gid=os.getgid(), arch=uname.machine,
                     kernel=uname.release, userns=_userns_enabled())


def _userns_enabled() -> bool:
    # (file, the smallest value that allows unprivileged user namespaces)
    for path, minimum in (("/proc/sys/user/max_user_namespaces", 1),
                          ("/proc/sys/kernel/unprivileged_userns_clone", 1)):
        try:
            with open(path) as f:
                if int(f.read().strip()) < minimum:
                    return False
        except (OSError, ValueError):
            continue
    return True


def variables(facts: HostFacts, environ: dict[str, str] | None = None,
              cwd: str | None = None) -> dict[str, str]:
    """The ``${NAME}`` variables a profile may use, resolved for this caller (in ``cwd``,
    when given, instead of the working directory)."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    return {
        "HOME": os.path.realpath(home),
        "CWD": os.path.realpath(os.getcwd() if cwd is None else cwd),
        "TMPDIR": os.path.realpath(env.get("TMPDIR") or "/tmp"),
        "UID": str(facts.uid),
        "GID": str(facts.gid),
        "USER": env.get("USER") or env.get("LOGNAME") or str(facts.uid),
        # The running interpreter's installation (a virtual environment, and the Python it
        # was made from), which may lie outside the project and under a hidden $HOME
        # (pyenv): the test profile binds both read-only so the same Python runs inside.
        "PYTHON_PREFIX": os.path.realpath(sys.prefix),
        "PYTHON_BASE_PREFIX": os.path.realpath(sys.base_prefix),
    }
