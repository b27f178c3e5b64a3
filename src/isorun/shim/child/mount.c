/*
 * The file view's mounts: each of the spec's mounts applied in order, from a source
 * beneath the host root onto a destination beneath the new root, both by descriptor and
 * following no link (beneath.c says why). mount_root.c makes the new root and pivots into
 * it; the larger kinds have files of their own (mount_dev.c, mount_overlay.c, mount_mask.c),
 * and mount_fs.c makes new filesystems by descriptor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mount.h"

int isorun_mount_open_dst(const struct where *w, const char *path, int dir, mode_t mode) {
    int fd = isorun_child_open_dst(w->dst_root, path, dir, mode);

    if (fd < 0)
        fail(w, dir ? "mkdir" : "open", -fd);
    return fd;
}

unsigned long long isorun_mount_attr(unsigned long flags) {
    unsigned long long attr = 0;

    if (flags & MS_RDONLY)
        attr |= MOUNT_ATTR_RDONLY;
    if (flags & MS_NOSUID)
        attr |= MOUNT_ATTR_NOSUID;
    if (flags & MS_NODEV)
        attr |= MOUNT_ATTR_NODEV;
    if (flags & MS_NOEXEC)
        attr |= MOUNT_ATTR_NOEXEC;
    return attr;
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
static void set_attr(const struct where *w, int tree, unsigned long flags) {
    struct mount_attr attr;

    memset(&attr, 0, sizeof attr);
    attr.attr_set = isorun_mount_attr(flags);
    if (attr.attr_set != 0 &&
        syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        fail(w, "mount_setattr", errno);
}

/* Attach the detached tree at the descriptor dst, then apply flags (see set_attr). */
void isorun_mount_attach(const struct where *w, int tree, int dst, unsigned long flags) {
    if (syscall(SYS_move_mount, tree, "", dst, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    set_attr(w, tree, flags);
}

/*
 * A bind from the host: the source opened under the host root with no link followed,
 * cloned from that very descriptor (open_tree(2) with AT_EMPTY_PATH) and attached onto
 * the destination's descriptor. A missing optional source is skipped; an optional one
 * that is a link is refused like any other (docs/security.md says why).
 */
static void do_bind(const struct where *w, const struct isorun_mount *m, unsigned long flags) {
    struct stat st;
    int src, tree, dst;

    src = isorun_child_open_beneath(w->src_root, m->src, O_PATH);
    if (src < 0) {
        if ((errno == ENOENT || errno == ENOTDIR) && m->optional)
            return;
        fail(w, "openat2", errno);
    }
    if (fstat(src, &st) < 0)
        fail(w, "fstat", errno);
    tree = (int)syscall(SYS_open_tree, src, "",
                        AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
    if (tree < 0)
        fail(w, "open_tree", errno);
    close(src);
    dst = isorun_mount_open_dst(w, m->dst, S_ISDIR(st.st_mode), S_ISDIR(st.st_mode) ? 0755 : 0644);
    isorun_mount_attach(w, tree, dst, flags);
    close(dst);
    close(tree);
}

/*
 * A tree the parent cloned with open_tree(OPEN_TREE_CLONE): a root caller's sandbox runs
 * as the overflow uid, which cannot traverse the host's 0700 directories (/root) to reach
 * a bind source by path; the parent, still root, resolved it instead. move_mount(2)
 * accepts a detached tree in any mount namespace whose owner we hold CAP_SYS_ADMIN over,
 * while mount(MS_BIND) of it is refused (EINVAL: not in our namespace).
 */
static void do_tree(const struct where *w, const struct isorun_mount *m, unsigned long flags) {
    struct stat st;
    int dst;

    if (fstat(m->tree_fd, &st) < 0)
        fail(w, "fstat", errno);
    dst = isorun_mount_open_dst(w, m->dst, S_ISDIR(st.st_mode), S_ISDIR(st.st_mode) ? 0755 : 0644);
    isorun_mount_attach(w, m->tree_fd, dst, flags);
    close(dst);
    /* A rootfs directory cloned by a root caller's parent: the tree over the whole root. */
    if (m->dst[isorun_leading_slashes(m->dst)] == '\0' &&
        isorun_mount_seal_rootfs(w->spec, m->tree_fd) < 0)
        fail(w, "mount_setattr", errno);
    /* close_fds spared it for this step only; the command must not inherit a host tree. */
    close(m->tree_fd);
}

/*
 * A fresh procfs still lets a process with CAP_SYS_ADMIN in the owning user namespace
 * write kernel-wide knobs; bind these over themselves read-only (the set container
 * runtimes mask) so nothing in the sandbox can reconfigure the host kernel.
 */
static void do_proc(const struct where *w, const char *dst) {
    static const char *const ro[] = {"sys", "sysrq-trigger", "irq", "bus"};
    size_t i;
    int mnt, tree, at;

    mnt = isorun_mount_fs(w, dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555);
    for (i = 0; i < sizeof ro / sizeof ro[0]; i++) {
        /* Our own procfs: no name here is a link someone else made. */
        at = openat(mnt, ro[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (at < 0) {
            if (errno == ENOENT)
                continue;
            fail(w, "open", errno);
        }
        tree = (int)syscall(SYS_open_tree, at, "",
                            AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
        if (tree < 0)
            fail(w, "open_tree", errno);
        isorun_mount_attach(w, tree, at, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
        close(tree);
        close(at);
    }
    close(mnt);
}

static void do_symlink(const struct where *w, const char *target, const char *dst) {
    char buf[PATH_MAX];
    const char *name;
    int dir = isorun_child_open_parent(w->dst_root, dst, buf, &name);

    if (dir < 0)
        fail(w, "mkdir", -dir);
    if (symlinkat(target, dir, name) < 0)
        fail(w, "symlink", errno);
    isorun_child_close_parent(w->dst_root, dir);
}

static void do_file(const struct where *w, const struct isorun_mount *m) {
    struct stat st;
    char buf[PATH_MAX];
    const char *name;
    size_t done = 0;
    ssize_t n;
    int fd, dir = isorun_child_open_parent(w->dst_root, m->dst, buf, &name);

    if (dir < 0)
        fail(w, "mkdir", -dir);
    /*
     * O_NONBLOCK: a FIFO planted at dst (in a directory an earlier run could write) would
     * otherwise block this open for good, and the launcher with it (ENXIO instead); any
     * other file that is not a regular one is refused below.
     */
    fd = openat(dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                0600);
    if (fd < 0)
        fail(w, "open", errno);
    isorun_child_close_parent(w->dst_root, dir);
    if (fstat(fd, &st) < 0)
        fail(w, "fstat", errno);
    if (!S_ISREG(st.st_mode))
        fail(w, "open", EINVAL);
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

/*
 * The one mount at dst read-only, not the mounts on it: the new root once every mount
 * point exists in it (/tmp on it stays writable). Only adds the flag, as set_attr.
 */
static void remount_ro(const struct where *w, const struct isorun_mount *m) {
    struct mount_attr attr;
    int dst = isorun_mount_open_dst(w, m->dst, 1, 0755);

    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, dst, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
        fail(w, "mount_setattr", errno);
    close(dst);
}

/* Decimal digits of n (n >= 0) into buf, NUL-terminated: snprintf is not async-signal-safe. */
void isorun_decimal(char *buf, size_t size, int n) {
    char tmp[16];
    size_t len = 0, i;

    do {
        tmp[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0 && len < sizeof tmp);
    for (i = 0; i < len && i + 1 < size; i++)
        buf[i] = tmp[len - 1 - i];
    buf[i] = '\0';
}

static void do_dir(const struct where *w, const struct isorun_mount *m) {
    int fd = isorun_mount_open_dst(w, m->dst, 1, (mode_t)m->mode), dir;

    /*
     * An existing directory keeps its mode otherwise, and mkdir's goes through the umask.
     * fchmod needs a real descriptor: "." from the checked one is that very directory.
     */
    dir = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        fail(w, "open", errno);
    close(fd);
    if (fchmod(dir, (mode_t)m->mode) < 0)
        fail(w, "chmod", errno);
    close(dir);
}

static void apply_one(const struct where *w, const struct isorun_mount *m) {
    switch (m->kind) {
    case ISORUN_MOUNT_BIND:
        /* Device nodes are only usable through DEV_BIND; a plain bind never grants them. */
        do_bind(w, m, m->flags | MS_NODEV);
        break;
    case ISORUN_MOUNT_TREE:
        do_tree(w, m, m->flags | MS_NODEV);
        break;
    case ISORUN_MOUNT_DEV_BIND:
        do_bind(w, m, m->flags & ~(unsigned long)MS_NODEV);
        break;
    case ISORUN_MOUNT_TMPFS:
        close(isorun_mount_fs(w, m->dst, "tmpfs", m->flags | MS_NOSUID | MS_NODEV, m->data,
                              (mode_t)m->mode));
        break;
    case ISORUN_MOUNT_PROC:
        do_proc(w, m->dst);
        break;
    case ISORUN_MOUNT_DEV:
        isorun_mount_dev(w, m);
        break;
    case ISORUN_MOUNT_REMOUNT_RO:
        remount_ro(w, m);
        break;
    case ISORUN_MOUNT_OVERLAY:
        isorun_mount_overlay(w, m);
        break;
    case ISORUN_MOUNT_MASK:
        isorun_mount_mask(w, m);
        break;
    case ISORUN_MOUNT_SYMLINK:
        do_symlink(w, m->src, m->dst);
        break;
    case ISORUN_MOUNT_FILE:
        do_file(w, m);
        break;
    case ISORUN_MOUNT_DIR:
        do_dir(w, m);
        break;
    case ISORUN_MOUNT_MQUEUE:
        close(isorun_mount_fs(w, m->dst, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0755));
        break;
    default:
        fail(w, "kind", EINVAL);
    }
}

void isorun_mount_apply_all(const struct isorun_spec *spec, const char *src_root,
                            const char *dst_root, int stage) {
    struct where w = {spec, -1, -1, -1, stage ? 1 : -1};
    size_t i;

    w.src_root = open(src_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    w.dst_root = open(dst_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (w.src_root < 0 || w.dst_root < 0)
        isorun_child_fail(spec, "root", "open", errno, -1);
    for (i = 0; i < spec->n_mounts; i++) {
        w.index = spec->mounts[i].step;
        apply_one(&w, &spec->mounts[i]);
        /*
         * A mount over the whole new root (a rootfs tree) stacks on the directory our
         * descriptor holds, and a lookup starting there stays under it: reopen by path,
         * which crosses into the top mount. The path is our own staging directory.
         */
        if (spec->mounts[i].dst[isorun_leading_slashes(spec->mounts[i].dst)] == '\0') {
            close(w.dst_root);
            w.dst_root = open(dst_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (w.dst_root < 0)
                isorun_child_fail(spec, "root", "open", errno, -1);
        }
    }
    close(w.src_root);
    close(w.dst_root);
}
