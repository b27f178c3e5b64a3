/*
 * The launch index, as the `isorun` front end (frontend.c) reads it: the file the Python
 * CLI writes next to a plan cache entry (isorun.cache.index, which documents the layout),
 * checked condition by condition against this process now.
 *
 * Fail closed: the index is only trusted as the plan cache's entries are (a regular file,
 * not a symlink, owned by us and writable by no one else, in a directory of ours that no
 * one else can write), its tag must be this user's key's tag of its name and body
 * (isorun.host.mac: a sandbox of the same uid can write such files, but cannot read the key),
 * and every recorded condition must compare equal byte for byte. Anything else,
 * including a malformed file or no key, is a miss, never a crash: every read goes
 * through the bounds-checked cursor below, and none happens before the tag matched.
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
#include <sched.h>
#include <linux/keyctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"
#include "tables.h"

extern char **environ;

/* ISORUN_INDEX_FORMAT, the magic, and isorun.host.mac's key name, key and tag sizes:
 * consts.h and tables.h, from isorun/shim/abi.py */
static const char index_magic[] = ISORUN_INDEX_MAGIC;
#define INDEX_MAGIC_LEN (sizeof index_magic - 1)
static const char mac_key_name[] = ISORUN_MAC_KEY_NAME;
#define MAC_KEY_SIZE ISORUN_MAC_KEY_SIZE
#define MAC_TAG_SIZE ISORUN_MAC_TAG_SIZE
#define INDEX_HEAD_LEN (INDEX_MAGIC_LEN + 4 + 8 + MAC_TAG_SIZE)
/* A real index is a few KiB (the BPF program and the environment dominate); a larger
 * file is not one we wrote, and reading it whole would only cost time. */
#define INDEX_MAX_LEN (16u << 20)

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))
/* kernel/abi.py KEYED_USERNS_SYSCTLS and shim/abi.py INDEX_ENV, in their order */
static const char *const index_sysctls[] = {ISORUN_INDEX_SYSCTLS};
static const char *const index_env[] = {ISORUN_INDEX_ENV};

/*
 * Whether tag is isorun.host.mac.tag(key, b"index", name, body): the caller's key, read from
 * its user keyring (isorun.host.mac says why there), else no (none made yet, keyctl refused:
 * a miss, and the Python CLI makes one). Two syscalls; the hash is most of the cost.
 */
