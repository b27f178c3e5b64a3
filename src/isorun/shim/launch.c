/*
 * isorun-launch's spawn core: a flat launch record (isorun.sandbox.flat) parsed into
 * struct isorun_spec, then the parent side of a native launch, the sequence that
 * isorun.sandbox.parent.spawn_in_parent runs in Python: the sync and error pipes,
 * open_tree(2) clones of bind sources for a root caller, isorun_spawn, a pidfd, the id
 * maps, release, the error pipe read to EOF; then the wait, forwarding signals.
 *
 * Why a program: isorun_spawn clones its caller without CLONE_VM. From Python that
 * copies the page tables of a process of tens of MiB (~0.9 ms) and then every page
 * either side touches faults (~1.5 ms); from this program, a few hundred KiB, neither
 * costs anything that shows. Python starts it with posix_spawn (vfork: no copy at all).
 *
 * The record comes from the caller, not from a user: anything it does not expect is a bug
 * or a stale build, so the parser refuses it with the byte offset rather than guessing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"

/* <linux/mount.h> clashes with glibc 2.36's <sys/mount.h>; the values are the ABI. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

#define RECORD_MAGIC "IRLR"
/* isorun.sandbox.flat.VERSION */
#define RECORD_VERSION 1
/* The namespaces a record may ask for; any other clone flag (CLONE_VM...) is refused. */
#define RECORD_CLONE_FLAGS                                                                 \
    ((unsigned long)(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |           \
                     CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x80 /* NEWTIME */))
#define FLAG_SETGROUPS_DENY 1
#define FLAG_LOOPBACK_UP 2
#define FLAG_NEW_SESSION 4
#define FLAG_DIE_WITH_PARENT 8
#define FLAG_NO_NEW_PRIVS 16
#define FLAG_INIT 32
#define FLAG_ALL 63

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

/* Allocations of one parse, freed together: the child reads its copy after clone. */
struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

struct record {
    struct isorun_spec spec;
    struct isorun_mount *mounts;
    const unsigned char *uid_map, *gid_map;
    size_t uid_map_len, gid_map_len;
    const char **step_names;
    long long *step_indexes;
    size_t n_steps;
    struct chunk *chunks;
};

struct reader {
    const unsigned char *base;
    size_t pos, len;
    const char *error;
    size_t error_at;
};

