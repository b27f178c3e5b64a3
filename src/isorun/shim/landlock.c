/*
 * Landlock (landlock(7)): the child restricts itself to the spec's rules, after the file
 * view is complete and no_new_privs is set, before seccomp.
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
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "isorun_child.h"

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

static _Noreturn void fail(const struct isorun_spec *spec, const char *syscall, int err) {
    isorun_child_fail(spec, "landlock", syscall, err, -1);
}

static void add_path(const struct isorun_spec *spec, int ruleset,
                     const struct isorun_landlock_rule *rule) {
    struct ll_path_beneath_attr attr;
    struct stat st;
    int fd;

    /*
     * O_PATH: no right is needed to name the file, and nothing is opened for reading.
     * The last component is not followed: a destination is a mount point the mount step
     * made; a symlink there (a merged-/usr /lib64) is resolved to a path that has a rule
     * of its own, so its own rule would only grant on the link, which needs no right.
     */
    fd = open(rule->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (rule->optional && (errno == ENOENT || errno == ENOTDIR))
            return;
        /*
         * A parent the command's own ids cannot search (a 0700 host directory in a bind
         * of a root caller's sandbox): the command cannot reach the path either, and a
         * grant left out only ever refuses more.
         */
        if (errno == EACCES)
            return;
        fail(spec, "open(O_PATH)", errno);
    }
    if (fstat(fd, &st) < 0)
        fail(spec, "fstat", errno);
    if (S_ISLNK(st.st_mode)) {
        close(fd);
        return;
    }
    attr.allowed_access = rule->access & spec->landlock_fs;
    if (!S_ISDIR(st.st_mode))
        attr.allowed_access &= ISORUN_LANDLOCK_FILE_RIGHTS;
    attr.parent_fd = fd;
    /* A rule granting nothing is refused (ENOMSG); it would add nothing anyway. */
    if (attr.allowed_access != 0 &&
        syscall(SYS_ll_add_rule, ruleset, LL_RULE_PATH_BENEATH, &attr, 0) < 0)
        fail(spec, "landlock_add_rule", errno);
    close(fd);
}

void isorun_child_landlock(const struct isorun_spec *spec) {
    struct ll_ruleset_attr attr;
    struct ll_net_port_attr port;
    long abi;
    int ruleset;
    size_t i;

    if (spec->landlock_abi <= 0)
        return;
    /*
     * The plan was made for this ABI (a host fact of the plan cache's key); a kernel
     * below it cannot know every bit asked for, and leaving some out would be silent.
     */
    abi = syscall(SYS_ll_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    if (abi < 0)
        fail(spec, "landlock_create_ruleset(VERSION)", errno);
    if (abi < spec->landlock_abi)
        fail(spec, "landlock_create_ruleset(VERSION)", EOPNOTSUPP);
    attr.handled_access_fs = spec->landlock_fs;
    attr.handled_access_net = spec->landlock_net;
    attr.scoped = spec->landlock_scoped;
    /* The size tells the kernel which fields we know: the shortest that holds ours. */
    ruleset = (int)syscall(SYS_ll_create_ruleset, &attr,
                           spec->landlock_scoped      ? sizeof attr
                           : spec->landlock_net       ? offsetof(struct ll_ruleset_attr, scoped)
                                                      : sizeof attr.handled_access_fs,
                           0);
    if (ruleset < 0)
        fail(spec, "landlock_create_ruleset", errno);
    for (i = 0; i < spec->n_landlock_rules; i++) {
        const struct isorun_landlock_rule *rule = &spec->landlock_rules[i];

        if (rule->path != NULL && rule->path[0] != '\0') {
            add_path(spec, ruleset, rule);
            continue;
        }
        port.allowed_access = rule->access & spec->landlock_net;
        port.port = rule->port;
        if (port.allowed_access != 0 &&
            syscall(SYS_ll_add_rule, ruleset, LL_RULE_NET_PORT, &port, 0) < 0)
            fail(spec, "landlock_add_rule(port)", errno);
    }
    /* Needs no_new_privs (set just before) once the capabilities are dropped. */
    if (syscall(SYS_ll_restrict_self, ruleset, 0) < 0)
        fail(spec, "landlock_restrict_self", errno);
    close(ruleset);
}
