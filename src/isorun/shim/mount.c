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
#include <linux/openat2.h>
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
/*
 * The stage holds /old, /new and one directory per overlay: a few inodes, no data. Sized
 * like every tmpfs (issue #13), though nothing the command runs ever sees it.
 */
#define STAGE_OPTIONS "mode=0700,size=64k,nr_inodes=64"
/* A tmpfs root when the spec gives none of its own (a first TMPFS at "/"). */
#define ROOT_OPTIONS "mode=0755,size=8m,nr_inodes=2048"
/* A /dev when the DEV mount carries no options: mount points and symlinks only. */
#define DEV_OPTIONS "mode=0755,size=64k,nr_inodes=64"

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

/* An empty regular file to bind a non-directory onto (the mount point must match its type). */
static int touch(const char *path, mode_t mode) {
    int fd, rc = mkdir_parent(path);

    if (rc < 0)
        return rc;
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
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

static void do_dev(const struct where *w, const struct isorun_mount *m, const char *dst) {
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

    /*
     * nodev on the tmpfs is fine: each node below is its own bind mount with its own flags.
     * No /dev/shm here: the planner mounts it as a TMPFS of its own, with its size.
     */
    do_fs(w, dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          m->data != NULL ? m->data : DEV_OPTIONS, 0755);
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

/*
 * The one mount at path read-only, not the mounts on it: the new root once every mount
 * point exists in it (/tmp on it stays writable). Only adds the flag, as remount_bind.
 */
static void remount_ro(const struct where *w, const char *path) {
    struct mount_attr attr;

    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, -1, path, 0, &attr, sizeof attr) < 0)
        fail(w, "mount_setattr", errno);
}

