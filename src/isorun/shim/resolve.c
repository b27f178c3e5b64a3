/*
 * Resolving a host path on the trusted side, before the clone, without following a
 * symbolic link the sandbox could have written (issue #12, docs/security.md).
 *
 * The walk goes one component at a time from "/", each opened O_PATH|O_NOFOLLOW, so a
 * link is seen as itself and never followed by the kernel behind our back. A link is
 * followed only where the system put it: owned by root, in a directory owned by root
 * that neither group nor others can write, inside the system's own trees (a merged-/usr
 * /bin -> usr/bin, Debian's /etc/alternatives). A sandbox never runs as host root (a
 * root caller's runs as the overflow uid, docs/testing.md), so it cannot make one; root
 * ownership alone is not enough, as a repository root cloned is root's too. Anything
 * else is refused with ELOOP and the link's own path in ``out``, so the caller can say
 * which link and where it points.
 *
 * Used by the parent sides (parent.py through cffi, launch.c directly): they need the
 * link's owner as the host sees it, which the child, inside its user namespace, cannot
 * tell (an unmapped owner reads as the overflow uid). The child then walks the canonical
 * path this returns with no link allowed at all (mount.c), so a link swapped in after
 * this check is refused there, and the mount is made from the descriptor it checked.
 *
 * Stack buffers only: launch.c calls it with the signal mask held, and nothing here
 * needs more than PATH_MAX twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "isorun_child.h"
#include "tables.h"

/* As the kernel's own limit on nested links (path_resolution(7), MAXSYMLINKS). */
#define LINKS_MAX 40

/*
 * The system's own trees, where only the distribution's packages put links: "/" itself
 * (merged-/usr's /bin -> usr/bin), /etc (resolv.conf, alternatives), /usr and the /lib*,
 * /bin and /sbin of a system without merged /usr. Not /opt, /srv, /home, /root or /tmp:
 * a root caller's project lives there, root-owned, and its links came with a repository.
 */
static const char *const system_trees[] = {ISORUN_SYSTEM_TREES}; /* tables.h, shim/abi.py */

/* dir is the canonical path of the directory holding the link ("" for "/"). */
static int in_system_tree(const char *dir) {
    size_t i, n;

    if (dir[0] == '\0')
        return 1;
    for (i = 0; i < sizeof system_trees / sizeof system_trees[0]; i++) {
        n = isorun_strlen(system_trees[i]);
        if (strncmp(dir, system_trees[i], n) == 0 && (dir[n] == '\0' || dir[n] == '/'))
            return 1;
    }
    return 0;
}

static int trusted_link(const char *dir_path, int dirfd, int linkfd) {
    struct stat dir, link;

    if (!in_system_tree(dir_path) || fstat(dirfd, &dir) < 0 || fstat(linkfd, &link) < 0)
        return 0;
    return link.st_uid == 0 && dir.st_uid == 0 && (dir.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* out = out + "/" + name (name of length n); -ENAMETOOLONG when it does not fit. */
static int append(char *out, size_t size, const char *name, size_t n) {
    size_t len = isorun_strlen(out);

    if (len + 1 + n + 1 > size)
        return -ENAMETOOLONG;
    out[len] = '/';
    memcpy(out + len + 1, name, n);
    out[len + 1 + n] = '\0';
    return 0;
}

/* No "//", "." or ".." component and no trailing "/": the path is its own canonical form
 * once the kernel confirms it holds no link. */
static int lexically_clean(const char *path) {
    size_t i;

    for (i = 0; path[i] != '\0'; i++) {
        if (path[i] != '/')
            continue;
        if (path[i + 1] == '/' || (path[i + 1] == '\0' && i > 0))
            return 0;
        if (path[i + 1] == '.' &&
            (path[i + 2] == '/' || path[i + 2] == '\0' ||
             (path[i + 2] == '.' && (path[i + 3] == '/' || path[i + 3] == '\0'))))
            return 0;
    }
    return 1;
}

int isorun_resolve(const char *path, int follow_trusted, char *out, size_t out_size) {
    char todo[PATH_MAX], target[PATH_MAX], name[NAME_MAX + 1];
    size_t at = 0, n, rest;
    int fd, next, links = 0, rc;
    struct open_how how;
    struct stat st;
    ssize_t len;

    if (out_size < 2 || path == NULL || path[0] != '/')
        return -EINVAL;
    if (isorun_strlen(path) + 1 > sizeof todo || isorun_strlen(path) + 1 > out_size)
        return -ENAMETOOLONG;
    /*
     * The common case in one syscall: a path with no link at all (most binds, and every
     * missing optional one). Only a link (ELOOP) needs the walk below, which decides
     * whether to follow it and names it when not.
     */
    if (lexically_clean(path)) {
        memset(&how, 0, sizeof how);
        how.flags = O_PATH | O_CLOEXEC;
        how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
        if (fd >= 0 || (errno != ELOOP && errno != ENOSYS)) {
            memcpy(out, path, isorun_strlen(path) + 1);
            return fd >= 0 ? fd : -errno;
        }
    }
    memcpy(todo, path, isorun_strlen(path) + 1);
    out[0] = '\0';
    fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (;;) {
        while (todo[at] == '/')
            at++;
        if (todo[at] == '\0')
            break;
        for (n = 0; todo[at + n] != '/' && todo[at + n] != '\0'; n++)
            ;
        if (n > NAME_MAX) {
            rc = -ENAMETOOLONG;
            goto out;
        }
        memcpy(name, todo + at, n);
        name[n] = '\0';
        at += n;
        if (strcmp(name, ".") == 0)
            continue;
        if (strcmp(name, "..") == 0) {
            /* out holds no link, so its parent is the directory ".." reaches. */
            next = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (next < 0) {
                rc = -errno;
                goto out;
            }
            close(fd);
            fd = next;
            n = isorun_strlen(out);
            while (n > 0 && out[n - 1] != '/')
                n--;
            out[n > 0 ? n - 1 : 0] = '\0';
            continue;
        }
        next = openat(fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 || fstat(next, &st) < 0) {
            rc = -errno;
            if (next >= 0)
                close(next);
            /* The failing component's path, for the caller's message. */
            append(out, out_size, name, n);
            goto out;
        }
        if (!S_ISLNK(st.st_mode)) {
            close(fd);
            fd = next;
            rc = append(out, out_size, name, n);
            if (rc < 0)
                goto out;
            continue;
        }
        if (!follow_trusted || !trusted_link(out, fd, next) || ++links > LINKS_MAX) {
            close(next);
            append(out, out_size, name, n);
            rc = -ELOOP;
            goto out;
        }
        len = readlinkat(next, "", target, sizeof target);
        close(next);
        if (len < 0 || (size_t)len >= sizeof target) {
            rc = len < 0 ? -errno : -ENAMETOOLONG;
            goto out;
        }
        /* The link's text, then what was left of the path after it. */
        rest = isorun_strlen(todo + at);
        if ((size_t)len + rest + 1 > sizeof todo) {
            rc = -ENAMETOOLONG;
            goto out;
        }
        memmove(todo + len, todo + at, rest + 1);
        memcpy(todo, target, (size_t)len);
        at = 0;
        if (target[0] == '/') {
            close(fd);
            fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0)
                return -errno;
            out[0] = '\0';
        }
    }
    if (out[0] == '\0') {
        out[0] = '/';
        out[1] = '\0';
    }
    return fd;
out:
    close(fd);
    return rc;
}
