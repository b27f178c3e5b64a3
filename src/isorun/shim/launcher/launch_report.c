/*
 * isorun-launch's refusal report (issue #17): which syscalls the seccomp filter refused
 * during the run, counted, each with the profile rule behind it.
 *
 * The machinery is learn mode's (notify.c): the child loads, instead of the profile's
 * program, the same program with each ERRNO answer turned into SECCOMP_RET_USER_NOTIF
 * (isorun.compile.refusals.reporting_filter), and hands us its listener. Allowed calls never
 * leave the kernel; a refused one waits for us, is counted, and gets the errno the
 * profile's own program answers for it (notify.c runs that program on the notification's
 * data), so the command sees exactly what it would have without the report. KILL and
 * TRAP answers are not rewritten: the kernel still acts on them itself.
 *
 * If we die, the kernel answers every later notification with ENOSYS (seccomp_unotify(2):
 * a filter whose listener is closed fails the call): a refusal stays a refusal, only its
 * errno changes. The command also dies with us (die_with_parent).
 *
 * Bounded: one counter per distinct (arch, number), at most REPORT_KINDS of them; further
 * kinds are only added to the total. A command looping on a refused call costs us one
 * recv and one send per call, on one core at most (we are single-threaded), and the
 * command waits for each answer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "launch_record.h"
#include "launcher.h"

/* AUDIT_ARCH_X86_64 / AUDIT_ARCH_AARCH64 (linux/audit.h): the numbers refusal[] names. */
#if defined(__x86_64__)
#define NATIVE_ARCH 0xC000003Eu
#elif defined(__aarch64__)
#define NATIVE_ARCH 0xC00000B7u
#else
#define NATIVE_ARCH 0u
#endif

int isorun_report_prepare(struct isorun_report *r, struct isorun_record *rec, int enabled) {
    struct isorun_spec *s = &rec->spec;
    int sv[2], one = 1;

    memset(r, 0, sizeof *r);
    r->sock = r->child_sock = -1;
    r->sup.listener = -1;
    r->sup.stop_fd = -1;
    if (!enabled || rec->report_len == 0 || s->seccomp_len == 0)
        return 0;
    /*
     * SEQPACKET: one message or EOF. SO_PASSCRED: the kernel gives us the sender's pid in
     * our pid namespace, which the command cannot know from inside its own (unix(7)).
     */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    if (setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
        int err = errno;
        close(sv[0]);
        close(sv[1]);
        return -err;
    }
    r->sock = sv[0];
    r->child_sock = sv[1];
    r->sup.native_arch = NATIVE_ARCH;
    r->sup.seen = r->seen;
    r->sup.seen_cap = REPORT_KINDS;
    r->sup.events = r->events;
    r->sup.events_cap = 1;
    /* The profile's program answers; the child loads only the notifying one. */
    r->sup.eval = s->seccomp_bpf;
    r->sup.n_eval = s->seccomp_len;
    s->notify_bpf = rec->report_bpf;
    s->notify_len = rec->report_len;
    s->notify_fd = sv[1];
    s->fallback_bpf = s->seccomp_bpf;
    s->fallback_len = s->seccomp_len;
    s->seccomp_len = 0;
    r->active = 1;
    return 0;
}

void isorun_report_spawned(struct isorun_report *r) {
    if (r->active) {
        close(r->child_sock);
        r->child_sock = -1;
    }
}

/*
 * The command's listener number and pid, then EOF; 0 when it failed before (no message).
 * err_fd: the error pipe, whose end in the command closes at its execve. With a listener
 * that execve waits for us; without (an outer listener took the kernel's only place, see
 * notify.c) it runs, and the pipe's hang-up ends the search: no report then.
 */
