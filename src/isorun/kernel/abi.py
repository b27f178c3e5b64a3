"""Kernel numbers and names that both the Python side and the C shim use.

The one definition: src/isorun/shim/build_shim.py runs this file (``runpy.run_path``, so
it imports nothing) and generates the C side from it into ``consts.h`` and ``tables.h``,
where ``_Static_assert``s hold each number against the system headers the C files see.
"""

#: sysctls that decide whether a user namespace can be created: (sysctl name, path)
USERNS_SYSCTLS = (
    ("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces"),
    ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone"),
    ("kernel.apparmor_restrict_unprivileged_userns",
     "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
)  # fmt: skip
#: the paths whose contents the plan cache key (cache.entry.facts_key) and the launch index
#: (cache/index.py writes, launch_index.c compares) record, in this order: the two that
#: host.facts reads to decide HostFacts.userns. The AppArmor one is read only to explain
#: a refusal (doctor, host.probe): where it takes the capabilities of a namespace the
#: plan assumed, a set-up step fails with its syscall and errno, and nothing runs.
KEYED_USERNS_SYSCTLS = tuple(path for _name, path in USERNS_SYSCTLS[:2])

#: signals the launcher passes on to the sandbox (sandbox/foreground.py, launch.c, exec.c's init);
#: the numbers are the generic Linux ones (asm-generic/signal.h), checked at build time
FORWARDED_SIGNALS = {
    "SIGINT": 2, "SIGTERM": 15, "SIGHUP": 1, "SIGQUIT": 3, "SIGUSR1": 10, "SIGUSR2": 12,
    "SIGWINCH": 28,
}  # fmt: skip

#: profile name of each resource limit -> (C name, number), in the schema's order
RLIMITS = {
    "address_space": ("RLIMIT_AS", 9), "data": ("RLIMIT_DATA", 2), "cpu": ("RLIMIT_CPU", 0),
    "nofile": ("RLIMIT_NOFILE", 7), "nproc": ("RLIMIT_NPROC", 6),
    "fsize": ("RLIMIT_FSIZE", 1), "core": ("RLIMIT_CORE", 4), "stack": ("RLIMIT_STACK", 3),
    "memlock": ("RLIMIT_MEMLOCK", 8),
}  # fmt: skip

#: the Landlock rights the kernel accepts on a rule for a file that is not a directory
#: (landlock.h, LANDLOCK_ACCESS_FS_*): the shim masks a file rule's rights with them
LANDLOCK_FILE_RIGHTS = {
    "execute": 1 << 0, "write_file": 1 << 1, "read_file": 1 << 2, "truncate": 1 << 14,
    "ioctl_dev": 1 << 15,
}  # fmt: skip

#: the namespace flags of clone(2) and unshare(2) (sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
#: clone(2) cannot take it (the bit is CSIGNAL's); unshare(2) and clone3(2) can, since 5.6
CLONE_NEWTIME = 0x00000080
#: the bit that marks an x32 syscall number (asm/unistd.h __X32_SYSCALL_BIT)
X32_SYSCALL_BIT = 0x40000000
#: a profile's namespace names -> their flag
NAMESPACE_FLAGS = {
    "user": CLONE_NEWUSER, "pid": CLONE_NEWPID, "net": CLONE_NEWNET, "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "cgroup": CLONE_NEWCGROUP, "time": CLONE_NEWTIME,
}  # fmt: skip

#: mount(2) flags a launch record's mounts carry (sys/mount.h)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8

#: the host's overflow uid and gid: a root caller's sandbox runs as it (README, "Root")
NOBODY = 65534

#: exit status when the wall-clock limit killed the sandbox, as timeout(1)
EXIT_WALL_TIME = 124
#: exit status of a sandbox whose set-up failed, and of isorun refusing to run
EXIT_SETUP = 125
#: the command exists but cannot be executed, as in sh(1)
EXIT_NOEXEC = 126
#: the command is not found, as in sh(1)
EXIT_NOTFOUND = 127
