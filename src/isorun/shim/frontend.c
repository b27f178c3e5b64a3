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
 * Fail closed: the index is only trusted as the plan cache's entries are (a regular file,
 * not a symlink, owned by us and writable by no one else, in a directory of ours that no
 * one else can write), its CRC must match, and every recorded condition must compare
 * equal byte for byte. Anything else, including a malformed file, is a miss, never a
 * crash: every read goes through the bounds-checked cursor below.
 *
 * Python compiles, C applies: this file decides nothing about the sandbox. The record is
 * the one the Python CLI would launch, and the conditions are the ones it wrote.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"

extern char **environ;

/* isorun.launch_index.INDEX_FORMAT and INDEX_MAGIC; tests/unit/test_launch_index.py compares them */
#define ISORUN_INDEX_FORMAT 1u
static const char index_magic[] = "isorun-launch-index\n";
#define INDEX_MAGIC_LEN (sizeof index_magic - 1)
#define INDEX_HEAD_LEN (INDEX_MAGIC_LEN + 4 + 4 + 8)
/* A real index is a few KiB (the BPF program and the environment dominate); a larger
 * file is not one we wrote, and reading it whole would only cost time. */
#define INDEX_MAX_LEN (16u << 20)
/* isorun.__main__.FRONTEND_MISS: tells the Python CLI to rewrite the index on a hit */
#define FRONTEND_MISS "ISORUN_FRONTEND_MISS"
/* What isorun's own failures exit with (the Python CLI's internal error, as env(1)). */
#define EXIT_ISORUN 125

struct launch_args {
    const char *profile;
    char **command;
};

/*
 * The launch forms isorun.__main__ sends to its cached path, and nothing else:
 *     isorun [run] (--profile|-p)[=]P [--allow-weaker] [--debug] [--] CMD [ARG...]
 * --verbose (it prints cache notes), --backend (never cached), help, a usage error and
 * every subcommand go to Python. The first argument is dispatched as main() does
 * there: `-p=P` first is not a launch for it (click gets it), so not for us either.
 */
