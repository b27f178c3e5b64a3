"""The refusal report where isorun's Python process supervises the listener (issue #17).

The wrapper backends: bwrap's and firejail's sandboxes load their filter in the exec
stage inside the wrapper (shim/stage/seccomp_exec.c), which hands the reporting filter's
listener to us over a socket (:meth:`RefusalWatch.for_stage`). The native backend's
in-process clone (a cgroup or wall_time profile: sandbox/process.py) takes it from the
child with pidfd_getfd as learn mode does (:meth:`RefusalWatch.on_listener`). Either way
a thread here answers each refused call with the profile's errno and counts it
(shim/child/notify.c, the loop isorun-launch runs), outside the sandbox and after the
command's execve: no Python runs in the sandbox.

The stage says what it did in one byte: ``L`` with the listener, ``N`` when the profile
refuses the hand-over's own sendmsg (the stage then loads the plain filter), ``B`` when
an outer listener holds the kernel's only place. EOF without a byte: the stage never ran
(the wrapper failed first), or it was never asked to (bwrap loads the filter itself).

If this process dies the kernel answers each later refused call with ENOSYS: a refusal
stays a refusal. Memory is bounded: one counter per distinct (arch, number), at most
:data:`KINDS`; the kernel's KILL and TRAP answers are never rewritten.
"""

from __future__ import annotations

import array
import os
import select
import socket
import threading
from contextlib import suppress
from typing import TYPE_CHECKING

from isorun.compile.refusals import AUDIT_ARCH, refusal_table, seccomp_report

if TYPE_CHECKING:
    from isorun.compile.plan import Plan
    from isorun.sandbox._shim import Supervised

#: the supervisor's table: as isorun-launch's REPORT_KINDS (a power of two, 3/4 used)
KINDS = 256
#: how long after the wrapper's exit the last filtered process may take to go
_DRAIN = 2.0
_SAID = {
    b"N": "isorun: no seccomp report: the profile refuses sendmsg, which hands the report's "
          "listener to isorun (the command ran under the plain filter)",
    b"B": "isorun: no seccomp report: a seccomp listener above this sandbox (a "
          "container's supervisor?) leaves none for isorun",
}


class RefusalWatch:
    """The thread that supervises the report's listener, and the report it makes."""

    def __init__(self, plan: Plan, program: bytes) -> None:
        self._plan = plan
        self._program = program
        self._native = os.uname().machine
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        # without a hand-over (the native clone): a successful spawn that never gave us
        # the listener loaded the plain filter, an outer listener holding the place
        self._said = b"B"
        self._result: Supervised | None = None
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None
        self._done = False
        self._sock: socket.socket | None = None
        self._child: socket.socket | None = None
        self._bpf_fd = -1
        #: the stage's ends: (socket, reporting filter); (-1, -1) without a stage
        self.child_fds = (-1, -1)

    @classmethod
    def for_stage(cls, plan: Plan, program: bytes, report_bpf: bytes) -> RefusalWatch:
        """The report's two descriptors for a wrapper's exec stage (--report-fd,
        --report-bpf-fd); :meth:`started` once the wrapper holds them."""
        watch = cls(plan, program)
        watch._said = b""
        watch._sock, watch._child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # close-on-exec here; the spawn clears it for the descriptors it passes
        watch._bpf_fd = os.memfd_create("isorun-report", os.MFD_CLOEXEC)
        os.write(watch._bpf_fd, report_bpf)
        os.lseek(watch._bpf_fd, 0, os.SEEK_SET)
        watch.child_fds = (watch._child.fileno(), watch._bpf_fd)
        return watch

    def on_listener(self, listener: int) -> None:
        """process.spawn's hand-over: answer at once (the command's execve waits)."""
        self._said = b"L"
        self._thread = threading.Thread(target=self._supervise, args=(listener,),
                                        name="isorun-refusals", daemon=True)
        self._thread.start()

    def _drop_stage_ends(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None
        if self._bpf_fd >= 0:
            os.close(self._bpf_fd)
            self._bpf_fd = -1

    def started(self) -> None:
        """The wrapper holds the stage's ends now: ours go, and the thread starts."""
        self._drop_stage_ends()
        self._thread = threading.Thread(target=self._serve, name="isorun-refusals",
                                        daemon=True)
        self._thread.start()

    def abandon(self) -> None:
        """The wrapper never started, or was not asked to report: nothing to supervise.
        Does nothing once :meth:`started`."""
        if self._thread is not None or self._done:
            return
        self._drop_stage_ends()
        self._done = True
        self._close()

    def _serve(self) -> None:
        assert self._sock is not None
        try:
            ready, _, _ = select.select([self._sock.fileno(), self._stop_r], [], [])
            if self._sock.fileno() not in ready:
                return  # stopped before the stage said anything
            fds = array.array("i")
            msg, ancdata, _, _ = self._sock.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            self._said = msg
            if msg != b"L" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                return
        except OSError as err:
            self._error = err
            return
        self._supervise(fds[0])

    def _supervise(self, listener: int) -> None:
        from isorun.sandbox import _shim

        try:
            self._result = _shim.supervise(
                listener, self._stop_r, AUDIT_ARCH.get(self._native, 0), b"", (),
                seen_cap=KINDS, events_cap=1, evaluate=self._program)
        except OSError as err:
            self._error = err
        finally:
            os.close(listener)

    def finish(self) -> None:
        """After the wrapper's exit: the supervisor ends when no process uses the filter
        (its pid namespace died with the wrapper), or is stopped after :data:`_DRAIN`
        (later refused calls then get ENOSYS from the kernel)."""
        if self._done:
            return
        self._done = True
        if self._thread is not None:
            self._thread.join(_DRAIN)
            if self._thread.is_alive():
                os.write(self._stop_w, b"x")
                self._thread.join()
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        for fd in (self._stop_r, self._stop_w):
            with suppress(OSError):
                os.close(fd)

    def lines(self) -> list[str]:
        """The report, as isorun-launch says it; [] when nothing was refused."""
        from isorun.compile.plan import LoadSeccomp

        self.finish()
        if self._said in _SAID:
            return [_SAID[self._said]]
        if self._error is not None:
            return [f"isorun: no seccomp report: {self._error.strerror}"]
        result = self._result
        if result is None or (result.refused == 0 and result.lost == 0):
            return []
        table, other = refusal_table(self._plan.find(LoadSeccomp)[0].policy, self._native)
        return seccomp_report([(c.arch, c.nr, c.count) for c in result.calls],
                              result.refused, result.lost, table, other,
                              AUDIT_ARCH.get(self._native, 0))

    def refused(self) -> int:
        """How many calls were refused (0 before the command ended)."""
        return self._result.refused if self._result is not None else 0
