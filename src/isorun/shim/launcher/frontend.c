/*
 * The `isorun` command: a warm launch without Python, else the Python CLI.
 *
 * Starting the interpreter alone takes several times what bubblewrap takes to start a
 * whole sandbox, so the command people type (`isorun --profile P cmd`) is this program.
 * When the plan cache has a launch index for exactly this launch (isorun.cache writes it
 * next to the entry: every input the plan depends on, then the flat launch record), it
 * checks each input and hands the record to isorun_launch_record. Everything else (other
 * subcommands, options that change the launch, a miss, any doubt) is an execv of the
 * Python CLI with the same arguments, which then behaves as if it had been run directly.
 *
 * Fail closed: reading and checking the index is launch_index.c; anything it cannot
 * vouch for is a miss, and a miss is the Python CLI.
 *
 * Python compiles, C applies: this file decides nothing about the sandbox. The record is
 * the one the Python CLI would launch, and the conditions are the ones it wrote.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"
#include "tables.h"

/* tells the Python CLI to rewrite the index on a hit (shim/abi.py, isorun.__main__) */
#define FRONTEND_MISS ISORUN_FRONTEND_MISS
/* What isorun's own failures exit with (the Python CLI's internal error, as env(1)). */
#define EXIT_ISORUN 125

struct launch_args {
    const char *profile;
    const char *backend; /* "" without --backend */
    int allow_weaker;
    char **command;
    int quiet;
};

/*
 * The launch forms isorun.__main__ sends to its cached path, and nothing else:
 *     isorun [run] (--profile|-p)[=]P [--backend auto|landlock] [--allow-weaker] [--debug]
 *            [--quiet|-q] [--] CMD [ARG...]
 * --verbose (it prints cache notes), another --backend (never cached), help, a usage
 * error and every subcommand go to Python. The first argument is dispatched as main()
 * does there: `-p=P` first is not a launch for it (click gets it), so not for us either.
 */
static int starts_launch(const char *first) {
    return strcmp(first, "--profile") == 0 || strcmp(first, "-p") == 0 ||
           strcmp(first, "--backend") == 0 || strncmp(first, "--profile=", 10) == 0 ||
           strncmp(first, "--backend=", 10) == 0 || strcmp(first, "--allow-weaker") == 0 ||
           strcmp(first, "--verbose") == 0 || strcmp(first, "-v") == 0 ||
           strcmp(first, "--debug") == 0 || strcmp(first, "--quiet") == 0 ||
           strcmp(first, "-q") == 0;
}

/* 1 and the launch in out for one of the forms above, else 0 (Python's to handle). */
static int parse_launch(int argc, char **argv, struct launch_args *out) {
    int i = 1;
    if (argc < 2)
        return 0;
    if (strcmp(argv[1], "run") == 0)
        i = 2;
    else if (!starts_launch(argv[1]))
        return 0;
    const char *profile = NULL;
    out->backend = "";
    out->allow_weaker = 0;
    out->quiet = 0;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        int is_profile = (name_len == 9 && strncmp(arg, "--profile", 9) == 0) ||
                         (name_len == 2 && strncmp(arg, "-p", 2) == 0);
        int is_backend = name_len == 9 && strncmp(arg, "--backend", 9) == 0;
        if (is_profile || is_backend) {
            const char *value = eq ? eq + 1 : NULL;
            if (value == NULL) {
                if (i + 1 >= argc)
                    return 0;
                value = argv[++i];
            }
            /* the last one wins, as in the Python parser; the landlock backend's record
             * (auto's, where it chose that backend) is all an index may hold beside the
             * native one, and its conditions say when it stands */
            if (is_backend && strcmp(value, "auto") != 0 && strcmp(value, "landlock") != 0)
                return 0;
            if (is_backend)
                out->backend = value;
            else
                profile = value;
        } else if (strcmp(arg, "--allow-weaker") == 0) {
            /* A run the index says loses rules needs it, as in the Python CLI. */
            out->allow_weaker = 1;
        } else if (strcmp(arg, "--debug") == 0) {
            /* No effect on a cached launch: a set-up failure is re-run by Python with
             * these same arguments. */
        } else if (strcmp(arg, "--quiet") == 0 || strcmp(arg, "-q") == 0) {
            out->quiet = 1; /* no refusal report (launch_report.c) */
        } else if (arg[0] == '-') {
            return 0; /* --verbose, -v, --help, or a usage error Python words */
        } else {
            break;
        }
    }
    if (profile == NULL || i >= argc || argv[i][0] == '\0')
        return 0;
    out->profile = profile;
    out->command = argv + i;
    return 1;
}

/* The directory of this program, resolved (the kernel's name for it). */
static int self_directory(char *dir, size_t size) {
    ssize_t n = readlink("/proc/self/exe", dir, size - 1);
    if (n <= 0 || (size_t)n >= size - 1)
        return 0;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    if (dir[0] == '\0')
        strcpy(dir, "/");
    return 1;
}

