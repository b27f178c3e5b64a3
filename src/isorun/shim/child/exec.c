/*
 * The child's fixed sequence from clone(2) to execve(2), the pid-1 init that reaps
 * orphans and forwards signals, rlimits and the PATH search (descriptors: fds.c; the
 * failure record on the error pipe: fail.c).
 *
 * Order (each step says why it sits where it does):
 *   signals reset, death signal, deferred namespaces, wait for parent, setsid,
 *   securebits + ids, stdio, close fds, hostname, loopback, mounts + pivot_root,
 *   rlimits, caps, no_new_privs, Landlock, [init: clone the command], unblock signals,
 *   seccomp,
 *   execve.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isorun_child.h"
#include "landlock.h"
#include "tables.h"

static const int forwarded[] = {ISORUN_FORWARDED_SIGNALS}; /* tables.h, kernel/abi.py */

static void fail(const struct isorun_spec *spec, const char *step, const char *syscall) {
    isorun_child_fail(spec, step, syscall, errno, -1);
}

static void reset_signals(void) {
    struct sigaction sa;
    int sig;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    /* EINVAL for SIGKILL, SIGSTOP and glibc's internal signals is expected and harmless. */
    for (sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);
}

static void wait_for_parent(const struct isorun_spec *spec) {
    char byte;
    ssize_t n;

    /*
     * Our copy of the write end must go first: while it is open, a dead parent would
     * not give us EOF and we would wait forever.
     */
    close(spec->sync_parent_fd);
    close(spec->err_parent_fd);
    do
        n = read(spec->sync_fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    /* EOF: the parent died or gave up before releasing us; it will not read errors. */
    if (n != 1)
        _exit(ISORUN_EXIT_SETUP);
    close(spec->sync_fd);
}

static void set_rlimits(const struct isorun_spec *spec) {
    struct rlimit rl;
    size_t i;

    for (i = 0; i < spec->n_rlimits; i++) {
        const struct isorun_rlimit *r = &spec->rlimits[i];
        rl.rlim_cur = r->soft < 0 ? RLIM_INFINITY : (rlim_t)r->soft;
        rl.rlim_max = r->hard < 0 ? RLIM_INFINITY : (rlim_t)r->hard;
        if (setrlimit((__rlimit_resource_t)r->resource, &rl) < 0)
            isorun_child_fail(spec, "rlimit", "setrlimit", errno, r->step);
    }
}

static void set_death_signal(const struct isorun_spec *spec) {
    if (spec->die_with_parent && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(spec, "die_with_parent", "prctl(PR_SET_PDEATHSIG)");
}

/* execvpe(3) would search the launcher's PATH, not the one in the spec's environment. */
static _Noreturn void exec_command(const struct isorun_spec *spec) {
    const char *file = spec->argv[0], *dir = spec->path, *end;
    char buf[PATH_MAX];
    size_t flen = isorun_strlen(file), dlen;
    int err = ENOENT, denied = 0;

    if (strchr(file, '/') != NULL) {
        execve(file, spec->argv, spec->env);
        err = errno;
    } else {
        while (flen > 0) {
            end = strchr(dir, ':');
            dlen = end != NULL ? (size_t)(end - dir) : isorun_strlen(dir);
            /* An empty PATH element means the current directory, as in execvp(3). */
            if (dlen == 0) {
                buf[0] = '.';
                dlen = 1;
            } else if (dlen + flen + 2 <= sizeof buf) {
                memcpy(buf, dir, dlen);
            }
            if (dlen + flen + 2 <= sizeof buf) {
                buf[dlen] = '/';
                memcpy(buf + dlen + 1, file, flen + 1);
                execve(buf, spec->argv, spec->env);
                if (errno == EACCES)
                    denied = 1;
                else if (errno != ENOENT && errno != ENOTDIR && errno != ENAMETOOLONG) {
                    err = errno;
                    denied = 0;
                    break;
                }
            }
            if (end == NULL)
                break;
            dir = end + 1;
        }
        if (denied)
            err = EACCES;
    }
    isorun_child_fail_status(spec, "exec", "execve", err, -1,
                             err == ENOENT || err == ENOTDIR ? ISORUN_EXIT_NOTFOUND
                                                             : ISORUN_EXIT_NOEXEC);
}

static _Noreturn void run_command(const struct isorun_spec *spec) {
    sigset_t none;

    /*
     * Unblock before seccomp: the filter need not allow rt_sigprocmask, and a command
     * started with signals blocked would ignore SIGINT/SIGTERM. The raw call: libc's
     * sigprocmask leaves its own reserved signals (32 and 33 in glibc) as inherited.
     */
    memset(&none, 0, sizeof none);
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8) < 0)
        fail(spec, "exec", "rt_sigprocmask");
    /* Seccomp last: the filter must not have to allow any of our own set-up calls. */
    isorun_child_seccomp(spec);
    /*
     * Learn mode's notifying filter after the enforcing one: loading it is then checked by
     * the first (which allows seccomp(2)), and it is the very last step, so nothing of
     * ours but execve is notified (see notify.c for the hand-over).
     */
    isorun_child_notify(spec);
    exec_command(spec);
}

