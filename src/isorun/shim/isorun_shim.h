/*
 * The ABI between isorun's Python side (src/isorun/sandbox/_shim.py) and the C shim.
 *
 * This file is fed verbatim to cffi's cdef(), so it holds only types, integer
 * #defines and declarations: no #include, no #if. System headers belong in the .c files.
 * The structs mirror isorun.sandbox.spec.ShimSpec flattened into arrays and counts. The
 * parent allocates every byte the child reads, so the child between clone(2) and
 * execve(2) only makes async-signal-safe calls.
 *
 * The numbers shared with the Python side (ISORUN_SHIM_ABI, the exit codes, Landlock's
 * file rights) are in consts.h, generated at build time from isorun/kernel/abi.py and
 * isorun/shim/abi.py (shim/headers.py), and read before this file by cdef and by every
 * .c file. Bump SHIM_ABI there whenever a struct, a constant or a declaration here
 * changes; sandbox/parent.py refuses a compiled module whose isorun_abi() differs.
 */

/*
 * Mount kinds, ISORUN_MOUNT_* (consts.h, from sandbox/record.py MOUNT_KINDS; what each
 * does: sandbox/spec.py MountKind). TREE attaches the detached mount tree tree_fd
 * (open_tree(OPEN_TREE_CLONE) by a root parent) at dst instead of binding src by path;
 * src is kept for messages only. REMOUNT_RO makes the one mount at dst read-only (the
 * new root, once built); OVERLAY mounts overlayfs at dst over the lower layer src with
 * its upper and work directories on a tmpfs of its own (data: that tmpfs's options),
 * discarded at exit; MASK hides dst when it exists (an empty read-only tmpfs over a
 * directory, the host's /dev/null over anything else), resolved inside the new root. A
 * TMPFS at "/" as the first mount of a tmpfs root is that root itself (its size), and
 * DEV takes the options of its tmpfs in data; /dev/shm is a TMPFS mount of its own.
 */

/*
 * Exit status (consts.h): ISORUN_EXIT_SETUP of a child that failed a set-up step (after
 * writing isorun_failure); ISORUN_EXIT_NOEXEC and ISORUN_EXIT_NOTFOUND when the command
 * cannot be executed or is not found, as in sh(1).
 */

#define ISORUN_NAME_MAX 32

/*
 * Landlock (landlock.c): ISORUN_LANDLOCK_FILE_RIGHTS (consts.h) are the rights the kernel
 * accepts on a rule for a file that is not a directory.
 */

/* One Landlock rule: rights beneath path (path[0] != 0), else on TCP port. */
struct isorun_landlock_rule {
    const char *path;
    unsigned long long port;
    unsigned long long access;
    int optional;
};

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
    int tree_fd;
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
    /*
     * 0 keeps the caller's session; 1 setsid(). 2 (ISORUN_SESSION_TERMINAL_OK): setsid()
     * unless the command's stdin is the launcher's controlling terminal and the launcher
     * is its foreground job; then isorun_spawn makes it 3 (ISORUN_SESSION_TERMINAL_JOB)
     * and the sandbox stays in the launcher's session and process group. Only for a
     * filter that refuses TIOCSTI/TIOCLINUX (see exec.c, isorun_child_confine).
     */
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
    /*
     * Learn mode: a second filter loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER
     * after seccomp_bpf; notify_fd is the child's end of a unix socket on which the
     * command reports the descriptor number the listener will get (see notify.c).
     */
    const unsigned char *notify_bpf;
    size_t notify_len;
    int notify_fd;
    /*
     * The refusal report: when the kernel refuses our listener
     * because a filter above us has one (EBUSY: an outer supervisor), load this program
     * instead of notify_bpf (fallback_len 0: fail the run, as learn mode does). The
     * launcher sees no listener and runs without the report; enforcement is the same.
     */
    const unsigned char *fallback_bpf;
    size_t fallback_len;
    /*
     * Landlock: applied after no_new_privs, before seccomp. landlock_abi is the
     * ABI the rules were planned for (0: none); the masks are the kernel's bits.
     */
    int landlock_abi;
    unsigned long long landlock_fs;
    unsigned long long landlock_net;
    unsigned long long landlock_scoped;
    const struct isorun_landlock_rule *landlock_rules;
    size_t n_landlock_rules;
};

/* ISORUN_SHIM_ABI as compiled into the module. */
int isorun_abi(void);

/*
 * Clone the sandbox child, which blocks on sync_fd until the parent has written its id
 * maps and cgroup, then walks the spec. Returns the child pid, or -errno.
 */
#define ISORUN_SESSION_TERMINAL_OK 2
#define ISORUN_SESSION_TERMINAL_JOB 3
int isorun_spawn(const struct isorun_spec *spec);

/*
 * Resolve the absolute host path ``path`` on the trusted side (resolve.c): one
 * component at a time, never following a symbolic link unless follow_trusted is set and
 * the link is root's in a directory only root can write. Returns an O_PATH|O_CLOEXEC
 * descriptor and the path with no link in it in out, or -errno; -ELOOP for a link it
 * will not follow, with that link's path in out.
 */
