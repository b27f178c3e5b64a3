/*
 * How the child reports a step that failed: one struct isorun_failure on the error pipe
 * (the step, the system call, errno, the mount index), then _exit. The parent reads it
 * to say what failed and where; every child source reports through these.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "isorun_child.h"
#include "tables.h"

static void copy_name(char *dst, const char *src) {
    size_t i;

    for (i = 0; i + 1 < ISORUN_NAME_MAX && src[i] != '\0'; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

_Noreturn void isorun_child_fail_status(const struct isorun_spec *spec, const char *step,
                                        const char *syscall, int err, int index,
                                        int status) {
    struct isorun_failure f;
    ssize_t n;

    memset(&f, 0, sizeof f);
    f.err = err;
    f.index = index;
    copy_name(f.step, step);
    copy_name(f.syscall, syscall);
    /* One write below PIPE_BUF is atomic: the parent never sees half a record. */
    do
        n = write(spec->err_fd, &f, sizeof f);
    while (n < 0 && errno == EINTR);
    _exit(status);
}

_Noreturn void isorun_child_fail(const struct isorun_spec *spec, const char *step,
                                 const char *syscall, int err, int index) {
    isorun_child_fail_status(spec, step, syscall, err, index, ISORUN_EXIT_SETUP);
}