static int parse_launch(int argc, char **argv, struct launch_args *out) {
    int i = 1;
    if (argc < 2)
        return 0;
    if (strcmp(argv[1], "run") == 0) {
        i = 2;
    } else if (strcmp(argv[1], "--profile") != 0 && strcmp(argv[1], "-p") != 0 &&
               strcmp(argv[1], "--backend") != 0 && strncmp(argv[1], "--profile=", 10) != 0 &&
               strncmp(argv[1], "--backend=", 10) != 0 && strcmp(argv[1], "--allow-weaker") != 0 &&
               strcmp(argv[1], "--verbose") != 0 && strcmp(argv[1], "-v") != 0 &&
               strcmp(argv[1], "--debug") != 0) {
        return 0;
    }
    const char *profile = NULL;
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
            if (is_backend)
                return 0;
            profile = value; /* the last one wins, as in the Python parser */
        } else if (strcmp(arg, "--allow-weaker") == 0 || strcmp(arg, "--debug") == 0) {
            /* No effect on a cached launch: Python's cached path ignores both, and a
             * set-up failure is re-run by Python with these same arguments. */
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

/* FNV-1a 64: the index file's name, computed as isorun.launch_index.fnv1a64 does. */
static uint64_t fnv1a64(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* CRC-32 (zlib's): isorun.cache writes zlib.crc32 of the body. */
static uint32_t crc32_of(const unsigned char *p, size_t len) {
    uint32_t table[256];
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

/* A bounds-checked reader: past the end it stops, and ok stays 0 from then on. */
struct cursor {
    const unsigned char *p;
    const unsigned char *end;
    int ok;
};

static const unsigned char *take(struct cursor *c, size_t n) {
    if (!c->ok || (size_t)(c->end - c->p) < n) {
        c->ok = 0;
        return NULL;
    }
    const unsigned char *at = c->p;
    c->p += n;
    return at;
}

static uint64_t get_uint(struct cursor *c, size_t n) {
    const unsigned char *at = take(c, n);
    uint64_t v = 0;
    if (at == NULL)
        return 0;
    /* Native byte order: the writer is the Python of this installation (sys.byteorder). */
    if (n == 1) {
        v = at[0];
    } else if (n == 4) {
        uint32_t v32;
        memcpy(&v32, at, 4);
        v = v32;
    } else {
        memcpy(&v, at, 8);
    }
    return v;
}

struct field {
    const unsigned char *p;
    size_t len;
};

static struct field get_field(struct cursor *c) {
    struct field f = {NULL, 0};
    size_t len = (size_t)get_uint(c, 4);
    f.p = take(c, len);
    f.len = f.p ? len : 0;
    return f;
}

static int field_is(struct field f, const char *s) {
    size_t len = strlen(s);
    return f.p != NULL && f.len == len && memcmp(f.p, s, len) == 0;
}

/* The field as a C string in buf, or 0 (too long, or a NUL inside: another name). */
static int field_cstr(struct field f, char *buf, size_t size) {
    if (f.p == NULL || f.len >= size || memchr(f.p, '\0', f.len) != NULL)
        return 0;
    memcpy(buf, f.p, f.len);
    buf[f.len] = '\0';
    return 1;
}

/* Whole small files (the userns sysctls), as isorun.cache.facts_key reads them. */
static int file_is(const char *path, int present, struct field want) {
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return !present; /* facts_key reads any failure as absent */
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf && (n = read(fd, buf + got, sizeof buf - got)) > 0)
        got += (size_t)n;
    close(fd);
    return present && got < sizeof buf && want.len == got && memcmp(want.p, buf, got) == 0;
}

/*
 * What CPython sets LC_CTYPE to in its own environment at start-up, or NULL for nothing.
 *
 * PEP 538: when the LC_CTYPE locale the environment selects is "C" (LANG unset, C or
 * POSIX, or a locale that does not exist) and LC_ALL is not set, the interpreter sets
 * LC_CTYPE to the first of C.UTF-8, C.utf8 and UTF-8 the C library accepts, with
 * setenv(3). The Python CLI then reads that back as the caller's, the recorded
 * projection has it, and the command gets it. This asks the C library the same question
 * the same way (Python/pylifecycle.c: _Py_LegacyLocaleDetected, _Py_CoerceLegacyLocale),
 * so such a caller is not a miss on every launch. PYTHONCOERCECLOCALE (0 turns it off,
 * "warn" prints a warning the Python CLI would show) means a miss.
 */
static const char *python_coerced_ctype(void) {
    static const char *const targets[] = {"C.UTF-8", "C.utf8", "UTF-8"};
    const char *all = getenv("LC_ALL");
    const char *result = NULL;
    if (getenv("PYTHONCOERCECLOCALE") != NULL || (all != NULL && all[0] != '\0'))
        return NULL;
    setlocale(LC_CTYPE, "");
    const char *now = setlocale(LC_CTYPE, NULL);
    if (now != NULL && strcmp(now, "C") == 0) {
        for (size_t k = 0; result == NULL && k < sizeof targets / sizeof *targets; k++) {
            const char *codeset = setlocale(LC_CTYPE, targets[k]) ? nl_langinfo(CODESET) : NULL;
            if (codeset != NULL && codeset[0] != '\0')
                result = targets[k];
        }
    }
    setlocale(LC_CTYPE, "C"); /* as every program starts; the launch code expects no other */
    return result;
}

static int pattern_selects(int whole, const struct field *patterns, uint32_t n_patterns,
                           const char *name, size_t name_len) {
    int selected = whole;
    for (uint32_t k = 0; !selected && k < n_patterns; k++) {
        struct field p = patterns[k];
        if (p.len > 0 && p.p[p.len - 1] == '*')
            selected = name_len >= p.len - 1 && memcmp(name, p.p, p.len - 1) == 0;
        else
            selected = name_len == p.len && memcmp(name, p.p, p.len) == 0;
    }
    return selected;
}

/* Mark the recorded (name, value) pair equal to this one; 0 if there is none left. */
static int match_pair(const struct field *pairs, uint32_t n_pairs, unsigned char *used,
                      const char *name, size_t name_len, const char *value) {
    size_t value_len = strlen(value);
    for (uint32_t k = 0; k < n_pairs; k++) {
        struct field n = pairs[2 * k], v = pairs[2 * k + 1];
        if (!used[k] && n.len == name_len && memcmp(n.p, name, name_len) == 0 &&
            v.len == value_len && memcmp(v.p, value, value_len) == 0) {
            used[k] = 1;
            return 1;
        }
    }
    return 0;
}

/*
 * environ's NAME=value entries the patterns select (exact names or PREFIX*), compared as
 * a set with the recorded pairs: launch.env_projection, which launch.usable compares, of
 * the environment the Python CLI would see, which is environ with LC_CTYPE set to ctype
 * when that is not NULL (see python_coerced_ctype).
 */
static int env_projection_is(int whole, const struct field *patterns, uint32_t n_patterns,
                             const struct field *pairs, uint32_t n_pairs, const char *ctype) {
    unsigned char *used = calloc(n_pairs ? n_pairs : 1, 1);
    uint32_t matched = 0;
    int ok = used != NULL;
    for (char **e = environ; ok && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue; /* Python's os.environ skips these too */
        size_t name_len = (size_t)(eq - *e);
        if (ctype != NULL && name_len == 8 && memcmp(*e, "LC_CTYPE", 8) == 0)
            continue; /* replaced by setenv(3), counted below */
        if (!pattern_selects(whole, patterns, n_patterns, *e, name_len))
            continue;
        /* Not recorded, or a second entry of one name (Python would see only the first,
         * the command maybe both): either way not the environment the record was made for. */
        ok = match_pair(pairs, n_pairs, used, *e, name_len, eq + 1);
        matched += (uint32_t)ok;
    }
    if (ok && ctype != NULL && pattern_selects(whole, patterns, n_patterns, "LC_CTYPE", 8)) {
        ok = match_pair(pairs, n_pairs, used, "LC_CTYPE", 8, ctype);
        matched += (uint32_t)ok;
    }
    free(used);
    return ok && matched == n_pairs;
}

struct index {
    unsigned char *data;
    const unsigned char *record;
    size_t record_len;
};

/*
 * Check every condition of the index body against this process now. The order of the
 * fields is fixed by isorun.launch_index.index_blob; cheap comparisons come first in it.
 */
static int index_holds(struct cursor *c, const char *profile, const char *cwd, const char *self_dir,
                       struct index *idx) {
    char path[PATH_MAX], real[PATH_MAX];
    struct utsname un;
    if (!field_is(get_field(c), profile) || !field_is(get_field(c), cwd))
        return 0;
    if (get_uint(c, 4) != getuid() || get_uint(c, 4) != getgid() || get_uint(c, 4) != geteuid() ||
        get_uint(c, 4) != getegid())
        return 0;
    /* Written by the Python that sits next to us: the one a miss would run. */
    if (!field_is(get_field(c), self_dir))
        return 0;
    if (uname(&un) != 0 || !field_is(get_field(c), un.sysname) ||
        !field_is(get_field(c), un.release) || !field_is(get_field(c), un.version) ||
        !field_is(get_field(c), un.machine))
        return 0;

    uint32_t n = (uint32_t)get_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        int ok = field_cstr(get_field(c), path, sizeof path);
        int present = (int)get_uint(c, 1);
        struct field content = get_field(c);
        if (!ok || !c->ok || !file_is(path, present, content))
            return 0;
    }

    n = (uint32_t)get_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        int ok = field_cstr(get_field(c), path, sizeof path);
        int present = (int)get_uint(c, 1);
        struct field value = get_field(c);
        const char *now = ok ? getenv(path) : NULL;
        if (!ok || !c->ok || (now != NULL) != present || (now && !field_is(value, now)))
            return 0;
    }

    /* The realpath() inputs of isorun.cache.variables: ${HOME}, ${CWD}, ${TMPDIR}, ... */
    n = (uint32_t)get_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        int ok = field_cstr(get_field(c), path, sizeof path);
        struct field want = get_field(c);
        if (!ok || !c->ok || realpath(path, real) == NULL || !field_is(want, real))
            return 0;
    }

    int whole = (int)get_uint(c, 1);
    uint32_t n_patterns = (uint32_t)get_uint(c, 4);
    if (!c->ok || n_patterns > (size_t)(c->end - c->p) / 4)
        return 0;
    struct field *patterns = calloc(n_patterns ? n_patterns : 1, sizeof *patterns);
    if (patterns == NULL)
        return 0;
    for (uint32_t k = 0; k < n_patterns; k++)
        patterns[k] = get_field(c);
    uint32_t n_pairs = (uint32_t)get_uint(c, 4);
    struct field *pairs = NULL;
    if (c->ok && n_pairs <= (size_t)(c->end - c->p) / 8)
        pairs = calloc(n_pairs ? 2 * (size_t)n_pairs : 1, sizeof *pairs);
    for (uint32_t k = 0; pairs && k < 2 * n_pairs; k++)
        pairs[k] = get_field(c);
    int env_ok = pairs != NULL && c->ok &&
                 env_projection_is(whole, patterns, n_patterns, pairs, n_pairs, NULL);
    if (!env_ok && pairs != NULL && c->ok) {
        /* Only now, as it reads locale files: the common caller never gets here. */
        const char *ctype = python_coerced_ctype();
        env_ok =
            ctype != NULL && env_projection_is(whole, patterns, n_patterns, pairs, n_pairs, ctype);
    }
    free(patterns);
    free(pairs);
    if (!env_ok)
        return 0;

    /* Every profile file the plan came from, the isorun code that compiled it and the
     * interpreter: stat(2) fingerprints (isorun.launch_index.index_blob says why they suffice). */
    n = (uint32_t)get_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        struct stat st;
        int ok = field_cstr(get_field(c), path, sizeof path);
        uint64_t dev = get_uint(c, 8), ino = get_uint(c, 8), size = get_uint(c, 8);
        uint64_t mtime = get_uint(c, 8), ctime = get_uint(c, 8);
        uint64_t mode = get_uint(c, 4);
        if (!ok || !c->ok || stat(path, &st) != 0)
            return 0;
        uint64_t now_mtime =
            (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
        uint64_t now_ctime =
            (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
        if (dev != (uint64_t)st.st_dev || ino != (uint64_t)st.st_ino ||
            size != (uint64_t)st.st_size || mtime != now_mtime || ctime != now_ctime ||
            mode != (uint64_t)st.st_mode)
            return 0;
    }

    struct field record = get_field(c);
    if (!c->ok || c->p != c->end || record.len == 0)
        return 0;
    idx->record = record.p;
    idx->record_len = record.len;
    return 1;
}

/* The directory isorun.cache.cache_dir names, opened only if it is ours and only we can
 * write to it (the Python side makes it 0700); -1 otherwise. */
static int open_cache_dir(void) {
    char dir[PATH_MAX];
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    /* A relative XDG_CACHE_HOME is invalid (XDG base directory spec) and ignored; with no
     * HOME, Python reads the password database: not worth doing here, a miss. */
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(dir, sizeof dir, "%s/isorun", xdg);
    else if (home != NULL && home[0] != '\0')
        n = snprintf(dir, sizeof dir, "%s/.cache/isorun", home);
    else
        return -1;
    if (n < 0 || (size_t)n >= sizeof dir)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 022)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The launch index for this launch when it exists, is safe and holds now; else 0. */
static int load_index(const struct launch_args *la, const char *self_dir, struct index *idx) {
    char cwd[PATH_MAX], name[64], uid[16];
    struct stat st;
    if (getcwd(cwd, sizeof cwd) == NULL)
        return 0;
    snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
    uint64_t h = fnv1a64(0xcbf29ce484222325ull, la->profile, strlen(la->profile));
    h = fnv1a64(h, "", 1);
    h = fnv1a64(h, cwd, strlen(cwd));
    h = fnv1a64(h, "", 1);
    h = fnv1a64(h, uid, strlen(uid));
    snprintf(name, sizeof name, "%016llx.launch", (unsigned long long)h);

    int dir = open_cache_dir();
    if (dir < 0)
        return 0;
    /* O_NOFOLLOW: a symlink planted here is refused, not followed. O_NONBLOCK: a FIFO
     * would block the open; fstat then refuses anything but a regular file. */
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    close(dir);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 022) || st.st_size < (off_t)INDEX_HEAD_LEN ||
        st.st_size > (off_t)INDEX_MAX_LEN) {
        close(fd);
        return 0;
    }
    size_t len = (size_t)st.st_size, got = 0;
    unsigned char *data = malloc(len);
    ssize_t n = 1;
    while (data != NULL && got < len && (n = read(fd, data + got, len - got)) > 0)
        got += (size_t)n;
    close(fd);
    if (data == NULL || got != len) {
        free(data);
        return 0;
    }

    struct cursor c = {data, data + len, 1};
    const unsigned char *magic = take(&c, INDEX_MAGIC_LEN);
    uint64_t format = get_uint(&c, 4), crc = get_uint(&c, 4), body_len = get_uint(&c, 8);
    if (magic == NULL || memcmp(magic, index_magic, INDEX_MAGIC_LEN) != 0 ||
        format != ISORUN_INDEX_FORMAT || body_len != (uint64_t)(c.end - c.p) ||
        crc != crc32_of(c.p, (size_t)body_len) ||
        !index_holds(&c, la->profile, cwd, self_dir, idx)) {
        free(data);
        return 0;
    }
    idx->data = data;
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

