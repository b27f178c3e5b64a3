/* The seccomp filter: loaded last, immediately before execve(2). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#include "isorun_child.h"

void isorun_child_seccomp(const struct isorun_spec *spec) {
    struct sock_fprog prog;

    if (spec->seccomp_len == 0)
        return;
    if (spec->seccomp_len % sizeof(struct sock_filter) != 0 ||
        spec->seccomp_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
        isorun_child_fail(spec, "seccomp", "prctl(PR_SET_SECCOMP)", EINVAL, -1);
    prog.len = (unsigned short)(spec->seccomp_len / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)(void *)spec->seccomp_bpf;
    /*
     * Needs no_new_privs or CAP_SYS_ADMIN (seccomp(2)); by now the capability is gone,
     * so without no_new_privs this fails with EACCES rather than loading unprotected.
     */
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        isorun_child_fail(spec, "seccomp", "prctl(PR_SET_SECCOMP)", errno, -1);
}
