/*
 * isorun-seccomp-exec: the last stage before the command for the wrapper backends.
 *
 *   isorun-seccomp-exec [--started-fd FD] [--expect DEV:INO:FLAGS:PATH]...
 *                       [--rlimit NAME=VALUE]...
 *                       [--chdir DIR] [--setsid] [--env-fd FD] [--keep-fd FD]...
 *                       [--close-fds] [--reset-signals] [--no-new-privs] [--ptrace-domain]
 *                       [--landlock-fd FD] [--landlock-host-paths] [--seccomp-fd FD]
 *                       [--report-fd SOCK --report-bpf-fd FD] -- CMD [ARG]...
 *
 * firejail's own filter takes syscall names only, so the BPF program the native shim
 * loads reaches a firejail sandbox through this program, which runs inside it right
 * before the command. bwrap uses it outside the sandbox, for rlimits only (bwrap takes
 * the BPF itself with --seccomp). Static, no allocation after the set-up reads, and it
 * execs straight into the command: no interpreter runs on this path.
 *
 * --expect (issue #12): bwrap and firejail resolve mount paths themselves, by path and
 * following links, after isorun walked them; a link swapped in between would redirect a
 * mount. Inside the sandbox, before anything else, each PATH is opened with no link
 * allowed (openat2 RESOLVE_NO_SYMLINKS) and must be the file isorun checked (st_dev,
 * st_ino), read-only when FLAGS holds "r" and noexec when it holds "x"; else exit 125.
 *
 * --landlock-fd (issue 18): the plan's Landlock ruleset, as the landlock section of the
 * flat launch record (isorun.sandbox.flat.landlock_section), applied by landlock.c, the
 * file the native shim applies it with. Its paths are the sandbox's own view (mount
 * destinations); --landlock-host-paths says that view is the host's tree (firejail), so
 * no link is followed on the way to a rule's path, as the landlock backend does.
 *
 * The order is fixed: the checks first, before the command can run; rlimits, chdir and
 * setsid need syscalls the filter may deny; descriptors are closed after the reads that
 * use them; no_new_privs comes before Landlock and the filter because the kernel refuses
 * either to an unprivileged process without it (landlock_restrict_self(2), seccomp(2));
 * Landlock before the filter, so the filter need not allow the landlock syscalls (the
 * native shim's order, exec.c); the filter comes last so it never has to allow this
 * program's own set-up.
 *
 * --report-fd, --report-bpf-fd (issue #17, the CLI's refusal report): FD holds the
 * profile's program with its ERRNO answers turned into SECCOMP_RET_USER_NOTIF
 * (isorun.compile.refusals.reporting_filter, without the native hand-over's execve head:
 * only refused calls notify). It is loaded instead of the plain one with
 * SECCOMP_FILTER_FLAG_NEW_LISTENER, and the listener goes to isorun over SOCK (SCM_RIGHTS);
 * isorun, outside the wrapper, answers each refused call with the profile's errno and
 * counts it (isorun.sandbox.refusal_watch). The one call between the load and the
 * hand-over is that sendmsg: were it refused, it would wait on a listener only this
 * process holds, for ever. So the stage first runs the profile's program on that very
 * call (bpf_eval.c) and, if it is not allowed, or if an outer listener holds the
 * kernel's only place (EBUSY), loads the plain program and says "no report" over SOCK.
 * After the hand-over every refused call waits for isorun; if isorun is gone the kernel
 * answers ENOSYS (seccomp_unotify(2)): a refusal stays a refusal. KILL and TRAP answers
 * are the kernel's, never rewritten.
 *
 * --started-fd FD, first when given: one byte written to FD, which is then closed. It
 * tells isorun that the wrapper got as far as this stage: a wrapper that fails before
 * (bwrap's "Creating new namespace failed") exits with a status of its own, which
 * isorun would otherwise take for the command's.
 *
 * A failure prints "isorun: error: STEP: SYSCALL: strerror" and exits 125 (isorun's own
 * exit code for set-up errors), never running the command.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_exec.h"
#include "tables.h"

extern char **environ;

static int parse_int(const char *text, long long *out) {
    char *end = NULL;

    errno = 0;
    *out = strtoll(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' ? 0 : -1;
}

static int parse_fd(const char *text) {
    long long value;

    if (parse_int(text, &value) < 0 || value < 0 || value > 1048576)
        usage("bad descriptor number");
    return (int)value;
}

static const struct {
    const char *name;
    int resource;
} rlimits[] = {ISORUN_RLIMIT_NAMES}; /* tables.h, kernel/abi.py */

