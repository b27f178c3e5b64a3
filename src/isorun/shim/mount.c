/*
 * The file view: a private mount tree, a new root (a tmpfs, or a host directory) filled
 * from the spec's mounts in order, then pivot_root(2) into it and detach the host root.
 *
 * Layout while building: a small staging tmpfs becomes "/" with the host root at /old and
 * the new root at /new, so every host source resolves beneath /old even when it lies
 * under a directory the new root will cover, and every destination beneath /new. Both
 * by descriptor, following no link (beneath.c says why).
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
/* Unix98 pty slaves: majors 136 to 143 (Documentation/admin-guide/devices.txt). */
#define PTY_SLAVE_MAJOR 136
#define PTY_SLAVE_MAJORS 8

struct where {
    const struct isorun_spec *spec;
    /* O_PATH descriptors of the host root (sources) and the new root (destinations) */
    int src_root;
    int dst_root;
    int index;
    /* 1 when building on the stage (a new root): overlays keep their changes there */
    int stage;
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
     * memmove: a may be buf itself, and memcpy between overlapping objects is undefined
     * even when they coincide (C11 7.24.2.1).
     */
    memmove(buf, a, la);
    memmove(buf + la, b, lb);
    buf[la + lb] = '\0';
    return 0;
}

static int open_dst_or_fail(const struct where *w, const char *path, int dir, mode_t mode) {
    int fd = isorun_child_open_dst(w->dst_root, path, dir, mode);

    if (fd < 0)
        fail(w, dir ? "mkdir" : "open", -fd);
    return fd;
}

