/*
 * Namespaces: the clone(2) of the sandbox child (parent side) and the per-namespace
 * set-up that needs no mount: hostname (UTS) and the loopback link (network).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "isorun_child.h"

/* Generous: the child keeps a few PATH_MAX buffers on its stack while building the root. */
#define CHILD_STACK_SIZE (1024 * 1024)

int isorun_abi(void) { return ISORUN_SHIM_ABI; }

/*
 * Namespaces the child makes itself with unshare(2) instead of getting them from clone:
 * a network namespace costs about 0.6 ms to set up (loopback registration, per-net sysctl
 * tables), which clone would spend with the launcher blocked, while unshare spends it in
 * the child as the launcher writes the id maps. Only under a new user namespace, whose
 * full capability set the child holds from clone on (user_namespaces(7)), so unshare
 * needs no privilege that clone did not; the new namespace is owned by that user
 * namespace either way.
 */
unsigned long isorun_deferred_flags(unsigned long clone_flags) {
    return (clone_flags & CLONE_NEWUSER) ? clone_flags & CLONE_NEWNET : 0;
}

int isorun_child_unshare_deferred(const struct isorun_spec *spec) {
    unsigned long flags = isorun_deferred_flags(spec->clone_flags);

    if (flags != 0 && unshare((int)flags) < 0)
        return errno;
    return 0;
}

/*
 * Whether the launcher is the foreground job of the terminal the command gets as stdin
 * (tcgetpgrp fails with ENOTTY unless it is our controlling terminal). Decided here, in
 * the parent: after a CLONE_NEWPID the child cannot see the caller's process groups.
 */
static int foreground_terminal(const struct isorun_spec *spec) {
    pid_t fg = tcgetpgrp(spec->stdio[0] >= 0 ? spec->stdio[0] : 0);

    return fg > 0 && fg == getpgrp();
}

int isorun_spawn(const struct isorun_spec *spec) {
    unsigned long flags = spec->clone_flags & ~isorun_deferred_flags(spec->clone_flags);
    struct isorun_spec decided = *spec;
    sigset_t all, old;
    void *stack;
    int pid, err;

    if (decided.new_session == ISORUN_SESSION_TERMINAL_OK)
        decided.new_session = foreground_terminal(spec) ? ISORUN_SESSION_TERMINAL_JOB : 1;

    stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -errno;
    /*
     * Block every signal across clone: the child inherits the parent's handlers (the
     * Python interpreter's), and one firing before the child resets them would run
     * interpreter code in the child. The child resets dispositions, then unblocks.
     */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /*
     * No CLONE_VM: the child gets a copy-on-write copy of the parent's memory, so the
     * spec the parent built stays valid there and the parent may free it afterwards.
     * SIGCHLD makes the child waitable like a fork()ed one.
     */
    pid = clone(isorun_child_main, (char *)stack + CHILD_STACK_SIZE, (int)(flags | SIGCHLD),
                (void *)&decided);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, CHILD_STACK_SIZE);
    return pid < 0 ? -err : pid;
}

void isorun_child_hostname(const struct isorun_spec *spec) {
    size_t len = isorun_strlen(spec->hostname);

    if (len == 0)
        return;
    /* Without a new UTS namespace this would rename the host: refuse instead. */
    if (!(spec->clone_flags & CLONE_NEWUTS))
        isorun_child_fail(spec, "hostname", "sethostname", EINVAL, -1);
    if (sethostname(spec->hostname, len) < 0)
        isorun_child_fail(spec, "hostname", "sethostname", errno, -1);
}

void isorun_child_loopback(const struct isorun_spec *spec) {
    struct ifreq ifr;
    int fd;

    /* A new network namespace starts with lo down; the host's links are not ours to touch. */
    if (!spec->loopback_up || !(spec->clone_flags & CLONE_NEWNET))
        return;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        isorun_child_fail(spec, "loopback", "socket", errno, -1);
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        isorun_child_fail(spec, "loopback", "ioctl(SIOCGIFFLAGS)", errno, -1);
    ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        isorun_child_fail(spec, "loopback", "ioctl(SIOCSIFFLAGS)", errno, -1);
    close(fd);
}
