/*
 * isorun-launch's spawn core: a flat launch record (isorun.sandbox.flat) parsed into
 * struct isorun_spec, then the parent side of a native launch, the sequence that
 * isorun.sandbox.parent.spawn_in_parent runs in Python: the sync and error pipes, bind
 * sources resolved without following an untrusted link (launch_mounts.c), isorun_spawn,
 * a pidfd, the id maps (idmap.c), release, the error pipe read to EOF; then the wait,
 * forwarding signals.
 *
 * Why a program: isorun_spawn clones its caller without CLONE_VM. From Python that
 * copies the page tables of a process of tens of MiB (~0.9 ms) and then every page
 * either side touches faults (~1.5 ms); from this program, a few hundred KiB, neither
 * costs anything that shows. Python starts it with posix_spawn (vfork: no copy at all).
 *
 * The record's parser is launch_record.c; this file runs the steps in their order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch_record.h"
#include "launcher.h"
#include "tables.h"

static const int forwarded[] = {ISORUN_FORWARDED_SIGNALS}; /* tables.h, kernel/abi.py */
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

static int reap(pid_t pid) {
    int status = 0;

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    isorun_terminal_reclaim();
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
 * latter: its sandbox does not get the terminal's signals (a new session is not the
 * terminal's foreground group, and a sandbox without one gets them from the terminal
 * itself, being in our group). The CLI passes on both when the sandbox has a session of
 * its own: there the launcher stands for the command at the terminal; sharing our
 * foreground group (run.foreground), the latter only.
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

/* One launch, from the pipes to the wait: what its steps below hand each other. */
struct run {
    struct isorun_record *rec;
    struct isorun_failure *f;
    int report_fd, terminal, refusals;
    /* the .git guards (git_guard.c): missing before the run, and every guard's source */
    const char **missing, **roots;
    size_t guards, walks;
    struct timespec since;
    int sync[2], err[2];
    /* which of the caller's stdio descriptors are open, to close once the child has them */
    int caller_stdio[3];
    /* our copy of the caller's stderr for the refusal report, or -1 */
    int say;
    int defer_stdio;
    /* we were the terminal's foreground job when the sandbox started (terminal.c) */
    int foreground;
    pid_t pid;
    int pidfd;
};

static void close_pipes(struct run *r) {
    close(r->sync[0]);
    close(r->sync[1]);
    close(r->err[0]);
    close(r->err[1]);
}

/* Everything before the clone: our descriptors, the report, the pipes, the mounts. */
static int prepare(struct run *r) {
    struct isorun_spec *s = &r->rec->spec;
    size_t i;
    int rc;

    for (i = 0; i < s->n_keep_fds; i++)
        if (fcntl(s->keep_fds[i], F_GETFD) < 0)
            return isorun_launch_fail(r->f, r->rec, "close_fds", "fcntl(F_GETFD)", errno);
    /* Before we open anything: a closed slot may be reused by our own pipes below. */
    for (i = 0; i < 3; i++)
        r->caller_stdio[i] =
            r->report_fd >= 0 && (int)i != r->report_fd && fcntl((int)i, F_GETFD) >= 0;
    if (r->report_fd >= 0)
        isorun_caller_close_unkept(s, r->report_fd);
    /*
     * The report goes to the caller's stderr, which the API's case closes below: a copy.
     * Only the CLI asks for it, whose stderr is its user's.
     */
    if (r->refusals && fcntl(2, F_GETFD) >= 0)
        r->say = fcntl(2, F_DUPFD_CLOEXEC, 3);
    /* refusals 2: asked for, but the listener could not be taken (see the retry below) */
    if ((rc = isorun_report_prepare(&report, r->rec, r->refusals == 1)) < 0) {
        if (r->say >= 0)
            close(r->say);
        return isorun_launch_fail(r->f, r->rec, "seccomp", "socketpair", -rc);
    }
    if (pipe2(r->sync, O_CLOEXEC) < 0 || pipe2(r->err, O_CLOEXEC) < 0) {
        rc = errno;
        close_pipes(r);
        return isorun_launch_fail(r->f, r->rec, "clone", "pipe2", rc);
    }
    /*
     * Before resolve_mounts turns binds into trees, and before the sandbox can write.
     * The CLI's front end only: an API caller (report_fd >= 0) has our stderr closed
     * once the sandbox starts, and its Popen does this itself (sandbox/git_guard.py).
     */
    if (r->report_fd < 0) {
        r->guards = isorun_git_guards_missing(s, r->missing, ISORUN_GIT_GUARDS_MAX);
        r->walks = isorun_git_guards_all(s, r->roots, ISORUN_GIT_GUARDS_MAX);
        /* the coarse clock lags file times, never leads them: nothing the run wrote is older */
        clock_gettime(CLOCK_REALTIME_COARSE, &r->since);
    }
    if (r->guards > ISORUN_GIT_GUARDS_MAX || r->walks > ISORUN_GIT_GUARDS_MAX) {
        close_pipes(r);
        return isorun_launch_fail(r->f, r->rec, "mount", "git guards", E2BIG);
    }
    /* Before the clone: the child inherits the tree descriptors. */
    if (isorun_launch_resolve_mounts(r->rec, r->f) < 0) {
        isorun_launch_close_trees(r->rec);
        close_pipes(r);
        return -1;
    }
    return 0;
}

