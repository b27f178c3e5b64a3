"""The syscall table and the ``@group`` names a profile may use in place of syscalls.

The table (``data/syscalls.json``) lists every syscall name per architecture, generated from
libseccomp by ``scripts/gen_syscall_table.py``; the compiler needs the table to give
``default_action`` to every syscall it knows and ``unknown_action`` to numbers newer than it.

Groups follow systemd's names (``systemd.exec(5)``, SystemCallFilter=) so people can reuse
what they know, but the lists are our own, written from the kernel's man pages: a group is
a set of names, and names that do not exist on an architecture are ignored there (reported
as ``unresolved`` by the compiler, never dropped silently). ``@docker-default`` is imported
from moby's default profile (``data/docker-default.json``, ``scripts/import_docker_default.py``).

This module is imported by the profile loader, so it must stay cheap: no libseccomp, only
two small JSON files read once, on first use.
"""

from __future__ import annotations

import json
import os
from functools import cache
from types import MappingProxyType
from typing import Any

from isorun.errors import did_you_mean

#: the largest syscall argument a filter can compare: ``struct seccomp_data`` hands every
#: argument over as a ``__u64`` (linux/seccomp.h), whatever its C type in the syscall
ARG_MAX = 2**64 - 1


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# next to this package, not importlib.resources: that import alone costs ~15 ms
_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

#: Names of architectures outside the table (arm, ppc, s390, riscv, parisc, ...) that groups
#: and Docker's profile mention; valid in a profile, never resolved on x86.
OTHER_ARCH_NAMES = _words(
    "arm_fadvise64_64 arm_sync_file_range breakpoint cacheflush pciconfig_iobase"
    " pciconfig_read pciconfig_write recv riscv_flush_icache riscv_hwprobe rtas"
    " s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr send set_tls subpage_prot"
    " swapcontext switch_endian sync_file_range2 sys_debug_setcontext uretprobe"
)


