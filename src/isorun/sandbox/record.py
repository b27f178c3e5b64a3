"""The launch record's fields, once: what every copy of it walks.

A record is :class:`isorun.sandbox.spec.ShimSpec` as plain data (a dict of bytes, ints,
bools and tuples): it is marshalled into the plan cache and read on the warm launch path,
where neither dataclasses nor namedtuple may be imported (and marshal cannot write a
namedtuple). So mounts, rlimits and Landlock rules stay tuples, read through the named
positions below (``mount[MOUNT.optional]``).

Imports nothing: build_shim.py runs it (``runpy.run_path``) and generates from it the C
checks that struct isorun_spec has a member for each field the C side reads, and the
X-macro list of the flat record's sections that launch_record.c parses in this order.
"""


class MOUNT:
    """Positions in a record's mount tuple (:class:`ShimMount`'s fields, in its order)."""

    kind = 0
    dst = 1
    src = 2
    flags = 3
    data = 4
    mode = 5
    optional = 6
    step = 7
    tree_fd = 8


class RLIMIT:
    """Positions in a record's rlimit tuple (:class:`Rlimit`'s fields)."""

    resource = 0
    soft = 1
    hard = 2
    step = 3


class LANDLOCK_RULE:
    """Positions in a record's Landlock rule tuple: (path, port, access, optional)."""

    path = 0
    port = 1
    access = 2
    optional = 3


def _names(positions: type) -> tuple[str, ...]:
    """The field names of a positions class, by position; refuses gaps or repeats."""
    names = tuple(name for name in vars(positions) if not name.startswith("_"))
    if sorted(getattr(positions, name) for name in names) != list(range(len(names))):
        raise ValueError(f"{positions.__name__}: positions are not 0..{len(names) - 1}")
    return tuple(sorted(names, key=lambda name: int(getattr(positions, name))))


MOUNT_FIELDS = _names(MOUNT)
RLIMIT_FIELDS = _names(RLIMIT)
LANDLOCK_RULE_FIELDS = _names(LANDLOCK_RULE)

#: every field of a record, in ShimSpec's order, with how shim_ffi.build_struct fills struct
#: isorun_spec from it: "scalar" is a member of that name set to the value as an int,
#: "member" one of that name filled by hand (a conversion), "parent" no member (the
#: parent itself acts on it: id maps, the cgroup, error messages)
FIELDS = (
    ("argv", "member"), ("env", "member"), ("clone_flags", "scalar"), ("uid_map", "parent"),
    ("gid_map", "parent"), ("setgroups_deny", "scalar"), ("uid", "scalar"),
    ("gid", "scalar"), ("root", "member"), ("mounts", "member"), ("cwd", "member"),
    ("hostname", "member"), ("loopback_up", "scalar"), ("rlimits", "member"),
    ("new_session", "member"), ("terminal_job", "parent"), ("die_with_parent", "scalar"),
    ("keep_fds", "member"), ("caps_keep", "member"), ("no_new_privs", "scalar"),
    ("seccomp_bpf", "member"), ("notify_bpf", "member"), ("landlock_abi", "scalar"),
    ("landlock_fs", "scalar"), ("landlock_net", "scalar"), ("landlock_scoped", "scalar"),
    ("landlock_rules", "member"), ("init", "scalar"), ("cgroup", "parent"),
    ("step_index", "parent"),
)  # fmt: skip
#: the flat record's sections after its magic and version, in the order they are written
#: (flat.encode, one encoder per wire type) and read (launch_record.c: one parse_NAME and
#: dump_NAME per section, called in this order through the generated
#: ISORUN_RECORD_SECTIONS X-macro); flat.py's docstring says what each holds
SECTIONS = (
    ("clone_flags", "i64"), ("uid", "i64"), ("gid", "i64"), ("flags", "flags"),
    ("caps_keep", "caps"), ("uid_map", "bytes"), ("gid_map", "bytes"), ("root", "str"),
    ("cwd", "str"), ("hostname", "str"), ("path", "path"), ("env", "strs"),
    ("keep_fds", "fds"), ("mounts", "mounts"), ("rlimits", "rlimits"),
    ("seccomp_bpf", "bpf"), ("landlock", "landlock"), ("report", "report"),
    ("step_index", "steps"),
)  # fmt: skip
#: the boolean fields packed into the ``flags`` section, and each one's bit
FLAG_BITS = (
    ("setgroups_deny", 1), ("loopback_up", 2), ("new_session", 4),
    ("die_with_parent", 8), ("no_new_privs", 16), ("init", 32), ("terminal_job", 64),
)  # fmt: skip
#: mount kinds (isorun_shim.h's ISORUN_MOUNT_*, generated; spec.MountKind, checked)
MOUNT_KINDS = {
    "BIND": 1, "TMPFS": 2, "PROC": 3, "DEV": 4, "SYMLINK": 5, "FILE": 6, "DIR": 7,
    "DEV_BIND": 8, "MQUEUE": 9, "TREE": 10, "REMOUNT_RO": 11, "OVERLAY": 12, "MASK": 13,
}  # fmt: skip
#: the C structs of each tuple kind above, for the generated member checks
C_STRUCTS = (("isorun_mount", MOUNT_FIELDS), ("isorun_rlimit", RLIMIT_FIELDS),
             ("isorun_landlock_rule", LANDLOCK_RULE_FIELDS))  # fmt: skip
