/*
 * Learn mode: a seccomp filter whose answer is SECCOMP_RET_USER_NOTIF, its listener
 * handed to the launcher, and the launcher's supervisor loop that records each call and
 * lets it run (SECCOMP_USER_NOTIF_FLAG_CONTINUE), or, for `learn --check`, refuses it
 * with the profile's errno. See seccomp_unotify(2).
 *
 * Hand-over. After the filter is loaded every syscall of the command goes to the
 * listener, and nobody listens yet: sendmsg(SCM_RIGHTS) of the listener would block
 * forever. So the command reports, *before* loading, the number the listener will get
 * (the lowest free descriptor, which seccomp(2) allocates like open(2); nothing else
 * allocates one in between in this single-threaded process), over a unix socket whose
 * SO_PASSCRED gives the launcher the command's pid in the launcher's own pid namespace.
 * The launcher then copies the descriptor with pidfd_getfd(2), which needs
 * PTRACE_MODE_ATTACH_REALCREDS over the command: it holds that as the command's uid, or
 * as the owner of the command's user namespace (CAP_SYS_PTRACE there). The command's
 * execve(2) is the first notified call: it waits, blocked in the kernel, until the
 * launcher has the listener and answers. The listener is O_CLOEXEC (the kernel opens it
 * so), so the command never holds it after execve.
 *
 * Races: user notification is unsafe for *decisions* on pointer arguments (another
 * thread can change the memory after we read it, seccomp_unotify(2) NOTES). We decide
 * nothing: every call continues, and the paths read are reported as suggestions only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bpf_eval.h"
#include "isorun_child.h"

void isorun_child_notify(const struct isorun_spec *spec) {
    struct sock_fprog prog;
    int expected, listener;
    ssize_t n;

    if (spec->notify_len == 0)
        return;
    if (spec->notify_len % sizeof(struct sock_filter) != 0 ||
        spec->notify_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
        isorun_child_fail(spec, "seccomp", "seccomp(NEW_LISTENER)", EINVAL, -1);
    /* The lowest free descriptor now is the one seccomp(2) will return below. */
    expected = fcntl(spec->notify_fd, F_DUPFD_CLOEXEC, 0);
    if (expected < 0)
        isorun_child_fail(spec, "seccomp", "fcntl(F_DUPFD)", errno, -1);
    close(expected);
    do
        n = send(spec->notify_fd, &expected, sizeof expected, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof expected)
        isorun_child_fail(spec, "seccomp", "send(listener number)", n < 0 ? errno : EIO, -1);
    /* Closed before loading: after it every call is notified and must not be ours. */
    close(spec->notify_fd);
    prog.len = (unsigned short)(spec->notify_len / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)(void *)spec->notify_bpf;
    listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                            SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0 && errno == EBUSY && spec->fallback_len > 0) {
        /*
         * One listener per filter chain (seccomp(2), EBUSY): an outer supervisor has it.
         * The report's program then gives way to the profile's own, with the same
         * answers; the launcher, which never finds a listener, stops looking when our
         * execve closes the error pipe (launch_report.c).
         */
        prog.len = (unsigned short)(spec->fallback_len / sizeof(struct sock_filter));
        prog.filter = (struct sock_filter *)(void *)spec->fallback_bpf;
        if (spec->fallback_len % sizeof(struct sock_filter) != 0 ||
            spec->fallback_len / sizeof(struct sock_filter) > BPF_MAXINSNS ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
            isorun_child_fail(spec, "seccomp", "seccomp(SET_MODE_FILTER)",
                              errno ? errno : EINVAL, -1);
        return;
    }
    if (listener < 0)
        isorun_child_fail(spec, "seccomp", "seccomp(NEW_LISTENER)", errno, -1);
    /*
     * A different number cannot be reported any more (reporting would be notified and
     * nobody answers); the launcher checks that what it takes is a listener and kills
     * the sandbox otherwise, so a mismatch fails closed there.
     */
}