#: ``@group`` -> (documentation, members). Members may name other groups (expanded
#: recursively). Descriptions say what the group is for, so ``explain`` can show them.
_GROUP_SPECS: dict[str, tuple[str, str]] = {
    "@aio": (
        "Asynchronous I/O (POSIX AIO and io_uring).",
        "io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup"
        " io_submit io_uring_enter io_uring_register io_uring_setup",
    ),
    "@basic-io": (
        "Reading, writing, seeking and closing descriptors one already has.",
        "_llseek close close_range dup dup2 dup3 lseek pread64 preadv preadv2"
        " pwrite64 pwritev pwritev2 read readv write writev",
    ),
    "@chown": (
        "Changing the owner of files.",
        "chown chown32 fchown fchown32 fchownat lchown lchown32",
    ),
    "@clock": (
        "Setting the system clock.",
        "adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday stime",
    ),
    "@cpu-emulation": (
        "Emulating old CPU modes: vm86, segment tables, I/O privilege.",
        "modify_ldt subpage_prot switch_endian vm86 vm86old",
    ),
    "@debug": (
        "Debugging, tracing and performance counters of other processes.",
        "lookup_dcookie perf_event_open pidfd_getfd ptrace process_madvise"
        " process_vm_readv process_vm_writev rtas s390_runtime_instr"
        " sys_debug_setcontext",
    ),
    "@file-system": (
        "Opening, creating, renaming, inspecting and watching files and directories.",
        "access chdir chmod close creat faccessat faccessat2 fallocate"
        " fchdir fchmod fchmodat fchmodat2 fcntl fcntl64 fgetxattr flistxattr"
        " fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64"
        " ftruncate ftruncate64 futimesat getcwd getdents getdents64"
        " getxattr getxattrat inotify_add_watch inotify_init inotify_init1"
        " inotify_rm_watch lgetxattr link linkat listxattr listxattrat"
        " llistxattr lremovexattr lsetxattr lstat lstat64 mkdir mkdirat mknod"
        " mknodat mmap mmap2 munmap newfstatat oldfstat oldlstat oldstat open"
        " openat openat2 readlink readlinkat removexattr removexattrat rename"
        " renameat renameat2 rmdir setxattr setxattrat stat stat64 statfs"
        " statfs64 statx symlink symlinkat truncate truncate64 unlink"
        " unlinkat utime utimensat utimensat_time64 utimes",
    ),
    "@io-event": (
        "Waiting for events on descriptors: select, poll, epoll, eventfd.",
        "_newselect epoll_create epoll_create1 epoll_ctl epoll_ctl_old"
        " epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2"
        " poll ppoll ppoll_time64 pselect6 pselect6_time64 select",
    ),
    "@ipc": (
        "System V IPC, POSIX message queues, pipes and cross-process memory.",
        "ipc memfd_create mq_getsetattr mq_notify mq_open mq_timedreceive"
        " mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink msgctl"
        " msgget msgrcv msgsnd pipe pipe2 process_vm_readv process_vm_writev semctl"
        " semget semop semtimedop semtimedop_time64 shmat shmctl shmdt shmget",
    ),
    "@keyring": (
        "The kernel keyring (a classic source of privilege bugs).",
        "add_key keyctl request_key",
    ),
    "@memory": (
        "Allocating and controlling memory.",
        "brk cachestat get_mempolicy madvise map_shadow_stack mbind membarrier"
        " memfd_create memfd_secret migrate_pages mincore mlock mlock2 mlockall"
        " mmap mmap2 move_pages mprotect mremap mseal msync munlock munlockall"
        " munmap pkey_alloc pkey_free pkey_mprotect process_madvise"
        " process_mrelease remap_file_pages set_mempolicy set_mempolicy_home_node",
    ),
    "@module": ("Loading and unloading kernel modules.", "delete_module finit_module init_module"),
    "@mount": (
        "Mounting and unmounting file systems, changing the root.",
        "chroot fsconfig fsmount fsopen fspick listmount mount mount_setattr"
        " move_mount open_tree open_tree_attr pivot_root statmount umount umount2",
    ),
    "@network-io": (
        "Sockets: creating, connecting, sending and receiving.",
        "accept accept4 bind connect getpeername getsockname getsockopt"
        " listen recv recvfrom recvmmsg recvmmsg_time64 recvmsg send sendmmsg"
        " sendmsg sendto setsockopt shutdown socket socketcall socketpair",
    ),
    "@obsolete": (
        "Syscalls no current libc uses, kept by the kernel for old binaries.",
        "_sysctl afs_syscall bdflush break create_module ftime get_kernel_syms"
        " getpmsg gtty idle lock mpx prof profil putpmsg query_module"
        " security sgetmask ssetmask stty sysfs tuxcall ulimit uselib ustat"
        " vserver",
    ),
    "@pkey": ("Memory protection keys.", "pkey_alloc pkey_free pkey_mprotect"),
    "@privileged": (
        "Syscalls that need a capability to do anything useful; a sandboxed"
        " process without capabilities has no use for them.",
        "@chown @clock @module @raw-io @reboot @swap _sysctl acct bpf capset"
        " chroot fanotify_init fanotify_mark nfsservctl open_by_handle_at"
        " pivot_root quotactl quotactl_fd setdomainname setfsuid setfsuid32"
        " setgroups setgroups32 sethostname setresuid setresuid32 setreuid"
        " setreuid32 setuid setuid32 vhangup",
    ),
    "@process": (
        "Creating, waiting for and signalling processes and threads, and namespaces of one's own.",
        "arch_prctl capget clone clone3 execve execveat fork getrusage gettid"
        " kill pidfd_getfd pidfd_open pidfd_send_signal prctl rt_sigqueueinfo"
        " rt_tgsigqueueinfo setns swapcontext tgkill times tkill unshare vfork"
        " wait4 waitid waitpid",
    ),
    "@raw-io": (
        "Direct hardware and PCI access.",
        "ioperm iopl pciconfig_iobase pciconfig_read pciconfig_write"
        " s390_pci_mmio_read s390_pci_mmio_write",
    ),
    "@reboot": ("Rebooting and loading a new kernel.", "kexec_file_load kexec_load reboot"),
    "@resources": (
        "Changing resource limits, scheduling and memory placement.",
        "ioprio_set mbind migrate_pages move_pages nice sched_setaffinity"
        " sched_setattr sched_setparam sched_setscheduler set_mempolicy"
        " set_mempolicy_home_node setpriority setrlimit",
    ),
    "@sandbox": (
        "Sandboxing a process further: seccomp and Landlock.",
        "landlock_add_rule landlock_create_ruleset landlock_restrict_self seccomp",
    ),
    "@setuid": (
        "Changing user and group ids.",
        "setgid setgid32 setgroups setgroups32 setregid setregid32 setresgid"
        " setresgid32 setresuid setresuid32 setreuid setreuid32 setuid setuid32",
    ),
    "@signal": (
        "Sending, masking and handling signals.",
        "rt_sigaction rt_sigpending rt_sigprocmask rt_sigsuspend"
        " rt_sigtimedwait rt_sigtimedwait_time64 sigaction sigaltstack signal"
        " signalfd signalfd4 sigpending sigprocmask sigsuspend",
    ),
    "@swap": ("Enabling and disabling swap.", "swapoff swapon"),
    "@sync": (
        "Flushing file data to storage.",
        "fdatasync fsync msync sync sync_file_range sync_file_range2 arm_sync_file_range syncfs",
    ),
    "@system-service": (
        "What a typical service needs: the safe groups plus process,"
        " network, file system and identity syscalls; excludes the"
        " privileged, mount, module, reboot, swap, raw-io, debug and"
        " obsolete groups.",
        "@aio @basic-io @chown @default @file-system @io-event @ipc"
        " @keyring @memory @network-io @process @resources @setuid"
        " @signal @sync @timer brk capget capset copy_file_range"
        " fadvise64 fadvise64_64 arm_fadvise64_64 flock get_mempolicy"
        " getcpu getpriority getrandom ioctl ioprio_get kcmp madvise"
        " memfd_create mremap name_to_handle_at oldolduname olduname"
        " personality readahead readdir remap_file_pages sched_get_priority_max"
        " sched_get_priority_min sched_getaffinity sched_getattr"
        " sched_getparam sched_getscheduler sched_rr_get_interval"
        " sched_rr_get_interval_time64 sched_yield sendfile sendfile64"
        " setfsgid setfsgid32 setfsuid setfsuid32 setpgid setsid splice"
        " sysinfo tee umask uname userfaultfd vmsplice",
    ),
    "@timer": (
        "Timers and alarms.",
        "alarm getitimer setitimer timer_create timer_delete timer_getoverrun"
        " timer_gettime timer_gettime64 timer_settime timer_settime64"
        " timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime"
        " timerfd_settime64 times",
    ),
    "@default": (
        "What every program needs: exiting, reading clocks, futexes, memory"
        " mapping, its own ids and limits. Always safe to allow.",
        "arch_prctl brk cacheflush clock_getres clock_getres_time64"
        " clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64"
        " execve exit exit_group futex futex_requeue futex_time64 futex_wait"
        " futex_waitv futex_wake get_robust_list get_thread_area getegid"
        " getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32"
        " getpgid getpgrp getpid getppid getrandom getresgid getresgid32"
        " getresuid getresuid32 getrlimit getsid gettid gettimeofday getuid"
        " getuid32 membarrier mmap mmap2 mprotect munmap nanosleep pause"
        " prlimit64 restart_syscall riscv_flush_icache rseq rt_sigreturn"
        " sched_getaffinity sched_yield set_robust_list set_thread_area"
        " set_tid_address set_tls sigreturn time ugetrlimit",
    ),
}