/* Decimal digits of n (n >= 0) into buf, NUL-terminated: snprintf is not async-signal-safe. */
static void decimal(char *buf, size_t size, int n) {
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

static int fsconfig_string(int fs, const char *key, const char *value) {
    return (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, key, value, 0);
}

/*
 * overlayfs over src, its upper and work directories on a tmpfs of their own made on the
 * stage: outside the new tree, so the command reaches the changes only through the
 * overlay, and they vanish with the mount namespace. The overlay keeps the tmpfs alive
 * after the stage is detached (it holds a private clone of the upper mount).
 *
 * The upper directory takes the lower root's mode and owner, because an overlay's root
 * shows the upper one's: a sandbox that may not write the project's top directory must
 * not be able to in the overlay either. An owner this namespace does not map cannot be
 * set (EINVAL) and the mounter's uid, the sandbox's own, stays; stat shows such an owner
 * as the overflow uid, which is the sandbox's own for a root caller. Either way only
 * the top directory is affected, and what is written there is discarded like the rest.
 *
 * The new mount API, not mount(2): a path goes into "lowerdir+" whole, where the mount(2)
 * option string would split it at ',' and ':'. "userxattr": overlayfs in a user namespace
 * keeps its metadata in user.* xattrs (trusted.* needs CAP_SYS_ADMIN on the host).
 */
static void do_overlay(const struct where *w, const struct isorun_mount *m, const char *dst) {
    char lower[PATH_MAX], scratch[PATH_MAX], upper[PATH_MAX], work[PATH_MAX], num[16];
    struct stat st;
    int fs, mnt, rc;

    if (w->src_prefix[0] == '\0')
        fail(w, "overlay", EINVAL); /* no stage to hold the changes: the planner refuses */
    join_or_fail(w, lower, w->src_prefix, m->src);
    if (stat(lower, &st) < 0) {
        if (errno == ENOENT && m->optional)
            return;
        fail(w, "stat", errno);
    }
    if (!S_ISDIR(st.st_mode))
        fail(w, "overlay", ENOTDIR);
    decimal(num, sizeof num, w->index < 0 ? 0 : w->index);
    join_or_fail(w, scratch, "/overlay-", num);
    if (mkdir(scratch, 0700) < 0)
        fail(w, "mkdir", errno);
    if (mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, m->data) < 0)
        fail(w, "mount(tmpfs)", errno);
    join_or_fail(w, upper, scratch, "/upper");
    join_or_fail(w, work, scratch, "/work");
    if (mkdir(upper, 0700) < 0 || mkdir(work, 0700) < 0)
        fail(w, "mkdir", errno);
    if (chown(upper, st.st_uid, st.st_gid) < 0 && errno != EINVAL)
        fail(w, "chown", errno);
    if (chmod(upper, st.st_mode & 07777) < 0)
        fail(w, "chmod", errno);
    rc = mkdir_p(dst, 0755);
    if (rc < 0)
        fail(w, "mkdir", -rc);
    fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        fail(w, "fsopen(overlay)", errno);
    if (fsconfig_string(fs, "lowerdir+", lower) < 0 || fsconfig_string(fs, "upperdir", upper) < 0 ||
        fsconfig_string(fs, "workdir", work) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        fail(w, "fsconfig(overlay)", errno);
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                       MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                           (m->flags & MS_NOEXEC ? MOUNT_ATTR_NOEXEC : 0));
    if (mnt < 0)
        fail(w, "fsmount", errno);
    close(fs);
    if (syscall(SYS_move_mount, mnt, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    close(mnt);
}

/*
 * Hide dst, as the mounts before it left it: a credential location under a bind. Resolved
 * inside the new tree (RESOLVE_IN_ROOT): a symlink there, which a sandbox may have planted
 * in an earlier run, leads to what the command would reach through it, never out of the
 * tree; the mount then goes on the opened descriptor, never on a re-resolved path.
 * Nothing there (ENOENT, ENOTDIR) is nothing to hide; EACCES means the command, which has
 * no more rights than we have now, cannot reach it either.
 */
static void do_mask(const struct where *w, const struct isorun_mount *m) {
    char root[PATH_MAX], null[PATH_MAX];
    struct open_how how;
    struct mount_attr attr;
    struct stat st;
    int rootfd, fd, fs, mnt;

    join_or_fail(w, root, w->dst_prefix, "/");
    rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        fail(w, "open", errno);
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    fd = (int)syscall(SYS_openat2, rootfd, m->dst + 1, &how, sizeof how);
    close(rootfd);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == EACCES)
            return;
        fail(w, "openat2", errno);
    }
    if (fstat(fd, &st) < 0)
        fail(w, "fstat", errno);
    if (S_ISDIR(st.st_mode)) {
        fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0)
            fail(w, "fsopen(tmpfs)", errno);
        if (fsconfig_string(fs, "size", "4k") < 0 || fsconfig_string(fs, "nr_inodes", "1") < 0 ||
            fsconfig_string(fs, "mode", "0555") < 0 ||
            syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
            fail(w, "fsconfig(tmpfs)", errno);
        mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                           MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                               MOUNT_ATTR_NOEXEC);
        if (mnt < 0)
            fail(w, "fsmount", errno);
        close(fs);
    } else {
        /* Reads as empty, takes writes to nowhere, and a socket there refuses connect(). */
        join_or_fail(w, null, w->src_prefix, "/dev/null");
        mnt = (int)syscall(SYS_open_tree, AT_FDCWD, null, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (mnt < 0)
            fail(w, "open_tree", errno);
        memset(&attr, 0, sizeof attr);
        attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
        if (syscall(SYS_mount_setattr, mnt, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
            fail(w, "mount_setattr", errno);
    }
    if (syscall(SYS_move_mount, mnt, "", fd, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    close(mnt);
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
        do_dev(w, m, dst);
        break;
    case ISORUN_MOUNT_REMOUNT_RO:
        remount_ro(w, dst);
        break;
    case ISORUN_MOUNT_OVERLAY:
        do_overlay(w, m, dst);
        break;
    case ISORUN_MOUNT_MASK:
        do_mask(w, m);
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
        if (mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, STAGE_OPTIONS) < 0)
            root_fail(spec, "root", "mount(tmpfs)");
        if (mkdir(STAGE OLD, 0700) < 0 || mkdir(STAGE NEW, 0755) < 0)
            root_fail(spec, "root", "mkdir");
        /*
         * A first TMPFS at "/" is the root itself, with the size the plan gives it
         * (sandbox/native.py); mounting another below it would leave one unsized.
         */
        if (strcmp(spec->root, "tmpfs") == 0 &&
            !(spec->n_mounts > 0 && spec->mounts[0].kind == ISORUN_MOUNT_TMPFS &&
              strcmp(spec->mounts[0].dst, "/") == 0) &&
            mount("tmpfs", STAGE NEW, "tmpfs", MS_NOSUID | MS_NODEV, ROOT_OPTIONS) < 0)
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
