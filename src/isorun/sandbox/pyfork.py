"""fork(2) with namespace flags: clone3 returning into Python, for per-test sandboxes.

A marked test's body must run in a copy of pytest (isorun/testing/sandbox.py), and its
sandbox wants that copy to be pid 1 of a new pid namespace. os.fork() takes no flags,
and unshare(CLONE_NEWPID) moves only *later* children into the namespace, so with
os.fork the copy has to fork once more: a second copy of a 30-100 MB address space per
test (about 2 ms here, plus its exit). clone3(CLONE_NEWUSER|CLONE_NEWPID|...) called from
pytest itself makes the one copy pid 1 at once; with CLONE_NEWUSER in the same call every
other namespace is owned by the new user namespace, so no privilege is needed.

What os.fork() does around fork(2), done here around clone3 the same way:
  - sys.audit("os.fork"): an audit hook that forbids forking forbids this too;
  - PyOS_BeforeFork / PyOS_AfterFork_Child / PyOS_AfterFork_Parent, the C API CPython
    documents for "fork() or any similar function that clones the current process":
    the import lock, and the os.register_at_fork callbacks (random reseeds itself,
    logging re-creates its locks, threading forgets the parent's other threads).
    Called through ctypes.PyDLL, which keeps the GIL held across each call, as os.fork
    holds it across fork(2).
What glibc's fork() does and a bare clone3 would not, and how each is covered:
  - the child's thread id in its thread control block, which glibc's recursive mutexes
    and pthread_kill(pthread_self()) read: CLONE_CHILD_SETTID at the address the kernel
    already has for this thread (glibc registered it at start-up with set_tid_address;
    PR_GET_TID_ADDRESS reads it back), checked to hold our tid before it is used;
  - the robust futex list, which the kernel gives a new process empty: the child sets
    the parent's list head again (set_robust_list), as glibc's child does;
  - malloc, stdio and loader locks, which glibc takes across fork so that no *other*
    thread holds one in the child, and pthread_atfork handlers: both matter only with
    other threads, so a process with more than one thread is refused (:func:`unusable`)
    and the caller falls back to os.fork. The lone thread holds none of those locks:
    it is inside this syscall.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

#: clone3 has one number on every architecture (the unified table, Linux 5.3)
SYS_CLONE3 = 435
#: (get_robust_list, set_robust_list) by machine; elsewhere os.fork is used
_ROBUST_LIST_SYSCALLS = {"x86_64": (274, 273), "aarch64": (100, 99)}
PR_GET_TID_ADDRESS = 40
CLONE_CHILD_CLEARTID = 0x00200000
CLONE_CHILD_SETTID = 0x01000000
SIGCHLD = 17
#: struct clone_args up to tls (CLONE_ARGS_SIZE_VER0): flags, pidfd, child_tid,
#: parent_tid, exit_signal, stack, stack_size, tls; u64 each
_CLONE_ARGS_WORDS = 8


class Unsupported(Exception):
    """clone3 into Python cannot be used here (before any clone): use os.fork."""


class _Libc:
    """The C functions, bound once: ctypes look-ups cost more than the calls."""

    def __init__(self) -> None:
        import ctypes

        # PyDLL, not CDLL: the GIL stays held across the call (see the module's doc).
        self.c = ctypes.PyDLL(None, use_errno=True)
        self.ctypes = ctypes
        self.c.syscall.restype = ctypes.c_long
        self.c.prctl.restype = ctypes.c_int
        self.c.prctl.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                 ctypes.c_ulong, ctypes.c_ulong]  # fmt: skip
        for name in ("PyOS_BeforeFork", "PyOS_AfterFork_Child", "PyOS_AfterFork_Parent"):
            getattr(self.c, name).restype = None
            getattr(self.c, name).argtypes = []
        self.args = (ctypes.c_uint64 * _CLONE_ARGS_WORDS)()
        self.tid_address = ctypes.c_void_p()
        self.robust_head = ctypes.c_void_p()
        self.robust_len = ctypes.c_size_t()


_libc: _Libc | None = None


def _bound() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def unusable() -> str | None:
    """Why :func:`fork` cannot be used in this process now, or None when it can."""
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} has no PyOS_AfterFork_Child"
    if os.uname().machine not in _ROBUST_LIST_SYSCALLS:
        return f"no robust-list syscall numbers for {os.uname().machine}"
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError as err:
        return f"/proc/self/task: {err.strerror}"
    if threads != 1:
        # A thread of the test suite (a timeout watchdog, an executor, xdist's I/O)
        # might hold a malloc or stdio lock, which only glibc's fork releases in the child.
        return f"the process has {threads} threads"
    return None


def fork(flags: int) -> int:
    """clone3(flags) for a SIGCHLD child, in the manner of os.fork(): 0 in the child,
    the child's pid (as this process sees it) in the parent.

    Call :func:`unusable` first: this one assumes a single-threaded CPython. To keep a
    signal handler out of the child until it is on its own path, block signals around
    the call and unblock them there (isorun.testing.sandbox does). Raises
    :class:`Unsupported` when this kernel or C library leaves it no sound way (no clone3,
    no PR_GET_TID_ADDRESS, a thread id address that does not hold the thread's id), and
    OSError as clone3 refuses the flags (EPERM, ENOSPC: user namespaces refused).
    """
    lib = _bound()
    c, ctypes = lib.c, lib.ctypes
    get_robust, set_robust = _ROBUST_LIST_SYSCALLS[os.uname().machine]
    if c.prctl(PR_GET_TID_ADDRESS, ctypes.addressof(lib.tid_address), 0, 0, 0) != 0:
        # EINVAL: a kernel built without CONFIG_CHECKPOINT_RESTORE.
        raise Unsupported(f"prctl(PR_GET_TID_ADDRESS): {os.strerror(ctypes.get_errno())}")
    tid_address = lib.tid_address.value
    # The address must be glibc's thread control block field, holding our tid; anything
    # else (a library that moved it) and the kernel would write where we cannot tell.
    if not tid_address or ctypes.c_int.from_address(tid_address).value != _gettid():
        raise Unsupported("the thread's id address does not hold its id")
    if c.syscall(ctypes.c_long(get_robust), ctypes.c_long(0),
                 ctypes.byref(lib.robust_head), ctypes.byref(lib.robust_len)) != 0:  # fmt: skip
        raise Unsupported(f"get_robust_list: {os.strerror(ctypes.get_errno())}")
    args = lib.args
    args[0] = flags | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID
    args[1] = 0
    args[2] = tid_address  # child_tid: CLONE_CHILD_SETTID and CLEARTID, as glibc's fork
    args[3] = 0
    args[4] = SIGCHLD  # exit_signal
    args[5] = args[6] = args[7] = 0  # no stack: the child runs on a copy of ours
    size = ctypes.c_size_t(ctypes.sizeof(args))
    clone3, set_robust_list = ctypes.c_long(SYS_CLONE3), ctypes.c_long(set_robust)
    sys.audit("os.fork")
    # os.fork runs its after-fork work in C, before any Python code; here bytecode runs
    # between the calls, and a Python signal handler could run there too. One that raises
    # (KeyboardInterrupt) would leave the import lock held, or send the child on as a
    # second pytest. So no signal is delivered until the caller's mask is back.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    c.PyOS_BeforeFork()
    pid = c.syscall(clone3, ctypes.byref(args), size)
    if pid == 0:
        c.syscall(set_robust_list, lib.robust_head, lib.robust_len)
        c.PyOS_AfterFork_Child()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return 0
    err = ctypes.get_errno()
    c.PyOS_AfterFork_Parent()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if pid < 0 and err == errno.ENOSYS:
        raise Unsupported("clone3: no such system call (Linux < 5.3, or a seccomp filter)")
    if pid < 0:
        raise OSError(err, f"clone3: {os.strerror(err)}")
    return int(pid)


def _gettid() -> int:
    import threading

    return threading.get_native_id()
