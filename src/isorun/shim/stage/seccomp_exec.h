/*
 * The parts of isorun-seccomp-exec (seccomp_exec.c says what it does and in which
 * order): its inputs read from descriptors (seccomp_exec_input.c), the mount check
 * (seccomp_exec_expect.c) and the refusal report's hand-over (seccomp_exec_report.c).
 * A program of its own, not the shim's.
 */
#ifndef ISORUN_SECCOMP_EXEC_H
#define ISORUN_SECCOMP_EXEC_H

#include <linux/filter.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "consts.h" /* generated; isorun_shim.h uses it */
#include "isorun_shim.h"
#include "landlock.h"

#define EXIT_SETUP 125
#define MAX_KEEP 64

static inline _Noreturn void die(const char *step, const char *call, int err) {
    fprintf(stderr, "isorun: error: %s: %s: %s\n", step, call, strerror(err));
    _exit(EXIT_SETUP);
}

static inline _Noreturn void usage(const char *why) {
    fprintf(stderr, "isorun-seccomp-exec: %s\n", why);
    _exit(EXIT_SETUP);
}

/* The landlock section of a flat launch record (isorun.sandbox.flat), little-endian. */
struct ruleset {
    long long abi, fs, net, scoped;
    struct isorun_landlock_rule *rules;
    size_t n;
};

/* seccomp_exec_expect.c: --expect DEV:INO:FLAGS:PATH checked, or exit 125. */
void stage_check_expect(const char *spec);

/* seccomp_exec_input.c: each input whole, checked, or exit 125 (die). */
char **stage_read_env(int fd);
struct sock_fprog stage_read_seccomp(int fd);
struct ruleset stage_read_landlock(int fd);

/*
 * seccomp_exec_report.c: load the reporting filter and hand its listener over report_fd,
 * or say over it why there is no report; clears prog->filter once a filter is loaded.
 */
void stage_hand_over(struct sock_fprog *prog, struct sock_fprog *report, int report_fd);

#endif
