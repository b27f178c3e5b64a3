/*
 * The file view: a private mount tree, a new root (a tmpfs, or a host directory) filled
 * from the spec's mounts in order, then pivot_root(2) into it and detach the host root.
 *
 * Layout while building: a small staging tmpfs becomes "/" with the host root at /old and
 * the new root at /new, so every host source resolves as /old + src even when it lies
 * under a directory the new root will cover, and every destination is /new + dst.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "isorun_child.h"

/*
 * Any directory exists here that we may cover: after the first pivot the host's /tmp is
 * still reached through /old/tmp, so nothing the spec binds is hidden by the stage.
 */
#define STAGE "/tmp"
#define OLD "/old"
#define NEW "/new"

struct where {
    const struct isorun_spec *spec;
    const char *src_prefix;
    const char *dst_prefix;
    int index;
};

static void fail(const struct where *w, const char *syscall, int err) {
    isorun_child_fail(w->spec, "mount", syscall, err, w->index);
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
     * memmove: a may be buf itself (do_dev appends to src in place), and memcpy between
     * overlapping objects is undefined even when they coincide (C11 7.24.2.1).
     */
    memmove(buf, a, la);
    memmove(buf + la, b, lb);
    buf[la + lb] = '\0';
    return 0;
}

static void join_or_fail(const struct where *w, char *buf, const char *a, const char *b) {
    int rc = isorun_join(buf, PATH_MAX, a, b);

    if (rc < 0)
        fail(w, "path", -rc);
}

/* mkdir -p; existing directories are fine, the mode only applies to ones we create. */
static int mkdir_p(const char *path, mode_t mode) {
    char buf[PATH_MAX];
    size_t i, len = isorun_strlen(path);

    if (len + 1 > sizeof buf)
        return -ENAMETOOLONG;
    /*
     * The whole path first: its parent (the new root, or /dev we just made) usually
     * exists, and one mkdir beats one per component. Only ENOENT means a missing parent.
     */
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -errno;
    memcpy(buf, path, len + 1);
    for (i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        buf[i] = i == len ? '\0' : '/';
    }
    return 0;
}

