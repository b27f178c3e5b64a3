/*
 * A user namespace's id maps, written by isorun-launch for the sandbox it cloned (the
 * parent side: the child cannot map itself beyond its own ids).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launch_record.h"
#include "launcher.h"

static int write_proc(pid_t pid, const char *name, const unsigned char *data, size_t len) {
    char path[64];
    ssize_t n;
    int fd, err;

    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* One write: the kernel accepts a map only in a single write(2) call. */
    n = write(fd, data, len);
    err = n < 0 ? errno : n != (ssize_t)len ? EIO : 0;
    close(fd);
    return -err;
}

/* setgroups, then gid_map, then uid_map: "deny" must precede an unprivileged gid_map
 * (user_namespaces(7), CVE-2014-8989). */
int isorun_launch_id_maps(const struct isorun_record *rec, int pid, struct isorun_failure *f) {
    int rc;

    if (!(rec->spec.clone_flags & CLONE_NEWUSER))
        return 0;
    if (rec->spec.setgroups_deny &&
        (rc = write_proc(pid, "setgroups", (const unsigned char *)"deny", 4)) < 0)
        return isorun_launch_fail(f, rec, "setgroups", "write(setgroups)", -rc);
    if (rec->gid_map_len && (rc = write_proc(pid, "gid_map", rec->gid_map, rec->gid_map_len)) < 0)
        return isorun_launch_fail(f, rec, "gid_map", "write(gid_map)", -rc);
    if (rec->uid_map_len && (rc = write_proc(pid, "uid_map", rec->uid_map, rec->uid_map_len)) < 0)
        return isorun_launch_fail(f, rec, "uid_map", "write(uid_map)", -rc);
    return 0;
}
