/*
 * Shared by the file view's sources (mount.c walks the spec's mounts; mount_fs.c makes new
 * filesystems; mount_dev.c, mount_overlay.c, mount_mask.c and mount_root.c hold the larger
 * kinds and the new root):
 * the state of one walk and the by-descriptor primitives every kind builds on. Child side,
 * between clone(2) and execve(2): isorun_child.h's rules apply.
 */
#ifndef ISORUN_MOUNT_H
#define ISORUN_MOUNT_H

#include <sys/syscall.h>
#include <sys/types.h>
#include <linux/mount.h>
#include <unistd.h>

#include "isorun_child.h"

struct where {
    const struct isorun_spec *spec;
    /* O_PATH descriptors of the host root (sources) and the new root (destinations) */
    int src_root;
    int dst_root;
    int index;
    /* 1 when building on the stage (a new root): overlays keep their changes there */
    int stage;
};

static inline void fail(const struct where *w, const char *syscall, int err) {
    isorun_child_fail(w->spec, "mount", syscall, err, w->index);
}

static inline int fsconfig_string(int fs, const char *key, const char *value) {
    return (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, key, value, 0);
}

/* mount.c: the destination opened or made beneath the new root (isorun_child_open_dst). */
int isorun_mount_open_dst(const struct where *w, const char *path, int dir, mode_t mode);
/* Attach a detached tree onto the descriptor dst, then add flags' attributes. */
void isorun_mount_attach(const struct where *w, int tree, int dst, unsigned long flags);
/* MOUNT_ATTR_* of the MS_* flags a mount takes (read-only, nosuid, nodev, noexec). */
unsigned long long isorun_mount_attr(unsigned long flags);
/* mount_fs.c: a new filesystem on dst (or on the path, made as a directory); its root
 * descriptor. */
int isorun_mount_fs_at(const struct where *w, int dst, const char *type, unsigned long flags,
                       const char *data);
int isorun_mount_fs(const struct where *w, const char *path, const char *type,
                    unsigned long flags, const char *data, mode_t mode);
int isorun_mount_make_at(const struct where *w, int dir, const char *name, int is_dir,
                         mode_t mode);
void isorun_decimal(char *buf, size_t size, int n);
void isorun_mount_apply_all(const struct isorun_spec *spec, const char *src_root,
                            const char *dst_root, int stage);

/* The kinds with files of their own. */
void isorun_mount_dev(const struct where *w, const struct isorun_mount *m);
void isorun_mount_overlay(const struct where *w, const struct isorun_mount *m);
void isorun_mount_mask(const struct where *w, const struct isorun_mount *m);
/* mount_root.c: a rootfs tree's submounts read-only when the root goes read-only. */
int isorun_mount_seal_rootfs(const struct isorun_spec *spec, int tree);

#endif