int isorun_take_listener(int pid, int fd) {
    unsigned long long id = 0;
    int pidfd, got, err;

    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return -errno;
    got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    err = errno;
    close(pidfd);
    if (got < 0)
        return -err;
    /* On a listener, ID_VALID of a made-up id fails with ENOENT; on anything else not. */
    if (ioctl(got, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 || errno != ENOENT) {
        close(got);
        return -EBADFD;
    }
    return got;
}

static unsigned long long mix(unsigned long long h, unsigned long long v) {
    /* FNV-1a over the 8 bytes of v: cheap and good enough for a dedup table. */
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (i * 8)) & 0xffu;
        h *= 1099511628211ull;
    }
    return h;
}

static void record_call(struct isorun_supervisor *sup, const struct seccomp_data *d) {
    unsigned long long key[ISORUN_ARGS] = {0}, h = 14695981039346656037ull;
    unsigned char mask = 0;
    size_t mod = sup->seen_cap - 1, i;
    int k;

    if (d->arch == sup->native_arch && d->nr >= 0 && (size_t)d->nr < sup->n_argmask)
        mask = sup->argmask[d->nr];
    for (k = 0; k < ISORUN_ARGS; k++)
        if (mask & (1u << k))
            key[k] = d->args[k];
    h = mix(mix(h, d->arch), (unsigned long long)(unsigned int)d->nr);
    for (k = 0; k < ISORUN_ARGS; k++)
        h = mix(h, key[k]);
    for (i = (size_t)h & mod;; i = (i + 1) & mod) {
        struct isorun_seen *s = &sup->seen[i];
        if (!s->used) {
            /* Keep a quarter free so probing stays short; a full table fails the run. */
            if (4 * (sup->seen_len + 1) > 3 * sup->seen_cap) {
                sup->seen_full = 1;
                return;
            }
            s->used = 1;
            s->arch = d->arch;
            s->nr = d->nr;
            memcpy(s->args, key, sizeof key);
            s->count = 1;
            sup->seen_len++;
            return;
        }
        if (s->arch == d->arch && s->nr == d->nr && memcmp(s->args, key, sizeof key) == 0) {
            s->count++;
            return;
        }
    }
}

static void record_event(struct isorun_supervisor *sup, int nr, const unsigned char *data,
                         size_t len) {
    unsigned long long h = 14695981039346656037ull;
    size_t mod = sup->events_cap - 1, i, j;

    h = mix(h, (unsigned long long)(unsigned int)nr);
    for (j = 0; j < len; j++) {
        h ^= data[j];
        h *= 1099511628211ull;
    }
    for (i = (size_t)h & mod;; i = (i + 1) & mod) {
        struct isorun_event *e = &sup->events[i];
        if (!e->used) {
            if (4 * (sup->events_len + 1) > 3 * sup->events_cap) {
                sup->events_dropped++;
                return;
            }
            e->used = 1;
            e->nr = nr;
            e->len = (int)len;
            memcpy(e->data, data, len);
            e->count = 1;
            sup->events_len++;
            return;
        }
        if (e->nr == nr && (size_t)e->len == len && memcmp(e->data, data, len) == 0) {
            e->count++;
            return;
        }
    }
}