static void set_rlimit(const char *spec) {
    const char *eq = strchr(spec, '=');
    long long value;
    size_t i;

    if (eq == NULL || parse_int(eq + 1, &value) < 0)
        usage("--rlimit takes NAME=VALUE");
    for (i = 0; i < sizeof rlimits / sizeof rlimits[0]; i++) {
        if (strlen(rlimits[i].name) == (size_t)(eq - spec) &&
            strncmp(rlimits[i].name, spec, (size_t)(eq - spec)) == 0) {
            /* soft = hard: the command can never raise it again */
            struct rlimit lim;
            lim.rlim_cur = lim.rlim_max = value < 0 ? RLIM_INFINITY : (rlim_t)value;
            if (setrlimit(rlimits[i].resource, &lim) < 0)
                die("rlimit", "setrlimit", errno);
            return;
        }
    }
    usage("unknown rlimit name");
}

static int kept(int fd, const int *keep, size_t nkeep) {
    size_t i;

    for (i = 0; i < nkeep; i++)
        if (keep[i] == fd)
            return 1;
    return 0;
}

/* Close every descriptor above 2 except keep: nothing the wrapper or the launcher held
 * open reaches the command (bwrap and firejail pass what they were asked to keep). */
static void close_fds(const int *keep, size_t nkeep) {
    unsigned int first = 3, fd;

    for (fd = 3; fd < 1048576; fd++) {
        if (!kept((int)fd, keep, nkeep))
            continue;
        if (fd > first && syscall(SYS_close_range, first, fd - 1, 0) < 0)
            die("close descriptors", "close_range", errno);
        first = fd + 1;
    }
    if (syscall(SYS_close_range, first, ~0U, 0) < 0)
        die("close descriptors", "close_range", errno);
}

/*
 * --ptrace-domain: a Landlock domain of its own for the command (landlock(7)): a process
 * in a domain may not ptrace, nor open /proc/PID/mem of, a process outside it. bwrap's
 * pid 1 runs inside the sandbox without the filter, as the command's uid and dumpable,
 * so without this the command could write code into it and run what the filter refuses;
 * in terminal mode (no --new-session) that includes TIOCSTI on the caller's terminal,
 * pid 1's controlling terminal. The domain handles one right nothing in a sandbox can use
 * anyway (making a block device needs CAP_MKNOD in the initial user namespace), so it
 * changes nothing else. After no_new_privs, which landlock_restrict_self(2) requires.
 */
static void enter_ptrace_domain(void) {
    struct landlock_ruleset_attr attr;
    long fd;

    memset(&attr, 0, sizeof attr);
    attr.handled_access_fs = LANDLOCK_ACCESS_FS_MAKE_BLOCK;
    fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (fd < 0)
        die("landlock domain", "landlock_create_ruleset", errno);
    if (syscall(SYS_landlock_restrict_self, (int)fd, 0) < 0)
        die("landlock domain", "landlock_restrict_self", errno);
    close((int)fd);
}

/* The command line: what to do, in the order fixed below, and the command (argv[cmd]). */
struct options {
    int keep[MAX_KEEP];
    size_t nkeep;
    int env_fd, seccomp_fd, landlock_fd, report_fd, report_bpf_fd;
    int close_all, nnp, reset_signals, ptrace_domain, host_paths;
    int cmd;
};

