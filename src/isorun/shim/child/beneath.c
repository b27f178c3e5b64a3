/*
 * Paths in the child, opened beneath a root descriptor (the host root for sources, the
 * new root for destinations) with no symbolic link followed (issue #12, CVE-2021-30465's
 * class): a link the sandbox planted, in a source or in a destination inside a directory
 * an earlier mount brought in, is refused with ELOOP, even one swapped in while we work.
 * The parent already resolved the links the threat model trusts (resolve.c), so a
 * canonical path has none left to follow. mount.c then mounts from and onto the very
 * descriptors these return, never by path.
 *
 * Child side: no allocation, PATH_MAX buffers on the stack or the caller's.
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

size_t isorun_leading_slashes(const char *s) {
    size_t n = 0;

    while (s[n] == '/')
        n++;
    return n;
}

size_t isorun_strlen(const char *s) {
    size_t n = 0;

    while (s != NULL && s[n] != '\0')
        n++;
    return n;
}

int isorun_join(char *buf, size_t size, const char *a, const char *b) {
    size_t la = isorun_strlen(a), lb = isorun_strlen(b);

    if (la + lb + 1 > size)
        return -ENAMETOOLONG;
    /*
     * memmove: a may be buf itself, and memcpy between overlapping objects is undefined
     * even when they coincide (C11 7.24.2.1).
     */
    memmove(buf, a, la);
    memmove(buf + la, b, lb);
    buf[la + lb] = '\0';
    return 0;
}

/* openat2(2) with RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH: no link, no ".." out of root. */
int isorun_child_open_beneath(int root, const char *path, int flags) {
    struct open_how how;

    while (*path == '/')
        path++;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH;
    return (int)syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how);
}

/*
 * The directories of buf (its first ``i`` bytes, the parent's path) made and opened one
 * at a time beneath root, no link followed: a descriptor of the last one, or -errno.
 */
static int make_parents(int root, char *buf, size_t i) {
    struct stat st;
    size_t start;
    int fd, next;

    fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    for (start = 0; start + 1 < i;) {
        while (buf[start] == '/')
            start++;
        size_t end = start;
        while (buf[end] != '/' && buf[end] != '\0')
            end++;
        char saved = buf[end];
        buf[end] = '\0';
        if (strcmp(buf + start, "..") == 0) {
            close(fd);
            return -EXDEV; /* as RESOLVE_BENEATH answers a ".." that would climb out */
        }
        if (end > start && mkdirat(fd, buf + start, 0755) < 0 && errno != EEXIST) {
            close(fd);
            return -errno;
        }
        next = end > start ? openat(fd, buf + start, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
        buf[end] = saved;
        if (end == start)
            break;
        if (next < 0 || fstat(next, &st) < 0) {
            int err = errno;
            if (next >= 0)
                close(next);
            close(fd);
            return -err;
        }
        close(fd);
        if (!S_ISDIR(st.st_mode)) {
            close(next);
            return S_ISLNK(st.st_mode) ? -ELOOP : -ENOTDIR;
        }
        fd = next;
        start = end;
    }
    return fd;
}

/*
 * The directory that will hold ``path``'s last component, created (mode 0755) as needed,
 * one component at a time so no link is followed; ``*name`` gets that last component.
 * The fast path, one openat2, covers a parent that exists. Returns a descriptor (the new
 * root's own when that is the parent: close it with close_parent) or -errno.
 */
int isorun_child_open_parent(int root, const char *path, char *buf, const char **name) {
    size_t len = isorun_strlen(path), i;
    int fd;

    while (len > 0 && path[len - 1] == '/')
        len--;
    if (len + 1 > PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(buf, path, len);
    buf[len] = '\0';
    i = len;
    while (i > 0 && buf[i - 1] != '/')
        i--;
    *name = buf + i;
    if (i > 0)
        buf[i - 1] = '\0';
    /* Directly in the new root (most mounts): the root's own descriptor, no syscall. */
    if (buf[isorun_leading_slashes(buf)] == '\0')
        return root;
    fd = isorun_child_open_beneath(root, buf, O_PATH | O_DIRECTORY);
    if (fd >= 0 || errno != ENOENT)
        return fd >= 0 ? fd : -errno;
    return make_parents(root, buf, i);
}

/*
 * ``path`` in the new root as an O_PATH descriptor, created when missing: a directory
 * (mode) or an empty regular file, the type a mount point must share with what is
 * mounted on it. An existing link is refused, never followed.
 */
void isorun_child_close_parent(int root, int fd) {
    if (fd != root)
        close(fd);
}

int isorun_child_open_dst(int root, const char *path, int dir, unsigned int mode) {
    char buf[PATH_MAX];
    const char *name;
    struct stat st;
    int parent, fd, rc;

    parent = isorun_child_open_parent(root, path, buf, &name);
    if (parent < 0)
        return parent;
    if (*name == '\0') /* the new root itself (a rootfs tree over all of it) */
        return fcntl(root, F_DUPFD_CLOEXEC, 0);
    /*
     * Create first, then open what is there: the create answers EEXIST for any name
     * that exists (before EROFS or EACCES), so an existing destination costs no more,
     * and what the open finds is checked below whoever made it.
     */
    if (dir) {
        rc = mkdirat(parent, name, mode);
    } else {
        rc = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (rc >= 0)
            close(rc);
    }
    if (rc < 0 && errno != EEXIST) {
        rc = -errno;
        isorun_child_close_parent(root, parent);
        return rc;
    }
    fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    rc = errno;
    isorun_child_close_parent(root, parent);
    if (fd < 0)
        return -rc;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (S_ISDIR(st.st_mode) != !!dir || S_ISLNK(st.st_mode)) {
        close(fd);
        return S_ISLNK(st.st_mode) ? -ELOOP : dir ? -ENOTDIR : -EISDIR;
    }
    return fd;
}
