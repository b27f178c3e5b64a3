/*
 * A spec applied to the calling process rather than to a clone of it.
 *
 * pytest's @pytest.mark.isorun must run a test body in the process that collected it: a
 * forked copy of pytest, with no clone to start namespaces from and no execve to end
 * with. The steps and their order are isorun_child_main's (exec.c), reused from there,
 * so a per-test sandbox is made by the same C as a launch. What differs, and why:
 *
 *   - signals keep their dispositions and mask: the caller is Python and stays Python
 *     (its handlers are the test's), where a launch's child must never run interpreter
 *     code before its execve;
 *   - namespaces come from unshare(2), in a call of their own, because the parent writes
 *     the id maps after it and, with CLONE_NEWPID, the caller forks after it (the two
 *     overlap; isorun_apply waits for the maps):
 *     unshare puts only children into a new pid namespace, and the rest must run in that
 *     child, pid 1, because a procfs shows the pid namespace of the process mounting it
 *     and may only be mounted by one privileged over that namespace (proc_fill_super);
 *   - no init: pid 1 runs the test body itself, which a second fork per test would cost
 *     about 1 ms; the namespace ends when it exits;
 *   - err_fd stays open (there is no execve to close it): the caller closes it once
 *     isorun_apply returns, and the parent takes EOF as "set up".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <unistd.h>

#include "isorun_child.h"

static void fail(const struct isorun_spec *spec, const char *step, const char *syscall) {
    isorun_child_fail(spec, step, syscall, errno, -1);
}

void isorun_apply_namespaces(const struct isorun_spec *spec, int ready_fd) {
    ssize_t n;

    /* Before anything else: a launcher that dies from here on takes us with it. */
    isorun_child_death_signal(spec);
    /*
     * The parent's ends go first, here and not after a fork: while a copy of the sync
     * pipe's write end is open anywhere in the sandbox, a dead parent gives no EOF.
     */
    close(spec->sync_parent_fd);
    close(spec->err_parent_fd);
    /*
     * All at once: with CLONE_NEWUSER in the same call the kernel makes the user
     * namespace first and every other one is owned by it, so none needs privilege on the
     * host. unshare(CLONE_NEWUSER) refuses a multithreaded caller (EINVAL), which a
     * forked copy of pytest never is: fork(2) copies only the calling thread.
     */
    /*
     * No namespace at all (the landlock backend): no call, since the filter that made
     * us fall back to it may refuse unshare(2) outright, whatever the flags.
     */
    if (spec->clone_flags != 0 && unshare((int)spec->clone_flags) < 0)
        fail(spec, "clone", "unshare");
    /*
     * The parent writes /proc/PID/uid_map of our user namespace once it exists. We do
     * not wait for it here: the caller's fork into the pid namespace overlaps with it,
     * and isorun_apply waits first thing.
     */
    do
        n = write(ready_fd, "r", 1);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        fail(spec, "clone", "write(ready)");
    close(ready_fd);
}

/* isorun_child_main's wait_for_parent, minus the closes isorun_apply_namespaces made. */
static void wait_for_maps(const struct isorun_spec *spec) {
    char byte;
    ssize_t n;

    do
        n = read(spec->sync_fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    /* EOF: the parent died or gave up before releasing us; it will not read errors. */
    if (n != 1)
        _exit(ISORUN_EXIT_SETUP);
    close(spec->sync_fd);
}

void isorun_apply(const struct isorun_spec *spec) {
    /*
     * Fail closed on a spec this entry cannot honour: a learn-mode listener is handed
     * over at execve, which never comes; and outside pid 1 of the pid namespace the
     * spec asks for, the test would run beside the host's processes and the procfs mount
     * below would show them (or fail).
     */
    if (spec->notify_len > 0)
        isorun_child_fail(spec, "seccomp", "seccomp(NEW_LISTENER)", EINVAL, -1);
    if ((spec->clone_flags & CLONE_NEWPID) && getpid() != 1)
        isorun_child_fail(spec, "clone", "unshare(CLONE_NEWPID)", EINVAL, -1);
    /* A fork clears the death signal; the caller's parent is now the one to follow. */
    isorun_child_death_signal(spec);
    /*
     * Until the parent wrote the id maps our ids are unmapped, and files we create would
     * get no owner (see isorun_child_main).
     */
    wait_for_maps(spec);
    /* From here on a launch's own steps in their order (exec.c says why each is where). */
    isorun_child_confine(spec);
    /* Last, as before execve: the filter need not allow any step above. */
    isorun_child_seccomp(spec);
}