/* An option without a value; 0 when opt is none of them. */
static int take_flag(struct options *o, const char *opt) {
    if (strcmp(opt, "--setsid") == 0) {
        /* EPERM: already a process-group leader; fine only if it leads its session */
        if (setsid() < 0 && (errno != EPERM || getsid(0) != getpid()))
            die("new session", "setsid", errno);
    } else if (strcmp(opt, "--close-fds") == 0) {
        o->close_all = 1;
    } else if (strcmp(opt, "--no-new-privs") == 0) {
        o->nnp = 1;
    } else if (strcmp(opt, "--reset-signals") == 0) {
        o->reset_signals = 1;
    } else if (strcmp(opt, "--ptrace-domain") == 0) {
        o->ptrace_domain = 1;
    } else if (strcmp(opt, "--landlock-host-paths") == 0) {
        o->host_paths = 1;
    } else {
        return 0;
    }
    return 1;
}

/* An option with a value; --expect, --rlimit and --chdir act as they are read. */
static void take_value(struct options *o, const char *opt, const char *val) {
    if (strcmp(opt, "--started-fd") == 0) {
        int fd = parse_fd(val);
        /* a failed write only makes isorun report a wrapper failure as one */
        ssize_t written = write(fd, "s", 1);

        (void)written;
        close(fd);
    } else if (strcmp(opt, "--expect") == 0) {
        /* checked as read: the renderers put every --expect first */
        stage_check_expect(val);
    } else if (strcmp(opt, "--rlimit") == 0) {
        set_rlimit(val);
    } else if (strcmp(opt, "--chdir") == 0) {
        if (chdir(val) < 0)
            die("working directory", "chdir", errno);
    } else if (strcmp(opt, "--env-fd") == 0) {
        o->env_fd = parse_fd(val);
    } else if (strcmp(opt, "--seccomp-fd") == 0) {
        o->seccomp_fd = parse_fd(val);
    } else if (strcmp(opt, "--report-fd") == 0) {
        o->report_fd = parse_fd(val);
    } else if (strcmp(opt, "--report-bpf-fd") == 0) {
        o->report_bpf_fd = parse_fd(val);
    } else if (strcmp(opt, "--landlock-fd") == 0) {
        o->landlock_fd = parse_fd(val);
    } else if (strcmp(opt, "--keep-fd") == 0) {
        if (o->nkeep == MAX_KEEP)
            usage("too many --keep-fd");
        o->keep[o->nkeep++] = parse_fd(val);
    } else {
        usage("unknown option");
    }
}

static void parse_options(struct options *o, int argc, char **argv) {
    int i;

    memset(o, 0, sizeof *o);
    o->env_fd = o->seccomp_fd = o->landlock_fd = o->report_fd = o->report_bpf_fd = -1;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (take_flag(o, argv[i]))
            continue;
        if (i + 1 >= argc)
            usage("option needs a value");
        take_value(o, argv[i], argv[i + 1]);
        i++;
    }
    if (i >= argc)
        usage("no command after --");
    o->cmd = i;
}

/* The inputs the descriptors carry, each read whole before any descriptor is closed. */
struct inputs {
    char **env;
    struct sock_fprog prog, report;
    struct ruleset ruleset;
};

static void read_inputs(struct options *o, struct inputs *in) {
    memset(in, 0, sizeof *in);
    /* read every input first: closing the descriptors below may close theirs */
    if (o->env_fd >= 0)
        in->env = stage_read_env(o->env_fd);
    if (o->seccomp_fd >= 0)
        in->prog = stage_read_seccomp(o->seccomp_fd);
    if (o->landlock_fd >= 0)
        in->ruleset = stage_read_landlock(o->landlock_fd);
    if ((o->report_fd >= 0) != (o->report_bpf_fd >= 0))
        usage("--report-fd and --report-bpf-fd go together");
    if (o->report_bpf_fd >= 0) {
        in->report = stage_read_seccomp(o->report_bpf_fd);
        if (!kept(o->report_bpf_fd, o->keep, o->nkeep))
            close(o->report_bpf_fd);
        if (o->nkeep == MAX_KEEP)
            usage("too many --keep-fd");
        o->keep[o->nkeep++] = o->report_fd; /* until the hand-over; close-on-exec below */
    }
    if (o->close_all) {
        close_fds(o->keep, o->nkeep);
    } else {
        if (o->env_fd >= 0 && !kept(o->env_fd, o->keep, o->nkeep))
            close(o->env_fd);
        if (o->seccomp_fd >= 0 && !kept(o->seccomp_fd, o->keep, o->nkeep))
            close(o->seccomp_fd);
        if (o->landlock_fd >= 0 && !kept(o->landlock_fd, o->keep, o->nkeep))
            close(o->landlock_fd);
    }
}