/* The command's message: its listener's number, and its pid in the credentials. */
static ssize_t recv_number(int sock, int *number, pid_t *pid) {
    char control[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov;
    struct msghdr msg;
    struct cmsghdr *c;
    struct ucred cred = {0, 0, 0};
    ssize_t n;

    memset(&msg, 0, sizeof msg);
    iov.iov_base = number;
    iov.iov_len = sizeof *number;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    do
        n = recvmsg(sock, &msg, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
                memcpy(&cred, CMSG_DATA(c), sizeof cred);
    *pid = cred.pid;
    return n;
}

int isorun_report_take(struct isorun_report *r, int err_fd) {
    struct timespec pause = {0, 100000};
    int number = -1, got, tries;
    pid_t pid;
    char eof;
    ssize_t n;

    if (!r->active)
        return 0;
    n = recv_number(r->sock, &number, &pid);
    if (n <= 0) {
        r->active = 0; /* the child failed first: its record is on the error pipe */
        return 0;
    }
    if (n != (ssize_t)sizeof number || pid <= 0)
        return -EPROTO;
    /* EOF: the command closed its end, so only seccomp(2) itself is left to run. */
    do
        n = recv(r->sock, &eof, 1, 0);
    while (n < 0 && errno == EINTR);
    /*
     * It cannot tell us when seccomp(2) returned (any refused call from then on waits
     * for us), so EBADF means "not yet"; ESRCH: it died (its record is on the pipe).
     */
    for (tries = 0;; tries++) {
        struct pollfd gone = {err_fd, POLLIN, 0};
        got = isorun_take_listener(pid, number);
        if (got >= 0 || tries >= 50000)
            break;
        /* ESRCH as well: without a listener the command may have run and ended. */
        if (poll(&gone, 1, 0) > 0) {
            /* exec'd (hang-up) or failed (its record): no listener will come */
            r->active = 0;
            r->no_listener = 1;
            return 0;
        }
        if (got != -EBADF)
            break;
        nanosleep(&pause, NULL);
    }
    if (got < 0)
        return got;
    r->sup.listener = got;
    return 0;
}

/*
 * Wait until fd is readable (or hung up), answering notifications meanwhile: our own
 * reads (the error pipe, the pidfd) may wait on the command, which may wait on us.
 */
int isorun_report_wait(struct isorun_report *r, int fd) {
    struct pollfd pfd[2];
    int rc;

    if (r->sup.listener < 0)
        return 0;
    for (;;) {
        pfd[0].fd = fd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = r->sup.listener;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        if (poll(pfd, r->listener_done ? 1 : 2, -1) < 0) {
            if (errno == EINTR)
                continue; /* a forwarded signal */
            return -errno;
        }
        if (!r->listener_done && (pfd[1].revents & POLLIN)) {
            if ((rc = isorun_supervise_one(&r->sup)) < 0)
                return rc;
        } else if (!r->listener_done && (pfd[1].revents & (POLLHUP | POLLERR | POLLNVAL))) {
            r->listener_done = 1; /* no task uses the filter any more */
        }
        if (pfd[0].revents)
            return 0;
    }
}

/* The error pipe read to EOF, answering notifications meanwhile: 1 when *f was filled. */
int isorun_report_read_failure(struct isorun_report *r, int fd, struct isorun_failure *f) {
    unsigned char buf[4096];
    size_t got = 0;
    ssize_t n;

    /* To EOF: the child's CLOEXEC end closes at its execve, or it wrote and exited. */
    for (;;) {
        /* The command's execve is notified: it waits for our answer before EOF comes. */
        if (isorun_report_wait(r, fd) < 0)
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

void isorun_report_close(struct isorun_report *r) {
    if (r->sock >= 0)
        close(r->sock);
    if (r->child_sock >= 0)
        close(r->child_sock);
    if (r->sup.listener >= 0)
        close(r->sup.listener);
    r->sock = r->child_sock = r->sup.listener = -1;
}

unsigned long long isorun_report_print(const struct isorun_report *r,
                                       const struct isorun_record *rec, FILE *out) {
    unsigned long long counted = 0;
    size_t i;

    if (r->no_listener)
        fprintf(out, "isorun: no seccomp report: a seccomp listener above this sandbox (a "
                "container's supervisor?) leaves none for isorun\n");
    for (i = 0; i < REPORT_KINDS; i++) {
        const struct isorun_seen *s = &r->seen[i];
        const char *why = NULL;
        if (!s->used)
            continue;
        counted += s->count;
        if (s->arch == NATIVE_ARCH && s->nr >= 0 && (size_t)s->nr < rec->n_refusal)
            why = rec->refusal[s->nr];
        if (why != NULL)
            fprintf(out, "isorun: seccomp refused %llu call%s of %s\n", s->count,
                    s->count == 1 ? "" : "s", why);
        else
            fprintf(out, "isorun: seccomp refused %llu call%s of syscall %d (arch %#x): "
                    "%s\n", s->count, s->count == 1 ? "" : "s", s->nr, s->arch,
                    rec->refusal_other != NULL ? rec->refusal_other : "not allowed");
    }
    if (r->sup.refused > counted)
        fprintf(out, "isorun: seccomp refused %llu more call(s) of other kinds\n",
                r->sup.refused - counted);
    if (r->sup.lost > 0)
        fprintf(out, "isorun: %llu refused call(s) were interrupted before the answer\n",
                r->sup.lost);
    return r->sup.refused;
}
