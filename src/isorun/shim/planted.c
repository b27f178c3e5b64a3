/*
 * Files a sandbox plants in a writable bind for the host to run later (issue #13), looked
 * for once the sandbox has ended: the one definition of the rule, used by the isorun
 * front end (launch.c) and, through cffi, by the Python launch paths
 * (isorun.sandbox.git_guard.walk_planted).
 *
 * A nested .git (sub/.git) is found by git on the host before the repository above it
 * when git runs in sub/, and git then runs its config (core.fsmonitor, filter drivers,
 * core.hooksPath) and hooks as the caller. The bind's own .git is git_guard.c's; this
 * walks the directories below the bind's root and moves aside each .git that the run
 * created or changed: its own inode, or one of the entries git takes code from (config,
 * config.worktree, commondir, hooks and each hook), has a ctime at or after the launch.
 * A ctime cannot be set back from inside (utimensat sets atime and mtime only; the clock
 * is CAP_SYS_TIME's in the initial namespaces), and rename(2) and link(2) set the ctime of
 * the inode they move or link on every local Linux filesystem, so an old directory
 * renamed to .git counts as new. A nested repository the sandbox ran git in (an index
 * written) is moved aside too: its config was as writable as the index.
 *
 * A .pth, sitecustomize.py or usercustomize.py in a virtual environment's
 * lib/python* /site-packages runs in every later interpreter of that environment. pip
 * writes them legitimately, so these are named in a warning, not moved.
 *
 * Bounded: ISORUN_PLANTED_DEPTH directory levels, ISORUN_PLANTED_ENTRIES directory
 * entries per bind, one filesystem (a mount below the bind is the host's, not the
 * sandbox's), no symbolic link followed (every step is openat with O_NOFOLLOW from the
 * parent's descriptor, and the rename acts on the parent's descriptor and the name).
 * When a bound stops the walk, the message says so: deeper is not looked at.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "consts.h" /* generated; isorun_shim.h uses it */
#include "isorun_shim.h"

struct walk {
    long long since_sec;
    long since_nsec;
    dev_t dev;
    long entries;  /* left to read */
    char *out;
    size_t cap, len;
    int found;     /* .git moved aside or could not be */
    int pth;       /* site-packages files named */
    int truncated;
};

