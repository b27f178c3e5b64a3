/*
 * isorun-launch and its API caller (isorun.sandbox.launched), which starts it with
 * posix_spawn and reads one message back: the descriptors subprocess would have closed,
 * and that message, a failure record (filled in here for a failure on our side).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "launch_record.h"
#include "launcher.h"

static void copy_name(char *dst, const char *src) {
    size_t i;

    for (i = 0; i + 1 < ISORUN_NAME_MAX && src[i] != '\0'; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

/* The plan step of a parent-side failure, as parent.setup_error looks it up. */
int isorun_launch_fail(struct isorun_failure *f, const struct isorun_record *rec, const char *step,
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
 * The API starts us with posix_spawn, which closes nothing: a descriptor the caller made
 * inheritable would stay open here for the sandbox's whole life (a pipe's write end
 * keeping someone else's read from EOF). subprocess's close_fds, done on our side.
 */
void isorun_caller_close_unkept(const struct isorun_spec *s, int report_fd) {
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

/*
 * One message: the failure record, then the pid. On a unix socket the sandbox's pidfd
 * goes along (SCM_RIGHTS), so the caller can signal exactly this process even after
 * we reaped it and its pid was reused. MSG_NOSIGNAL and SIGPIPE blocked: a caller that
 * went away is an error here, not our death with the sandbox left running.
 */
int isorun_caller_report(int fd, const struct isorun_failure *f, int pid, int pidfd) {
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