static void *alloc(struct record *rec, size_t n) {
    struct chunk *c = rec->chunks;
    size_t cap;

    n = (n + 15) & ~(size_t)15;
    if (c == NULL || c->cap - c->used < n) {
        cap = n > 16384 ? n : 16384;
        c = calloc(1, sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->next = rec->chunks;
        rec->chunks = c;
    }
    c->used += n;
    return c->data + c->used - n;
}

static void free_record(struct record *rec) {
    struct chunk *c, *next;

    for (c = rec->chunks; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    rec->chunks = NULL;
}

static int refuse(struct reader *r, const char *what) {
    if (r->error == NULL) {
        r->error = what;
        r->error_at = r->pos;
    }
    return -1;
}

static int take(struct reader *r, size_t n, const unsigned char **out) {
    if (r->error != NULL)
        return -1;
    if (n > r->len - r->pos)
        return refuse(r, "truncated");
    *out = r->base + r->pos;
    r->pos += n;
    return 0;
}

static int read_u32(struct reader *r, uint32_t *value) {
    const unsigned char *p;

    if (take(r, 4, &p) < 0)
        return -1;
    *value = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return 0;
}

static int read_i64(struct reader *r, long long *value) {
    const unsigned char *p;
    uint64_t v = 0;
    int i;

    if (take(r, 8, &p) < 0)
        return -1;
    for (i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    /* Two's complement, as int.to_bytes(signed=True) wrote it. */
    *value = v > (uint64_t)LLONG_MAX ? -(long long)(~v) - 1 : (long long)v;
    return 0;
}

static int read_range(struct reader *r, long long lo, long long hi, long long *value,
                      const char *what) {
    if (read_i64(r, value) < 0)
        return -1;
    if (*value < lo || *value > hi) {
        r->pos -= 8;
        return refuse(r, what);
    }
    return 0;
}

static int read_bytes(struct reader *r, const unsigned char **data, size_t *len) {
    uint32_t n;

    if (read_u32(r, &n) < 0 || take(r, n, data) < 0)
        return -1;
    *len = n;
    return 0;
}

/* A copy with a NUL appended; refuses a NUL inside unless binary (FILE content). */
static int read_cstr(struct reader *r, struct record *rec, int binary, const char **out,
                     size_t *out_len) {
    const unsigned char *data;
    char *copy;
    size_t len;

    if (read_bytes(r, &data, &len) < 0)
        return -1;
    if (!binary && memchr(data, '\0', len) != NULL)
        return refuse(r, "string holds a NUL byte");
    copy = alloc(rec, len + 1);
    if (copy == NULL)
        return refuse(r, "out of memory");
    memcpy(copy, data, len);
    copy[len] = '\0';
    *out = copy;
    if (out_len != NULL)
        *out_len = len;
    return 0;
}

/* A count of items of at least min_size bytes each: more than could follow is refused
 * before anything is allocated for them. */
static int read_count(struct reader *r, size_t min_size, size_t *count) {
    uint32_t n;

    if (read_u32(r, &n) < 0)
        return -1;
    if ((size_t)n > (r->len - r->pos) / min_size) {
        r->pos -= 4;
        return refuse(r, "count larger than the record");
    }
    *count = n;
    return 0;
}

static int read_mount(struct reader *r, struct record *rec, struct isorun_mount *m) {
    long long kind, flags, mode, optional, step;

    if (read_range(r, ISORUN_MOUNT_BIND, ISORUN_MOUNT_MQUEUE, &kind, "unknown mount kind") <
            0 ||
        read_range(r, 0, LONG_MAX, &flags, "mount flags out of range") < 0 ||
        read_range(r, 0, 07777, &mode, "mount mode out of range") < 0 ||
        read_range(r, 0, 1, &optional, "mount optional is not 0 or 1") < 0 ||
        read_range(r, -1, INT_MAX, &step, "mount step out of range") < 0)
        return -1;
    m->kind = (int)kind;
    m->flags = (unsigned long)flags;
    m->mode = (unsigned int)mode;
    m->optional = (int)optional;
    m->step = (int)step;
    m->tree_fd = -1;
    if (read_cstr(r, rec, 0, &m->dst, NULL) < 0 ||
        read_cstr(r, rec, kind == ISORUN_MOUNT_FILE, &m->src, &m->src_len) < 0 ||
        read_cstr(r, rec, 0, &m->data, NULL) < 0)
        return -1;
    if (m->dst[0] != '/')
        return refuse(r, "mount dst is not absolute");
    if ((kind == ISORUN_MOUNT_BIND || kind == ISORUN_MOUNT_DEV_BIND ||
         kind == ISORUN_MOUNT_SYMLINK) &&
        m->src_len == 0)
        return refuse(r, "bind or symlink without a src");
    if (m->data[0] == '\0')
        m->data = NULL;
    return 0;
}

static int parse(struct reader *r, struct record *rec, char *const argv[]) {
    struct isorun_spec *s = &rec->spec;
    const unsigned char *magic;
    uint32_t version;
    long long v, flags, uid, gid, caps;
    size_t i, j, n;
    const char **env;
    int *keep;

    if (take(r, 4, &magic) < 0 || memcmp(magic, RECORD_MAGIC, 4) != 0)
        return refuse(r, "not a launch record (bad magic)");
    if (read_u32(r, &version) < 0)
        return -1;
    if (version != RECORD_VERSION) {
        r->pos -= 4;
        return refuse(r, "record version differs from this isorun-launch (rebuild it)");
    }
    if (read_i64(r, &v) < 0)
        return -1;
    if ((unsigned long long)v & ~(unsigned long long)RECORD_CLONE_FLAGS) {
        r->pos -= 8;
        return refuse(r, "clone_flags holds a flag other than CLONE_NEW*");
    }
    s->clone_flags = (unsigned long)v;
    if (read_range(r, 0, UINT_MAX - 1, &uid, "uid out of range") < 0 ||
        read_range(r, 0, UINT_MAX - 1, &gid, "gid out of range") < 0 ||
        read_range(r, 0, FLAG_ALL, &flags, "unknown flag bits") < 0 || read_i64(r, &caps) < 0)
        return -1;
    s->uid = (unsigned int)uid;
    s->gid = (unsigned int)gid;
    s->setgroups_deny = !!(flags & FLAG_SETGROUPS_DENY);
    s->loopback_up = !!(flags & FLAG_LOOPBACK_UP);
    s->new_session = !!(flags & FLAG_NEW_SESSION);
    s->die_with_parent = !!(flags & FLAG_DIE_WITH_PARENT);
    s->no_new_privs = !!(flags & FLAG_NO_NEW_PRIVS);
    s->init = !!(flags & FLAG_INIT);
    s->caps_keep = (unsigned long long)caps;
    if (read_bytes(r, &rec->uid_map, &rec->uid_map_len) < 0 ||
        read_bytes(r, &rec->gid_map, &rec->gid_map_len) < 0)
        return -1;
    if ((rec->uid_map_len || rec->gid_map_len) && !(s->clone_flags & CLONE_NEWUSER))
        return refuse(r, "uid_map/gid_map without a new user namespace");
    if (read_cstr(r, rec, 0, &s->root, NULL) < 0)
        return -1;
    if (s->root[0] != '\0' && s->root[0] != '/' && strcmp(s->root, "tmpfs") != 0)
        return refuse(r, "root must be empty, tmpfs or absolute");
    if (read_cstr(r, rec, 0, &s->cwd, NULL) < 0 || read_cstr(r, rec, 0, &s->hostname, NULL) < 0 ||
        read_cstr(r, rec, 0, &s->path, NULL) < 0)
        return -1;
    if (read_count(r, 4, &n) < 0 || (env = alloc(rec, (n + 1) * sizeof *env)) == NULL)
        return refuse(r, "out of memory");
    for (i = 0; i < n; i++)
        if (read_cstr(r, rec, 0, &env[i], NULL) < 0)
            return -1;
    env[n] = NULL;
    s->env = (char **)env;
    if (read_count(r, 8, &n) < 0 || (keep = alloc(rec, (n + 1) * sizeof *keep)) == NULL)
        return refuse(r, "out of memory");
    /* 0, 1, 2 are stdio, kept anyway; a repeat would only be closed twice. */
    for (i = j = 0; i < n; i++) {
        if (read_range(r, 0, INT_MAX, &v, "keep_fds holds a negative descriptor") < 0)
            return -1;
        if (v > 2) {
            size_t k;
            for (k = 0; k < j && keep[k] != (int)v; k++)
                ;
            if (k == j)
                keep[j++] = (int)v;
        }
    }
    s->keep_fds = keep;
    s->n_keep_fds = j;
    if (read_count(r, 5 * 8 + 3 * 4, &n) < 0 ||
        (rec->mounts = alloc(rec, (n + 1) * sizeof *rec->mounts)) == NULL)
        return refuse(r, "out of memory");
    for (i = 0; i < n; i++)
        if (read_mount(r, rec, &rec->mounts[i]) < 0)
            return -1;
    s->mounts = rec->mounts;
    s->n_mounts = n;
    {
        struct isorun_rlimit *rl;
        long long resource, soft, hard, step;

        if (read_count(r, 4 * 8, &n) < 0 || (rl = alloc(rec, (n + 1) * sizeof *rl)) == NULL)
            return refuse(r, "out of memory");
        for (i = 0; i < n; i++) {
            if (read_range(r, 0, RLIMIT_NLIMITS - 1, &resource, "unknown rlimit resource") <
                    0 ||
                read_range(r, -1, LLONG_MAX, &soft, "rlimit soft out of range") < 0 ||
                read_range(r, -1, LLONG_MAX, &hard, "rlimit hard out of range") < 0 ||
                read_range(r, -1, INT_MAX, &step, "rlimit step out of range") < 0)
                return -1;
            rl[i].resource = (int)resource;
            rl[i].soft = soft;
            rl[i].hard = hard;
            rl[i].step = (int)step;
        }
        s->rlimits = rl;
        s->n_rlimits = n;
    }
    if (read_bytes(r, &s->seccomp_bpf, &s->seccomp_len) < 0)
        return -1;
    if (s->seccomp_len % sizeof(struct sock_filter) != 0 ||
        s->seccomp_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
        return refuse(r, "seccomp_bpf is not a whole BPF program of at most 4096 instructions");
    if (read_count(r, 4 + 8, &n) < 0 ||
        (rec->step_names = alloc(rec, (n + 1) * sizeof *rec->step_names)) == NULL ||
        (rec->step_indexes = alloc(rec, (n + 1) * sizeof *rec->step_indexes)) == NULL)
        return refuse(r, "out of memory");
    for (i = 0; i < n; i++) {
        size_t len;
        if (read_cstr(r, rec, 0, &rec->step_names[i], &len) < 0 ||
            read_range(r, -1, INT_MAX, &rec->step_indexes[i], "step index out of range") < 0)
            return -1;
        if (len == 0 || len >= ISORUN_NAME_MAX)
            return refuse(r, "step name empty or too long");
    }
    rec->n_steps = n;
    if (r->pos != r->len)
        return refuse(r, "trailing bytes after the record");
    if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0')
        return refuse(r, "argv is empty");
    s->argv = (char **)argv;
    s->notify_bpf = (const unsigned char *)"";
    s->notify_len = 0;
    s->notify_fd = -1;
    return 0;
}

static void copy_name(char *dst, const char *src) {
    size_t i;

    for (i = 0; i + 1 < ISORUN_NAME_MAX && src[i] != '\0'; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

/* The plan step of a parent-side failure, as parent.setup_error looks it up. */
static int fail(struct isorun_failure *f, const struct record *rec, const char *step,
                const char *syscall, int err) {
    size_t i;

    memset(f, 0, sizeof *f);
    f->err = err;
    f->index = -1;
    for (i = 0; i < rec->n_steps; i++)
        if (strcmp(rec->step_names[i], step) == 0)
            f->index = (int)rec->step_indexes[i];
    copy_name(f->step, step);
    copy_name(f->syscall, syscall);
    return -1;
}

/*
 * One message: the failure record, then the pid. On a unix socket the sandbox's pidfd
 * goes along (SCM_RIGHTS), so the caller can signal exactly this process even after
 * we reaped it and its pid was reused. MSG_NOSIGNAL and SIGPIPE blocked: a caller that
 * went away is an error here, not our death with the sandbox left running.
 */
static int send_report(int fd, const struct isorun_failure *f, int pid, int pidfd) {
    unsigned char buf[sizeof *f + sizeof pid];
    union {
        char bytes[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg;
    struct cmsghdr *cmsg;
    struct stat st;
    ssize_t n;
    int sock = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);

    memcpy(buf, f, sizeof *f);
    memcpy(buf + sizeof *f, &pid, sizeof pid);
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (pidfd >= 0 && sock) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &pidfd, sizeof pidfd);
    }
    do
        n = sock ? sendmsg(fd, &msg, MSG_NOSIGNAL) : write(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -errno;
    return n == (ssize_t)sizeof buf ? 0 : -EPIPE;
}

static int write_proc(pid_t pid, const char *name, const unsigned char *data, size_t len) {
    char path[64];
    ssize_t n;
    int fd, err;

    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* One write: the kernel accepts a map only in a single write(2) call. */
    n = write(fd, data, len);
    err = n < 0 ? errno : n != (ssize_t)len ? EIO : 0;
    close(fd);
    return -err;
}

/* setgroups, then gid_map, then uid_map: "deny" must precede an unprivileged gid_map
 * (user_namespaces(7), CVE-2014-8989). */
static int write_id_maps(const struct record *rec, pid_t pid, struct isorun_failure *f) {
    int rc;

    if (!(rec->spec.clone_flags & CLONE_NEWUSER))
        return 0;
    if (rec->spec.setgroups_deny &&
        (rc = write_proc(pid, "setgroups", (const unsigned char *)"deny", 4)) < 0)
        return fail(f, rec, "setgroups", "write(setgroups)", -rc);
    if (rec->gid_map_len && (rc = write_proc(pid, "gid_map", rec->gid_map, rec->gid_map_len)) < 0)
        return fail(f, rec, "gid_map", "write(gid_map)", -rc);
    if (rec->uid_map_len && (rc = write_proc(pid, "uid_map", rec->uid_map, rec->uid_map_len)) < 0)
        return fail(f, rec, "uid_map", "write(uid_map)", -rc);
    return 0;
}

/*
 * A root caller's sandbox runs as the host's overflow uid, which cannot walk 0700 host
 * directories (/root/.pyenv/...): we are still root, so each bind source becomes a
 * detached tree the child attaches (see parent.clone_trees_in_parent, the same rule).
 * A missing optional source is dropped, as the child would skip it; any other source we
 * cannot clone stays a path bind, which the child reports.
 */
static void clone_trees(struct record *rec) {
    struct isorun_mount *m = rec->mounts;
    size_t i, j;
    int fd;

    if (geteuid() != 0 || !(rec->spec.clone_flags & CLONE_NEWUSER))
        return;
    for (i = j = 0; i < rec->spec.n_mounts; i++) {
        if (m[i].kind == ISORUN_MOUNT_BIND) {
            fd = (int)syscall(SYS_open_tree, AT_FDCWD, m[i].src,
                              OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT && m[i].optional)
                continue;
            if (fd >= 0) {
                m[i].kind = ISORUN_MOUNT_TREE;
                m[i].tree_fd = fd;
            }
        }
        m[j++] = m[i];
    }
    rec->spec.n_mounts = j;
}

static void close_trees(struct record *rec) {
    size_t i;

    for (i = 0; i < rec->spec.n_mounts; i++) {
        if (rec->mounts[i].tree_fd >= 0) {
            close(rec->mounts[i].tree_fd);
            rec->mounts[i].tree_fd = -1;
        }
    }
}

static int reap(pid_t pid) {
    int status = 0;

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* Leave no process behind: kill, then reap. Without a pid namespace killing the child
 * takes no one else along; its session (setsid made it the leader) does. */
static void abandon(const struct record *rec, pid_t pid, int pidfd) {
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    if (!(rec->spec.clone_flags & CLONE_NEWPID) && rec->spec.new_session)
        kill(-pid, SIGKILL);
    reap(pid);
    close(pidfd);
}

static volatile sig_atomic_t forward_pidfd = -1;

static void forward(int sig) {
    int saved = errno;

    if (forward_pidfd >= 0)
        syscall(SYS_pidfd_send_signal, (int)forward_pidfd, sig, NULL, 0);
    errno = saved;
}

static int read_failure(int fd, struct isorun_failure *f) {
    unsigned char buf[4096];
    size_t got = 0;
    ssize_t n;

    /* To EOF: the child's CLOEXEC end closes at its execve, or it wrote and exited. */
    for (;;) {
        n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (got < sizeof *f)
            memcpy((unsigned char *)f + got, buf,
                   (size_t)n < sizeof *f - got ? (size_t)n : sizeof *f - got);
        got += (size_t)n;
    }
    return got >= sizeof *f;
}

/*
 * The API starts us with posix_spawn, which closes nothing: a descriptor the caller made
 * inheritable would stay open here for the sandbox's whole life (a pipe's write end
 * keeping someone else's read from EOF). subprocess's close_fds, done on our side.
 */
static void close_unkept(const struct isorun_spec *s, int report_fd) {
    unsigned int lo = 3;
    int hi;
    size_t i;

    for (;;) {
        hi = report_fd >= (int)lo ? report_fd : INT_MAX;
        for (i = 0; i < s->n_keep_fds; i++)
            if (s->keep_fds[i] >= (int)lo && s->keep_fds[i] < hi)
                hi = s->keep_fds[i];
        /* Errors are harmless: the child closes everything unkept itself (exec.c). */
        if ((unsigned int)hi > lo)
            syscall(SYS_close_range, lo, (unsigned int)hi - 1, 0);
        if (hi == INT_MAX)
            break;
        lo = (unsigned int)hi + 1;
    }
}

static int launch(struct record *rec, int report_fd, struct isorun_failure *f) {
    struct isorun_spec *s = &rec->spec;
    struct sigaction sa, old_sa[N_FORWARDED];
    int sync[2] = {-1, -1}, err[2] = {-1, -1};
    int pidfd, rc, status;
    sigset_t unblock;
    size_t i;
    pid_t pid;
    char byte = 0;

    for (i = 0; i < s->n_keep_fds; i++)
        if (fcntl(s->keep_fds[i], F_GETFD) < 0)
            return fail(f, rec, "close_fds", "fcntl(F_GETFD)", errno);
    if (report_fd >= 0)
        close_unkept(s, report_fd);
    if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        rc = errno;
        close(sync[0]);
        close(sync[1]);
        return fail(f, rec, "clone", "pipe2", rc);
    }
    /* Before the clone: the child inherits the tree descriptors. */
    clone_trees(rec);
    s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
    s->sync_fd = sync[0];
    s->sync_parent_fd = sync[1];
    s->err_fd = err[1];
    s->err_parent_fd = err[0];
    pid = isorun_spawn(s);
    rc = pid < 0 ? -pid : 0;
    close(sync[0]);
    close(err[1]);
    close_trees(rec);
    if (pid < 0) {
        close(sync[1]);
        close(err[0]);
        return fail(f, rec, "clone", "clone", rc);
    }
    /* Before anything can reap it: the pidfd pins this process, never a reused pid. */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        rc = errno;
        kill(pid, SIGKILL);
        reap(pid);
        close(sync[1]);
        close(err[0]);
        return fail(f, rec, "clone", "pidfd_open", rc);
    }
    rc = write_id_maps(rec, pid, f);
    if (rc == 0) {
        while ((rc = (int)write(sync[1], &byte, 1)) < 0 && errno == EINTR)
            ;
        rc = rc == 1 ? 0 : fail(f, rec, "clone", "write(sync)", errno);
    }
    close(sync[1]);
    if (rc == 0 && read_failure(err[0], f) && strcmp(f->step, "exec") != 0)
        rc = -1;
    close(err[0]);
    if (rc < 0) {
        abandon(rec, pid, pidfd);
        return -1;
    }
    if (report_fd >= 0) {
        rc = send_report(report_fd, f, pid, pidfd);
        if (rc < 0) {
            abandon(rec, pid, pidfd);
            return fail(f, rec, "report", "sendmsg", -rc);
        }
    }
    /* The sandbox's pid 1 forwards these on; we must survive them to report its status. */
    forward_pidfd = pidfd;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigemptyset(&unblock);
    for (i = 0; i < N_FORWARDED; i++) {
        sigaction(forwarded[i], &sa, &old_sa[i]);
        sigaddset(&unblock, forwarded[i]);
    }
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    status = reap(pid);
    sigprocmask(SIG_BLOCK, &unblock, NULL);
    forward_pidfd = -1;
    for (i = 0; i < N_FORWARDED; i++)
        sigaction(forwarded[i], &old_sa[i], NULL);
    close(pidfd);
    return status;
}

int isorun_launch_record(const unsigned char *blob, size_t len, char *const argv[],
                         int report_fd, struct isorun_failure *failure) {
    struct reader r = {blob, 0, len, NULL, 0};
    struct record rec;
    sigset_t block, old;
    size_t i;
    int status;

    memset(failure, 0, sizeof *failure);
    memset(&rec, 0, sizeof rec);
    /*
     * Blocked from here until the wait: a signal before the pidfd exists has nobody to
     * go to and would kill us mid-set-up. SIGPIPE too: see send_report.
     */
    sigemptyset(&block);
    for (i = 0; i < N_FORWARDED; i++)
        sigaddset(&block, forwarded[i]);
    sigaddset(&block, SIGPIPE);
    sigprocmask(SIG_BLOCK, &block, &old);
    if (blob == NULL || parse(&r, &rec, argv) < 0) {
        fprintf(stderr, "isorun-launch: error: malformed launch record at byte %zu of %zu: %s\n",
                r.error_at, len, r.error != NULL ? r.error : "no record");
        /* The step names no plan step: the fault is ours (a stale build), not the profile's. */
        fail(failure, &rec, "record", "decode", EINVAL);
        if (report_fd >= 0)
            send_report(report_fd, failure, 0, -1);
        status = -1;
    } else {
        status = launch(&rec, report_fd, failure);
        if (status < 0 && report_fd >= 0 && strcmp(failure->step, "report") != 0)
            send_report(report_fd, failure, 0, -1);
    }
    free_record(&rec);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return status;
}

static void dump_bytes(FILE *out, const char *name, const void *data, size_t len) {
    const unsigned char *p = data;
    size_t i;

    fprintf(out, "%s ", name);
    for (i = 0; i < len; i++) {
        if (p[i] >= 0x21 && p[i] < 0x7f && p[i] != '\\')
            fputc(p[i], out);
        else
            fprintf(out, "\\x%02x", p[i]);
    }
    fputc('\n', out);
}

int isorun_dump_record(const unsigned char *blob, size_t len, FILE *out) {
    static char *const argv[] = {(char *)"-", NULL};
    struct reader r = {blob, 0, len, NULL, 0};
    struct record rec;
    const struct isorun_spec *s = &rec.spec;
    size_t i;

    memset(&rec, 0, sizeof rec);
    if (parse(&r, &rec, argv) < 0) {
        fprintf(stderr, "isorun-launch: error: malformed launch record at byte %zu of %zu: %s\n",
                r.error_at, len, r.error);
        free_record(&rec);
        return -1;
    }
    fprintf(out, "clone_flags %#lx\nuid %u\ngid %u\n", s->clone_flags, s->uid, s->gid);
    fprintf(out, "setgroups_deny %d\nloopback_up %d\nnew_session %d\ndie_with_parent %d\n",
            s->setgroups_deny, s->loopback_up, s->new_session, s->die_with_parent);
    fprintf(out, "no_new_privs %d\ninit %d\ncaps_keep %#llx\n", s->no_new_privs, s->init,
            s->caps_keep);
    dump_bytes(out, "uid_map", rec.uid_map, rec.uid_map_len);
    dump_bytes(out, "gid_map", rec.gid_map, rec.gid_map_len);
    dump_bytes(out, "root", s->root, strlen(s->root));
    dump_bytes(out, "cwd", s->cwd, strlen(s->cwd));
    dump_bytes(out, "hostname", s->hostname, strlen(s->hostname));
    dump_bytes(out, "path", s->path, strlen(s->path));
    for (i = 0; s->env[i] != NULL; i++)
        dump_bytes(out, "env", s->env[i], strlen(s->env[i]));
    for (i = 0; i < s->n_keep_fds; i++)
        fprintf(out, "keep_fd %d\n", s->keep_fds[i]);
    for (i = 0; i < s->n_mounts; i++) {
        const struct isorun_mount *m = &s->mounts[i];
        fprintf(out, "mount %d %#lx %04o %d %d\n", m->kind, m->flags, m->mode, m->optional,
                m->step);
        dump_bytes(out, " dst", m->dst, strlen(m->dst));
        dump_bytes(out, " src", m->src, m->src_len);
        dump_bytes(out, " data", m->data != NULL ? m->data : "", m->data ? strlen(m->data) : 0);
    }
    for (i = 0; i < s->n_rlimits; i++)
        fprintf(out, "rlimit %d %lld %lld %d\n", s->rlimits[i].resource, s->rlimits[i].soft,
                s->rlimits[i].hard, s->rlimits[i].step);
    fprintf(out, "seccomp_len %zu\n", s->seccomp_len);
    for (i = 0; i < rec.n_steps; i++)
        fprintf(out, "step %s %lld\n", rec.step_names[i], rec.step_indexes[i]);
    free_record(&rec);
    return 0;
}
