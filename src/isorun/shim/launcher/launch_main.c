/*
 * isorun-launch's entry point.
 *
 *   isorun-launch --record-fd N --report-fd M [--terminal] -- CMD [ARG]...   (the Python API)
 *   isorun-launch --dump --record-fd N                          (tests: the parsed record)
 *   isorun-launch --cli-record-fd N [--refusals] --retry K ARGV[0..K-1] -- CMD [ARG]...
 *       (the Python CLI's warm launch with the refusal report: it execs us, as the front
 *       end would have launched; the exit code as a shell reports it, 128+N for signal N.
 *       A set-up failure execs ARGV, the Python CLI's own command line, with
 *       ISORUN_SETUP_RETRY set: it launches without us and names the profile line.)
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

static int api_main(int record_fd, int report_fd, int terminal, int refusals, char **argv) {
    struct isorun_failure failure;
    unsigned char *blob;
    size_t len = 0;
    int status;

    /*
     * Die with the caller (the thread that spawned us, as PR_SET_PDEATHSIG always does),
     * and so take the sandbox along when its die_with_parent is set: through us, its
     * parent, the sandbox dies with the caller. Before the record read: a caller dead
     * before writing it gives us EOF, one dead after gets us killed; one gone in between
     * fails our report write.
     */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        perror("isorun-launch: prctl(PR_SET_PDEATHSIG)");
        return ISORUN_EXIT_SETUP;
    }
    blob = read_record(record_fd, &len);
    close(record_fd);
    status = isorun_launch_record(blob, blob != NULL ? len : 0, argv, report_fd, terminal,
                                  refusals, &failure);
    free(blob);
    if (status < 0)
        return ISORUN_EXIT_SETUP;
    return mirror(status);
}

/* isorun.__main__.SETUP_RETRY: the Python CLI launches without isorun-launch once */
#define SETUP_RETRY "ISORUN_SETUP_RETRY"

static int cli_main(int record_fd, int refusals, char **retry, char **argv) {
    struct isorun_failure failure;
    unsigned char *blob;
    size_t len = 0;
    int status;

    blob = read_record(record_fd, &len);
    close(record_fd);
    status = isorun_launch_record(blob, blob != NULL ? len : 0, argv, -1, 1, refusals,
                                  &failure);
    free(blob);
    if (status < 0) {
        /*
         * Nothing ran (isorun_launch_record leaves nothing behind), so launching again
         * cannot run the command twice: the Python CLI does, and words the failure with
         * the profile line of its step, which we do not know.
         */
        setenv(SETUP_RETRY, "1", 1);
        execv(retry[0], retry);
        fprintf(stderr, "isorun: error: sandbox set-up failed: %s: %s: %s\n",
                failure.step, failure.syscall, strerror(failure.err));
        return ISORUN_EXIT_SETUP;
    }
    if (failure.err != 0)
        fprintf(stderr, "isorun: %s: %s\n", argv[0],
                strchr(argv[0], '/') == NULL && failure.err == ENOENT
                    ? "command not found in the sandbox's PATH" : strerror(failure.err));
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : ISORUN_EXIT_SETUP;
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
    int record_fd, report_fd, terminal, refusals;

    /*
     * --terminal: the CLI's launch through the API (isorun_launch_record, terminal);
     * --refusals: the CLI's refusal report (launch_report.c), after it if both.
     */
    terminal = argc >= 8 && strcmp(argv[5], "--terminal") == 0;
    refusals = argc >= 8 + terminal && strcmp(argv[5 + terminal], "--refusals") == 0;
    terminal += refusals; /* from here: how many flags */
    if (argc >= 7 + terminal && strcmp(argv[1], "--record-fd") == 0 &&
        strcmp(argv[3], "--report-fd") == 0 && strcmp(argv[5 + terminal], "--") == 0) {
        record_fd = parse_fd(argv[2]);
        report_fd = parse_fd(argv[4]);
        if (record_fd < 0 || report_fd < 0 || record_fd == report_fd) {
            fputs("isorun-launch: error: --record-fd and --report-fd take two descriptors\n",
                  stderr);
            return ISORUN_EXIT_SETUP;
        }
        return api_main(record_fd, report_fd, terminal - refusals, refusals,
                        argv + 6 + terminal);
    }
    if (argc >= 4 && strcmp(argv[1], "--cli-record-fd") == 0) {
        int at, k;

        refusals = strcmp(argv[3], "--refusals") == 0;
        record_fd = parse_fd(argv[2]);
        at = 3 + refusals;
        k = at + 1 < argc && strcmp(argv[at], "--retry") == 0 ? parse_fd(argv[at + 1]) : -1;
        if (record_fd < 0 || k < 1 || k > argc - at - 3 || strcmp(argv[at + 2 + k], "--") != 0) {
            fputs("isorun-launch: error: --cli-record-fd N [--refusals] --retry K ARGV -- CMD\n",
                  stderr);
            return ISORUN_EXIT_SETUP;
        }
        argv[at + 2 + k] = NULL; /* ends the retry's argv */
        return cli_main(record_fd, refusals, argv + at + 2, argv + at + 3 + k);
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
