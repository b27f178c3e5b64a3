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

#include "mount.h"

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

int isorun_mount_seal_rootfs(const struct isorun_spec *spec, int tree) {
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
    if (isorun_mount_seal_rootfs(spec, tree) < 0)
        root_fail(spec, "root", "mount_setattr");
    close(tree);
    close(dst);
    close(src);
    close(old);
}

/*
 * Onto the stage: a tmpfs at STAGE becomes "/" with the host root at OLD and the new
 * root's mount point at NEW.
 */
static void enter_stage(const struct isorun_spec *spec) {
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
}

/* Off the stage: the host root cut loose, then the new root made "/". */
static void leave_stage(const struct isorun_spec *spec) {
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
        isorun_mount_apply_all(spec, "/", "/", 0);
    } else {
        enter_stage(spec);
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
        isorun_mount_apply_all(spec, OLD, NEW, 1);
        leave_stage(spec);
    }
    if (spec->cwd[0] != '\0' && chdir(spec->cwd) < 0)
        root_fail(spec, "cwd", "chdir");
}
