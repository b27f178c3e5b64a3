"""What a wrapper backend (bubblewrap, firejail) runs: the output of its pure renderer.

An :class:`Invocation` is data only. The renderer decides every argument; the runner in
:mod:`isorun.run.backends` only creates the descriptors the renderer named, writes
``inputs`` into them, and spawns ``argv`` as ``user`` with exactly ``pass_fds`` open.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def describe(self) -> str:
        """Stable text for golden files: a header of comments, then one argument a line."""
        lines = [f"# backend {self.backend}"]
        if self.user is not None:
            lines.append(f"# spawn as uid {self.user[0]} gid {self.user[1]}")
        lines.append("# inherit fds " + (" ".join(str(fd) for fd in self.pass_fds) or "none"))
        for fd, data in self.inputs:
            lines.append(f"# fd {fd}: {data!r}")
        for item in self.lost:
            lines.append(f"# LOST {item.rule}: {item.why}")
        lines.extend(self.argv)
        return "\n".join(lines) + "\n"
