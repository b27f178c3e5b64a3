# long: the whole profile language, one dataclass per TOML table with the reference text
# under each field; scripts/gen_profile_doc.py generates docs/profile.md from this one file
"""The profile language (v1) as frozen dataclasses.

Each class is one TOML table; each field is one key, with the same name. The docstring
under every field is the reference text: ``docs/profile.md`` is generated from them
(``scripts/gen_profile_doc.py``) and a test fails when the two differ.

Every node carries ``loc`` (the file, line and column that set it, ``compare=False``) so the
planner and the backends can name the profile line behind any rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isorun.errors import DEFAULT_LOC, Loc
from isorun.kernel import abi

NAMESPACES = ("user", "pid", "net", "mount", "ipc", "uts", "cgroup", "time")
MOUNT_TYPES = ("ro-bind", "rw-bind", "dev-bind", "tmpfs", "proc", "dev", "symlink", "file",
               "dir", "mqueue", "overlay", "mask")
ACTIONS = ("allow", "errno", "kill_process", "kill_thread", "trap", "log")
#: ABIs a seccomp filter can allow (``native`` is the host's own)
ARCH_NAMES = ("native", "x86_64", "x32", "i386", "aarch64")
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "masked_eq")
NETWORK_MODES = ("none", "host")
BACKENDS = ("auto", "native", "bwrap", "firejail", "landlock")
#: every capability name the kernel knows (capabilities(7)), index = capability number
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
RLIMITS = tuple(abi.RLIMITS)


@dataclass(frozen=True, slots=True)
class Namespaces:
    """``[namespaces]``: which kernel namespaces the sandbox gets of its own."""

    user: bool = True
    """A new user namespace. Needed to run unprivileged; ids are mapped by ``[identity]``."""
    pid: bool = True
    """A new pid namespace: the command sees only its own processes; isorun runs a pid 1
    that reaps orphans and forwards signals."""
    net: bool = True
    """A new network namespace (only loopback). Implied by ``network.mode = "none"``."""
    mount: bool = True
    """A new mount namespace. Needed for any ``[[mounts]]`` and for a new root."""
    ipc: bool = True
    """A new IPC namespace: System V IPC and POSIX message queues of its own."""
    uts: bool = True
    """A new UTS namespace, so ``identity.hostname`` does not touch the host."""
    cgroup: bool = True
    """A new cgroup namespace: /proc/self/cgroup shows the sandbox's cgroup as the root."""
    time: bool = False
    """A new time namespace (Linux 5.6+): monotonic and boot clocks of its own."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """``[identity]``: who the command is inside the sandbox."""

    uid: int | None = None
    """User id inside. Default: the caller's own id, mapped to itself. When the caller is
    root, the sandbox runs as the host's overflow user 65534 (inside id: this value, or
    65534), because host root is mapped to uid 0 only with ``unsafe.map_root = true``."""
    gid: int | None = None
    """Group id inside. Default: the caller's own group id."""
    hostname: str = "sandbox"
    """Host name inside the new UTS namespace."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Mount:
    """``[[mounts]]``: one entry of the ordered list that builds the file view."""

    type: str
    """One of ro-bind, rw-bind, dev-bind, tmpfs, proc, dev, symlink, file, dir, mqueue,
    overlay, mask. ``overlay``: ``src`` writable, every change kept on a tmpfs of ``size``
    inside the sandbox and discarded at exit (overlayfs; the host copy is never written).
    ``mask``: hide whatever the mounts above put at ``dst``: an empty read-only tmpfs over a
    directory, /dev/null over anything else, nothing when the path does not exist."""
    dst: str
    """Absolute path inside the sandbox. Variables such as ``${HOME}`` are expanded."""
    src: str = ""
    """Host path for the bind types and ``overlay`` (default: the same as ``dst``); the link
    target for ``symlink``."""
    content: str = ""
    """The text of a ``file`` mount."""
    size: int | None = None
    """Size limit of a ``tmpfs``, or of the tmpfs holding an ``overlay``'s changes (bytes, or
    a string with a k/m/g suffix: ``"64m"``). Default 64 MiB: a tmpfs is memory no process
    is charged for, so none is unbounded. Its inode count is bounded with it, one inode per
    4 KiB (at least 64)."""
    mode: int | None = None
    """Permission bits of a ``tmpfs`` root, ``file`` or ``dir`` (e.g. 0o700)."""
    optional: bool = False
    """Skip the entry when its source does not exist, instead of refusing to run. A path
    that is a symbolic link is refused all the same (docs/security.md)."""
    noexec: bool = False
    """Forbid executing files from this mount (MS_NOEXEC)."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Filesystem:
    """``[filesystem]``: the new root and where the command starts."""

    root: str = "tmpfs"
    """``tmpfs``: a fresh empty tree built from ``[[mounts]]`` entries; an absolute directory:
    that rootfs becomes ``/`` (pivot_root, not chroot, so it cannot be escaped with the
    classic chroot tricks); ``host``: keep the host's root (no new root)."""
    cwd: str = "/"
    """Working directory of the command, inside the sandbox."""
    root_size: int = 8 << 20
    """Size limit of a ``tmpfs`` root (default 8 MiB; inodes bounded as for a tmpfs mount).
    It holds only the mount points and ``file`` mounts unless ``root_read_only = false``."""
    root_read_only: bool = True
    """Remount the new root read-only once every mount is in place, so the command cannot
    create files beside the mounts (``/x``). Mounts on it keep their own flags (``/tmp``
    stays writable). ``false`` leaves a tmpfs root writable up to ``root_size``."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """``[capabilities]``: what survives the capability drop."""

    keep: tuple[str, ...] = ()
    """Capabilities kept (e.g. ``"CAP_NET_BIND_SERVICE"``); all others are dropped from every
    set, and securebits are locked."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Security:
    """``[security]``: process-wide hardening."""

    no_new_privs: bool = True
    """PR_SET_NO_NEW_PRIVS: execve can never gain privileges (setuid, file caps). Turning it off
    is an error unless ``unsafe.allow_new_privs = true``."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Unsafe:
    """``[unsafe]``: switches that weaken the sandbox. Each is named in ``explain``."""

    allow_new_privs: bool = False
    """Allow ``security.no_new_privs = false``."""
    map_root: bool = False
    """Allow mapping host uid 0 to uid 0 inside (``identity.uid = 0`` when run as root)."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Action:
    """What a seccomp rule (or the default) does: ``allow``, ``errno``, ``kill_process``,
    ``kill_thread``, ``trap``, ``log``. Written in TOML as a string: ``"allow"``,
    ``"errno:EPERM"``, ``"errno:38"``, ``"kill_process"``."""

    kind: str
    """The action's name."""
    errno: int = 0
    """The errno returned by an ``errno`` action."""

    def __str__(self) -> str:
        return f"errno:{self.errno}" if self.kind == "errno" else self.kind


