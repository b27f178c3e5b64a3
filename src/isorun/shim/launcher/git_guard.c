/*
 * The .git guard's second half (issue #13), on the launcher's side of a native launch.
 *
 * The first half (compile/exposure.py) binds <dst>/.git read-only over each writable
 * bind that has one. Where there is none, nothing can be mounted: a mount needs a mount
 * point, and making one would write the caller's directory. The sandbox may then create
 * <dst>/.git (a directory, or a file saying "gitdir: ..."), and git on the host, run
 * there later, finds it before any repository above and runs its config
 * (core.fsmonitor on `git status`) and hooks as the caller. So the launcher notes each
 * guard whose source is missing before the clone and, once the sandbox has ended (its
 * pid 1 gone, every process of it with it: nothing of the sandbox can race this), moves
 * a .git that appeared there aside with renameat2(RENAME_NOREPLACE), which acts on the
 * name and never follows it, and says so on stderr.
 *
 * A guard is what exposure.add_git_guards makes and isorun.sandbox.git_guard finds the
 * same way: an optional read-only bind from a ".git" to a ".git".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "launcher.h"

/* MS_RDONLY (<sys/mount.h>, whose <linux/mount.h> twin clashes; the value is the ABI) */
#define GUARD_RDONLY 1UL

/* path's last component is ".git": only such a name is ever moved aside */
static int names_git(const char *path) {
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;

    return slash != NULL && strcmp(slash + 1, ".git") == 0;
}

static int is_git_guard(const struct isorun_mount *m) {
    return m->kind == ISORUN_MOUNT_BIND && m->optional && (m->flags & GUARD_RDONLY) &&
           names_git(m->dst) && names_git(m->src);
}

size_t isorun_git_guards_missing(const struct isorun_spec *s, const char **out, size_t cap) {
    struct stat st;
    size_t i, n = 0;

    for (i = 0; i < s->n_mounts; i++) {
        const struct isorun_mount *m = &s->mounts[i];

        if (!is_git_guard(m) || lstat(m->src, &st) == 0 || errno != ENOENT)
            continue;
        if (n == cap)
            return cap + 1;
        out[n++] = m->src;
    }
    return n;
}

int isorun_git_guards_quarantine(const char *const *missing, size_t n) {
    char target[PATH_MAX];
    struct stat st;
    int planted = 0, rc;
    unsigned k;
    size_t i;

    for (i = 0; i < n; i++) {
        if (lstat(missing[i], &st) < 0)
            continue;
        planted++;
        rc = -1;
        for (k = 0; k < 100 && rc < 0; k++) {
            if (snprintf(target, sizeof target, "%s.isorun-quarantine-%ld-%u", missing[i],
                         (long)getpid(), k) >= (int)sizeof target) {
                errno = ENAMETOOLONG;
                break;
            }
            rc = renameat2(AT_FDCWD, missing[i], AT_FDCWD, target, RENAME_NOREPLACE);
            if (rc < 0 && errno != EEXIST)
                break;
        }
        if (rc == 0)
            fprintf(stderr,
                    "isorun: warning: the sandbox created %s where there was none; git on "
                    "the host would run its config and hooks as you there. Moved to %s\n"
                    "  hint: inspect it as untrusted output, then delete it\n",
                    missing[i], target);
        else
            fprintf(stderr,
                    "isorun: error: the sandbox created %s where there was none, and it "
                    "could not be moved aside: %s\n"
                    "  hint: delete it before running git in that directory\n",
                    missing[i], strerror(errno));
    }
    return planted;
}

size_t isorun_git_guards_all(const struct isorun_spec *s, const char **out, size_t cap) {
    size_t i, n = 0;

    for (i = 0; i < s->n_mounts; i++) {
        if (!is_git_guard(&s->mounts[i]))
            continue;
        if (n == cap)
            return cap + 1;
        out[n++] = s->mounts[i].src;
    }
    return n;
}

void isorun_git_guards_walk(const char *const *guards, size_t n, const struct timespec *since) {
    static char out[8192];
    char root[PATH_MAX];
    size_t i;

    for (i = 0; i < n; i++) {
        const char *slash = strrchr(guards[i], '/');

        /* each guard's directory is a writable bind's source (exposure.add_git_guards) */
        if (slash == NULL || (size_t)(slash - guards[i]) >= sizeof root)
            continue;
        memcpy(root, guards[i], (size_t)(slash - guards[i]));
        root[slash - guards[i]] = '\0';
        if (root[0] == '\0')
            strcpy(root, "/");
        if (isorun_planted_walk(root, (long long)since->tv_sec, since->tv_nsec, out,
                                sizeof out) >= 0)
            fputs(out, stderr);
    }
}
