"""What a wrapper backend (bubblewrap, firejail) runs: the output of its pure renderer.

An :class:`Invocation` is data only. The renderer decides every argument; the runner in
:mod:`isorun.sandbox.backends` only creates the descriptors the renderer named, writes
``inputs`` into them, and spawns ``argv`` as ``user`` with exactly ``pass_fds`` open.
"""

from __future__ import annotations

from dataclasses import dataclass

from isorun.compile import plan as p
from isorun.errors import Lost

#: the exec stage (src/isorun/shim/seccomp_exec.c) as written in rendered argv; the runner
#: substitutes the path of the built program
HELPER = "isorun-seccomp-exec"


@dataclass(frozen=True, slots=True)
class Invocation:
    """A rendered launch of one backend program."""

    backend: str
    #: the program and its arguments, the first element looked up in PATH
    argv: tuple[str, ...]
    #: bytes the runner writes into each descriptor before the spawn (file contents,
    #: the command's environment); the renderer chose the numbers it was given
    inputs: tuple[tuple[int, bytes], ...] = ()
    #: every descriptor the spawned program inherits; all others are closed
    pass_fds: tuple[int, ...] = ()
    #: (uid, gid) on the host to spawn the program as, when it differs from the caller's
    user: tuple[int, int] | None = None
    #: rules of the plan this invocation does not enforce (only with allow_weaker)
    lost: tuple[Lost, ...] = ()
    #: index in ``argv`` of what the wrapper runs, right after the "--" that ends its own
    #: options (bwrap: the runner moves the options before it into --args)
    command_at: int = -1
    #: the command stays in the launcher's session and process group (the CLI on its
    #: terminal, see :func:`terminal_job_allowed`) instead of a new session
    terminal_job: bool = False

    def describe(self) -> str:
        """Stable text for golden files: a header of comments, then one argument a line."""
        lines = [f"# backend {self.backend}"]
        if self.user is not None:
            lines.append(f"# spawn as uid {self.user[0]} gid {self.user[1]}")
        if self.terminal_job:
            lines.append("# shares the caller's terminal (no new session)")
        lines.append("# inherit fds " + (" ".join(str(fd) for fd in self.pass_fds) or "none"))
        for fd, data in self.inputs:
            lines.append(f"# fd {fd}: {data!r}")
        for item in self.lost:
            lines.append(f"# LOST {item.rule}: {item.why}")
        lines.extend(self.argv)
        return "\n".join(lines) + "\n"


#: why a wrapper without user namespaces loses a plan's user namespace
NO_USERNS = ("user namespaces are disabled on this host; a setuid wrapper can stand in "
             "for one only when the plan maps the caller's own non-root ids to themselves")


def identity_without_userns(plan: p.Plan) -> bool:
    """Whether a setuid wrapper keeps the plan's identity rules without a user namespace.

    With ``uid -> same uid`` (not root) the user namespace gives the command the caller's
    own ids and no capability over anything outside. A setuid wrapper that drops to the
    caller's real ids (bwrap and firejail both do, without --unshare-user/--noroot) gives
    the same, so on a host with user namespaces off the plan still holds; any other map
    cannot be expressed there.
    """
    maps = plan.find(p.MapIds)
    return all(m.uid == m.host_uid and m.gid == m.host_gid and m.host_uid != 0
               for m in maps)


def terminal_job_allowed(plan: p.Plan) -> bool:
    """Whether a sandbox of ``plan`` may stay in the caller's session as the foreground job
    of its terminal instead of a new session (every backend asks this one question; the
    shim's spec.terminal_job is the native answer).

    A new session is there so the command cannot push input into the caller's terminal
    with TIOCSTI, or reach the console with TIOCLINUX (CVE-2017-5226); sharing the
    terminal is safe only when the plan's seccomp filter refuses both, which the
    hardening rules do. The wrappers must also load that filter before anything the
    sandbox runs gets control (their renderers check it).
    """
    seccomp = plan.find(p.LoadSeccomp)
    return bool(plan.find(p.NewSession)) and bool(seccomp) and seccomp[0].policy.hardening


@dataclass(frozen=True, slots=True)
class Expect:
    """A mount the exec stage checks inside the sandbox before the command runs (its
    ``--expect``): the file at ``path``, opened there with no link allowed, must be the one
    the runner walked on the host (``dev``, ``ino``), read-only or noexec when asked.

    The wrappers resolve mount paths by path, later than isorun's walk (issue #12); this
    is how a link swapped in between is caught instead of followed."""

    path: str
    dev: int
    ino: int
    readonly: bool = False
    noexec: bool = False

    def arg(self) -> str:
        flags = ("r" if self.readonly else "") + ("x" if self.noexec else "")
        return f"{self.dev}:{self.ino}:{flags or '-'}:{self.path}"


#: what the runner found for one mount source: (path with no link in it, st_dev, st_ino)
Identity = tuple[str, int, int]
