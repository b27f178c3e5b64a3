/*
 * isorun-launch's entry point.
 *
 *   isorun-launch --record-fd N --report-fd M [--terminal] -- CMD [ARG]...   (the Python API)
 *   isorun-launch --dump --record-fd N                          (tests: the parsed record)
 *   anything else: the `isorun` command's front end (frontend.c)
 *
 * API mode reads a flat launch record (isorun.sandbox.flat) from N, starts the sandbox
 * with this process's stdio, writes the report to M (see launcher.h) and then mirrors
 * the command's end: its exit code, or its death by signal on ourselves, so that the
 * Python parent's waitpid sees what it would have seen of the sandbox itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"

/* A record is a few KiB (the seccomp program is most of it); this only bounds a bad fd. */
#define RECORD_MAX (16u << 20)

static int parse_fd(const char *text) {
    char *end;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > INT_MAX)
        return -1;
    return (int)value;
}

static unsigned char *read_record(int fd, size_t *len) {
    unsigned char *buf = NULL, *grown;
    size_t cap = 0, used = 0;
    ssize_t n;

    for (;;) {
        if (used == cap) {
            cap = cap ? cap * 2 : 16384;
            if (cap > RECORD_MAX || (grown = realloc(buf, cap)) == NULL) {
                free(buf);
                return NULL;
            }
            buf = grown;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    *len = used;
    return buf;
}

/* Die the way the command died: the caller computes 128+N from our status as before. */
static int mirror(int status) {
    struct rlimit none = {0, 0};
    sigset_t set;
    int sig;

    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (!WIFSIGNALED(status))
        return ISORUN_EXIT_SETUP;
    sig = WTERMSIG(status);
    /* No core of ours: the command's core, if any, was already written in the sandbox. */
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    /* A signal whose default is to ignore cannot have killed anyone; say so as a shell. */
    return 128 + sig;
}

static int api_main(int record_fd, int report_fd, int terminal, char **argv) {
    struct isorun_failure failure;
    unsigned char *blob;
    size_t len = 0;
    int status;

    /*
     * Die with the caller (the thread that spawned us, as PR_SET_PDEATHSIG always does),
     * and so take the sandbox along when its die_with_parent is set, as it did when Python
     * cloned it. Before the record read: a caller dead before writing it gives us EOF,
     * one dead after gets us killed; one gone in between fails our report write.
     */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        perror("isorun-launch: prctl(PR_SET_PDEATHSIG)");
        return ISORUN_EXIT_SETUP;
    }
    blob = read_record(record_fd, &len);
    close(record_fd);
    status = isorun_launch_record(blob, blob != NULL ? len : 0, argv, report_fd, terminal,
                                  &failure);
    free(blob);
    if (status < 0)
        return ISORUN_EXIT_SETUP;
    return mirror(status);
}

static int dump_main(int record_fd) {
    unsigned char *blob;
    size_t len = 0;
    int rc;

    blob = read_record(record_fd, &len);
    if (blob == NULL) {
        perror("isorun-launch: read");
        return ISORUN_EXIT_SETUP;
    }
    rc = isorun_dump_record(blob, len, stdout);
    free(blob);
    return rc < 0 ? ISORUN_EXIT_SETUP : 0;
}

int main(int argc, char **argv) {
    int record_fd, report_fd, terminal;

    /* --terminal: the CLI's launch through the API (isorun_launch_record, terminal). */
    terminal = argc >= 8 && strcmp(argv[5], "--terminal") == 0;
    if (argc >= 7 + terminal && strcmp(argv[1], "--record-fd") == 0 &&
        strcmp(argv[3], "--report-fd") == 0 && strcmp(argv[5 + terminal], "--") == 0) {
        record_fd = parse_fd(argv[2]);
        report_fd = parse_fd(argv[4]);
        if (record_fd < 0 || report_fd < 0 || record_fd == report_fd) {
            fputs("isorun-launch: error: --record-fd and --report-fd take two descriptors\n",
                  stderr);
            return ISORUN_EXIT_SETUP;
        }
        return api_main(record_fd, report_fd, terminal, argv + 6 + terminal);
    }
    if (argc == 4 && strcmp(argv[1], "--dump") == 0 && strcmp(argv[2], "--record-fd") == 0) {
        record_fd = parse_fd(argv[3]);
        if (record_fd < 0) {
            fputs("isorun-launch: error: --record-fd takes a descriptor\n", stderr);
            return ISORUN_EXIT_SETUP;
        }
        return dump_main(record_fd);
    }
    return isorun_frontend_main(argc, argv);
}