static void say(struct walk *w, const char *fmt, ...) {
    va_list ap;
    int n;

    if (w->len >= w->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(w->out + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        w->len = (size_t)n < w->cap - w->len ? w->len + (size_t)n : w->cap - 1;
}

static int changed(const struct walk *w, const struct stat *st) {
    return st->st_ctim.tv_sec > w->since_sec ||
           (st->st_ctim.tv_sec == w->since_sec && st->st_ctim.tv_nsec >= w->since_nsec);
}

static int changed_at(const struct walk *w, int at, const char *name) {
    struct stat st;

    return fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && changed(w, &st);
}

/* any entry of the directory name (below at) changed */
static int any_changed_in(struct walk *w, int at, const char *name) {
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct dirent *e;
    DIR *d;
    int hit = 0;

    if (fd < 0)
        return 0;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return 0;
    }
    while (!hit && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            hit = changed_at(w, dirfd(d), e->d_name);
    closedir(d);
    return hit;
}

/* the .git in at was created or changed by the run */
static int planted_git(struct walk *w, int at) {
    static const char *const code[] = {"config", "config.worktree", "commondir", "hooks"};
    struct stat st;
    size_t i;
    int fd, hit;

    if (fstatat(at, ".git", &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (changed(w, &st) || !S_ISDIR(st.st_mode))
        return changed(w, &st);
    fd = openat(at, ".git", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    hit = 0;
    for (i = 0; !hit && i < sizeof code / sizeof code[0]; i++)
        hit = changed_at(w, fd, code[i]);
    if (!hit)
        hit = any_changed_in(w, fd, "hooks");
    close(fd);
    return hit;
}

static void quarantine(struct walk *w, int at, const char *path) {
    char target[NAME_MAX + 1];
    unsigned k;
    int rc = -1;

    w->found++;
    for (k = 0; k < 100 && rc < 0; k++) {
        snprintf(target, sizeof target, ".git.isorun-quarantine-%ld-%u", (long)getpid(), k);
        rc = renameat2(at, ".git", at, target, RENAME_NOREPLACE);
        if (rc < 0 && errno != EEXIST)
            break;
    }
    if (rc == 0)
        say(w, "isorun: warning: the sandbox created or changed %s/.git; git on the host "
               "would run its config and hooks as you there. Moved to %s/%s\n"
               "  hint: inspect it as untrusted output, then delete it or move it back\n",
            path, path, target);
    else
        say(w, "isorun: error: the sandbox created or changed %s/.git, and it could not be "
               "moved aside: %s\n  hint: delete it before running git in %s\n",
            path, strerror(errno), path);
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);

    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* at is a lib/python* /site-packages: name what the run wrote there that Python runs */
static void look_at_site(struct walk *w, int at, const char *path) {
    struct dirent *e;
    int fd = dup(at);
    DIR *d;

    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d)) != NULL && w->entries > 0) {
        w->entries--;
        if ((ends_with(e->d_name, ".pth") || strcmp(e->d_name, "sitecustomize.py") == 0 ||
             strcmp(e->d_name, "usercustomize.py") == 0) &&
            changed_at(w, at, e->d_name)) {
            if (w->pth++ == 0)
                say(w, "isorun: warning: the sandbox wrote files that every later Python of "
                       "a virtual environment runs at start:\n");
            say(w, "  %s/%s\n", path, e->d_name);
        }
    }
    closedir(d);
}

/* fd: this directory's, owned (closed here) */
static void walk_dir(struct walk *w, int fd, char *path, size_t plen, int depth,
                     const char *name, const char *parent, const char *grandparent) {
    struct dirent *e;
    struct stat st;
    int at, sub;
    DIR *d;

    if (fstat(fd, &st) < 0 || st.st_dev != w->dev) {
        close(fd);
        return;
    }
    if (strcmp(name, "site-packages") == 0 && strncmp(parent, "python", 6) == 0 &&
        strcmp(grandparent, "lib") == 0) {
        look_at_site(w, fd, path);
        close(fd);
        return;  /* packages' own trees: a .git there is no place git is run from */
    }
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return;
    }
    at = dirfd(d);
    while ((e = readdir(d)) != NULL) {
        size_t n;

        if (w->entries-- <= 0) {
            w->truncated = 1;
            break;
        }
        if (strcmp(e->d_name, ".git") == 0) {
            /* the bind's own .git is git_guard.c's (read-only, or moved aside if new) */
            if (depth > 0 && planted_git(w, at))
                quarantine(w, at, path);
            continue;
        }
        if ((e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) ||
            strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            depth + 1 > ISORUN_PLANTED_DEPTH)
            continue;  /* the documented depth: no note, most projects are deeper */
        n = strlen(e->d_name);
        if (plen + 1 + n >= PATH_MAX)
            continue;
        sub = openat(at, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            continue;  /* not a directory (DT_UNKNOWN), a link, or unreadable */
        path[plen] = '/';
        memcpy(path + plen + 1, e->d_name, n + 1);
        walk_dir(w, sub, path, plen + 1 + n, depth + 1, e->d_name, name, parent);
        path[plen] = '\0';
    }
    closedir(d);
}

int isorun_planted_walk(const char *root, long long since_sec, long since_nsec, char *out,
                        size_t cap) {
    char path[PATH_MAX];
    struct walk w;
    struct stat st;
    int fd;

    if (cap == 0)
        return -EINVAL;
    out[0] = '\0';
    if (strlen(root) >= sizeof path)
        return -ENAMETOOLONG;
    fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;  /* gone, or a file bind: nothing below it */
    if (fstat(fd, &st) < 0) {
        close(fd);
        return 0;
    }
    memset(&w, 0, sizeof w);
    w.since_sec = since_sec;
    w.since_nsec = since_nsec;
    w.dev = st.st_dev;
    w.entries = ISORUN_PLANTED_ENTRIES;
    w.out = out;
    w.cap = cap;
    strcpy(path, root);
    walk_dir(&w, fd, path, strlen(path), 0, "", "", "");
    if (w.truncated)
        say(&w, "isorun: warning: stopped looking for a .git the sandbox planted under %s "
                "after %d entries; what lies beyond was not looked at\n"
                "  hint: before running git below %s, look for new .git entries there "
                "(find %s -name .git -newer FILE)\n",
            root, ISORUN_PLANTED_ENTRIES, root, root);
    return w.found;
}
