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

/* One walk from "/": what is left to resolve (todo from at), and where it stands. */
struct walk {
    char todo[PATH_MAX];
    size_t at;
    /* the directory reached so far; out is its canonical path ("" for "/") */
    int fd, links, follow_trusted;
    char *out;
    size_t out_size;
};

/* "..": out holds no link, so its parent is the directory ".." reaches. */
static int step_up(struct walk *w) {
    int next = openat(w->fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    size_t n;

    if (next < 0)
        return -errno;
    close(w->fd);
    w->fd = next;
    n = isorun_strlen(w->out);
    while (n > 0 && w->out[n - 1] != '/')
        n--;
    w->out[n > 0 ? n - 1 : 0] = '\0';
    return 0;
}

/*
 * The link next (name, n bytes, in the directory w->fd) followed when trusted: its text
 * takes the place of what todo already walked. Else -ELOOP, with the link's path in out.
 */
static int follow_link(struct walk *w, int next, const char *name, size_t n) {
    char target[PATH_MAX];
    size_t rest;
    ssize_t len;

    if (!w->follow_trusted || !trusted_link(w->out, w->fd, next) || ++w->links > LINKS_MAX) {
        close(next);
        append(w->out, w->out_size, name, n);
        return -ELOOP;
    }
    len = readlinkat(next, "", target, sizeof target);
    close(next);
    if (len < 0 || (size_t)len >= sizeof target)
        return len < 0 ? -errno : -ENAMETOOLONG;
    /* The link's text, then what was left of the path after it. */
    rest = isorun_strlen(w->todo + w->at);
    if ((size_t)len + rest + 1 > sizeof w->todo)
        return -ENAMETOOLONG;
    memmove(w->todo + len, w->todo + w->at, rest + 1);
    memcpy(w->todo, target, (size_t)len);
    w->at = 0;
    if (target[0] == '/') {
        close(w->fd);
        w->fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (w->fd < 0)
            return -errno;
        w->out[0] = '\0';
    }
    return 0;
}

/* One component (name, n bytes): entered when it is no link, else follow_link decides. */
static int step(struct walk *w, const char *name, size_t n) {
    struct stat st;
    int next, rc;

    if (strcmp(name, ".") == 0)
        return 0;
    if (strcmp(name, "..") == 0)
        return step_up(w);
    next = openat(w->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 || fstat(next, &st) < 0) {
        rc = -errno;
        if (next >= 0)
            close(next);
        /* The failing component's path, for the caller's message. */
        append(w->out, w->out_size, name, n);
        return rc;
    }
    if (S_ISLNK(st.st_mode))
        return follow_link(w, next, name, n);
    close(w->fd);
    w->fd = next;
    return append(w->out, w->out_size, name, n);
}

/* The walk, one component at a time: the last one's descriptor, or -errno. */
static int walk(struct walk *w) {
    char name[NAME_MAX + 1];
    size_t n;
    int rc;

    w->out[0] = '\0';
    w->fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (w->fd < 0)
        return -errno;
    for (;;) {
        while (w->todo[w->at] == '/')
            w->at++;
        if (w->todo[w->at] == '\0')
            break;
        for (n = 0; w->todo[w->at + n] != '/' && w->todo[w->at + n] != '\0'; n++)
            ;
        rc = n > NAME_MAX ? -ENAMETOOLONG : 0;
        if (rc == 0) {
            memcpy(name, w->todo + w->at, n);
            name[n] = '\0';
            w->at += n;
            rc = step(w, name, n);
        }
        if (rc < 0) {
            /* -1 when follow_link could not reopen "/": nothing left to close */
            if (w->fd >= 0)
                close(w->fd);
            return rc;
        }
    }
    if (w->out[0] == '\0') {
        w->out[0] = '/';
        w->out[1] = '\0';
    }
    return w->fd;
}

int isorun_resolve(const char *path, int follow_trusted, char *out, size_t out_size) {
    struct open_how how;
    struct walk w;
    int fd;

    if (out_size < 2 || path == NULL || path[0] != '/')
        return -EINVAL;
    if (isorun_strlen(path) + 1 > sizeof w.todo || isorun_strlen(path) + 1 > out_size)
        return -ENAMETOOLONG;
    /*
     * The common case in one syscall: a path with no link at all (most binds, and every
     * missing optional one). Only a link (ELOOP) needs the walk, which decides whether to
     * follow it and names it when not.
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
    memcpy(w.todo, path, isorun_strlen(path) + 1);
    w.at = 0;
    w.links = 0;
    w.follow_trusted = follow_trusted;
    w.out = out;
    w.out_size = out_size;
    return walk(&w);
}
