"""clone3 returning into Python (isorun.sandbox.pyfork): what the kernel and the C
library say in the child, against what os.fork() would have left there."""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable

import pytest

from isorun.sandbox import pyfork

pytestmark = pytest.mark.needs("userns")

CLONE_NEWUSER, CLONE_NEWPID, CLONE_THREAD = 0x10000000, 0x20000000, 0x00010000
PR_GET_TID_ADDRESS = 40


def _robust_list() -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    head, length = ctypes.c_void_p(), ctypes.c_size_t()
    get_robust_list = pyfork._ROBUST_LIST_SYSCALLS[os.uname().machine][0]
    rc = libc.syscall(get_robust_list, 0, ctypes.byref(head), ctypes.byref(length))
    assert rc == 0, os.strerror(ctypes.get_errno())
    return head.value or 0, length.value


def _tcb_tid() -> int:
    """The thread id glibc keeps in this thread's control block (what the kernel wrote)."""
    libc = ctypes.CDLL(None)
    address = ctypes.c_void_p()
    assert libc.prctl(PR_GET_TID_ADDRESS, ctypes.byref(address), 0, 0, 0) == 0
    return ctypes.c_int.from_address(address.value or 0).value


def _in_child(flags: int, probe: Callable[[], dict[str, object]]) -> dict[str, object]:
    """pyfork.fork(flags); the child's probe() as JSON through a pipe."""
    assert pyfork.unusable() is None
    r, w = os.pipe()
    pid = pyfork.fork(flags)
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.write(w, json.dumps(probe()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return dict(json.loads(data), pid=pid)


def test_child_is_pid_1_with_glibc_and_python_state_right() -> None:
    ran: list[str] = []
    os.register_at_fork(after_in_parent=lambda: ran.append("parent"))
    parent_robust = _robust_list()
    state = random.getstate()
    next_here = random.random()
    random.setstate(state)

    def probe() -> dict[str, object]:
        lock = threading.RLock()
        with lock, lock:
            pass
        import colorsys  # a first import: the import lock was re-initialised

        return {
            "getpid": os.getpid(),
            "gettid": threading.get_native_id(),
            "tcb_tid": _tcb_tid(),
            "robust": list(_robust_list()),
            "random": random.random(),
            "imported": colorsys.__name__,
        }

    got = _in_child(CLONE_NEWUSER | CLONE_NEWPID, probe)
    assert got["getpid"] == got["gettid"] == got["tcb_tid"] == 1
    assert got["robust"] == list(parent_robust)
    # The os.register_at_fork callbacks ran: random reseeded itself in the child...
    assert got["random"] != next_here
    # ...and the parent's ran here, once.
    assert ran == ["parent"]
    assert got["imported"] == "colorsys"
    assert isinstance(got["pid"], int) and got["pid"] > 1
    assert _tcb_tid() == threading.get_native_id()  # the parent's own is untouched


def test_child_without_namespaces_is_an_ordinary_child() -> None:
    got = _in_child(0, lambda: {"ppid": os.getppid(), "tcb_tid": _tcb_tid(), "pid": os.getpid()})
    assert got["ppid"] == os.getpid()
    assert got["tcb_tid"] == got["pid"]


def test_flags_the_kernel_refuses_raise_oserror() -> None:
    # CLONE_THREAD without CLONE_SIGHAND: EINVAL, and this process goes on normally.
    with pytest.raises(OSError, match="clone3") as err:
        pyfork.fork(CLONE_THREAD)
    assert err.value.errno == 22
    assert _in_child(0, lambda: {"ok": True})["ok"] is True


def test_a_second_thread_rules_it_out() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while pyfork.unusable() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pyfork.unusable() == "the process has 2 threads"
    finally:
        stop.set()
        worker.join()
    # join() returns as the thread's Python side ends; its task leaves the kernel's list
    # a moment later.
    deadline = time.monotonic() + 5
    while pyfork.unusable() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pyfork.unusable() is None


def _blocked() -> str:
    with open("/proc/self/status") as f:
        status = f.read()
    return next(ln.split(":")[1].strip() for ln in status.splitlines() if ln.startswith("SigBlk"))


def test_signal_mask_is_the_callers_again_on_both_sides() -> None:
    # fork() blocks every signal across the clone and the after-fork calls (a handler
    # running between them could raise with the import lock held); both processes must
    # come back with the caller's own mask, not "everything blocked".
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        before = _blocked()
        got = _in_child(0, lambda: {"blocked": _blocked()})
        assert got["blocked"] == before == _blocked()
        assert int(before, 16) & (1 << (signal.SIGUSR1 - 1))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