@cache
def _data(name: str) -> Any:
    with open(os.path.join(_DATA_DIR, name), encoding="utf-8") as f:
        return json.load(f)


def _narrow_args() -> dict[str, frozenset[int]]:
    doc = _data("narrow_args.json")
    out = {name: frozenset(idx) for name, idx in doc["args"].items()}
    for name, fact in doc["read_as_32"].items():
        out[name] = out.get(name, frozenset()) | frozenset(fact["args"])
    return out


def narrow_args(name: str) -> frozenset[int]:
    """The argument indexes of ``name`` the kernel reads as 32-bit (see NARROW_ARGS)."""
    return NARROW_ARGS.get(name, frozenset())


#: Arguments the kernel declares 32-bit (``int``, ``unsigned int``, ``pid_t``, ``uid_t``,
#: ``umode_t``...), by syscall name -> indexes: data/narrow_args.json, generated by
#: scripts/gen_narrow_args.py from the prototypes of the kernel's include/linux/syscalls.h
#: (the file says which kernel). The filter sees the whole 64-bit register, the syscall
#: reads only the low half (``socket(0x100000028, ...)`` is ``socket(AF_VSOCK, ...)``), so
#: conditions on these arguments compare the low 32 bits (isorun issue 13). ``clone`` and
#: ``unshare`` take ``unsigned long`` flags that the kernel reads as 32 bits too (the
#: file's ``read_as_32``, with why). An argument not listed is compared on all 64 bits.
NARROW_ARGS: MappingProxyType[str, frozenset[int]] = MappingProxyType(_narrow_args())


