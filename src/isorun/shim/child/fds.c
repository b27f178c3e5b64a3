/*
 * The child's descriptors before any mount: the command's stdio in place, and every
 * other descriptor the launcher had open closed (exec.c orders the steps).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "isorun_child.h"

static void fail(const struct isorun_spec *spec, const char *step, const char *syscall) {
    isorun_child_fail(spec, step, syscall, errno, -1);
}

void isorun_child_stdio(const struct isorun_spec *spec) {
    int fd, i;

    for (i = 0; i < 3; i++) {
        fd = spec->stdio[i];
        if (fd < 0 || fd == i)
            continue;
        /* dup2 clears FD_CLOEXEC on the copy, which is what makes it reach the command. */
        if (dup2(fd, i) < 0)
            fail(spec, "stdio", "dup2");
    }
    /*
     * An inherited or same-numbered descriptor was not dup2()ed; clear its FD_CLOEXEC by
     * hand. EBADF: the launcher had that descriptor closed, which the command inherits.
     */
    for (i = 0; i < 3; i++) {
        if ((spec->stdio[i] < 0 || spec->stdio[i] == i) && fcntl(i, F_SETFD, 0) < 0 &&
            errno != EBADF)
            fail(spec, "stdio", "fcntl(F_SETFD)");
    }
}

static int is_kept(const struct isorun_spec *spec, int fd) {
    size_t i;

    if (fd <= 2 || fd == spec->err_fd || (spec->notify_len > 0 && fd == spec->notify_fd))
        return 1;
    for (i = 0; i < spec->n_keep_fds; i++)
        if (spec->keep_fds[i] == fd)
            return 1;
    /* Mount trees live until the mount step attaches and closes them. */
    for (i = 0; i < spec->n_mounts; i++)
        if (spec->mounts[i].kind == ISORUN_MOUNT_TREE && spec->mounts[i].tree_fd == fd)
            return 1;
    return 0;
}

/* Fallback when close_range(2) is missing (Linux < 5.9): walk /proc/self/fd. */
static int close_by_listing(const struct isorun_spec *spec) {
    char buf[4096];
    long n, off;
    int dir, fd;

    dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -errno;
    while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        for (off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(void *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            fd = 0;
            for (const char *p = d->d_name; *p; p++)
                fd = fd * 10 + (*p - '0');
            if (fd != dir && !is_kept(spec, fd))
                close(fd);
        }
    }
    close(dir);
    return n < 0 ? -(int)errno : 0;
}

/*
 * Descriptors inherited from the launcher (a directory, a socket, a host tty) are ways
 * out of every namespace: openat() relative to a host directory ignores our root.
 * Close everything but stdio, the kept fds and the error pipe (CLOEXEC, gone at exec).
 */
void isorun_child_close_fds(const struct isorun_spec *spec) {
    unsigned int lo = 3;
    int hi, rc;
    size_t i;

    for (;;) {
        hi = spec->err_fd >= (int)lo ? spec->err_fd : INT_MAX;
        if (spec->notify_len > 0 && spec->notify_fd >= (int)lo && spec->notify_fd < hi)
            hi = spec->notify_fd;
        for (i = 0; i < spec->n_keep_fds; i++)
            if (spec->keep_fds[i] >= (int)lo && spec->keep_fds[i] < hi)
                hi = spec->keep_fds[i];
        for (i = 0; i < spec->n_mounts; i++)
            if (spec->mounts[i].kind == ISORUN_MOUNT_TREE &&
                spec->mounts[i].tree_fd >= (int)lo && spec->mounts[i].tree_fd < hi)
                hi = spec->mounts[i].tree_fd;
        if ((unsigned int)hi > lo) {
            if (syscall(SYS_close_range, lo, (unsigned int)hi - 1, 0) < 0) {
                if (errno != ENOSYS)
                    fail(spec, "close_fds", "close_range");
                rc = close_by_listing(spec);
                if (rc < 0)
                    isorun_child_fail(spec, "close_fds", "getdents64", -rc, -1);
                break;
            }
        }
        if (hi == INT_MAX)
            break;
        lo = (unsigned int)hi + 1;
    }
    /* Python opens everything O_CLOEXEC; a kept fd must survive execve. */
    for (i = 0; i < spec->n_keep_fds; i++)
        if (fcntl(spec->keep_fds[i], F_SETFD, 0) < 0)
            fail(spec, "close_fds", "fcntl(F_SETFD)");
}