/*
 * Become the Python CLI with our arguments. It is looked for only next to this program:
 * `pip install` puts the console script isorun-py and this program (as isorun) in the
 * same bin directory, so that pairs the front end with the package it was built with.
 * A PATH search could find another installation's CLI, whose cache key and plans differ.
 * Without isorun-py (a copied binary, a broken install) the interpreter of that directory
 * runs the package: -P keeps the working directory off sys.path, so a directory named
 * isorun where the user stands cannot stand in for the package.
 */
static _Noreturn void exec_python(const char *self_dir, int argc, char **argv, int missed) {
    char path[PATH_MAX];
    char **args = calloc((size_t)argc + 4, sizeof *args);
    int err = ENOMEM;
    if (missed)
        setenv(FRONTEND_MISS, "1", 1); /* isorun.__main__ removes it before anything runs */
    if (args != NULL) {
        /* For a #! script the kernel passes the script's path as the interpreter's
         * argv, so argv[0] is only cosmetic; the CLI names itself isorun anyway. */
        args[0] = argv[0];
        memcpy(args + 1, argv + 1, (size_t)(argc - 1) * sizeof *args);
        snprintf(path, sizeof path, "%s/isorun-py", self_dir);
        execv(path, args);
        err = errno;
        static const char *const pythons[] = {"python3", "python"};
        for (size_t k = 0; k < sizeof pythons / sizeof *pythons; k++) {
            snprintf(path, sizeof path, "%s/%s", self_dir, pythons[k]);
            args[0] = path;
            args[1] = (char *)"-P";
            args[2] = (char *)"-m";
            args[3] = (char *)"isorun";
            memcpy(args + 4, argv + 1, (size_t)(argc - 1) * sizeof *args);
            execv(path, args);
        }
    }
    fprintf(stderr,
            "isorun: cannot start the Python CLI: %s/isorun-py: %s, and no python3 there "
            "either\n  hint: reinstall isorun (pip install .) so isorun and isorun-py sit in "
            "one bin directory\n",
            self_dir, strerror(err));
    exit(EXIT_ISORUN);
}

/* Whether this program may start at all; says why not. Fills self_dir. */
static int may_start(char *self_dir, size_t size) {
    if (!self_directory(self_dir, size)) {
        fprintf(stderr,
                "isorun: cannot read /proc/self/exe: %s\n"
                "  hint: mount /proc (mount -t proc proc /proc)\n",
                strerror(errno));
        return 0;
    }
    /* Installed set-user-ID or set-group-ID, this would read a cache and run a Python
     * chosen by the caller's environment with privileges the caller lacks. */
    if (getuid() != geteuid() || getgid() != getegid()) {
        fputs("isorun: refusing to run set-user-ID or set-group-ID\n"
              "  hint: chmod u-s,g-s the isorun program; it needs no privileges\n",
              stderr);
        return 0;
    }
    return 1;
}

/* The exit code of a launch that ran (status from waitpid), as the Python CLI's. */
static int exit_code(int status, const struct isorun_failure *failure, const char *cmd) {
    if (failure->err != 0) {
        /* The status says 126 or 127; say why, as launch.exec_failure_message does. */
        const char *why = strerror(failure->err);
        if (strchr(cmd, '/') == NULL && failure->err == ENOENT)
            why = ISORUN_EXEC_NOT_FOUND;
        fprintf(stderr, "isorun: %s: %s\n", cmd, why);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_ISORUN;
}

int isorun_frontend_main(int argc, char **argv) {
    char self_dir[PATH_MAX];
    struct launch_args la = {NULL, NULL, 0, NULL, 0};
    struct isorun_index idx = {NULL, NULL, 0, NULL, 0, 0};
    if (!may_start(self_dir, sizeof self_dir))
        return EXIT_ISORUN;
    const char *cache = getenv("ISORUN_CACHE");
    if (!parse_launch(argc, argv, &la) || (cache != NULL && strcmp(cache, "0") == 0))
        exec_python(self_dir, argc, argv, 0);
    if (!isorun_load_index(la.profile, la.backend, self_dir, &idx))
        exec_python(self_dir, argc, argv, 1);
    if (idx.needs_weaker && !la.allow_weaker) {
        /* The Python CLI refuses it, naming each rule and the backends that keep it. */
        free(idx.data);
        exec_python(self_dir, argc, argv, 0);
    }
    /* Never quietly weaker: each rule given up, as the Python CLI prints it. */
    if (idx.warning_len > 0) {
        fwrite(idx.warning, 1, idx.warning_len, stderr);
        fputc('\n', stderr);
        fflush(stderr);
    }

    struct isorun_failure failure;
    memset(&failure, 0, sizeof failure);
    int status = isorun_launch_record(idx.record, idx.record_len, la.command, -1, 1, !la.quiet,
                                      &failure);
    free(idx.data);
    if (status < 0) {
        /* Set-up failed before the command ran (isorun_launch_record leaves nothing
         * behind then), so running the launch again cannot run the command twice or eat
         * its input. The Python CLI does, from its cache, and reports the failure with
         * the profile line of the failing step, which this program does not know; without
         * isorun-launch (ISORUN_SETUP_RETRY, see isorun.__main__), which would fail again. */
        setenv("ISORUN_SETUP_RETRY", "1", 1);
        exec_python(self_dir, argc, argv, 0);
    }
    return exit_code(status, &failure, la.command[0]);
}