/* The command's side of the clone in spawn_command: our mm until its execve. */
static int command_main(void *arg) {
    const struct isorun_spec *spec = arg;

    /* Die with init: outside a pid namespace nothing else would kill us. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(spec, "init", "prctl(PR_SET_PDEATHSIG)");
    run_command(spec);
}

/*
 * Start the command from init. Not fork(3): glibc's fork runs atfork handlers and takes
 * malloc locks that another launcher thread may have held when we were cloned.
 *
 * CLONE_VM | CLONE_VFORK, as posix_spawn(3) does: our memory is a copy of the whole
 * launcher (a Python process), and a plain fork would copy its page tables once more
 * only for the command's execve to throw them away again (about 1 ms on the launch
 * path, see scripts/bench_launch.py). The command runs on command_stack, a frame of
 * ours that stays alive because CLONE_VFORK suspends us until its execve or _exit, so
 * nothing runs concurrently in the shared memory (it only writes its own stack and our
 * errno, which we do not read). Everything per task stays its own: its signal mask and
 * parent-death signal, and the seccomp filter it loads, which attaches to the task and
 * not to the memory (seccomp(2)); execve then gives it a fresh mm.
 *
 * Learn mode keeps the copy: its execve waits until the launcher answers the listener,
 * and the launcher first waits for EOF on the learn socket, which needs run_init to
 * close our end; suspended by CLONE_VFORK we never would.
 */
static pid_t spawn_command(const struct isorun_spec *spec) {
    _Alignas(16) char command_stack[64 * 1024];
    pid_t pid;

    if (spec->notify_len == 0) {
        /*
         * Not dumpable before the command exists, rather than in run_init after it may
         * already run (see there). The command is unaffected: execve gives it a new mm
         * whose dumpability follows its own credentials (begin_new_exec).
         */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
            fail(spec, "init", "prctl(PR_SET_DUMPABLE)");
        return clone(command_main, command_stack + sizeof command_stack,
                     CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)spec);
    }
    pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        command_main((void *)spec);
    return pid;
}

static int exit_status(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return ISORUN_EXIT_SETUP;
}

/*
 * pid 1 of the sandbox. The kernel drops signals to pid 1 that it has no handler for
 * and re-parents every orphan to it, so without this a plain command as pid 1 would
 * ignore SIGTERM and leak zombies. Exiting kills the rest of the pid namespace.
 */
static _Noreturn void run_init(const struct isorun_spec *spec, pid_t cmd) {
    sigset_t set;
    siginfo_t info;
    pid_t pid;
    int status, i, sig;

    /* The error pipe must reach EOF once the command execs; init never writes to it. */
    close(spec->err_fd);
    /* Likewise the learn socket: the launcher waits for the command's message or EOF. */
    if (spec->notify_len > 0)
        close(spec->notify_fd);
    /* Holding the command's stdio would keep the launcher's pipes open after it exits. */
    for (i = 0; i < 3; i++)
        close(i);
    for (size_t k = 0; k < spec->n_keep_fds; k++)
        close(spec->keep_fds[k]);
    /*
     * Not dumpable: init runs without the seccomp filter, so the command (same uid)
     * must not be able to ptrace it or write its /proc/1/mem to run unfiltered code.
     * After the credential changes that reset it; spawn_command already set it before
     * the command existed, except in learn mode: the command's copy of our memory would
     * inherit it, and the launcher must still take the command's listener with
     * pidfd_getfd(2) before its execve.
     */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (i = 0; i < (int)(sizeof forwarded / sizeof forwarded[0]); i++)
        sigaddset(&set, forwarded[i]);
    for (;;) {
        /* All signals stayed blocked since clone, so none was lost before this point. */
        sig = sigwaitinfo(&set, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            /*
             * In the terminal's foreground group, the command got the terminal's own
             * signals (si_code SI_KERNEL) as we did: passing them on would deliver ^C
             * twice. The launcher's (SI_USER) are the ones to forward.
             */
            if (!(spec->new_session == ISORUN_SESSION_TERMINAL_JOB && info.si_code == SI_KERNEL))
                kill(cmd, sig);
            continue;
        }
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid == cmd)
                _exit(exit_status(status));
        }
    }
}

