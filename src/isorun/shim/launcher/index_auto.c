/*
 * The launch index's condition for a record auto chose the landlock backend for: the
 * inputs of that choice, checked against this process now (launch_index.c reads the
 * other conditions).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launch_index.h"
#include "launcher.h"
#include "tables.h"

/* shim/abi.py AUTO_TOOLS and AUTO_FILES, in their order */
static const char *const auto_tools[] = {ISORUN_AUTO_TOOLS};
static const char *const auto_files[] = {ISORUN_AUTO_FILES};

/*
 * shutil.which(name) as the Python CLI calls it: the first PATH entry (os.path.join of
 * the entry and the name) that exists, is executable by us and is not a directory; ""
 * when none is. Without PATH, Python searches os.confstr("CS_PATH").
 */
static void which(const char *name, char *found, size_t size) {
    char defpath[256];
    const char *path = getenv("PATH");
    found[0] = '\0';
    if (path == NULL) {
        size_t n = confstr(_CS_PATH, defpath, sizeof defpath);
        path = n > 0 && n <= sizeof defpath ? defpath : "/bin:/usr/bin";
    }
    while (1) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        struct stat st;
        int n = len == 0 ? snprintf(found, size, "%s", name)
                         : snprintf(found, size, "%.*s%s%s", (int)len, path,
                                    path[len - 1] == '/' ? "" : "/", name);
        if (n > 0 && (size_t)n < size && stat(found, &st) == 0 && !S_ISDIR(st.st_mode) &&
            access(found, X_OK) == 0)
            return;
        found[0] = '\0';
        if (colon == NULL)
            return;
        path = colon + 1;
    }
}

/*
 * Whether this process can make a user namespace now, decided as
 * isorun.host.facts._userns_enabled decides HostFacts.userns, which auto's choice
 * between the native and the landlock backend reads: the sysctls, and where a seccomp
 * filter or no_new_privs already confines us (an outer container or sandbox), a forked
 * child that makes one and takes a sandbox's first steps in it (facts.userns_probe).
 */
static int userns_now(const char *status) {
    static const struct {
        const char *path;
        int root_too;
    } sysctls[] = {{"/proc/sys/user/max_user_namespaces", 1},
                   {"/proc/sys/kernel/unprivileged_userns_clone", 0}};
    for (size_t k = 0; k < N_ELEMENTS(sysctls); k++) {
        char buf[64];
        if (!sysctls[k].root_too && getuid() == 0)
            continue;
        int fd = open(sysctls[k].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue; /* Python: OSError, this check does not apply */
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        char *end;
        long v = strtol(buf, &end, 10);
        while (*end == '\n' || *end == ' ')
            end++;
        if (end != buf && *end == '\0' && v < 1)
            return 0;
    }
    if (strstr(status, "\nSeccomp:\t2") == NULL && strstr(status, "\nNoNewPrivs:\t1") == NULL)
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1; /* cannot tell: say yes, which is a miss for an auto landlock index */
    if (pid == 0) {
        int rc = unshare(CLONE_NEWUSER | CLONE_NEWUTS | CLONE_NEWNS);
        if (rc == 0)
            rc = sethostname("isorun", 6);
        if (rc == 0)
            rc = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
        _exit(rc == 0 ? 0 : 1);
    }
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0)
        if (errno != EINTR)
            return 1;
    return WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
}

/*
 * The inputs of auto's choice of the landlock backend, as isorun.cache.index._auto_inputs
 * wrote them, against this process now; and no user namespace can be made. Any change
 * (a wrapper installed or made setuid, another PATH, no_new_privs gone, a namespace
 * possible again) would let the Python CLI choose another, stronger backend: a miss.
 */
int index_auto_choice_holds(struct cursor *c) {
    char status[8192], found[PATH_MAX];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, status, sizeof status - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    status[n] = '\0';
    int nnp = strstr(status, "\nNoNewPrivs:\t1") != NULL;
    if (cursor_flag(c) != nnp)
        return 0;
    int path_present = cursor_flag(c);
    struct field path = cursor_field(c);
    const char *now = getenv("PATH");
    if (!c->ok || (now != NULL) != path_present || (now && !field_is(path, now)))
        return 0;
    if (cursor_uint(c, 4) != N_ELEMENTS(auto_tools))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(auto_tools); k++) {
        int named = field_is(cursor_field(c), auto_tools[k]);
        struct field want = cursor_field(c);
        which(auto_tools[k], found, sizeof found);
        if (!named || !c->ok || !field_is(want, found))
            return 0;
        if (found[0] != '\0' && !index_fingerprint_is(c, found))
            return 0;
    }
    if (cursor_uint(c, 4) != N_ELEMENTS(auto_files))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(auto_files); k++) {
        struct stat st;
        int named = field_is(cursor_field(c), auto_files[k]);
        int present = cursor_flag(c);
        if (!named || !c->ok || present != (stat(auto_files[k], &st) == 0))
            return 0;
        if (present && !index_fingerprint_is(c, auto_files[k]))
            return 0;
    }
    /* Last: the only check that may fork. */
    return c->ok && !userns_now(status);
}
