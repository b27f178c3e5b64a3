/*
 * The ABI between isorun's Python side (src/isorun/run/_shim.py) and the C shim.
 *
 * This file is fed verbatim to cffi's cdef(), so it holds only types, integer
 * #defines and declarations: no #include, no #if. System headers belong in the .c files.
 * The structs mirror isorun.run.spec.ShimSpec flattened into arrays and counts. The
 * parent allocates every byte the child reads, so the child between clone(2) and
 * execve(2) only makes async-signal-safe calls.
 *
 * Bump ISORUN_SHIM_ABI whenever a struct, a constant or a declaration here changes;
 * _shim.py refuses a compiled module whose isorun_abi() differs.
 */

#define ISORUN_SHIM_ABI 1

/* Values of isorun.run.spec.MountKind. */
#define ISORUN_MOUNT_BIND 1
#define ISORUN_MOUNT_TMPFS 2
#define ISORUN_MOUNT_PROC 3
#define ISORUN_MOUNT_DEV 4
#define ISORUN_MOUNT_SYMLINK 5
#define ISORUN_MOUNT_FILE 6
#define ISORUN_MOUNT_DIR 7
#define ISORUN_MOUNT_DEV_BIND 8
#define ISORUN_MOUNT_MQUEUE 9

/* Exit status of a child that failed a set-up step (after writing isorun_failure). */
#define ISORUN_EXIT_SETUP 125
/* Exit status when the command exists but cannot be executed, as in sh(1). */
#define ISORUN_EXIT_NOEXEC 126
/* Exit status when the command is not found, as in sh(1). */
#define ISORUN_EXIT_NOTFOUND 127

#define ISORUN_NAME_MAX 32

struct isorun_mount {
    int kind;
    int optional;
    int step;
    unsigned int mode;
    unsigned long flags;
    const char *dst;
    const char *src;
    size_t src_len;
    const char *data;
};

struct isorun_rlimit {
    int resource;
    int step;
    long long soft;
    long long hard;
};

/*
 * What the child writes to err_fd before _exit() when a step fails: the fixed step name
 * (the keys of ShimSpec.step_index), the syscall, errno, and the plan step index when
 * the failing item carried one (mounts, rlimits), else -1.
 */
struct isorun_failure {
    int err;
    int index;
    char step[32];
    char syscall[32];
};

struct isorun_spec {
    char **argv;
    char **env;
    const char *path;
    unsigned long clone_flags;
    unsigned int uid;
    unsigned int gid;
    int setgroups_deny;
    const char *root;
    const struct isorun_mount *mounts;
    size_t n_mounts;
    const char *cwd;
    const char *hostname;
    int loopback_up;
    const struct isorun_rlimit *rlimits;
    size_t n_rlimits;
    int new_session;
    int die_with_parent;
    const int *keep_fds;
    size_t n_keep_fds;
    unsigned long long caps_keep;
    int no_new_privs;
    const unsigned char *seccomp_bpf;
    size_t seccomp_len;
    int init;
    int stdio[3];
    int sync_fd;
    int sync_parent_fd;
    int err_fd;
    int err_parent_fd;
};

/* ISORUN_SHIM_ABI as compiled into the module. */
int isorun_abi(void);

/*
 * Clone the sandbox child, which blocks on sync_fd until the parent has written its id
 * maps and cgroup, then walks the spec. Returns the child pid, or -errno.
 */
int isorun_spawn(const struct isorun_spec *spec);
