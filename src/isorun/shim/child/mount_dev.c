/*
 * A minimal /dev: a tmpfs holding binds of the harmless host nodes, a private devpts and
 * the standard links, and the command's own terminal at /dev/console when it shares one.
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

/* A /dev when the DEV mount carries no options: mount points and symlinks only. */
#define DEV_OPTIONS "mode=0755,size=64k,nr_inodes=64"
/* Unix98 pty slaves: majors 136 to 143 (Documentation/admin-guide/devices.txt). */
#define PTY_SLAVE_MAJOR 136
#define PTY_SLAVE_MAJORS 8

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
static void bind_terminal(const struct where *w, int dev) {
    struct stat st, found;
    char path[32], digits[16];
    int from, tree, at;

    if (w->spec->new_session != ISORUN_SESSION_TERMINAL_JOB || fstat(0, &st) < 0 ||
        !S_ISCHR(st.st_mode) || major(st.st_rdev) < PTY_SLAVE_MAJOR ||
        major(st.st_rdev) >= PTY_SLAVE_MAJOR + PTY_SLAVE_MAJORS)
        return;
    isorun_decimal(digits, sizeof digits,
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
    at = isorun_mount_make_at(w, dev, "console", 0, 0600);
    isorun_mount_attach(w, tree, at, MS_NOSUID | MS_NOEXEC);
    close(at);
    close(tree);
}

void isorun_mount_dev(const struct where *w, const struct isorun_mount *m) {
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
    dev = isorun_mount_fs(w, m->dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
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
        at = isorun_mount_make_at(w, dev, nodes[i], 0, 0666);
        isorun_mount_attach(w, tree, at, 0);
        close(at);
        close(tree);
    }
    /*
     * newinstance: a private pts so the sandbox cannot open the host's terminals;
     * ptmxmode=0666 so the unprivileged command can open /dev/ptmx (devpts(5)).
     */
    at = isorun_mount_make_at(w, dev, "pts", 1, 0755);
    sub = isorun_mount_fs_at(w, at, "devpts", MS_NOSUID | MS_NOEXEC,
                             "newinstance,ptmxmode=0666,mode=620");
    close(sub);
    close(at);
    bind_terminal(w, dev);
    for (i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0)
            fail(w, "symlink", errno);
    close(dev);
}
