/* A mask: a credential location hidden under an empty, read-only mount. */
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
void isorun_mount_mask(const struct where *w, const struct isorun_mount *m) {
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
