/*
 * isorun-seccomp-exec: the last stage before the command for the wrapper backends.
 *
 *   isorun-seccomp-exec [--expect DEV:INO:FLAGS:PATH]... [--rlimit NAME=VALUE]...
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
 * A failure prints "isorun: error: STEP: SYSCALL: strerror" and exits 125 (isorun's own
 * exit code for set-up errors), never running the command.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf_eval.h"
#include "consts.h" /* generated; isorun_shim.h uses it */
#include "isorun_shim.h"
#include "landlock.h"
#include "tables.h"

#define EXIT_SETUP 125
#define MAX_KEEP 64
#define MAX_ENV 4096
#define MAX_BPF_INSNS 4096
#define MAX_LANDLOCK (1 << 20)

/* the AUDIT_ARCH_* of our own syscalls, which the hand-over check evaluates */
#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#define NATIVE_ARCH 0u /* no check possible: never a report */
#endif

/* What goes over --report-fd: one byte, with the listener for REPORT_LISTENER. */
#define REPORT_LISTENER 'L'
#define REPORT_REFUSED 'N' /* the profile refuses the hand-over's sendmsg */
#define REPORT_BUSY 'B'    /* an outer listener holds the kernel's only place */

extern char **environ;

static void die(const char *step, const char *call, int err) {
    fprintf(stderr, "isorun: error: %s: %s: %s\n", step, call, strerror(err));
    _exit(EXIT_SETUP);
}

static void usage(const char *why) {
    fprintf(stderr, "isorun-seccomp-exec: %s\n", why);
    _exit(EXIT_SETUP);
}

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

/* DEV:INO:FLAGS:PATH -> the mount at PATH is the file isorun checked before the launch. */
static void check_expect(const char *spec) {
    unsigned long long dev, ino;
    char *end = NULL;
    const char *flags, *path;
    int readonly, noexec;
    struct open_how how;
    struct stat st;
    struct statvfs vfs;
    long fd;

    errno = 0;
    dev = strtoull(spec, &end, 10);
    if (errno != 0 || *end != ':')
        usage("--expect takes DEV:INO:FLAGS:PATH");
    ino = strtoull(end + 1, &end, 10);
    if (errno != 0 || *end != ':')
        usage("--expect takes DEV:INO:FLAGS:PATH");
    flags = end + 1;
    path = strchr(flags, ':');
    if (path == NULL || path[1] != '/')
        usage("--expect takes DEV:INO:FLAGS:PATH");
    readonly = memchr(flags, 'r', (size_t)(path - flags)) != NULL;
    noexec = memchr(flags, 'x', (size_t)(path - flags)) != NULL;
    path++;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    /* No link at all: the path was canonical when isorun walked it on the host. */
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    if (fd < 0) {
        fprintf(stderr, "isorun: error: mount check: %s: openat2: %s (a link in the path "
                "was swapped in after isorun checked it?)\n", path, strerror(errno));
        _exit(EXIT_SETUP);
    }
    if (fstat((int)fd, &st) < 0 || fstatvfs((int)fd, &vfs) < 0)
        die("mount check", "fstat", errno);
    close((int)fd);
    if ((unsigned long long)st.st_dev != dev || (unsigned long long)st.st_ino != ino) {
        fprintf(stderr, "isorun: error: mount check: %s is not the file isorun checked "
                "before the launch: a link was swapped in and the backend followed it; "
                "the command did not run\n", path);
        _exit(EXIT_SETUP);
    }
    if ((readonly && !(vfs.f_flag & ST_RDONLY)) || (noexec && !(vfs.f_flag & ST_NOEXEC))) {
        fprintf(stderr, "isorun: error: mount check: %s is not %s as the profile asks: the "
                "backend applied it elsewhere (a link swapped in after isorun's check?); "
                "the command did not run\n", path,
                readonly && !(vfs.f_flag & ST_RDONLY) ? "read-only" : "noexec");
        _exit(EXIT_SETUP);
    }
}

/* The whole content of fd from offset 0 (pread: the runner and we share the offset). */
static char *read_fd(int fd, size_t limit, size_t *size, const char *step) {
    char *buf = malloc(limit + 1);
    size_t used = 0;

    if (buf == NULL)
        die(step, "malloc", ENOMEM);
    for (;;) {
        ssize_t n = pread(fd, buf + used, limit + 1 - used, (off_t)used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(step, "pread", errno);
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > limit)
            die(step, "pread", E2BIG);
    }
    buf[used] = '\0';
    *size = used;
    return buf;
}

