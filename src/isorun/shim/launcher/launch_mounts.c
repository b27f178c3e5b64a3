/*
 * The parent side of a native launch's mounts: bind sources (and, with no new root,
 * destinations) resolved before the clone, cloned into detached trees for a root caller.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launch_record.h"
#include "launcher.h"

/* <linux/mount.h> clashes with glibc 2.36's <sys/mount.h>; the values are the ABI. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* The plan step of the new root, for a failure of its tree's mount (-1: none named). */
static int root_step(const struct isorun_record *rec) {
    size_t i;

    for (i = 0; i < rec->n_steps; i++)
        if (strcmp(rec->step_names[i], "root") == 0)
            return (int)rec->step_indexes[i];
    return -1;
}

/* The parent-side refusal of mount m: ELOOP names a link (parent.failure_error words it). */
static int mount_fail(struct isorun_failure *f, const struct isorun_record *rec,
                      const struct isorun_mount *m, const char *syscall, int err) {
    isorun_launch_fail(f, rec, "mount", syscall, err);
    f->index = m->step;
    return -1;
}

static int clone_tree(int fd) {
    return (int)syscall(SYS_open_tree, fd, "",
                        AT_EMPTY_PATH | OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
}

/*
 * One mount resolved (see isorun_launch_resolve_mounts): 1 to keep it, 0 to drop a
 * missing optional source, -1 with *f filled in.
 */
static int resolve_mount(struct isorun_record *rec, struct isorun_mount *m, int keep_root,
                         int as_root, struct isorun_failure *f) {
    char path[PATH_MAX];
    int fd, tree;

    if (keep_root) {
        fd = isorun_resolve(m->dst, 1, path, sizeof path);
        if (fd == -ELOOP)
            return mount_fail(f, rec, m, "openat", ELOOP);
        if (fd >= 0) {
            close(fd);
            if ((m->dst = isorun_record_strdup(rec, path)) == NULL)
                return mount_fail(f, rec, m, "malloc", ENOMEM);
        }
    }
    if (m->kind != ISORUN_MOUNT_BIND && m->kind != ISORUN_MOUNT_DEV_BIND)
        return 1;
    fd = isorun_resolve(m->src, 1, path, sizeof path);
    if (fd == -ELOOP)
        return mount_fail(f, rec, m, "openat", ELOOP);
    /* ENOTDIR: a component is a file, so nothing is there (a .git guard of a file) */
    if ((fd == -ENOENT || fd == -ENOTDIR) && m->optional)
        return 0;
    if (fd < 0)
        return 1;
    tree = as_root && m->kind == ISORUN_MOUNT_BIND ? clone_tree(fd) : -1;
    close(fd);
    if (tree >= 0) {
        m->kind = ISORUN_MOUNT_TREE;
        m->tree_fd = tree;
    } else if ((m->src = isorun_record_strdup(rec, path)) == NULL) {
        return mount_fail(f, rec, m, "malloc", ENOMEM);
    }
    return 1;
}

/*
 * A rootfs directory as the new root: as root, a tree attached over an empty tmpfs root
 * as the first mount (the slot the parser kept spare), else the path with no link left.
 */
static int resolve_root(struct isorun_record *rec, int as_root, struct isorun_failure *f) {
    struct isorun_mount *m = rec->mounts;
    char path[PATH_MAX];
    int fd, tree;

    fd = isorun_resolve(rec->spec.root, 1, path, sizeof path);
    if (fd == -ELOOP)
        return isorun_launch_fail(f, rec, "root", "openat", ELOOP);
    if (fd < 0)
        return 0; /* the child reports what fails */
    tree = as_root ? clone_tree(fd) : -1;
    close(fd);
    if (tree >= 0) {
        memmove(m + 1, m, rec->spec.n_mounts * sizeof *m);
        memset(&m[0], 0, sizeof m[0]);
        m[0].kind = ISORUN_MOUNT_TREE;
        m[0].dst = "/";
        m[0].src = rec->spec.root;
        m[0].src_len = strlen(rec->spec.root);
        m[0].mode = 0755;
        m[0].step = root_step(rec);
        m[0].tree_fd = tree;
        rec->spec.n_mounts++;
        rec->spec.root = "tmpfs";
    } else if ((rec->spec.root = isorun_record_strdup(rec, path)) == NULL) {
        return isorun_launch_fail(f, rec, "root", "malloc", ENOMEM);
    }
    return 0;
}

/*
 * Every bind source resolved without following a link the sandbox's side could have
 * written (resolve.c; the same rule as parent.resolve_mounts_in_parent, which says more):
 * a refused link fails the launch with ELOOP and the mount's step, a missing optional
 * source is dropped, and the source becomes the path with no link left, which the child
 * walks again allowing none (mount.c). With no new root, destinations likewise.
 *
 * As root, each bind becomes a detached tree cloned from the checked descriptor: a root
 * caller's sandbox runs as the host's overflow uid, which cannot walk 0700 host
 * directories (/root/.pyenv/...). A rootfs directory likewise: the spec then asks for an
 * empty tmpfs root with the tree attached over all of it as the first mount, the same
 * view. The parser leaves one spare mount slot for it.
 */
int isorun_launch_resolve_mounts(struct isorun_record *rec, struct isorun_failure *f) {
    int as_root = geteuid() == 0 && (rec->spec.clone_flags & CLONE_NEWUSER);
    int keep_root = rec->spec.root[0] == '\0';
    size_t i, j;
    int rc;

    for (i = j = 0; i < rec->spec.n_mounts; i++) {
        rc = resolve_mount(rec, &rec->mounts[i], keep_root, as_root, f);
        if (rc < 0)
            return -1;
        if (rc > 0)
            rec->mounts[j++] = rec->mounts[i];
    }
    rec->spec.n_mounts = j;
    if (keep_root || strcmp(rec->spec.root, "tmpfs") == 0)
        return 0;
    return resolve_root(rec, as_root, f);
}
void isorun_launch_close_trees(struct isorun_record *rec) {
    size_t i;

    for (i = 0; i < rec->spec.n_mounts; i++) {
        if (rec->mounts[i].tree_fd >= 0) {
            close(rec->mounts[i].tree_fd);
            rec->mounts[i].tree_fd = -1;
        }
    }
}
