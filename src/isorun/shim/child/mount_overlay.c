/* An overlay mount: a writable view of a host directory whose changes stay in the sandbox. */
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
void isorun_mount_overlay(const struct where *w, const struct isorun_mount *m) {
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
    isorun_decimal(num, sizeof num, w->index < 0 ? 0 : w->index);
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
    dst = isorun_mount_open_dst(w, m->dst, 1, 0755);
    if (syscall(SYS_move_mount, mnt, "", dst, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    close(dst);
    close(mnt);
}