/* The clone, and a pidfd that pins the child before anything can reap it. */
static int spawn_child(struct run *r) {
    struct isorun_spec *s = &r->rec->spec;
    size_t i;
    int rc;

    s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
    s->sync_fd = r->sync[0];
    s->sync_parent_fd = r->sync[1];
    s->err_fd = r->err[1];
    s->err_parent_fd = r->err[0];
    if (!r->terminal && s->new_session == ISORUN_SESSION_TERMINAL_OK)
        s->new_session = 1;
    r->foreground = isorun_terminal_note(s->new_session == ISORUN_SESSION_TERMINAL_OK);
    r->pid = isorun_spawn(s);
    rc = r->pid < 0 ? -r->pid : 0;
    isorun_report_spawned(&report);
    close(r->sync[0]);
    close(r->err[1]);
    isorun_launch_close_trees(r->rec);
    /*
     * The API's stdio pipes must reach EOF when the command closes its ends: our copies
     * would hold them open until we exit (the sandbox's init drops its own for the same
     * reason, exec.c). The child has its copies now. The CLI front end (report_fd < 0)
     * keeps its stdio to print. With the report's listener, once it is taken: a launch
     * that cannot take it is run again without it (isorun_launch_record), which needs
     * them still.
     */
    r->defer_stdio = report.active;
    for (i = 0; i < 3; i++)
        if (r->caller_stdio[i] && !r->defer_stdio)
            close((int)i);
    if (r->pid < 0) {
        close(r->sync[1]);
        close(r->err[0]);
        isorun_report_close(&report);
        if (r->say >= 0)
            close(r->say);
        return isorun_launch_fail(r->f, r->rec, "clone", "clone", rc);
    }
    r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
    if (r->pidfd < 0) {
        rc = errno;
        kill(r->pid, SIGKILL);
        reap(r->pid);
        close(r->sync[1]);
        close(r->err[0]);
        return isorun_launch_fail(r->f, r->rec, "clone", "pidfd_open", rc);
    }
    return 0;
}

/* A set-up that failed after the clone: nothing of the sandbox left behind. */
static int give_up(struct run *r) {
    abandon(r->rec, r->pid, r->pidfd);
    isorun_report_close(&report);
    if (r->say >= 0)
        close(r->say);
    return -1;
}

/*
 * The child mapped and released, its set-up read to the end (the error pipe's EOF), and
 * the API caller told that the command runs.
 */