int isorun_child_main(void *arg) {
    const struct isorun_spec *spec = arg;
    int unshare_err;
    pid_t cmd;

    /* First: the parent's handlers are interpreter code that must never run here. */
    reset_signals();
    /*
     * Before waiting: if the launcher dies from here on we die too. A launcher that died
     * earlier is caught by the EOF on the sync pipe.
     */
    set_death_signal(spec);
    /*
     * Before waiting, so the namespace is built while the parent writes our id maps (see
     * isorun_deferred_flags). A failure is reported right after the wait, since the
     * parent reads the error pipe only once it has released us; no other step runs
     * before it, so a failed unshare still ends the launch with nothing set up.
     */
    unshare_err = isorun_child_unshare_deferred(spec);
    /*
     * Wait until the parent wrote uid_map/gid_map (until then our ids are unmapped and
     * files we create would get no owner) and moved us into the cgroup (so nothing we
     * start escapes the limits).
     */
    wait_for_parent(spec);
    if (unshare_err != 0)
        isorun_child_fail(spec, "clone", "unshare(CLONE_NEWNET)", unshare_err, -1);
    isorun_child_confine(spec);
    if (!spec->init)
        run_command(spec);
    /*
     * Without a new pid namespace we are not pid 1: become a subreaper so orphans of the
     * command still come to us instead of the host's init.
     */
    if (!(spec->clone_flags & CLONE_NEWPID) &&
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        fail(spec, "init", "prctl(PR_SET_CHILD_SUBREAPER)");
    cmd = spawn_command(spec);
    if (cmd < 0)
        fail(spec, "init", "clone");
    run_init(spec, cmd);
}

/*
 * Everything from the mapped ids up to seccomp, in the one order a launch's child
 * (above) and apply.c (a spec applied to the calling process) both take.
 */
void isorun_child_confine(const struct isorun_spec *spec) {
    /*
     * A new session has no controlling terminal: TIOCSTI on the launcher's tty fails.
     * ISORUN_SESSION_TERMINAL_JOB (isorun_spawn: the CLI in the foreground of the terminal
     * that is the command's stdin) keeps the launcher's session and process group instead,
     * as any program a shell starts: the command gets job control (bash -i), ^C and ^Z
     * from the terminal itself, and ^Z stops the launcher with it, so the caller's shell
     * gets the terminal back. Safe only because the seccomp filter refuses TIOCSTI and
     * TIOCLINUX (CVE-2017-5226), which is why native.build_spec allows it only with the
     * seccomp hardening on; the launchers then pass on only signals sent with kill.
     */
    if (spec->new_session && spec->new_session != ISORUN_SESSION_TERMINAL_JOB && setsid() < 0)
        fail(spec, "setsid", "setsid");
    /* Ids before any mount: see isorun_child_ids (files made by unmapped ids fail). */
    isorun_child_ids(spec);
    isorun_child_stdio(spec);
    /* Before any mount: a host directory fd would let the command walk around the root. */
    isorun_child_close_fds(spec);
    isorun_child_hostname(spec);
    isorun_child_loopback(spec);
    isorun_child_mount(spec);
    /* Before the drop: raising a hard limit needs CAP_SYS_RESOURCE. */
    set_rlimits(spec);
    /* After every privileged step: mounts, hostname and lo all need capabilities. */
    isorun_child_caps(spec);
    /*
     * no_new_privs after the drop and before seccomp: it makes setuid binaries and file
     * capabilities inert at execve, and lets an unprivileged process load a filter.
     */
    if (spec->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(spec, "no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)");
    /*
     * Landlock after no_new_privs (landlock_restrict_self needs it once the capabilities
     * are gone) and after the mounts (its rules open their destinations); before seccomp,
     * so the filter need not allow the landlock syscalls.
     */
    isorun_child_landlock(spec);
    /* Changing uid/gid cleared the parent-death signal (prctl(2)); set it again. */
    set_death_signal(spec);
    /*
     * A launcher killed while the signal was cleared (from the ids above to here: every
     * mount) sent none and never will, and the sandbox would run on without it. Its end
     * of the error pipe tells: the launcher reads it until our execve, and ours was the
     * only other copy (isorun_child_close_fds), so no reader left means the launcher is
     * gone (pipe(7): POLLERR on a write end without readers).
     */
    if (spec->die_with_parent) {
        struct pollfd pfd = {spec->err_fd, POLLOUT, 0};
        if (poll(&pfd, 1, 0) < 0 || (pfd.revents & (POLLERR | POLLNVAL)))
            _exit(ISORUN_EXIT_SETUP);
    }
}

/* The spec's Landlock layer (landlock.c, shared with the wrapper backends' exec stage). */
void isorun_child_landlock(const struct isorun_spec *spec) {
    const char *call = "landlock";
    int err = isorun_landlock_restrict(spec->landlock_abi, spec->landlock_fs,
                                       spec->landlock_net, spec->landlock_scoped,
                                       spec->landlock_rules, spec->n_landlock_rules,
                                       spec->root[0] == '\0', &call);
    if (err != 0)
        isorun_child_fail(spec, "landlock", call, err, -1);
}

/* For apply.c, which sets it before its own wait as isorun_child_main does. */
void isorun_child_death_signal(const struct isorun_spec *spec) { set_death_signal(spec); }