def _docker_default() -> frozenset[str]:
    return frozenset(_data("docker-default.json")["groups"]["docker_default"])


#: Docker's comparison names -> ours (moby profiles/seccomp, SCMP_CMP_*)
_DOCKER_OPS = {
    "SCMP_CMP_NE": "ne",
    "SCMP_CMP_LT": "lt",
    "SCMP_CMP_LE": "le",
    "SCMP_CMP_EQ": "eq",
    "SCMP_CMP_GE": "ge",
    "SCMP_CMP_GT": "gt",
    "SCMP_CMP_MASKED_EQ": "masked_eq",
}


@cache
def docker_default_conditions(
    docker_arch: str,
) -> MappingProxyType[str, tuple[tuple[tuple[int, str, int, int], ...], ...]]:
    """The argument checks Docker's default profile puts on the names of
    ``@docker-default``, for a container with Docker's default capabilities on
    ``docker_arch`` (Docker's name: amd64, arm64, ...): name -> alternatives, each a
    conjunction of ``(index, op, value, mask)``. A name listed here is allowed only where
    one alternative holds: ``socket`` without AF_VSOCK (40) and AF_ALG (38), ``clone``
    without namespace flags, ``personality`` with five values.
    """
    meta = _data("docker-default.json")
    caps = set(meta["default_caps"])
    out: dict[str, list[tuple[tuple[int, str, int, int], ...]]] = {}
    for rule in meta["profile"]["syscalls"]:
        if rule.get("action") != "SCMP_ACT_ALLOW" or not rule.get("args"):
            continue
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if any(c not in caps for c in inc.get("caps") or ()):
            continue
        if any(c in caps for c in exc.get("caps") or ()):
            continue
        if inc.get("arches") and docker_arch not in inc["arches"]:
            continue
        if docker_arch in (exc.get("arches") or ()):
            continue
        conds = []
        for arg in rule["args"]:
            op = _DOCKER_OPS[arg["op"]]
            # Docker's masked_eq: ``value`` is the mask, ``valueTwo`` the datum
            if op == "masked_eq":
                conds.append((arg["index"], op, arg.get("valueTwo", 0), arg["value"]))
            else:
                conds.append((arg["index"], op, arg["value"], 0))
        for name in rule.get("names") or ():
            out.setdefault(name, []).append(tuple(conds))
    return MappingProxyType({n: tuple(alts) for n, alts in sorted(out.items())})