static int release_child(struct run *r) {
    size_t i;
    char byte = 0;
    int rc;

    rc = isorun_launch_id_maps(r->rec, r->pid, r->f);
    if (rc == 0) {
        while ((rc = (int)write(r->sync[1], &byte, 1)) < 0 && errno == EINTR)
            ;
        rc = rc == 1 ? 0 : isorun_launch_fail(r->f, r->rec, "clone", "write(sync)", errno);
    }
    close(r->sync[1]);
    if (rc == 0 && (rc = isorun_report_take(&report, r->err[0])) < 0) {
        report_take_err = -rc;
        rc = isorun_launch_fail(r->f, r->rec, "seccomp", "pidfd_getfd", -rc);
    }
    for (i = 0; i < 3; i++)
        if (r->caller_stdio[i] && r->defer_stdio && report_take_err == 0)
            close((int)i);
    if (rc == 0 && isorun_report_read_failure(&report, r->err[0], r->f) &&
        strcmp(r->f->step, "exec") != 0)
        rc = -1;
    close(r->err[0]);
    if (rc < 0)
        return give_up(r);
    if (r->report_fd >= 0) {
        rc = isorun_caller_report(r->report_fd, r->f, r->pid, r->pidfd);
        if (rc < 0) {
            give_up(r);
            return isorun_launch_fail(r->f, r->rec, "report", "sendmsg", -rc);
        }
    }
    return 0;
}

/* The command's run: signals passed on, refused calls answered, then its wait status. */
static int wait_child(struct run *r) {
    struct sigaction sa, old_sa[N_FORWARDED];
    sigset_t unblock;
    size_t i;
    int status;

    /* The sandbox's pid 1 forwards these on; we must survive them to report its status. */
    forward_pidfd = r->pidfd;
    /* Sharing the terminal's foreground group, the command got its signals itself. */
    forward_tty = r->report_fd < 0 && !r->foreground;
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
    isorun_report_wait(&report, r->pidfd);
    status = reap(r->pid);
    sigprocmask(SIG_BLOCK, &unblock, NULL);
    forward_pidfd = -1;
    for (i = 0; i < N_FORWARDED; i++)
        sigaction(forwarded[i], &old_sa[i], NULL);
    close(r->pidfd);
    return status;
}

/*
 * The refusal report on the caller's stderr, only when the command failed (a run that
 * succeeded needs no explanation) and not when execve failed (the caller says why, and
 * nothing ran to refuse). The notes are guesses: not after a refused syscall (the
 * likelier cause), a death by signal (EROFS and ENETUNREACH kill nobody) or a signal we
 * passed on (the caller stopped it).
 */
static void say_why(struct run *r, int status) {
    FILE *out;

    if (r->say < 0)
        return;
    if (status == 0 || r->f->err != 0 || (out = fdopen(r->say, "w")) == NULL) {
        close(r->say);
        return;
    }
    if (r->refusals == 2)
        fprintf(out, "isorun: no seccomp report: the listener could not be taken "
                     "(pidfd_getfd: %s)\n", strerror(report_take_err));
    if (isorun_report_print(&report, r->rec, out) == 0 && r->rec->notes[0] != '\0' &&
        WIFEXITED(status) && !forwarded_any)
        fprintf(out, "%s\n", r->rec->notes);
    fclose(out);
}

static int launch(struct isorun_record *rec, int report_fd, int terminal, int refusals,
                  struct isorun_failure *f) {
    static const char *missing[ISORUN_GIT_GUARDS_MAX], *roots[ISORUN_GIT_GUARDS_MAX];
    struct run r;
    int status;

    memset(&r, 0, sizeof r);
    r.rec = rec;
    r.f = f;
    r.report_fd = report_fd;
    r.terminal = terminal;
    r.refusals = refusals;
    r.missing = missing;
    r.roots = roots;
    r.sync[0] = r.sync[1] = r.err[0] = r.err[1] = r.say = r.pidfd = -1;
    if (prepare(&r) < 0 || spawn_child(&r) < 0 || release_child(&r) < 0)
        return -1;
    status = wait_child(&r);
    /* pid 1 has been reaped: the pid namespace's other processes died with it. */
    isorun_git_guards_quarantine(missing, r.guards);
    if (report_fd < 0)
        isorun_git_guards_walk(roots, r.walks, &r.since);
    isorun_report_close(&report);
    say_why(&r, status);
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
     * go to and would kill us mid-set-up. SIGPIPE too: see isorun_caller_report.
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
        isorun_launch_fail(failure, &rec, "record", "decode", EINVAL);
        if (report_fd >= 0)
            isorun_caller_report(report_fd, failure, 0, -1);
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
            isorun_caller_report(report_fd, failure, 0, -1);
    }
    isorun_record_free(&rec);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return status;
}
