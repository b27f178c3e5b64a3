/*
 * Landlock (landlock(7)): the calling process restricts itself to a plan's rules, after
 * the file view is complete and no_new_privs is set, before seccomp. Used by the shim's
 * child (exec.c) and by the wrapper backends' exec stage (seccomp_exec.c), so it knows
 * nothing of struct isorun_spec: it returns the failing call and errno to its caller.
 *
 * Raw syscalls (glibc has no wrappers) on stack structs: async-signal-safe, no malloc.
 * The rules and masks were decided in Python (isorun.compile.landlock); here a missing
 * optional path is skipped, a rule on a non-directory keeps only the rights the kernel
 * allows on files, and anything else the kernel refuses fails the launch: the plan named
 * every right it asked for, and a silently smaller ruleset would be a weaker sandbox.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "consts.h" /* generated; isorun_shim.h uses it */
#include "isorun_shim.h"
#include "landlock.h"

/* Same numbers on every architecture (the unified table of Linux 5.13+). */
#define SYS_ll_create_ruleset 444
#define SYS_ll_add_rule 445
#define SYS_ll_restrict_self 446
#define LL_CREATE_RULESET_VERSION 1U
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2

/* include/uapi/linux/landlock.h, defined here: Debian 12's headers stop at ABI 3. */
struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct ll_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct ll_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

/*
 * The rule's path on the host's own tree (the landlock backend, or a plan that keeps the
 * host's root): every component but the last is opened with no link followed at all.
 * Those paths lie in directories the sandbox may have written (a project, an earlier
 * run's writable bind): a planted node_modules -> /home/u with the test profile's
 * node_modules/.cache rule would otherwise grant writing to /home/u/.cache (issue #12's
 * class, with a Landlock grant in place of a mount). The paths come canonical from the
 * planner (${CWD}, ${HOME} and the prefixes are realpath'd), so a link on the way is
 * someone else's: ELOOP, which fails the launch even for an optional rule.
 */
static int open_host_path(const char *path) {
    char dir[PATH_MAX];
    struct open_how how;
    const char *slash = strrchr(path, '/');
    size_t len;
    long dirfd;
    int fd;

    if (slash == NULL) {
        errno = EINVAL;
        return -1;
    }
    len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, len);
    dir[len] = '\0';
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    dirfd = syscall(SYS_openat2, AT_FDCWD, dir, &how, sizeof how);
    if (dirfd < 0)
        return -1;
    /* "/" itself: its own last component is the directory just opened */
    fd = slash[1] == '\0' ? (int)dirfd
                          : openat((int)dirfd, slash + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd != (int)dirfd) {
        int saved = errno;
        close((int)dirfd);
        errno = saved;
    }
    return fd;
}

static int add_path(int ruleset, unsigned long long handled,
                    const struct isorun_landlock_rule *rule, int host_paths,
                    const char **call) {
    struct ll_path_beneath_attr attr;
    struct stat st;
    int fd;

    /*
     * O_PATH: no right is needed to name the file, and nothing is opened for reading.
     * The last component is not followed: a destination is a mount point the mount step
     * made; a symlink there (a merged-/usr /lib64) is resolved to a path that has a rule
     * of its own, so its own rule would only grant on the link, which needs no right.
     */
    fd = host_paths ? open_host_path(rule->path)
                    : open(rule->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (rule->optional && (errno == ENOENT || errno == ENOTDIR))
            return 0;
        /*
         * A parent the command's own ids cannot search (a 0700 host directory in a bind
         * of a root caller's sandbox): the command cannot reach the path either, and a
         * grant left out only ever refuses more.
         */
        if (errno == EACCES)
            return 0;
        *call = "open(O_PATH)";
        return errno;
    }
    if (fstat(fd, &st) < 0) {
        *call = "fstat";
        return errno;
    }
    if (S_ISLNK(st.st_mode)) {
        close(fd);
        return 0;
    }
    attr.allowed_access = rule->access & handled;
    if (!S_ISDIR(st.st_mode))
        attr.allowed_access &= ISORUN_LANDLOCK_FILE_RIGHTS;
    attr.parent_fd = fd;
    /* A rule granting nothing is refused (ENOMSG); it would add nothing anyway. */
    if (attr.allowed_access != 0 &&
        syscall(SYS_ll_add_rule, ruleset, LL_RULE_PATH_BENEATH, &attr, 0) < 0) {
        *call = "landlock_add_rule";
        return errno;
    }
    close(fd);
    return 0;
}

int isorun_landlock_restrict(int abi_wanted, unsigned long long fs, unsigned long long net,
                             unsigned long long scoped, const struct isorun_landlock_rule *rules,
                             size_t n_rules, int host_paths, const char **call) {
    struct ll_ruleset_attr attr;
    struct ll_net_port_attr port;
    long abi;
    int ruleset, err;
    size_t i;

    if (abi_wanted <= 0)
        return 0;
    /*
     * The plan was made for this ABI (a host fact of the plan cache's key); a kernel
     * below it cannot know every bit asked for, and leaving some out would be silent.
     */
    *call = "landlock_create_ruleset(VERSION)";
    abi = syscall(SYS_ll_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    if (abi < 0)
        return errno;
    if (abi < abi_wanted)
        return EOPNOTSUPP;
    attr.handled_access_fs = fs;
    attr.handled_access_net = net;
    attr.scoped = scoped;
    /* The size tells the kernel which fields we know: the shortest that holds ours. */
    *call = "landlock_create_ruleset";
    ruleset = (int)syscall(SYS_ll_create_ruleset, &attr,
                           scoped ? sizeof attr
                           : net  ? offsetof(struct ll_ruleset_attr, scoped)
                                  : sizeof attr.handled_access_fs,
                           0);
    if (ruleset < 0)
        return errno;
    for (i = 0; i < n_rules; i++) {
        const struct isorun_landlock_rule *rule = &rules[i];

        if (rule->path != NULL && rule->path[0] != '\0') {
            err = add_path(ruleset, fs, rule, host_paths, call);
            if (err != 0)
                return err;
            continue;
        }
        port.allowed_access = rule->access & net;
        port.port = rule->port;
        if (port.allowed_access != 0 &&
            syscall(SYS_ll_add_rule, ruleset, LL_RULE_NET_PORT, &port, 0) < 0) {
            *call = "landlock_add_rule(port)";
            return errno;
        }
    }
    /* Needs no_new_privs (set just before) once the capabilities are dropped. */
    if (syscall(SYS_ll_restrict_self, ruleset, 0) < 0) {
        *call = "landlock_restrict_self";
        return errno;
    }
    close(ruleset);
    return 0;
}