static char **read_env(int fd) {
    size_t size, count = 0, i;
    char *data = read_fd(fd, 1 << 20, &size, "environment");
    char **env = calloc(MAX_ENV + 1, sizeof *env);

    if (env == NULL)
        die("environment", "calloc", ENOMEM);
    for (i = 0; i < size; i += strlen(data + i) + 1) {
        if (count == MAX_ENV)
            die("environment", "read", E2BIG);
        env[count++] = data + i;
    }
    env[count] = NULL;
    return env;
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

/* The hand-over's message, static so the checked call and the sent one are the same. */
static struct {
    struct msghdr msg;
    struct iovec iov;
    char byte;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
} hand;

static void prepare_hand_over(char byte, int listener) {
    struct cmsghdr *c;

    memset(&hand, 0, sizeof hand);
    hand.byte = byte;
    hand.iov.iov_base = &hand.byte;
    hand.iov.iov_len = 1;
    hand.msg.msg_iov = &hand.iov;
    hand.msg.msg_iovlen = 1;
    if (listener < 0)
        return;
    hand.msg.msg_control = hand.control.buf;
    hand.msg.msg_controllen = sizeof hand.control.buf;
    c = CMSG_FIRSTHDR(&hand.msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &listener, sizeof listener);
}

static void send_hand_over(int sock, char byte, int listener) {
    ssize_t n;

    prepare_hand_over(byte, listener);
    do
        n = sendmsg(sock, &hand.msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        die("seccomp report", "sendmsg", n < 0 ? errno : EIO);
}

/*
 * Whether the profile's program lets sendmsg(sock, &hand.msg, MSG_NOSIGNAL) run: the
 * call send_hand_over makes once the reporting filter is loaded, with these arguments
 * (the message's address is that of the static above; the unused argument registers are
 * taken as 0, which no profile rule can rely on anyway).
 */
static int hand_over_allowed(const struct sock_fprog *plain, int sock) {
    struct seccomp_data d;
    unsigned int ret;

    if (NATIVE_ARCH == 0u)
        return 0;
    memset(&d, 0, sizeof d);
    d.nr = SYS_sendmsg;
    d.arch = NATIVE_ARCH;
    d.args[0] = (unsigned long long)sock;
    d.args[1] = (unsigned long long)(uintptr_t)&hand.msg;
    d.args[2] = MSG_NOSIGNAL;
    ret = isorun_bpf_eval((const unsigned char *)plain->filter,
                          plain->len * sizeof(struct sock_filter), &d);
    return (ret & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ALLOW ||
           (ret & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_LOG;
}

static struct sock_fprog read_seccomp(int fd) {
    size_t size;
    char *data = read_fd(fd, MAX_BPF_INSNS * sizeof(struct sock_filter), &size, "seccomp");
    struct sock_fprog prog;

    if (size == 0 || size % sizeof(struct sock_filter) != 0)
        die("seccomp", "read", EINVAL);
    prog.len = (unsigned short)(size / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)(void *)data;
    return prog;
}

/* The landlock section of a flat launch record (isorun.sandbox.flat), little-endian. */
struct ruleset {
    long long abi, fs, net, scoped;
    struct isorun_landlock_rule *rules;
    size_t n;
};

static long long take_i64(const char *data, size_t size, size_t *pos) {
    unsigned long long v = 0;
    int k;

    if (size - *pos < 8)
        die("landlock", "read", EINVAL);
    for (k = 7; k >= 0; k--)
        v = v << 8 | (unsigned char)data[*pos + (size_t)k];
    *pos += 8;
    return (long long)v;
}

static size_t take_u32(const char *data, size_t size, size_t *pos) {
    size_t v = 0;
    int k;

    if (size - *pos < 4)
        die("landlock", "read", EINVAL);
    for (k = 3; k >= 0; k--)
        v = v << 8 | (unsigned char)data[*pos + (size_t)k];
    *pos += 4;
    return v;
}

static struct ruleset read_landlock(int fd) {
    size_t size, pos = 0, i, len;
    char *data = read_fd(fd, MAX_LANDLOCK, &size, "landlock");
    struct ruleset set;

    set.abi = take_i64(data, size, &pos);
    set.fs = take_i64(data, size, &pos);
    set.net = take_i64(data, size, &pos);
    set.scoped = take_i64(data, size, &pos);
    set.n = take_u32(data, size, &pos);
    if (set.abi < 0 || set.abi > 1000 || set.n > size / 28)
        die("landlock", "read", EINVAL);
    set.rules = calloc(set.n + 1, sizeof *set.rules);
    if (set.rules == NULL)
        die("landlock", "calloc", ENOMEM);
    for (i = 0; i < set.n; i++) {
        char *path = NULL;

        set.rules[i].port = (unsigned long long)take_i64(data, size, &pos);
        set.rules[i].access = (unsigned long long)take_i64(data, size, &pos);
        set.rules[i].optional = take_i64(data, size, &pos) != 0;
        len = take_u32(data, size, &pos);
        if (size - pos < len || memchr(data + pos, '\0', len) != NULL)
            die("landlock", "read", EINVAL);
        path = malloc(len + 1);
        if (path == NULL)
            die("landlock", "malloc", ENOMEM);
        memcpy(path, data + pos, len);
        path[len] = '\0';
        pos += len;
        if (path[0] != '\0' ? path[0] != '/' : set.rules[i].port == 0)
            die("landlock", "read", EINVAL);
        set.rules[i].path = path;
    }
    if (pos != size)
        die("landlock", "read", EINVAL);
    free(data);
    return set;
}

int main(int argc, char **argv) {
    int keep[MAX_KEEP];
    size_t nkeep = 0;
    int env_fd = -1, seccomp_fd = -1, landlock_fd = -1, close_all = 0, nnp = 0, i;
    int reset_signals = 0, ptrace_domain = 0, host_paths = 0, report_fd = -1;
    int report_bpf_fd = -1, listener;
    struct sock_fprog report = {0, NULL};
    struct ruleset ruleset = {0, 0, 0, 0, NULL, 0};
    char **env = NULL;
    struct sock_fprog prog = {0, NULL};
    sigset_t unblocked;
    struct kernel_sigaction { /* the kernel's layout, not libc's */
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long long mask;
    } dfl;
    int sig;

    for (i = 1; i < argc; i++) {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(opt, "--") == 0) {
            i++;
            break;
        } else if (strcmp(opt, "--setsid") == 0) {
            /* EPERM: already a process-group leader; fine only if it leads its session */
            if (setsid() < 0 && (errno != EPERM || getsid(0) != getpid()))
                die("new session", "setsid", errno);
        } else if (strcmp(opt, "--close-fds") == 0) {
            close_all = 1;
        } else if (strcmp(opt, "--no-new-privs") == 0) {
            nnp = 1;
        } else if (strcmp(opt, "--reset-signals") == 0) {
            reset_signals = 1;
        } else if (strcmp(opt, "--ptrace-domain") == 0) {
            ptrace_domain = 1;
        } else if (strcmp(opt, "--landlock-host-paths") == 0) {
            host_paths = 1;
        } else if (val == NULL) {
            usage("option needs a value");
        } else if (strcmp(opt, "--expect") == 0) {
            /* checked as read: the renderers put every --expect first */
            check_expect(val);
            i++;
        } else if (strcmp(opt, "--rlimit") == 0) {
            set_rlimit(val);
            i++;
        } else if (strcmp(opt, "--chdir") == 0) {
            if (chdir(val) < 0)
                die("working directory", "chdir", errno);
            i++;
        } else if (strcmp(opt, "--env-fd") == 0) {
            env_fd = parse_fd(val);
            i++;
        } else if (strcmp(opt, "--seccomp-fd") == 0) {
            seccomp_fd = parse_fd(val);
            i++;
        } else if (strcmp(opt, "--report-fd") == 0) {
            report_fd = parse_fd(val);
            i++;
        } else if (strcmp(opt, "--report-bpf-fd") == 0) {
            report_bpf_fd = parse_fd(val);
            i++;
        } else if (strcmp(opt, "--landlock-fd") == 0) {
            landlock_fd = parse_fd(val);
            i++;
        } else if (strcmp(opt, "--keep-fd") == 0) {
            if (nkeep == MAX_KEEP)
                usage("too many --keep-fd");
            keep[nkeep++] = parse_fd(val);
            i++;
        } else {
            usage("unknown option");
        }
    }
    if (i >= argc)
        usage("no command after --");
    /* read every input first: closing the descriptors below may close theirs */
    if (env_fd >= 0)
        env = read_env(env_fd);
    if (seccomp_fd >= 0)
        prog = read_seccomp(seccomp_fd);
    if (landlock_fd >= 0)
        ruleset = read_landlock(landlock_fd);
    if ((report_fd >= 0) != (report_bpf_fd >= 0))
        usage("--report-fd and --report-bpf-fd go together");
    if (report_bpf_fd >= 0) {
        report = read_seccomp(report_bpf_fd);
        if (!kept(report_bpf_fd, keep, nkeep))
            close(report_bpf_fd);
        if (nkeep == MAX_KEEP)
            usage("too many --keep-fd");
        keep[nkeep++] = report_fd; /* until the hand-over; close-on-exec below */
    }
    if (close_all) {
        close_fds(keep, nkeep);
    } else {
        if (env_fd >= 0 && !kept(env_fd, keep, nkeep))
            close(env_fd);
        if (seccomp_fd >= 0 && !kept(seccomp_fd, keep, nkeep))
            close(seccomp_fd);
        if (landlock_fd >= 0 && !kept(landlock_fd, keep, nkeep))
            close(landlock_fd);
    }
    /*
     * The command starts with every signal at its default and none blocked, as the
     * native shim starts it: the CLI sharing its terminal (api.launch) hands the wrapper
     * the terminal's interrupt, quit and hangup ignored, so the wrapper survives them
     * and the command alone decides, and its own signals blocked, to tell the
     * terminal's from kill's. Only inside (--reset-signals): run before bwrap for its
     * rlimits, the stage must hand bwrap what it got. Before the filter, which need not
     * allow rt_sigaction. EINVAL for SIGKILL and SIGSTOP is expected.
     */
    if (reset_signals) {
        /*
         * Raw calls: libc's sigaction and sigprocmask refuse or skip its own reserved
         * signals (32 and 33 in glibc), which a caller may have ignored or blocked, and
         * an ignored or blocked SIGCANCEL in the command breaks thread cancellation.
         * SIG_DFL needs no restorer; the kernel's set is _NSIG bits.
         */
        memset(&dfl, 0, sizeof dfl);
        for (sig = 1; sig < _NSIG; sig++)
            (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, _NSIG / 8);
        memset(&unblocked, 0, sizeof unblocked);
        if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &unblocked, NULL, _NSIG / 8) < 0)
            die("signals", "rt_sigprocmask", errno);
    }
    if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die("no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)", errno);
    if (ptrace_domain)
        enter_ptrace_domain();
    if (ruleset.abi > 0) {
        const char *call = "landlock";
        int err = isorun_landlock_restrict((int)ruleset.abi, (unsigned long long)ruleset.fs,
                                           (unsigned long long)ruleset.net,
                                           (unsigned long long)ruleset.scoped, ruleset.rules,
                                           ruleset.n, host_paths, &call);
        if (err != 0)
            die("landlock", call, err);
    }
    /* the command never holds the report's socket, nor (the kernel's O_CLOEXEC) the listener */
    if (report_fd >= 0 && fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0)
        die("seccomp report", "fcntl(FD_CLOEXEC)", errno);
    if (prog.filter != NULL && report_fd >= 0) {
        if (!hand_over_allowed(&prog, report_fd)) {
            send_hand_over(report_fd, REPORT_REFUSED, -1);
        } else {
            listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                    SECCOMP_FILTER_FLAG_NEW_LISTENER, &report);
            if (listener >= 0) {
                /* from here a refused call waits for isorun: the sendmsg checked above */
                send_hand_over(report_fd, REPORT_LISTENER, listener);
                prog.filter = NULL; /* loaded */
            } else if (errno == EBUSY) {
                send_hand_over(report_fd, REPORT_BUSY, -1);
            } else {
                die("seccomp", "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)", errno);
            }
        }
    }
    if (prog.filter != NULL && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        die("seccomp", "seccomp(SECCOMP_SET_MODE_FILTER)", errno);
    if (env != NULL)
        environ = env; /* execvp searches the PATH of the command's own environment */
    execvp(argv[i], argv + i);
    /* after the filter: a denied execve shows here; 127/126 as a shell would answer */
    fprintf(stderr, "isorun: error: exec: %s: %s\n", argv[i], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}