static int tag_matches(const char *name, const unsigned char *body, size_t len,
                       const unsigned char *tag) {
    unsigned char key[MAC_KEY_SIZE + 1], want[MAC_TAG_SIZE];
    struct isorun_blake2b s;
    long serial = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", mac_key_name, 0);
    if (serial < 0)
        return 0;
    /* one byte more than a key: a longer payload is not ours, and is not cut to fit */
    if (syscall(SYS_keyctl, KEYCTL_READ, serial, key, sizeof key) != MAC_KEY_SIZE)
        return 0;
    if (isorun_blake2b_init(&s, MAC_TAG_SIZE, key, MAC_KEY_SIZE) != 0)
        return 0;
    explicit_bzero(key, sizeof key);
    isorun_blake2b_update(&s, "index", 6); /* with its NUL, as the Python side writes */
    isorun_blake2b_update(&s, name, strlen(name) + 1);
    isorun_blake2b_update(&s, body, len);
    isorun_blake2b_final(&s, want);
    explicit_bzero(&s, sizeof s);
    /* every byte compared, whatever the first difference: no timing to learn from */
    unsigned char diff = 0;
    for (size_t i = 0; i < MAC_TAG_SIZE; i++)
        diff |= (unsigned char)(want[i] ^ tag[i]);
    return diff == 0;
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

/* A u8 flag the writer sets to exactly 0 or 1 (bytes([bool])); any other value is a
 * damaged index, not a "true" to read loosely: a miss, as for every other surprise. */
static int get_flag(struct cursor *c) {
    uint64_t v = get_uint(c, 1);
    if (v > 1)
        c->ok = 0;
    return (int)v;
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

/* Whole small files (the userns sysctls), as isorun.cache.entry.facts_key reads them. */
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
 * a set with the recorded pairs: cache.record.env_projection, which cache.record.usable
 * compares, of the environment the Python CLI would see, which is environ with LC_CTYPE
 * set to ctype when that is not NULL (see python_coerced_ctype).
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
/* shim/abi.py AUTO_TOOLS and AUTO_FILES, in their order */
static const char *const auto_tools[] = {ISORUN_AUTO_TOOLS};
static const char *const auto_files[] = {ISORUN_AUTO_FILES};

/* The file at path has the recorded fingerprint (launch_index._fingerprint). */
static int fingerprint_is(struct cursor *c, const char *path) {
    struct stat st;
    uint64_t dev = get_uint(c, 8), ino = get_uint(c, 8), size = get_uint(c, 8);
    uint64_t mtime = get_uint(c, 8), ctime = get_uint(c, 8);
    uint64_t mode = get_uint(c, 4);
    if (!c->ok || stat(path, &st) != 0)
        return 0;
    uint64_t now_mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    uint64_t now_ctime = (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
    return dev == (uint64_t)st.st_dev && ino == (uint64_t)st.st_ino &&
           size == (uint64_t)st.st_size && mtime == now_mtime && ctime == now_ctime &&
           mode == (uint64_t)st.st_mode;
}

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
static int auto_choice_holds(struct cursor *c) {
    char status[8192], found[PATH_MAX];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, status, sizeof status - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    status[n] = '\0';
    int nnp = strstr(status, "\nNoNewPrivs:\t1") != NULL;
    if (get_flag(c) != nnp)
        return 0;
    int path_present = get_flag(c);
    struct field path = get_field(c);
    const char *now = getenv("PATH");
    if (!c->ok || (now != NULL) != path_present || (now && !field_is(path, now)))
        return 0;
    if (get_uint(c, 4) != N_ELEMENTS(auto_tools))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(auto_tools); k++) {
        int named = field_is(get_field(c), auto_tools[k]);
        struct field want = get_field(c);
        which(auto_tools[k], found, sizeof found);
        if (!named || !c->ok || !field_is(want, found))
            return 0;
        if (found[0] != '\0' && !fingerprint_is(c, found))
            return 0;
    }
    if (get_uint(c, 4) != N_ELEMENTS(auto_files))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(auto_files); k++) {
        struct stat st;
        int named = field_is(get_field(c), auto_files[k]);
        int present = get_flag(c);
        if (!named || !c->ok || present != (stat(auto_files[k], &st) == 0))
            return 0;
        if (present && !fingerprint_is(c, auto_files[k]))
            return 0;
    }
    /* Last: the only check that may fork. */
    return c->ok && !userns_now(status);
}

/* The caller: profile and directory as named, ids, the Python next to us (the one a miss
 * would run) and the kernel. */
static int caller_is(struct cursor *c, const char *profile, const char *cwd,
                     const char *self_dir) {
    struct utsname un;
    if (!field_is(get_field(c), profile) || !field_is(get_field(c), cwd))
        return 0;
    if (get_uint(c, 4) != getuid() || get_uint(c, 4) != getgid() || get_uint(c, 4) != geteuid() ||
        get_uint(c, 4) != getegid())
        return 0;
    if (!field_is(get_field(c), self_dir))
        return 0;
    return uname(&un) == 0 && field_is(get_field(c), un.sysname) &&
           field_is(get_field(c), un.release) && field_is(get_field(c), un.version) &&
           field_is(get_field(c), un.machine);
}

/*
 * The userns sysctls and the variables of INDEX_ENV. The names come from our own lists,
 * not from the file: an index whose list differs (another build, or a writer that held
 * the key) would otherwise check a name nobody sets ("absent": true) in place of the one
 * that matters.
 */
static int sysctls_and_env_hold(struct cursor *c) {
    if (get_uint(c, 4) != N_ELEMENTS(index_sysctls))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(index_sysctls); k++) {
        int named = field_is(get_field(c), index_sysctls[k]);
        int present = get_flag(c);
        struct field content = get_field(c);
        if (!named || !c->ok || !file_is(index_sysctls[k], present, content))
            return 0;
    }
    if (get_uint(c, 4) != N_ELEMENTS(index_env))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(index_env); k++) {
        int named = field_is(get_field(c), index_env[k]);
        int present = get_flag(c);
        struct field value = get_field(c);
        const char *now = getenv(index_env[k]);
        if (!named || !c->ok || (now != NULL) != present || (now && !field_is(value, now)))
            return 0;
    }
    return c->ok;
}

