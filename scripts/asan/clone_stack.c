/*
 * Linked into the sanitized shim only (build_shim.py, ISORUN_SHIM_BUILD=asan) with
 * -Wl,--wrap=clone: ns.c's and exec.c's calls to clone(3) come here, so ASan learns
 * about the stacks the shim switches to, and the shipped sources carry no sanitizer code.
 *
 * Why ASan needs telling (https://github.com/google/sanitizers/issues/189):
 *
 * - The sandbox child (ns.c) runs on an mmap'd stack, but ASan still believes it is on
 *   the launcher thread's stack. Before every noreturn call (isorun_child_fail, the
 *   command's _exit) the compiler inserts __asan_handle_no_return, which unpoisons from
 *   the stack pointer up to that thread's stack top; across two unrelated mappings that
 *   is hundreds of GiB, so ASan refuses and prints "WARNING: ASan is ignoring requested
 *   __asan_handle_no_return" into the *command's* stderr, which tests compare. Declaring
 *   the new stack in the child with the fiber-switch API makes the range sane.
 *
 * - init starts the command with CLONE_VM | CLONE_VFORK on command_stack, a local array
 *   of its own frame (exec.c, spawn_command). The command's instrumented frames poison
 *   their redzones in the *shared* shadow memory and never return (execve or _exit), so
 *   once init resumes, its later frames (run_init's sigset and siginfo) land on
 *   still-poisoned shadow: a false stack-buffer-overflow in init, which has already
 *   closed stderr, so the report is lost and the launch ends in a signal. ASan's own
 *   vfork interceptor solves the same problem with __asan_handle_vfork (unpoison what the
 *   child may have dirtied once the parent runs again); we do it here after the clone
 *   returns, for the region between our frame and the top of the child's stack, which
 *   holds command_stack. The child must not switch fibers: the ASan thread record it
 *   would change is init's (shared memory), and init's stack already contains it.
 *
 * The shim passes clone(3) exactly four arguments and none of the flags that need more
 * (CLONE_PARENT_SETTID, CLONE_SETTLS, CLONE_CHILD_*); a call that does is refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The smallest stack the shim clones onto (exec.c's command_stack; ns.c's is 1 MiB):
 * declared as the child's extent below its top. ASan uses the bottom to describe stack
 * addresses in a report and its handle_no_return measures from the stack pointer, so a
 * bottom that is too high costs at most a vaguer report, never a false one.
 */
#define KNOWN_STACK (64 * 1024)

int __real_clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);
int __wrap_clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);

struct start {
    int (*fn)(void *);
    void *arg;
    char *top;
    int flags;
};

/* The child's first frame; the parent's copy of *p stays valid (CoW copy, or suspended). */
__attribute__((no_sanitize_address)) static int start_child(void *p) {
    const struct start *s = p;
    int (*fn)(void *) = s->fn;
    void *arg = s->arg;

    if (!(s->flags & CLONE_VM)) {
        /* NULL fake-stack save: this process never switches back (see the header). */
        __sanitizer_start_switch_fiber(NULL, s->top - KNOWN_STACK, KNOWN_STACK);
        __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
    }
    return fn(arg);
}

__attribute__((no_sanitize_address)) int __wrap_clone(int (*fn)(void *), void *stack,
                                                       int flags, void *arg, ...) {
    struct start s = {fn, arg, stack, flags};
    char *here = __builtin_frame_address(0);
    int pid;

    if (flags & (CLONE_PARENT_SETTID | CLONE_SETTLS | CLONE_CHILD_SETTID |
                 CLONE_CHILD_CLEARTID)) {
        errno = EINVAL;
        return -1;
    }
    pid = __real_clone(start_child, stack, flags, &s);
    /* CLONE_VFORK: the child has exec'd or exited by now, nothing runs on its stack. */
    if ((flags & CLONE_VM) && (flags & CLONE_VFORK) && (char *)stack > here)
        ASAN_UNPOISON_MEMORY_REGION(here, (size_t)((char *)stack - here));
    return pid;
}