/*
 * --reset-signals: the command starts with every signal at its default and none blocked,
 * as the native shim starts it: the CLI sharing its terminal (isorun.attached.launch) hands the
 * wrapper the terminal's interrupt, quit and hangup ignored, so the wrapper survives them
 * and the command alone decides, and its own signals blocked, to tell the terminal's
 * from kill's. Only inside: run before bwrap for its rlimits, the stage must hand bwrap
 * what it got. Before the filter, which need not allow rt_sigaction. EINVAL for SIGKILL
 * and SIGSTOP is expected.
 *
 * Raw calls: libc's sigaction and sigprocmask refuse or skip its own reserved signals (32
 * and 33 in glibc), which a caller may have ignored or blocked, and an ignored or blocked
 * SIGCANCEL in the command breaks thread cancellation. SIG_DFL needs no restorer; the
 * kernel's set is _NSIG bits.
 */
static void reset_signals(void) {
    struct kernel_sigaction { /* the kernel's layout, not libc's */
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long long mask;
    } dfl;
    sigset_t unblocked;
    int sig;

    memset(&dfl, 0, sizeof dfl);
    for (sig = 1; sig < _NSIG; sig++)
        (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, _NSIG / 8);
    memset(&unblocked, 0, sizeof unblocked);
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &unblocked, NULL, _NSIG / 8) < 0)
        die("signals", "rt_sigprocmask", errno);
}

/* no_new_privs, then Landlock, then the filter: the order the file's comment gives. */
static void confine(const struct options *o, struct inputs *in) {
    const char *call = "landlock";
    int err;

    if (o->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die("no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)", errno);
    if (o->ptrace_domain)
        enter_ptrace_domain();
    if (in->ruleset.abi > 0) {
        err = isorun_landlock_restrict((int)in->ruleset.abi, (unsigned long long)in->ruleset.fs,
                                       (unsigned long long)in->ruleset.net,
                                       (unsigned long long)in->ruleset.scoped, in->ruleset.rules,
                                       in->ruleset.n, o->host_paths, &call);
        if (err != 0)
            die("landlock", call, err);
    }
    /* the command never holds the report's socket, nor (the kernel's O_CLOEXEC) the listener */
    if (o->report_fd >= 0 && fcntl(o->report_fd, F_SETFD, FD_CLOEXEC) < 0)
        die("seccomp report", "fcntl(FD_CLOEXEC)", errno);
    if (in->prog.filter != NULL && o->report_fd >= 0)
        stage_hand_over(&in->prog, &in->report, o->report_fd);
    if (in->prog.filter != NULL && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &in->prog) < 0)
        die("seccomp", "seccomp(SECCOMP_SET_MODE_FILTER)", errno);
}

int main(int argc, char **argv) {
    struct options o;
    struct inputs in;

    parse_options(&o, argc, argv);
    read_inputs(&o, &in);
    if (o.reset_signals)
        reset_signals();
    confine(&o, &in);
    if (in.env != NULL)
        environ = in.env; /* execvp searches the PATH of the command's own environment */
    execvp(argv[o.cmd], argv + o.cmd);
    /* after the filter: a denied execve shows here; 127/126 as a shell would answer */
    fprintf(stderr, "isorun: error: exec: %s: %s\n", argv[o.cmd], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}