/* The realpath() inputs of isorun.cache.entry.variables: ${HOME}, ${CWD}, ${TMPDIR}, ... */
static int realpaths_hold(struct cursor *c) {
    char path[PATH_MAX], real[PATH_MAX];
    uint32_t n = (uint32_t)get_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        int ok = field_cstr(get_field(c), path, sizeof path);
        struct field want = get_field(c);
        if (!ok || !c->ok || realpath(path, real) == NULL || !field_is(want, real))
            return 0;
    }
    return c->ok;
}

/* The environment the profile passes in, as the plan saw it. */
static int env_projection_holds(struct cursor *c) {
    int whole = get_flag(c);
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
    return env_ok;
}

/* Every profile file the plan came from, the isorun code that compiled it and the
 * interpreter: stat(2) fingerprints (isorun.cache.index.index_blob says why they suffice). */
static int files_hold(struct cursor *c) {
    char path[PATH_MAX];
    uint32_t n = (uint32_t)get_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        int ok = field_cstr(get_field(c), path, sizeof path);
        if (!ok || !fingerprint_is(c, path))
            return 0;
    }
    return c->ok;
}

/* Which record this is: the native one, or the landlock backend's, named or as auto's
 * choice, with the warning an --allow-weaker run prints; then the record itself, last. */
static int record_holds(struct cursor *c, const char *backend, struct isorun_index *idx) {
    if (!field_is(get_field(c), backend))
        return 0;
    uint64_t mode = get_uint(c, 1);
    idx->needs_weaker = get_flag(c);
    struct field warning = get_field(c);
    if (!c->ok || mode > ISORUN_MODE_LANDLOCK_AUTO ||
        (mode == ISORUN_MODE_NATIVE && backend[0] != '\0'))
        return 0;
    idx->warning = warning.p;
    idx->warning_len = warning.len;
    if (mode == ISORUN_MODE_LANDLOCK_AUTO && !auto_choice_holds(c))
        return 0;
    struct field record = get_field(c);
    if (!c->ok || c->p != c->end || record.len == 0)
        return 0;
    idx->record = record.p;
    idx->record_len = record.len;
    return 1;
}

/*
 * Check every condition of the index body against this process now, in the order
 * isorun.cache.index.index_blob writes them; cheap comparisons come first in it.
 */
static int index_holds(struct cursor *c, const char *profile, const char *backend,
                       const char *cwd, const char *self_dir, struct isorun_index *idx) {
    return caller_is(c, profile, cwd, self_dir) && sysctls_and_env_hold(c) &&
           realpaths_hold(c) && env_projection_holds(c) && files_hold(c) &&
           record_holds(c, backend, idx);
}

/* The directory isorun.cache.files.cache_dir names, opened only if it is ours and only we can
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

int isorun_load_index(const char *profile, const char *backend, const char *self_dir,
                      struct isorun_index *idx) {
    char cwd[PATH_MAX], name[ISORUN_INDEX_NAME_SIZE];
    struct stat st;
    if (getcwd(cwd, sizeof cwd) == NULL)
        return 0;
    isorun_index_name(profile, cwd, (unsigned)getuid(), backend, name);

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
    uint64_t format = get_uint(&c, 4), body_len = get_uint(&c, 8);
    const unsigned char *tag = take(&c, MAC_TAG_SIZE);
    if (magic == NULL || tag == NULL || memcmp(magic, index_magic, INDEX_MAGIC_LEN) != 0 ||
        format != ISORUN_INDEX_FORMAT || body_len != (uint64_t)(c.end - c.p) ||
        !tag_matches(name, c.p, (size_t)body_len, tag) ||
        !index_holds(&c, profile, backend, cwd, self_dir, idx)) {
        free(data);
        return 0;
    }
    idx->data = data;
    return 1;
}
