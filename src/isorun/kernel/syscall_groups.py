"""The ``@group`` names a profile may use in place of syscalls: a table that is data,
read by :mod:`isorun.kernel.syscalls` (which expands, checks and documents them).

Groups follow systemd's names (``systemd.exec(5)``, SystemCallFilter=) so people can reuse
what they know, but the lists are our own, written from the kernel's man pages.
"""

from __future__ import annotations

#: ``@group`` -> (documentation, members). Members may name other groups (expanded
#: recursively). Descriptions say what the group is for, so ``explain`` can show them.
GROUP_SPECS: dict[str, tuple[str, str]] = {
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