static unsigned long long mount_attr(unsigned long flags) {
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
    attr.attr_set = mount_attr(flags);
    if (attr.attr_set != 0 &&
        syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        fail(w, "mount_setattr", errno);
}

/* Attach the detached tree at the descriptor dst, then apply flags (see set_attr). */
static void attach(const struct where *w, int tree, int dst, unsigned long flags) {
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
    dst = open_dst_or_fail(w, m->dst, S_ISDIR(st.st_mode), S_ISDIR(st.st_mode) ? 0755 : 0644);
    attach(w, tree, dst, flags);
    close(dst);
    close(tree);
}

/*
 * A rootfs directory's own submounts (a filesystem the host mounted inside it) made
 * read-only when the plan makes the root so (filesystem.root_read_only): remount_ro
 * changes the top mount only, so the profile's binds keep their own flags, and without
 * this every host filesystem mounted below the rootfs directory stayed writable from
 * the sandbox. The whole attached tree goes read-only, then the top alone writable again
 * (when it was) for the mount points still to be made in it; remount_ro seals it last.
 * Only adds flags on the submounts, which is allowed even where the kernel locked them.
 */
static int root_goes_read_only(const struct isorun_spec *spec) {
    size_t i;

    for (i = 0; i < spec->n_mounts; i++)
        if (spec->mounts[i].kind == ISORUN_MOUNT_REMOUNT_RO &&
            spec->mounts[i].dst[isorun_leading_slashes(spec->mounts[i].dst)] == '\0')
            return 1;
    return 0;
}

static int seal_rootfs_submounts(const struct isorun_spec *spec, int tree) {
    struct mount_attr attr;
    struct statvfs sv;

    if (!root_goes_read_only(spec))
        return 0;
    if (fstatvfs(tree, &sv) < 0)
        return -1;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return -1;
    if (sv.f_flag & ST_RDONLY)
        return 0;
    memset(&attr, 0, sizeof attr);
    attr.attr_clr = MOUNT_ATTR_RDONLY;
    return (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr);
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
    dst = open_dst_or_fail(w, m->dst, S_ISDIR(st.st_mode), S_ISDIR(st.st_mode) ? 0755 : 0644);
    attach(w, m->tree_fd, dst, flags);
    close(dst);
    /* A rootfs directory cloned by a root caller's parent: the tree over the whole root. */
    if (m->dst[isorun_leading_slashes(m->dst)] == '\0' &&
        seal_rootfs_submounts(w->spec, m->tree_fd) < 0)
        fail(w, "mount_setattr", errno);
    /* close_fds spared it for this step only; the command must not inherit a host tree. */
    close(m->tree_fd);
}

/*
 * A new filesystem made with fsopen(2)/fsmount(2) and attached onto the destination's
 * descriptor: mount(2) would take the destination by path and follow a link there.
 * ``data`` is mount(2)'s comma-separated option string, each option one fsconfig(2)
 * call. Returns the new mount's root directory, for the caller to fill by descriptor.
 */
static int do_fs_at(const struct where *w, int dst, const char *type, unsigned long flags,
                    const char *data) {
    char opt[256];
    size_t i = 0, n;
    int fs, mnt;
    char *value;

    fs = (int)syscall(SYS_fsopen, type, FSOPEN_CLOEXEC);
    if (fs < 0)
        fail(w, "fsopen", errno);
    while (data != NULL && data[i] != '\0') {
        for (n = 0; data[i + n] != ',' && data[i + n] != '\0'; n++)
            ;
        if (n + 1 > sizeof opt)
            fail(w, "fsconfig", ENAMETOOLONG);
        memcpy(opt, data + i, n);
        opt[n] = '\0';
        i += data[i + n] == ',' ? n + 1 : n;
        if (n == 0)
            continue;
        value = strchr(opt, '=');
        if (value != NULL)
            *value++ = '\0';
        if (syscall(SYS_fsconfig, fs, value ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, opt,
                    value, 0) < 0)
            fail(w, "fsconfig", errno);
    }
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        fail(w, "fsconfig", errno);
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, mount_attr(flags));
    if (mnt < 0)
        fail(w, "fsmount", errno);
    close(fs);
    if (syscall(SYS_move_mount, mnt, "", dst, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    return mnt;
}

static int do_fs(const struct where *w, const char *path, const char *type, unsigned long flags,
                 const char *data, mode_t mode) {
    int dst = open_dst_or_fail(w, path, 1, mode), mnt;

    mnt = do_fs_at(w, dst, type, flags, data);
    close(dst);
    return mnt;
}

/* ``name`` made under the directory descriptor dir for a mount: a directory or a file. */
static int make_at(const struct where *w, int dir, const char *name, int is_dir, mode_t mode) {
    int fd;

    if (is_dir) {
        if (mkdirat(dir, name, mode) < 0)
            fail(w, "mkdir", errno);
    } else {
        fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
            fail(w, "open", errno);
        close(fd);
    }
    fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        fail(w, "open", errno);
    return fd;
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

    mnt = do_fs(w, dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555);
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
        attach(w, tree, at, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
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

/*
 * The terminal the command shares (ISORUN_SESSION_TERMINAL_JOB, the CLI on its terminal)
 * at /dev/console, as bubblewrap's --dev puts it: ttyname(3) (tty, ssh, gpg, script)
 * finds the node of fd 0 by device and inode under /dev, and the host's /dev/pts/N is not
 * in this /dev. Exactly that node, found at the host path its device number names and
 * checked to be the inode fd 0 is open on; this /dev/pts stays a private instance, so no
 * other terminal of the host can be named. Opening it anew gives nothing fd 0 does not:
 * TIOCSTI and TIOCLINUX are refused by the filter whatever the descriptor (the reason
 * terminal_job needs the hardening), TIOCSCTTY can take a terminal from another session
 * only with CAP_SYS_ADMIN in the initial user namespace, TIOCCONS needs the same, and a
 * line discipline (TIOCSETD) is what any descriptor of the terminal could set already.
 * Anything unexpected (stdin not a Unix98 pty, not the host's /dev/pts, a container's
 * own) leaves it out: `tty` then says "not a tty", and no rule is weaker.
 */
static void decimal(char *buf, size_t size, int n);

static void bind_terminal(const struct where *w, int dev) {
    struct stat st, found;
    char path[32], digits[16];
    int from, tree, at;

    if (w->spec->new_session != ISORUN_SESSION_TERMINAL_JOB || fstat(0, &st) < 0 ||
        !S_ISCHR(st.st_mode) || major(st.st_rdev) < PTY_SLAVE_MAJOR ||
        major(st.st_rdev) >= PTY_SLAVE_MAJOR + PTY_SLAVE_MAJORS)
        return;
    decimal(digits, sizeof digits,
            (int)((major(st.st_rdev) - PTY_SLAVE_MAJOR) * 256 + minor(st.st_rdev)));
    if (isorun_join(path, sizeof path, "/dev/pts/", digits) < 0)
        return;
    from = isorun_child_open_beneath(w->src_root, path, O_PATH);
    if (from < 0)
        return;
    if (fstat(from, &found) < 0 || found.st_dev != st.st_dev || found.st_ino != st.st_ino ||
        found.st_rdev != st.st_rdev) {
        close(from);
        return;
    }
    tree = (int)syscall(SYS_open_tree, from, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | O_CLOEXEC);
    close(from);
    if (tree < 0)
        fail(w, "open_tree", errno);
    at = make_at(w, dev, "console", 0, 0600);
    attach(w, tree, at, MS_NOSUID | MS_NOEXEC);
    close(at);
    close(tree);
}

static void do_dev(const struct where *w, const struct isorun_mount *m) {
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    static const char *const links[][2] = {{"/proc/self/fd", "fd"},
                                           {"/proc/self/fd/0", "stdin"},
                                           {"/proc/self/fd/1", "stdout"},
                                           {"/proc/self/fd/2", "stderr"},
                                           {"pts/ptmx", "ptmx"}};
    char src[PATH_MAX];
    size_t i;
    int dev, at, from, tree, sub;

    /*
     * nodev on the tmpfs is fine: each node below is its own bind mount with its own flags.
     * No /dev/shm here: the planner mounts it as a TMPFS of its own, with its size.
     */
    dev = do_fs(w, m->dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                m->data != NULL ? m->data : DEV_OPTIONS, 0755);
    for (i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        if (isorun_join(src, sizeof src, "/dev/", nodes[i]) < 0)
            fail(w, "path", ENAMETOOLONG);
        from = isorun_child_open_beneath(w->src_root, src, O_PATH);
        if (from < 0)
            fail(w, "openat2", errno);
        /* Bind, not mknod: mknod of a device needs CAP_MKNOD in the initial namespace. */
        tree = (int)syscall(SYS_open_tree, from, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | O_CLOEXEC);
        if (tree < 0)
            fail(w, "open_tree", errno);
        close(from);
        at = make_at(w, dev, nodes[i], 0, 0666);
        attach(w, tree, at, 0);
        close(at);
        close(tree);
    }
    /*
     * newinstance: a private pts so the sandbox cannot open the host's terminals;
     * ptmxmode=0666 so the unprivileged command can open /dev/ptmx (devpts(5)).
     */
    at = make_at(w, dev, "pts", 1, 0755);
    sub = do_fs_at(w, at, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620");
    close(sub);
    close(at);
    bind_terminal(w, dev);
    for (i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0)
            fail(w, "symlink", errno);
    close(dev);
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
    int dst = open_dst_or_fail(w, m->dst, 1, 0755);

    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, dst, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
        fail(w, "mount_setattr", errno);
    close(dst);
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
 * The lower directory is opened beneath the host root with no link followed, like a bind
 * source, and handed to overlayfs by that descriptor (FSCONFIG_SET_FD), never by path.
 *
 * The upper directory takes the lower root's mode and owner, because an overlay's root
 * shows the upper one's: a sandbox that may not write the project's top directory must
 * not be able to in the overlay either. An owner this namespace does not map cannot be
 * set (EINVAL) and the mounter's uid, the sandbox's own, stays; stat shows such an owner
 * as the overflow uid, which is the sandbox's own for a root caller. Either way only
 * the top directory is affected, and what is written there is discarded like the rest.
 *
 * "userxattr": overlayfs in a user namespace keeps its metadata in user.* xattrs
 * (trusted.* needs CAP_SYS_ADMIN on the host).
 */
static void do_overlay(const struct where *w, const struct isorun_mount *m) {
    char scratch[PATH_MAX], upper[PATH_MAX], work[PATH_MAX], num[16];
    struct stat st;
    int lower, fs, mnt, dst;

    if (w->stage < 0)
        fail(w, "overlay", EINVAL); /* no stage to hold the changes: the planner refuses */
    lower = isorun_child_open_beneath(w->src_root, m->src, O_RDONLY | O_DIRECTORY);
    if (lower < 0) {
        if ((errno == ENOENT || errno == ENOTDIR) && m->optional)
            return;
        fail(w, "openat2", errno);
    }
    if (fstat(lower, &st) < 0)
        fail(w, "fstat", errno);
    decimal(num, sizeof num, w->index < 0 ? 0 : w->index);
    /* Our own stage (a tmpfs only this process has seen): paths here are ours. */
    if (isorun_join(scratch, sizeof scratch, "/overlay-", num) < 0 ||
        isorun_join(upper, sizeof upper, scratch, "/upper") < 0 ||
        isorun_join(work, sizeof work, scratch, "/work") < 0)
        fail(w, "path", ENAMETOOLONG);
    if (mkdir(scratch, 0700) < 0)
        fail(w, "mkdir", errno);
    if (mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, m->data) < 0)
        fail(w, "mount(tmpfs)", errno);
    if (mkdir(upper, 0700) < 0 || mkdir(work, 0700) < 0)
        fail(w, "mkdir", errno);
    if (chown(upper, st.st_uid, st.st_gid) < 0 && errno != EINVAL)
        fail(w, "chown", errno);
    if (chmod(upper, st.st_mode & 07777) < 0)
        fail(w, "chmod", errno);
    fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        fail(w, "fsopen(overlay)", errno);
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "lowerdir+", NULL, lower) < 0 ||
        fsconfig_string(fs, "upperdir", upper) < 0 || fsconfig_string(fs, "workdir", work) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        fail(w, "fsconfig(overlay)", errno);
    close(lower);
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                       MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                           (m->flags & MS_NOEXEC ? MOUNT_ATTR_NOEXEC : 0));
    if (mnt < 0)
        fail(w, "fsmount", errno);
    close(fs);
    dst = open_dst_or_fail(w, m->dst, 1, 0755);
    if (syscall(SYS_move_mount, mnt, "", dst, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    close(dst);
    close(mnt);
}

/*
 * The directories between a mask and the mount holding it, each bound onto itself: a
 * mount point cannot be renamed (EBUSY), and otherwise a writable bind above a nested
 * location (~/.local over ~/.local/share/keyrings) let the sandbox rename
 * ~/.local/share, which moves the real keyrings on the host out from under the next
 * run's mask (tests/escape/test_attack_native_masks.py). Walked up with "..", so a link
 * the mask followed changes nothing: these are the real parents (``dir`` itself too
 * when ``with_dir``). Not on a read-only
 * mount (nothing to rename) and never on the new root's own mount: a bind of it would
 * escape its final read-only remount. A recursive clone of the same mount keeps its
 * flags and brings the mounts below along (the mask included), so it shows nothing new.
 */
static void pin_parents(const struct where *w, int dir, int with_dir) {
    struct statx root, at;
    struct statvfs sv;
    int cur, parent, tree, first = 1;

    if (statx(w->dst_root, "", AT_EMPTY_PATH, STATX_MNT_ID, &root) < 0)
        fail(w, "statx", errno);
    if (!(root.stx_mask & STATX_MNT_ID))
        fail(w, "statx", ENOSYS);
    cur = fcntl(dir, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        fail(w, "fcntl", errno);
    for (;; first = 0) {
        if (!first || !with_dir) {
            parent = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (parent < 0)
                fail(w, "open", errno);
            close(cur);
            cur = parent;
        }
        if (statx(cur, "", AT_EMPTY_PATH, STATX_MNT_ID, &at) < 0 || fstatvfs(cur, &sv) < 0)
            fail(w, "statx", errno);
        if (at.stx_mnt_id == root.stx_mnt_id)
            break;
        if ((at.stx_attributes & STATX_ATTR_MOUNT_ROOT) || (sv.f_flag & ST_RDONLY))
            continue;
        tree = (int)syscall(SYS_open_tree, cur, "",
                            AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
        if (tree < 0)
            fail(w, "open_tree", errno);
        if (syscall(SYS_move_mount, tree, "", cur, "",
                    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            fail(w, "move_mount", errno);
        close(tree);
    }
    close(cur);
}

/*
 * The directory holding a masked file, resolved as the mask was (".." cannot start from
 * a file's descriptor). A last component that was a link leads elsewhere: its own
 * directory is then the one pinned, which is the path the next run masks again.
 */
static void pin_file_parents(const struct where *w, const char *dst) {
    char buf[PATH_MAX];
    struct open_how how;
    size_t len = isorun_strlen(dst);
    int dir;

    if (len + 1 > sizeof buf)
        fail(w, "path", ENAMETOOLONG);
    memcpy(buf, dst, len + 1);
    while (len > 0 && buf[len - 1] != '/')
        len--;
    buf[len] = '\0';
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    dir = (int)syscall(SYS_openat2, w->dst_root,
                       buf[isorun_leading_slashes(buf)] ? buf + isorun_leading_slashes(buf) : ".",
                       &how, sizeof how);
    if (dir < 0)
        fail(w, "openat2", errno);
    pin_parents(w, dir, 1);
    close(dir);
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
    struct open_how how;
    struct mount_attr attr;
    struct stat st;
    int fd, fs, mnt, null;

    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    fd = (int)syscall(SYS_openat2, w->dst_root, m->dst + isorun_leading_slashes(m->dst), &how,
                      sizeof how);
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
        null = isorun_child_open_beneath(w->src_root, "/dev/null", O_PATH);
        if (null < 0)
            fail(w, "openat2", errno);
        mnt = (int)syscall(SYS_open_tree, null, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (mnt < 0)
            fail(w, "open_tree", errno);
        close(null);
        memset(&attr, 0, sizeof attr);
        attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
        if (syscall(SYS_mount_setattr, mnt, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
            fail(w, "mount_setattr", errno);
    }
    if (syscall(SYS_move_mount, mnt, "", fd, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    close(mnt);
    if (S_ISDIR(st.st_mode))
        pin_parents(w, fd, 0);
    else
        pin_file_parents(w, m->dst);
    close(fd);
}

static void do_dir(const struct where *w, const struct isorun_mount *m) {
    int fd = open_dst_or_fail(w, m->dst, 1, (mode_t)m->mode), dir;

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
        close(do_fs(w, m->dst, "tmpfs", m->flags | MS_NOSUID | MS_NODEV, m->data,
                    (mode_t)m->mode));
        break;
    case ISORUN_MOUNT_PROC:
        do_proc(w, m->dst);
        break;
    case ISORUN_MOUNT_DEV:
        do_dev(w, m);
        break;
    case ISORUN_MOUNT_REMOUNT_RO:
        remount_ro(w, m);
        break;
    case ISORUN_MOUNT_OVERLAY:
        do_overlay(w, m);
        break;
    case ISORUN_MOUNT_MASK:
        do_mask(w, m);
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
        close(do_fs(w, m->dst, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0755));
        break;
    default:
        fail(w, "kind", EINVAL);
    }
}

static void apply_all(const struct isorun_spec *spec, const char *src_root,
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

static void root_fail(const struct isorun_spec *spec, const char *step, const char *syscall) {
    isorun_child_fail(spec, step, syscall, errno, -1);
}

/*
 * A host directory as the new root, by descriptor like every bind: the parent resolved
 * the path (resolve.c), and a link in it now is refused.
 */
static void bind_root(const struct isorun_spec *spec) {
    int old, src, tree, dst;

    old = open(OLD, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (old < 0)
        root_fail(spec, "root", "open");
    src = isorun_child_open_beneath(old, spec->root, O_PATH | O_DIRECTORY);
    if (src < 0)
        root_fail(spec, "root", "openat2");
    tree = (int)syscall(SYS_open_tree, src, "",
                        AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
    if (tree < 0)
        root_fail(spec, "root", "open_tree");
    dst = open(NEW, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dst < 0)
        root_fail(spec, "root", "open");
    if (syscall(SYS_move_mount, tree, "", dst, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        root_fail(spec, "root", "move_mount");
    if (seal_rootfs_submounts(spec, tree) < 0)
        root_fail(spec, "root", "mount_setattr");
    close(tree);
    close(dst);
    close(src);
    close(old);
}

void isorun_child_mount(const struct isorun_spec *spec) {
    int keep_root = spec->root[0] == '\0';

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
        apply_all(spec, "/", "/", 0);
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
        if (strcmp(spec->root, "tmpfs") != 0)
            bind_root(spec);
        /*
         * All mounts while the host root is still attached at /old: sources resolve
         * there, and a new procfs is only allowed while a fully visible proc exists in
         * this mount namespace (mount_too_revealing in fs/namespace.c).
         */
        apply_all(spec, OLD, NEW, 1);
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