@cache
def _groups() -> MappingProxyType[str, frozenset[str]]:
    raw = {name: _words(members) for name, (_doc, members) in _GROUP_SPECS.items()}
    raw["@docker-default"] = _docker_default()
    out: dict[str, frozenset[str]] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> frozenset[str]:
        if name in out:
            return out[name]
        if name in seen:
            raise AssertionError(f"group cycle: {' -> '.join((*seen, name))}")
        names: set[str] = set()
        for member in raw[name]:
            names |= resolve(member, (*seen, name)) if member.startswith("@") else {member}
        out[name] = frozenset(names)
        return out[name]

    for name in raw:
        resolve(name, ())
    return MappingProxyType(dict(sorted(out.items())))


def group_names() -> tuple[str, ...]:
    """Every ``@group`` name, sorted."""
    return tuple(_groups())


def arches() -> tuple[str, ...]:
    """Architectures the table covers (``x86_64``, ``x32``, ``i386``, ``aarch64``)."""
    return tuple(_data("syscalls.json")["arches"])


def table(arch: str) -> MappingProxyType[str, int]:
    """``name -> number`` for one architecture (x32 numbers include the 0x40000000 bit)."""
    return _table(arch)


@cache
def _table(arch: str) -> MappingProxyType[str, int]:
    tables = _data("syscalls.json")["arches"]
    if arch not in tables:
        raise KeyError(f"no syscall table for {arch!r}; known: {', '.join(tables)}")
    return MappingProxyType(dict(tables[arch]))


@cache
def syscall_names() -> frozenset[str]:
    """Every syscall name known on any architecture of the table, plus
    :data:`OTHER_ARCH_NAMES`."""
    names: set[str] = set(OTHER_ARCH_NAMES)
    for arch in arches():
        names |= set(_table(arch))
    return frozenset(names)


@cache
def all_names() -> frozenset[str]:
    """Every valid name in a profile: syscall names of any architecture and ``@group`` names.

    Other architectures' names (:data:`OTHER_ARCH_NAMES`, e.g. ``s390_runtime_instr``)
    are valid too, so an imported Docker profile stays loadable.
    """
    return syscall_names() | frozenset(_groups())


def expand(name: str) -> frozenset[str]:
    """The syscalls a name stands for: a group's members, or the name itself.

    Raises ``KeyError`` for an unknown name; the loader turns that into a ProfileError with
    a did-you-mean (see :func:`suggest`).
    """
    if name.startswith("@"):
        return _groups()[name]
    if name not in all_names():
        raise KeyError(name)
    return frozenset((name,))


def group_doc(name: str) -> str:
    """One paragraph saying what a group is for (for ``explain`` and the docs)."""
    if name == "@docker-default":
        meta = _data("docker-default.json")
        return (
            "What Docker's default seccomp profile lets a container with Docker's"
            " default capabilities call, on any architecture. Allowed through this group,"
            " socket, clone and personality keep Docker's argument checks (no AF_VSOCK or"
            " AF_ALG sockets, no namespace flags, five personalities), compared on the low"
            f" 32 bits the kernel reads. Imported from {meta['source']}, commit"
            f" {meta['commit']}, sha256 {meta['sha256']}."
        )
    if name not in _GROUP_SPECS:
        raise KeyError(name)
    return _GROUP_SPECS[name][0]


def suggest(name: str, otherwise: str = "") -> str:
    """The did-you-mean hint for an unknown name: the closest ``@group`` for a group, the
    closest syscall for a syscall (``otherwise`` when none is close)."""
    pool = group_names() if name.startswith("@") else syscall_names()
    return did_you_mean(name, pool, otherwise)


class _Groups:
    """Read-only mapping view of the groups, built on first use (keeps import cheap)."""

    def __getitem__(self, name: str) -> frozenset[str]:
        return _groups()[name]

    def __contains__(self, name: object) -> bool:
        return name in _groups()

    def __iter__(self) -> Any:
        return iter(_groups())

    def __len__(self) -> int:
        return len(_groups())

    def keys(self) -> Any:
        return _groups().keys()

    def items(self) -> Any:
        return _groups().items()


#: ``@group -> frozenset of syscall names`` (fully expanded), read-only.
GROUPS = _Groups()