int isorun_resolve(const char *path, int follow_trusted, char *out, size_t out_size);

/* Learn mode: what the supervisor does for each notification (notify.c). */
#define ISORUN_ARGS 6
/* Values of isorun_supervisor.mem[nr] & 0xff: which memory a syscall's record reads. */
#define ISORUN_MEM_NONE 0
#define ISORUN_MEM_PATH 1
#define ISORUN_MEM_SOCKADDR 2
#define ISORUN_EVENT_DATA 256

/* One distinct (arch, nr, key arguments) the sandbox made, with how often. */
struct isorun_seen {
    unsigned int arch;
    int nr;
    unsigned long long args[6];
    unsigned long long count;
    int used;
};

/* One distinct path or socket address a syscall named (a suggestion, never a grant). */
struct isorun_event {
    int nr;
    int len;
    int used;
    unsigned long long count;
    unsigned char data[256];
};

struct isorun_supervisor {
    int listener;
    int stop_fd;
    unsigned int native_arch;
    /* per native syscall number: bit i set keeps argument i in the record */
    const unsigned char *argmask;
    size_t n_argmask;
    /* per native syscall number: kind | (pointer arg << 8) | (length arg << 12) */
    const unsigned short *mem;
    size_t n_mem;
    struct isorun_seen *seen;
    size_t seen_cap;
    size_t seen_len;
    int seen_full;
    struct isorun_event *events;
    size_t events_cap;
    size_t events_len;
    unsigned long long events_dropped;
    unsigned long long total;
    /* notifications that vanished (the caller was killed) before they were answered */
    unsigned long long lost;
    /*
     * `learn --check`: per native syscall number, the errno to answer
     * instead of letting the call run (0: CONTINUE); answer_other for other numbers and
     * ABIs. n_answer == 0 answers every notification with CONTINUE (learning).
     */
    const unsigned short *answer;
    size_t n_answer;
    unsigned short answer_other;
    /*
     * The refusal report: n_eval > 0 answers each notification with
     * what this program (the profile's, struct sock_filter[], n_eval bytes) answers for
     * it: its errno, or CONTINUE where it allows; answer is then unused.
     */
    const unsigned char *eval;
    size_t n_eval;
    /* notifications answered with an errno (the table holds the first seen_cap kinds) */
    unsigned long long refused;
};

/*
 * Take the seccomp listener numbered fd from process pid (pidfd_getfd(2)), checking
 * that it is one. Returns the new descriptor (CLOEXEC) or -errno.
 */
int isorun_take_listener(int pid, int fd);

/*
 * Answer every notification on sup->listener, recording it first: with
 * SECCOMP_USER_NOTIF_FLAG_CONTINUE, or with the errno sup->answer gives (see above). Returns 0 once no process uses the filter any more, 1 when
 * stop_fd became readable, or -errno.
 */
int isorun_supervise(struct isorun_supervisor *sup);
/*
 * Receive and answer one notification (the listener was readable), for a caller
 * with a poll loop of its own (isorun-launch). 0, or -errno when the listener failed.
 */
int isorun_supervise_one(struct isorun_supervisor *sup);

/*
 * Apply a spec to the calling process instead of a clone of it (apply.c). For a
 * sandbox whose code must run in an already forked copy of the caller (pytest's
 * @pytest.mark.isorun runs the test body in the process that collected it): every
 * child-side step except clone and execve. Both calls return only on success; a failed
 * step writes its struct isorun_failure to err_fd and _exit()s with ISORUN_EXIT_SETUP,
 * as a launch's child does.
 *
 * isorun_apply_namespaces: unshare every namespace in clone_flags, then write one byte
 * to ready_fd (the parent then writes the id maps). With CLONE_NEWPID the caller must
 * then fork: only children enter a pid namespace made by unshare(2).
 *
 * isorun_apply: wait on sync_fd until the parent wrote the id maps, then the rest in
 * isorun_child_main's order, in pid 1 of the new pid namespace when there is one.
 * err_fd stays open: the caller closes it once this returns, and EOF tells the parent
 * that set-up succeeded.
 */
void isorun_apply_namespaces(const struct isorun_spec *spec, int ready_fd);
void isorun_apply(const struct isorun_spec *spec);

/*
 * isorun_planted_walk (planted.c, issue #13): once the sandbox has ended, below the
 * writable bind root, move aside each nested .git created or changed at or after
 * since (CLOCK_REALTIME_COARSE before the clone: no file time of the run is earlier) and
 * name new .pth files of virtual environments; the messages go to out (cap bytes, NUL
 * terminated). Returns the count of .git found (moved aside or not), or -errno.
 * Bounded to ISORUN_PLANTED_DEPTH directory levels and ISORUN_PLANTED_ENTRIES entries.
 */
#define ISORUN_PLANTED_DEPTH 6
#define ISORUN_PLANTED_ENTRIES 200000
int isorun_planted_walk(const char *root, long long since_sec, long since_nsec, char *out,
                        size_t cap);