static int mkdir_parent(const char *path) {
    char buf[PATH_MAX];
    size_t len = isorun_strlen(path);

    if (len + 1 > sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    while (len > 0 && buf[len] != '/')
        len--;
    if (len == 0)
        return 0;
    buf[len] = '\0';
    return mkdir_p(buf, 0755);
}

/* An empty regular file to bind a non-directory onto (the mount point must match its type).
 * O_RDONLY: an existing file in a read-only bind (a report file in the read-only project)
 * is a fine mount point, and open(2) refuses O_WRONLY there with EROFS; O_CREAT alone
 * only needs the directory writable when the file is missing. */
static int touch(const char *path, mode_t mode) {
    int fd, rc = mkdir_parent(path);

    if (rc < 0)
        return rc;
    fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

/*
 * A bind mount ignores every flag but MS_REC on creation; read-only and friends only take
 * effect once set on the new mount afterwards.
 *
 * mount_setattr(2) with AT_RECURSIVE, not a remount: MS_REMOUNT | MS_BIND reaches only
 * the top mount of a recursive bind, and submounts (e.g. a separate /usr under a bound /)
 * would stay writable. It also only adds attributes (attr_clr stays 0), so it never
 * tries to clear a flag the kernel locked on a mount copied into a less privileged user
 * namespace (mount_namespaces(7)), which a remount would have had to repeat or get EPERM.
 * Failing here (ENOSYS before Linux 5.12) is fail-closed: a read-only request must never
 * leave a writable mount.
 */
static void remount_bind(const struct where *w, const char *path, unsigned long flags) {
    unsigned long want = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    struct mount_attr attr;

    memset(&attr, 0, sizeof attr);
    if (want & MS_RDONLY)
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    if (want & MS_NOSUID)
        attr.attr_set |= MOUNT_ATTR_NOSUID;
    if (want & MS_NODEV)
        attr.attr_set |= MOUNT_ATTR_NODEV;
    if (want & MS_NOEXEC)
        attr.attr_set |= MOUNT_ATTR_NOEXEC;
    if (syscall(SYS_mount_setattr, -1, path, AT_RECURSIVE, &attr, sizeof attr) < 0)
        fail(w, "mount_setattr", errno);
}

static void do_bind(const struct where *w, const struct isorun_mount *m, const char *dst,
                    unsigned long flags) {
    char src[PATH_MAX];
    struct stat st;
    int rc;

    join_or_fail(w, src, w->src_prefix, m->src);
    if (stat(src, &st) < 0) {
        if (errno == ENOENT && m->optional)
            return;
        fail(w, "stat", errno);
    }
    rc = S_ISDIR(st.st_mode) ? mkdir_p(dst, 0755) : touch(dst, 0644);
    if (rc < 0)
        fail(w, S_ISDIR(st.st_mode) ? "mkdir" : "open", -rc);
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail(w, "mount(MS_BIND)", errno);
    if (flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC))
        remount_bind(w, dst, flags);
}

/*
 * A tree the parent cloned with open_tree(OPEN_TREE_CLONE): a root caller's sandbox runs
 * as the overflow uid, which cannot traverse the host's 0700 directories (/root) to reach
 * a bind source by path; the parent, still root, resolved it instead. move_mount(2)
 * accepts a detached tree in any mount namespace whose owner we hold CAP_SYS_ADMIN over,
 * while mount(MS_BIND) of it is refused (EINVAL: not in our namespace).
 */
static void do_tree(const struct where *w, const struct isorun_mount *m, const char *dst,
                    unsigned long flags) {
    struct stat st;
    int rc;

    if (fstat(m->tree_fd, &st) < 0)
        fail(w, "fstat", errno);
    rc = S_ISDIR(st.st_mode) ? mkdir_p(dst, 0755) : touch(dst, 0644);
    if (rc < 0)
        fail(w, S_ISDIR(st.st_mode) ? "mkdir" : "open", -rc);
    if (syscall(SYS_move_mount, m->tree_fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    /* close_fds spared it for this step only; the command must not inherit a host tree. */
    close(m->tree_fd);
    if (flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC))
        remount_bind(w, dst, flags);
}

static void do_fs(const struct where *w, const char *dst, const char *type,
                  unsigned long flags, const char *data, mode_t mode) {
    int rc = mkdir_p(dst, mode);

    if (rc < 0)
        fail(w, "mkdir", -rc);
    if (mount(type, dst, type, flags, data) < 0)
        fail(w, "mount", errno);
}

/*
 * A fresh procfs still lets a process with CAP_SYS_ADMIN in the owning user namespace
 * write kernel-wide knobs; bind these over themselves read-only (the set container
 * runtimes mask) so nothing in the sandbox can reconfigure the host kernel.
 */
static void do_proc(const struct where *w, const char *dst) {
    static const char *const ro[] = {"/sys", "/sysrq-trigger", "/irq", "/bus"};
    char path[PATH_MAX];
    size_t i;

    do_fs(w, dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555);
    for (i = 0; i < sizeof ro / sizeof ro[0]; i++) {
        join_or_fail(w, path, dst, ro[i]);
        if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            fail(w, "mount(MS_BIND)", errno);
        }
        remount_bind(w, path, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    }
}

static void do_symlink(const struct where *w, const char *target, const char *dst) {
    int rc = mkdir_parent(dst);

    if (rc < 0)
        fail(w, "mkdir", -rc);
    if (symlink(target, dst) < 0)
        fail(w, "symlink", errno);
}

static void do_dev(const struct where *w, const char *dst) {
    static const char *const nodes[] = {"/null", "/zero", "/full", "/random", "/urandom",
                                        "/tty"};
    static const char *const links[][2] = {{"/proc/self/fd", "/fd"},
                                           {"/proc/self/fd/0", "/stdin"},
                                           {"/proc/self/fd/1", "/stdout"},
                                           {"/proc/self/fd/2", "/stderr"},
                                           {"pts/ptmx", "/ptmx"}};
    char path[PATH_MAX], src[PATH_MAX];
    size_t i;
    int rc;

    /* nodev on the tmpfs is fine: each node below is its own bind mount with its own flags. */
    do_fs(w, dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755", 0755);
    for (i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        join_or_fail(w, path, dst, nodes[i]);
        join_or_fail(w, src, w->src_prefix, "/dev");
        join_or_fail(w, src, src, nodes[i]);
        /* Bind, not mknod: mknod of a device needs CAP_MKNOD in the initial namespace. */
        rc = touch(path, 0666);
        if (rc < 0)
            fail(w, "open", -rc);
        if (mount(src, path, NULL, MS_BIND, NULL) < 0)
            fail(w, "mount(MS_BIND)", errno);
    }
    /*
     * newinstance: a private pts so the sandbox cannot open the host's terminals;
     * ptmxmode=0666 so the unprivileged command can open /dev/ptmx (devpts(5)).
     */
    join_or_fail(w, path, dst, "/pts");
    do_fs(w, path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620", 0755);
    join_or_fail(w, path, dst, "/shm");
    do_fs(w, path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777);
    for (i = 0; i < sizeof links / sizeof links[0]; i++) {
        join_or_fail(w, path, dst, links[i][1]);
        do_symlink(w, links[i][0], path);
    }
}

static void do_file(const struct where *w, const struct isorun_mount *m, const char *dst) {
    size_t done = 0;
    ssize_t n;
    int fd, rc = mkdir_parent(dst);

    if (rc < 0)
        fail(w, "mkdir", -rc);
    fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        fail(w, "open", errno);
    while (done < m->src_len) {
        n = write(fd, m->src + done, m->src_len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail(w, "write", errno);
        done += (size_t)n;
    }
    /* fchmod after open: the mode given to open(2) is filtered through the umask. */
    if (fchmod(fd, (mode_t)m->mode) < 0)
        fail(w, "fchmod", errno);
    close(fd);
}

static void apply_one(const struct where *w, const struct isorun_mount *m) {
    char dst[PATH_MAX];
    int rc;

    join_or_fail(w, dst, w->dst_prefix, m->dst);
    switch (m->kind) {
    case ISORUN_MOUNT_BIND:
        /* Device nodes are only usable through DEV_BIND; a plain bind never grants them. */
        do_bind(w, m, dst, m->flags | MS_NODEV);
        break;
    case ISORUN_MOUNT_TREE:
        do_tree(w, m, dst, m->flags | MS_NODEV);
        break;
    case ISORUN_MOUNT_DEV_BIND:
        do_bind(w, m, dst, m->flags & ~(unsigned long)MS_NODEV);
        break;
    case ISORUN_MOUNT_TMPFS:
        do_fs(w, dst, "tmpfs", m->flags | MS_NOSUID | MS_NODEV, m->data, (mode_t)m->mode);
        break;
    case ISORUN_MOUNT_PROC:
        do_proc(w, dst);
        break;
    case ISORUN_MOUNT_DEV:
        do_dev(w, dst);
        break;
    case ISORUN_MOUNT_SYMLINK:
        do_symlink(w, m->src, dst);
        break;
    case ISORUN_MOUNT_FILE:
        do_file(w, m, dst);
        break;
    case ISORUN_MOUNT_DIR:
        rc = mkdir_p(dst, (mode_t)m->mode);
        if (rc < 0)
            fail(w, "mkdir", -rc);
        /* mkdir_p leaves existing directories alone and its mode goes through the umask. */
        if (chmod(dst, (mode_t)m->mode) < 0)
            fail(w, "chmod", errno);
        break;
    case ISORUN_MOUNT_MQUEUE:
        do_fs(w, dst, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0755);
        break;
    default:
        fail(w, "kind", EINVAL);
    }
}

static void apply_all(const struct isorun_spec *spec, const char *src_prefix,
                      const char *dst_prefix) {
    struct where w = {spec, src_prefix, dst_prefix, -1};
    size_t i;

    for (i = 0; i < spec->n_mounts; i++) {
        w.index = spec->mounts[i].step;
        apply_one(&w, &spec->mounts[i]);
    }
}

static void root_fail(const struct isorun_spec *spec, const char *step, const char *syscall) {
    isorun_child_fail(spec, step, syscall, errno, -1);
}

void isorun_child_mount(const struct isorun_spec *spec) {
    int keep_root = spec->root[0] == '\0';
    char path[PATH_MAX];

    if (!(spec->clone_flags & CLONE_NEWNS)) {
        /* Mounting without a private mount namespace would change the host's view. */
        if (!keep_root || spec->n_mounts > 0)
            isorun_child_fail(spec, "root", "clone(CLONE_NEWNS)", EINVAL, -1);
        return;
    }
    /*
     * First, before any mount: the host's / is usually a shared mount (systemd), and
     * clone(CLONE_NEWNS) copies that propagation, so every mount below would otherwise
     * appear on the host too. Private also keeps host mount events out.
     */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        root_fail(spec, "root", "mount(MS_PRIVATE)");
    if (keep_root) {
        apply_all(spec, "", "");
    } else {
        if (mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") < 0)
            root_fail(spec, "root", "mount(tmpfs)");
        if (mkdir(STAGE OLD, 0700) < 0 || mkdir(STAGE NEW, 0755) < 0)
            root_fail(spec, "root", "mkdir");
        if (strcmp(spec->root, "tmpfs") == 0 &&
            mount("tmpfs", STAGE NEW, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
            root_fail(spec, "root", "mount(tmpfs)");
        /*
         * pivot_root(2) rather than chroot(2): chroot leaves the host root as the mount
         * namespace's root, and a process with CAP_SYS_CHROOT walks back out of it.
         */
        if (chdir(STAGE) < 0)
            root_fail(spec, "root", "chdir");
        if (syscall(SYS_pivot_root, ".", "." OLD) < 0)
            root_fail(spec, "pivot_root", "pivot_root");
        if (chdir("/") < 0)
            root_fail(spec, "pivot_root", "chdir");
        /*
         * A host directory as root binds only now, from /old like every other source:
         * before the pivot the stage covers /tmp, where the directory may well lie.
         */
        if (strcmp(spec->root, "tmpfs") != 0) {
            if (isorun_join(path, sizeof path, OLD, spec->root) < 0)
                isorun_child_fail(spec, "root", "path", ENAMETOOLONG, -1);
            if (mount(path, NEW, NULL, MS_BIND | MS_REC, NULL) < 0)
                root_fail(spec, "root", "mount(MS_BIND)");
        }
        /*
         * All mounts while the host root is still attached at /old: sources resolve
         * there, and a new procfs is only allowed while a fully visible proc exists in
         * this mount namespace (mount_too_revealing in fs/namespace.c).
         */
        apply_all(spec, OLD, NEW);
        /* Detach, not unmount: busy host mounts cannot be unmounted, only cut loose. */
        if (umount2(OLD, MNT_DETACH) < 0)
            root_fail(spec, "pivot_root", "umount2");
        /*
         * pivot_root(".", ".") stacks the stage on top of the new root; detaching it
         * leaves the new root as "/" with nothing above it (pivot_root(2), NOTES).
         */
        if (chdir(NEW) < 0)
            root_fail(spec, "pivot_root", "chdir");
        if (syscall(SYS_pivot_root, ".", ".") < 0)
            root_fail(spec, "pivot_root", "pivot_root");
        if (umount2(".", MNT_DETACH) < 0)
            root_fail(spec, "pivot_root", "umount2");
        if (chdir("/") < 0)
            root_fail(spec, "pivot_root", "chdir");
    }
    if (spec->cwd[0] != '\0' && chdir(spec->cwd) < 0)
        root_fail(spec, "cwd", "chdir");
}