int isorun_frontend_main(int argc, char **argv) {
    char self_dir[PATH_MAX];
    struct launch_args la;
    struct index idx = {NULL, NULL, 0};
    if (!self_directory(self_dir, sizeof self_dir)) {
        fprintf(stderr,
                "isorun: cannot read /proc/self/exe: %s\n"
                "  hint: mount /proc (mount -t proc proc /proc)\n",
                strerror(errno));
        return EXIT_ISORUN;
    }
    /* Installed set-user-ID or set-group-ID, this would read a cache and run a Python
     * chosen by the caller's environment with privileges the caller lacks. */
    if (getuid() != geteuid() || getgid() != getegid()) {
        fputs("isorun: refusing to run set-user-ID or set-group-ID\n"
              "  hint: chmod u-s,g-s the isorun program; it needs no privileges\n",
              stderr);
        return EXIT_ISORUN;
    }
    const char *cache = getenv("ISORUN_CACHE");
    if (!parse_launch(argc, argv, &la) || (cache != NULL && strcmp(cache, "0") == 0))
        exec_python(self_dir, argc, argv, 0);
    if (!load_index(&la, self_dir, &idx))
        exec_python(self_dir, argc, argv, 1);

    struct isorun_failure failure;
    memset(&failure, 0, sizeof failure);
    int status = isorun_launch_record(idx.record, idx.record_len, la.command, -1, &failure);
    free(idx.data);
    if (status < 0) {
        /* Set-up failed before the command ran (isorun_launch_record leaves nothing
         * behind then), so running the launch again cannot run the command twice or eat
         * its input. The Python CLI does, from its cache, and reports the failure with
         * the profile line of the failing step, which this program does not know. */
        exec_python(self_dir, argc, argv, 0);
    }
    if (failure.err != 0) {
        /* The status says 126 or 127; say why, as launch.exec_failure_message does. */
        const char *cmd = la.command[0];
        const char *why = strerror(failure.err);
        if (strchr(cmd, '/') == NULL && failure.err == ENOENT)
            why = "command not found in the sandbox's PATH";
        fprintf(stderr, "isorun: %s: %s\n", cmd, why);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_ISORUN;
}