static void read_memory(struct isorun_supervisor *sup, const struct seccomp_notif *req) {
    unsigned char buf[ISORUN_EVENT_DATA];
    struct iovec local, remote;
    unsigned short how;
    unsigned long long ptr, want = sizeof buf;
    unsigned long long id = req->id;
    ssize_t got;
    size_t len;

    if (sup->n_mem == 0 || req->data.arch != sup->native_arch || req->data.nr < 0 ||
        (size_t)req->data.nr >= sup->n_mem)
        return;
    how = sup->mem[req->data.nr];
    if ((how & 0xff) == ISORUN_MEM_NONE)
        return;
    ptr = req->data.args[(how >> 8) & 0xf];
    if (ptr == 0)
        return;
    if ((how & 0xff) == ISORUN_MEM_SOCKADDR) {
        want = req->data.args[(how >> 12) & 0xf];
        if (want == 0)
            return;
        if (want > sizeof buf)
            want = sizeof buf;
    }
    local.iov_base = buf;
    local.iov_len = (size_t)want;
    remote.iov_base = (void *)(unsigned long)ptr;
    remote.iov_len = (size_t)want;
    /* A path near the end of a mapping reads short; what was read is still useful. */
    got = process_vm_readv((pid_t)req->pid, &local, 1, &remote, 1, 0);
    if (got <= 0)
        return;
    /* The pid may have been reused if the caller died: then the bytes are not its. */
    if (ioctl(sup->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0)
        return;
    len = (size_t)got;
    if ((how & 0xff) == ISORUN_MEM_PATH) {
        const unsigned char *end = memchr(buf, 0, len);
        if (end == NULL)
            return; /* longer than we keep: not worth a truncated suggestion */
        len = (size_t)(end - buf);
    }
    record_event(sup, req->data.nr, buf, len);
}

/* The errno `learn --check` answers a notified call with, 0 to let it run. */
static unsigned short answer_for(const struct isorun_supervisor *sup,
                                 const struct seccomp_data *data) {
    unsigned int ret;

    if (sup->n_eval > 0) {
        /*
         * The refusal report: what the profile's program answers. ALLOW and LOG run
         * (only the hand-over's execve, which every notifying filter sends us, gets
         * here so); ERRNO gives its errno; anything else (a KILL or TRAP rule on
         * execve) is still refused, with EPERM, since we cannot kill from here.
         */
        ret = isorun_bpf_eval(sup->eval, sup->n_eval, data);
        switch (ret & SECCOMP_RET_ACTION_FULL) {
        case SECCOMP_RET_ALLOW:
        case SECCOMP_RET_LOG:
            return 0;
        case SECCOMP_RET_ERRNO:
            /* ERRNO 0 would be success; the kernel caps the data at MAX_ERRNO too. */
            return (ret & SECCOMP_RET_DATA) == 0 ? EPERM
                   : (ret & SECCOMP_RET_DATA) > 4095 ? 4095
                   : (unsigned short)(ret & SECCOMP_RET_DATA);
        default:
            return EPERM;
        }
    }
    if (sup->n_answer == 0)
        return 0;
    if (data->arch == sup->native_arch && data->nr >= 0 && (size_t)data->nr < sup->n_answer)
        return sup->answer[data->nr];
    return sup->answer_other;
}

int isorun_supervise_one(struct isorun_supervisor *sup) {
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    unsigned short refuse;
    int rc;

    /* The kernel refuses a buffer that is not zeroed (EINVAL). */
    memset(&req, 0, sizeof req);
    if (ioctl(sup->listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
        /* ENOENT: the caller was killed or interrupted after poll woke us. */
        if (errno == EINTR || errno == ENOENT)
            return 0;
        return -errno;
    }
    sup->total++;
    refuse = answer_for(sup, &req.data);
    /* The report counts refusals only, not the hand-over's execve that runs. */
    if (sup->n_eval == 0 || refuse != 0) {
        sup->refused += refuse != 0;
        record_call(sup, &req.data);
    }
    read_memory(sup, &req);
    memset(&resp, 0, sizeof resp);
    resp.id = req.id;
    if (refuse != 0)
        resp.error = -(int)refuse; /* the call fails; it never runs */
    else
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    do
        rc = ioctl(sup->listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        /*
         * ENOENT: a signal interrupted the call while we recorded it; it is
         * restarted (and notified again) or the caller is gone.
         */
        if (errno != ENOENT)
            return -errno;
        sup->lost++;
    }
    return 0;
}

int isorun_supervise(struct isorun_supervisor *sup) {
    struct pollfd pfd[2];
    int rc;

    if (sup->seen_cap == 0 || (sup->seen_cap & (sup->seen_cap - 1)) != 0 ||
        sup->events_cap == 0 || (sup->events_cap & (sup->events_cap - 1)) != 0)
        return -EINVAL;
    for (;;) {
        pfd[0].fd = sup->listener;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = sup->stop_fd;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (pfd[0].revents & POLLIN) {
            if ((rc = isorun_supervise_one(sup)) < 0)
                return rc;
            continue;
        }
        /* EPOLLHUP: no task uses the filter any more (all were reaped). */
        if (pfd[0].revents & (POLLHUP | POLLERR | POLLNVAL))
            return 0;
        if (pfd[1].revents)
            return 1;
    }
}
