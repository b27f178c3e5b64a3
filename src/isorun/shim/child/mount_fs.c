/*
 * New filesystems for the file view, made by descriptor: fsopen(2)/fsmount(2) onto an
 * open destination, and the names mounts go on made beneath an open directory. The kinds
 * in mount.c, mount_dev.c and mount_overlay.c build on these.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mount.h"

/*
 * A new filesystem made with fsopen(2)/fsmount(2) and attached onto the destination's
 * descriptor: mount(2) would take the destination by path and follow a link there.
 * ``data`` is mount(2)'s comma-separated option string, each option one fsconfig(2)
 * call. Returns the new mount's root directory, for the caller to fill by descriptor.
 */
int isorun_mount_fs_at(const struct where *w, int dst, const char *type, unsigned long flags,
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
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, isorun_mount_attr(flags));
    if (mnt < 0)
        fail(w, "fsmount", errno);
    close(fs);
    if (syscall(SYS_move_mount, mnt, "", dst, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(w, "move_mount", errno);
    return mnt;
}

int isorun_mount_fs(const struct where *w, const char *path, const char *type,
                    unsigned long flags, const char *data, mode_t mode) {
    int dst = isorun_mount_open_dst(w, path, 1, mode), mnt;

    mnt = isorun_mount_fs_at(w, dst, type, flags, data);
    close(dst);
    return mnt;
}

/* ``name`` made under the directory descriptor dir for a mount: a directory or a file. */
int isorun_mount_make_at(const struct where *w, int dir, const char *name, int is_dir,
                         mode_t mode) {
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