@dataclass(frozen=True, slots=True)
class ArgCond:
    """One argument condition of a seccomp rule, e.g. ``{ index = 0, op = "eq", value = 1 }``."""

    index: int
    """Argument index, 0 to 5."""
    op: str
    """One of eq, ne, lt, le, gt, ge, masked_eq."""
    value: int
    """The value compared with (for masked_eq: compared with ``arg & mask``)."""
    mask: int = 0
    """The mask of a ``masked_eq`` condition."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class When:
    """``when = { ... }`` on a seccomp rule: the rule applies only where every listed
    condition holds. Kept from Docker's ``includes``/``excludes`` by ``isorun import
    docker`` so a re-export makes the same decisions for every capability set, host
    architecture and kernel."""

    caps: tuple[str, ...] = ()
    """The rule applies only when all these capabilities are kept (Docker ``includes.caps``)."""
    not_caps: tuple[str, ...] = ()
    """The rule does not apply when any of these capabilities is kept (``excludes.caps``)."""
    arches: tuple[str, ...] = ()
    """The rule applies only on these host architectures, in Docker's names: amd64, arm64,
    x86, x32, arm, ppc64le, s390x, ... (``includes.arches``)."""
    not_arches: tuple[str, ...] = ()
    """The rule does not apply on these host architectures (``excludes.arches``)."""
    min_kernel: str = ""
    """The rule applies only on kernels at least this version, e.g. ``"4.8"``
    (``includes.minKernel``); unknown kernel version: the rule does not apply."""
    below_kernel: str = ""
    """The rule applies only on kernels older than this version (``excludes.minKernel``)."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class SeccompRule:
    """``[[seccomp.rules]]``: an action for a set of syscalls, optionally with argument
    conditions (all must hold)."""

    syscalls: tuple[str, ...]
    """Syscall names and ``@group`` names."""
    action: Action
    """What the kernel answers when the rule matches."""
    args: tuple[ArgCond, ...] = ()
    """Argument conditions; all of them must hold for the rule to match."""
    comment: str = ""
    """Free text carried into exports."""
    when: When | None = None
    """Conditions on capabilities, host architecture and kernel (see ``When``); none: the
    rule always applies."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Seccomp:
    """``[seccomp]``: the syscall filter loaded last, right before execve."""

    enabled: bool = True
    """Load a filter at all. Turning it off is allowed but named in ``explain``."""
    default_action: Action = Action("errno", 1)
    """Answer for a syscall the profile knows but no rule allows (default ``errno:EPERM``)."""
    unknown_action: Action = Action("errno", 38)
    """Answer for a syscall number newer than isorun's syscall table (default ENOSYS, so
    programs fall back gracefully)."""
    allow: tuple[str, ...] = ()
    """Syscalls and ``@groups`` allowed without conditions."""
    deny: tuple[str, ...] = ()
    """Syscalls and ``@groups`` answered with ``deny_action``."""
    deny_action: Action = Action("errno", 1)
    """Answer for the ``deny`` list (default ``errno:EPERM``)."""
    rules: tuple[SeccompRule, ...] = ()
    """Rules with their own action or argument conditions, from ``[[seccomp.rules]]``."""
    architectures: tuple[str, ...] = ("native",)
    """ABIs allowed to make syscalls: ``native`` only by default; ``x32`` and ``i386`` must
    be listed to be allowed, otherwise any syscall through them kills the process."""
    hardening: bool = True
    """Add isorun's hardening rules (TIOCSTI/TIOCLINUX, io_uring, userfaultfd, bpf,
    perf_event_open, keyrings, kexec, modules, ptrace, every namespace flag of clone and
    unshare, mount family, unsafe personality) on top of the allow list."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Limits:
    """``[limits]``: resource limits. rlimits are always enforced (they need no privilege);
    ``memory`` and ``pids`` need a writable cgroup (v2 delegated, or v1 as root), else the
    run is refused, and ``isorun check`` says so first. ``isorun explain`` states what each
    limit covers."""

    address_space: int | None = None
    """RLIMIT_AS in bytes (k/m/g suffixes allowed): the virtual address space of each
    process, shared memory (shared anonymous, memfd and SysV mappings, which
    ``data`` does not count) and reservations included (runtimes that reserve large
    ranges, such as a JVM, or sanitizers, may not start under a small value)."""
    data: int | None = None
    """RLIMIT_DATA in bytes: private writable memory of each process (heap, anonymous
    mappings; Linux 4.7+). Not shared memory, tmpfs files or kernel memory, and per
    process, so ``nproc`` bounds the total only as nproc x data. No delegation needed."""
    cpu: int | None = None
    """RLIMIT_CPU in seconds."""
    nofile: int | None = None
    """RLIMIT_NOFILE: open descriptors."""
    nproc: int | None = None
    """RLIMIT_NPROC: processes and threads of the sandbox's user. With a user namespace
    (Linux 5.14+) they are counted in that namespace only, so the limit is the sandbox's
    own; without one, every process of that uid on the host counts. No delegation
    needed."""
    fsize: int | None = None
    """RLIMIT_FSIZE in bytes."""
    core: int | None = 0
    """RLIMIT_CORE in bytes (default 0: no core dumps that could leak memory contents)."""
    stack: int | None = None
    """RLIMIT_STACK in bytes."""
    memlock: int | None = None
    """RLIMIT_MEMLOCK in bytes."""
    memory: int | None = None
    """cgroup memory.max in bytes."""
    pids: int | None = None
    """cgroup pids.max: processes and threads in the sandbox."""
    wall_time: float | None = None
    """Seconds before the whole sandbox is killed (exit code 124)."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Network:
    """``[network]``: what the command can reach."""

    mode: str = "none"
    """``none``: a new network namespace with only loopback (up); ``host``: the host's
    network (needs ``namespaces.net = false``, set automatically)."""
    tcp_connect: tuple[int, ...] | None = None
    """TCP ports the command may connect to (Landlock, Linux 6.7+); unset: any port. An
    empty list allows no TCP connection at all."""
    tcp_bind: tuple[int, ...] | None = None
    """TCP ports the command may bind (Landlock, Linux 6.7+); unset: any port."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Landlock:
    """``[landlock]``: the Landlock layer (landlock(7)), applied after the file view is
    built and before seccomp. Its file rules restate the mounts (read-only binds: read and
    execute; writable binds and tmpfs: read and write; nothing else), so a mistake in the
    mount tree cannot reach beyond what the profile grants; abstract unix sockets and
    signals of processes outside the sandbox are scoped away."""

    enabled: bool = True
    """Apply the layer where the kernel has Landlock; each rule an older kernel lacks is
    named in ``explain``. Turning it off is named there too."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Environment:
    """``[environment]``: the command's environment, built from nothing by default."""

    clear: bool = True
    """Start from an empty environment (only ``keep`` and ``set`` reach the command)."""
    keep: tuple[str, ...] = ()
    """Variables passed through from the caller when set there (a trailing ``*`` matches a
    prefix). A kept variable the caller has wins over ``set``, which is its fallback."""
    set: tuple[tuple[str, str], ...] = ()
    """Variables set to a value (``${VAR}`` expanded at compile time); a TOML table."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Process:
    """``[process]``: process hygiene."""

    pass_fds: tuple[int, ...] = ()
    """Descriptors (besides 0, 1, 2) the command inherits; every other one is closed."""
    new_session: bool = True
    """setsid(): the command cannot reach the caller's terminal (TIOCSTI). When false, the
    seccomp filter must deny TIOCSTI/TIOCLINUX, which ``seccomp.hardening`` does."""
    die_with_parent: bool = True
    """The sandbox is killed when the launcher dies (PR_SET_PDEATHSIG)."""
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


@dataclass(frozen=True, slots=True)
class Profile:
    """A whole profile after ``extends`` are merged: the input of the planner."""

    name: str
    """The profile's name (built-in name or file name)."""
    description: str = ""
    """One line shown by ``isorun profiles``."""
    extends: tuple[str, ...] = ()
    """Profiles merged under this one, in order: built-in names or paths relative to this
    file. Grants (mounts, kept capabilities, environment, passed descriptors, seccomp allows)
    are unioned; restrictions intersect (the stricter limit, namespace or network wins);
    a key listed in ``override`` replaces the base's value instead."""
    override: tuple[str, ...] = ()
    """Keys (``network.mode``, ``limits.nofile``, ``namespaces.net``, ``mounts``, ...) whose
    value in this profile replaces the base's instead of merging; needed to loosen a
    restriction a base sets."""
    backend: str = "auto"
    """auto, native, bwrap, firejail or landlock."""
    namespaces: Namespaces = Namespaces()
    identity: Identity = Identity()
    filesystem: Filesystem = Filesystem()
    mounts: tuple[Mount, ...] = ()
    capabilities: Capabilities = Capabilities()
    security: Security = Security()
    unsafe: Unsafe = Unsafe()
    seccomp: Seccomp = Seccomp()
    limits: Limits = Limits()
    network: Network = Network()
    landlock: Landlock = Landlock()
    environment: Environment = Environment()
    process: Process = Process()
    #: the files read to build this profile, in order, for the cache key and ``explain``
    sources: tuple[str, ...] = field(default=(), compare=False)
    #: where each explicitly set dotted key (``limits.nofile``) was last written
    provenance: tuple[tuple[str, Loc], ...] = field(default=(), compare=False)
    loc: Loc = field(default=DEFAULT_LOC, compare=False)


def where(profile: Profile, key: str, fallback: Loc) -> Loc:
    """The location that set ``key`` in ``profile``, or ``fallback`` when no file set it."""
    for name, loc in profile.provenance:
        if name == key:
            return loc
    return fallback
