/*
 * isorun-launch's spawn core: a flat launch record (isorun.sandbox.flat) parsed into
 * struct isorun_spec, then the parent side of a native launch, the sequence that
 * isorun.sandbox.parent.spawn_in_parent runs in Python: the sync and error pipes,
 * bind sources resolved without following an untrusted link (cloned for a root caller), isorun_spawn, a pidfd, the id
 * maps, release, the error pipe read to EOF; then the wait, forwarding signals.
 *
 * Why a program: isorun_spawn clones its caller without CLONE_VM. From Python that
 * copies the page tables of a process of tens of MiB (~0.9 ms) and then every page
 * either side touches faults (~1.5 ms); from this program, a few hundred KiB, neither
 * costs anything that shows. Python starts it with posix_spawn (vfork: no copy at all).
 *
 * The record's parser is launch_record.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch_record.h"
#include "launcher.h"
#include "tables.h"

/* <linux/mount.h> clashes with glibc 2.36's <sys/mount.h>; the values are the ABI. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static const int forwarded[] = {ISORUN_FORWARDED_SIGNALS}; /* tables.h, kernel/abi.py */
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

static void copy_name(char *dst, const char *src) {
    size_t i;

    for (i = 0; i + 1 < ISORUN_NAME_MAX && src[i] != '\0'; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

/* The plan step of a parent-side failure, as parent.setup_error looks it up. */
static int fail(struct isorun_failure *f, const struct isorun_record *rec, const char *step,
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
static int write_id_maps(const struct isorun_record *rec, pid_t pid, struct isorun_failure *f) {
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

/* The plan step of the new root, for a failure of its tree's mount (-1: none named). */
static int root_step(const struct isorun_record *rec) {
    size_t i;

    for (i = 0; i < rec->n_steps; i++)
        if (strcmp(rec->step_names[i], "root") == 0)
            return (int)rec->step_indexes[i];
    return -1;
}

/* The parent-side refusal of mount m: ELOOP names a link (parent.failure_error words it). */
static int mount_fail(struct isorun_failure *f, const struct isorun_mount *m, const char *syscall,
                      int err) {
    memset(f, 0, sizeof *f);
    f->err = err;
    f->index = m->step;
    copy_name(f->step, "mount");
    copy_name(f->syscall, syscall);
    return -1;
}

static int clone_tree(int fd) {
    return (int)syscall(SYS_open_tree, fd, "",
                        AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
}

/*
 * Every bind source resolved without following a link the sandbox's side could have
 * written (resolve.c; the same rule as parent.resolve_mounts_in_parent, which says more):
 * a refused link fails the launch with ELOOP and the mount's step, a missing optional
 * source is dropped, and the source becomes the path with no link left, which the child
 * walks again allowing none (mount.c). With no new root, destinations likewise.
 *
 * As root, each bind becomes a detached tree cloned from the checked descriptor: a root
 * caller's sandbox runs as the host's overflow uid, which cannot walk 0700 host
 * directories (/root/.pyenv/...). A rootfs directory likewise: the spec then asks for an
 * empty tmpfs root with the tree attached over all of it as the first mount, the same
 * view. The parser leaves one spare mount slot for it.
 */
static int resolve_mounts(struct isorun_record *rec, struct isorun_failure *f) {
    struct isorun_mount *m = rec->mounts;
    int as_root = geteuid() == 0 && (rec->spec.clone_flags & CLONE_NEWUSER);
    int keep_root = rec->spec.root[0] == '\0';
    char path[PATH_MAX];
    size_t i, j;
    int fd, tree;

    for (i = j = 0; i < rec->spec.n_mounts; i++) {
        if (keep_root) {
            fd = isorun_resolve(m[i].dst, 1, path, sizeof path);
            if (fd == -ELOOP)
                return mount_fail(f, &m[i], "openat", ELOOP);
            if (fd >= 0) {
                close(fd);
                if ((m[i].dst = isorun_record_strdup(rec, path)) == NULL)
                    return mount_fail(f, &m[i], "malloc", ENOMEM);
            }
        }
        if (m[i].kind == ISORUN_MOUNT_BIND || m[i].kind == ISORUN_MOUNT_DEV_BIND) {
            fd = isorun_resolve(m[i].src, 1, path, sizeof path);
            if (fd == -ELOOP)
                return mount_fail(f, &m[i], "openat", ELOOP);
            /* ENOTDIR: a component is a file, so nothing is there (a .git guard of a file) */
            if ((fd == -ENOENT || fd == -ENOTDIR) && m[i].optional)
                continue;
            if (fd >= 0) {
                tree = as_root && m[i].kind == ISORUN_MOUNT_BIND ? clone_tree(fd) : -1;
                close(fd);
                if (tree >= 0) {
                    m[i].kind = ISORUN_MOUNT_TREE;
                    m[i].tree_fd = tree;
                } else if ((m[i].src = isorun_record_strdup(rec, path)) == NULL) {
                    return mount_fail(f, &m[i], "malloc", ENOMEM);
                }
            }
        }
        m[j++] = m[i];
    }
    rec->spec.n_mounts = j;
    if (keep_root || strcmp(rec->spec.root, "tmpfs") == 0)
        return 0;
    fd = isorun_resolve(rec->spec.root, 1, path, sizeof path);
    if (fd == -ELOOP)
        return fail(f, rec, "root", "openat", ELOOP);
    if (fd < 0)
        return 0; /* the child reports what fails */
    tree = as_root ? clone_tree(fd) : -1;
    close(fd);
    if (tree >= 0) {
        memmove(m + 1, m, rec->spec.n_mounts * sizeof *m);
        memset(&m[0], 0, sizeof m[0]);
        m[0].kind = ISORUN_MOUNT_TREE;
        m[0].dst = "/";
        m[0].src = rec->spec.root;
        m[0].src_len = strlen(rec->spec.root);
        m[0].mode = 0755;
        m[0].step = root_step(rec);
        m[0].tree_fd = tree;
        rec->spec.n_mounts++;
        rec->spec.root = "tmpfs";
    } else if ((rec->spec.root = isorun_record_strdup(rec, path)) == NULL) {
        return fail(f, rec, "root", "malloc", ENOMEM);
    }
    return 0;
}

static void close_trees(struct isorun_record *rec) {
    size_t i;

    for (i = 0; i < rec->spec.n_mounts; i++) {
        if (rec->mounts[i].tree_fd >= 0) {
            close(rec->mounts[i].tree_fd);
            rec->mounts[i].tree_fd = -1;
        }
    }
}

/* Whether we were the terminal's foreground job when the sandbox started (see below). */
static int launcher_foreground;

/*
 * A shell in a sandbox that shares our terminal (exec.c, ISORUN_SESSION_TERMINAL_JOB) may
 * have made one of its jobs the foreground group and died without handing it back: take
 * the terminal back, or the caller's next read from it would stop with SIGTTIN. SIGTTOU
 * blocked: we may be in the background then.
 */
static void reclaim_terminal(void) {
    sigset_t ttou, old;

    if (!launcher_foreground || tcgetpgrp(0) == getpgrp())
        return;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    sigprocmask(SIG_BLOCK, &ttou, &old);
    (void)tcsetpgrp(0, getpgrp());
    sigprocmask(SIG_SETMASK, &old, NULL);
}

static int reap(pid_t pid) {
    int status = 0;

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    reclaim_terminal();
    return status;
}

/* Leave no process behind: kill, then reap. Without a pid namespace killing the child
 * takes no one else along; its session (setsid made it the leader) does. */
static void abandon(const struct isorun_record *rec, pid_t pid, int pidfd) {
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    if (!(rec->spec.clone_flags & CLONE_NEWPID) && rec->spec.new_session)
        kill(-pid, SIGKILL);
    reap(pid);
    close(pidfd);
}

static volatile sig_atomic_t forward_pidfd = -1;
/* A signal was passed on: a failure after it is the caller's doing, not a refusal. */
static volatile sig_atomic_t forwarded_any;
static volatile sig_atomic_t forward_tty = 1;

/*
 * A terminal's signals (^C, ^\, a resize, a hangup) come with si_code SI_KERNEL; kill(2)
 * and pidfd_send_signal(2) give SI_USER. The API (forward_tty 0) passes on only the
 * latter: its sandbox never got the terminal's signals when Python cloned it (a new
 * session is not the terminal's foreground group, and a sandbox without one gets them
 * from the terminal itself, being in our group). The CLI passes on both when the
 * sandbox has a session of its own: there the launcher stands for the command at the
 * terminal; sharing our foreground group (launcher_foreground), the latter only.
 */
static void forward(int sig, siginfo_t *info, void *context) {
    int saved = errno;

    (void)context;
    if (forward_pidfd >= 0 && (forward_tty || info == NULL || info->si_code != SI_KERNEL)) {
        syscall(SYS_pidfd_send_signal, (int)forward_pidfd, sig, NULL, 0);
        forwarded_any = 1;
    }
    errno = saved;
}

/* The report's state: large (its tables), one launch per process. */
static struct isorun_report report;
/* Why the listener could not be taken (an errno), for the retry without it. */
static int report_take_err;

static int read_failure(int fd, struct isorun_failure *f) {
    unsigned char buf[4096];
    size_t got = 0;
    ssize_t n;

    /* To EOF: the child's CLOEXEC end closes at its execve, or it wrote and exited. */
    for (;;) {
        /* The command's execve is notified: it waits for our answer before EOF comes. */
        if (isorun_report_wait(&report, fd) < 0)
            break;
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

static int launch(struct isorun_record *rec, int report_fd, int terminal, int refusals,
                  struct isorun_failure *f) {
    struct isorun_spec *s = &rec->spec;
    static const char *missing[ISORUN_GIT_GUARDS_MAX], *roots[ISORUN_GIT_GUARDS_MAX];
    struct timespec since = {0, 0};
    size_t guards, walks;
    struct sigaction sa, old_sa[N_FORWARDED];
    int sync[2] = {-1, -1}, err[2] = {-1, -1};
    int pidfd, rc, status, caller_stdio[3], say = -1, defer_stdio;
    sigset_t unblock;
    size_t i;
    pid_t pid;
    char byte = 0;

    for (i = 0; i < s->n_keep_fds; i++)
        if (fcntl(s->keep_fds[i], F_GETFD) < 0)
            return fail(f, rec, "close_fds", "fcntl(F_GETFD)", errno);
    /* Before we open anything: a closed slot may be reused by our own pipes below. */
    for (i = 0; i < 3; i++)
        caller_stdio[i] = report_fd >= 0 && (int)i != report_fd && fcntl((int)i, F_GETFD) >= 0;
    if (report_fd >= 0)
        close_unkept(s, report_fd);
    /*
     * The report goes to the caller's stderr, which the API's case closes below: a copy.
     * Only the CLI asks for it, whose stderr is its user's.
     */
    if (refusals && fcntl(2, F_GETFD) >= 0)
        say = fcntl(2, F_DUPFD_CLOEXEC, 3);
    /* refusals 2: asked for, but the listener could not be taken (see the retry below) */
    if ((rc = isorun_report_prepare(&report, rec, refusals == 1)) < 0) {
        if (say >= 0)
            close(say);
        return fail(f, rec, "seccomp", "socketpair", -rc);
    }
    if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        rc = errno;
        close(sync[0]);
        close(sync[1]);
        return fail(f, rec, "clone", "pipe2", rc);
    }
    /*
     * Before resolve_mounts turns binds into trees, and before the sandbox can write.
     * The CLI's front end only: an API caller (report_fd >= 0) has our stderr closed
     * once the sandbox starts, and its Popen does this itself (sandbox/git_guard.py).
     */
    guards = report_fd < 0 ? isorun_git_guards_missing(s, missing, ISORUN_GIT_GUARDS_MAX) : 0;
    walks = report_fd < 0 ? isorun_git_guards_all(s, roots, ISORUN_GIT_GUARDS_MAX) : 0;
    /* the coarse clock lags file times, never leads them: nothing the run wrote is older */
    if (report_fd < 0)
        clock_gettime(CLOCK_REALTIME_COARSE, &since);
    if (guards > ISORUN_GIT_GUARDS_MAX || walks > ISORUN_GIT_GUARDS_MAX) {
        close(sync[0]);
        close(sync[1]);
        close(err[0]);
        close(err[1]);
        return fail(f, rec, "mount", "git guards", E2BIG);
    }
    /* Before the clone: the child inherits the tree descriptors. */
    if (resolve_mounts(rec, f) < 0) {
        close_trees(rec);
        close(sync[0]);
        close(sync[1]);
        close(err[0]);
        close(err[1]);
        return -1;
    }
    s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
    s->sync_fd = sync[0];
    s->sync_parent_fd = sync[1];
    s->err_fd = err[1];
    s->err_parent_fd = err[0];
    if (!terminal && s->new_session == ISORUN_SESSION_TERMINAL_OK)
        s->new_session = 1;
    launcher_foreground = s->new_session == ISORUN_SESSION_TERMINAL_OK &&
                          tcgetpgrp(0) > 0 && tcgetpgrp(0) == getpgrp();
    pid = isorun_spawn(s);
    rc = pid < 0 ? -pid : 0;
    isorun_report_spawned(&report);
    close(sync[0]);
    close(err[1]);
    close_trees(rec);
    /*
     * The API's stdio pipes must reach EOF when the command closes its ends, as they did
     * when Python cloned the sandbox itself: our copies would hold them open until we
     * exit (the sandbox's init drops its own for the same reason, exec.c). The child has
     * its copies now. The CLI front end (report_fd < 0) keeps its stdio to print. With
     * the report's listener, once it is taken: a launch that cannot take it is run again
     * without it (isorun_launch_record), which needs them still.
     */
    defer_stdio = report.active;
    for (i = 0; i < 3; i++)
        if (caller_stdio[i] && !defer_stdio)
            close((int)i);
    if (pid < 0) {
        close(sync[1]);
        close(err[0]);
        isorun_report_close(&report);
        if (say >= 0)
            close(say);
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
    if (rc == 0 && (rc = isorun_report_take(&report, err[0])) < 0) {
        report_take_err = -rc;
        rc = fail(f, rec, "seccomp", "pidfd_getfd", -rc);
    }
    for (i = 0; i < 3; i++)
        if (caller_stdio[i] && defer_stdio && report_take_err == 0)
            close((int)i);
    if (rc == 0 && read_failure(err[0], f) && strcmp(f->step, "exec") != 0)
        rc = -1;
    close(err[0]);
    if (rc < 0) {
        abandon(rec, pid, pidfd);
        isorun_report_close(&report);
        if (say >= 0)
            close(say);
        return -1;
    }
    if (report_fd >= 0) {
        rc = send_report(report_fd, f, pid, pidfd);
        if (rc < 0) {
            abandon(rec, pid, pidfd);
            isorun_report_close(&report);
            if (say >= 0)
                close(say);
            return fail(f, rec, "report", "sendmsg", -rc);
        }
    }
    /* The sandbox's pid 1 forwards these on; we must survive them to report its status. */
    forward_pidfd = pidfd;
    /* Sharing the terminal's foreground group, the command got its signals itself. */
    forward_tty = report_fd < 0 && !launcher_foreground;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forward;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    sigemptyset(&unblock);
    for (i = 0; i < N_FORWARDED; i++) {
        sigaction(forwarded[i], &sa, &old_sa[i]);
        sigaddset(&unblock, forwarded[i]);
    }
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    /* Answering refused calls until the command ends (the pidfd becomes readable). */
    isorun_report_wait(&report, pidfd);
    status = reap(pid);
    sigprocmask(SIG_BLOCK, &unblock, NULL);
    forward_pidfd = -1;
    for (i = 0; i < N_FORWARDED; i++)
        sigaction(forwarded[i], &old_sa[i], NULL);
    close(pidfd);
    /* pid 1 has been reaped: the pid namespace's other processes died with it. */
    isorun_git_guards_quarantine(missing, guards);
    if (report_fd < 0)
        isorun_git_guards_walk(roots, walks, &since);
    isorun_report_close(&report);
    if (say >= 0) {
        /* Only when the command failed: a run that succeeded needs no explanation. */
        /* Not when execve failed: the caller says why, and nothing ran to refuse. */
        if (status != 0 && f->err == 0) {
            FILE *out = fdopen(say, "w");
            if (out != NULL) {
                /*
                 * The notes are guesses: not after a refused syscall (the likelier
                 * cause), a death by signal (EROFS and ENETUNREACH kill nobody) or a
                 * signal we passed on (the caller stopped it).
                 */
                if (refusals == 2)
                    fprintf(out, "isorun: no seccomp report: the listener could not be taken "
                            "(pidfd_getfd: %s)\n", strerror(report_take_err));
                if (isorun_report_print(&report, rec, out) == 0 && rec->notes[0] != '\0' &&
                    WIFEXITED(status) && !forwarded_any)
                    fprintf(out, "%s\n", rec->notes);
                fclose(out);
            } else {
                close(say);
            }
        } else {
            close(say);
        }
    }
    return status;
}

int isorun_launch_record(const unsigned char *blob, size_t len, char *const argv[],
                         int report_fd, int terminal, int refusals,
                         struct isorun_failure *failure) {
    struct isorun_record rec;
    sigset_t block, old;
    const char *error;
    size_t i, at;
    int status;

    memset(failure, 0, sizeof *failure);
    /*
     * Blocked from here until the wait: a signal before the pidfd exists has nobody to
     * go to and would kill us mid-set-up. SIGPIPE too: see send_report.
     */
    sigemptyset(&block);
    for (i = 0; i < N_FORWARDED; i++)
        sigaddset(&block, forwarded[i]);
    sigaddset(&block, SIGPIPE);
    sigprocmask(SIG_BLOCK, &block, &old);
    if (isorun_record_parse(&rec, blob, len, argv, &error, &at) < 0) {
        fprintf(stderr, "isorun-launch: error: malformed launch record at byte %zu of %zu: %s\n",
                at, len, error);
        /* The step names no plan step: the fault is ours (a stale build), not the profile's. */
        fail(failure, &rec, "record", "decode", EINVAL);
        if (report_fd >= 0)
            send_report(report_fd, failure, 0, -1);
        status = -1;
    } else {
        status = launch(&rec, report_fd, terminal, refusals, failure);
        if (status < 0 && report_take_err != 0) {
            /*
             * The listener could not be taken (a filter above us refusing pidfd_getfd, as
             * an isorun sandbox's hardening does; a Yama ptrace scope): the command was
             * killed while its first execve waited for us, so nothing of it ran and
             * launching again without the report is safe.
             */
            isorun_record_free(&rec);
            memset(failure, 0, sizeof *failure);
            if (isorun_record_parse(&rec, blob, len, argv, &error, &at) == 0)
                status = launch(&rec, report_fd, terminal, 2, failure);
        }
        if (status < 0 && report_fd >= 0 && strcmp(failure->step, "report") != 0)
            send_report(report_fd, failure, 0, -1);
    }
    isorun_record_free(&rec);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return status;
}
