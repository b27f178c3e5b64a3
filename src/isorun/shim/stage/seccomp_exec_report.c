/* The refusal report's hand-over: the reporting filter's listener sent to isorun. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>

#include "bpf_eval.h"
#include "seccomp_exec.h"

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

void stage_hand_over(struct sock_fprog *prog, struct sock_fprog *report, int report_fd) {
    int listener;

    if (!hand_over_allowed(prog, report_fd)) {
        send_hand_over(report_fd, REPORT_REFUSED, -1);
        return;
    }
    listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                            SECCOMP_FILTER_FLAG_NEW_LISTENER, report);
    if (listener >= 0) {
        /* from here a refused call waits for isorun: the sendmsg checked above */
        send_hand_over(report_fd, REPORT_LISTENER, listener);
        prog->filter = NULL; /* loaded */
    } else if (errno == EBUSY) {
        send_hand_over(report_fd, REPORT_BUSY, -1);
    } else {
        die("seccomp", "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)", errno);
    }
}
