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
 * Two conditions have files of their own: auto's choice of a backend (index_auto.c) and
 * the environment the profile passes in (index_env.c).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/keyctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "launch_index.h"
#include "launcher.h"
#include "tables.h"

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

static const unsigned char *cursor_take(struct cursor *c, size_t n) {
    if (!c->ok || (size_t)(c->end - c->p) < n) {
        c->ok = 0;
        return NULL;
    }
    const unsigned char *at = c->p;
    c->p += n;
    return at;
}

uint64_t cursor_uint(struct cursor *c, size_t n) {
    const unsigned char *at = cursor_take(c, n);
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
int cursor_flag(struct cursor *c) {
    uint64_t v = cursor_uint(c, 1);
    if (v > 1)
        c->ok = 0;
    return (int)v;
}

struct field cursor_field(struct cursor *c) {
    struct field f = {NULL, 0};
    size_t len = (size_t)cursor_uint(c, 4);
    f.p = cursor_take(c, len);
    f.len = f.p ? len : 0;
    return f;
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

/* The caller: profile and directory as named, ids, the Python next to us (the one a miss
 * would run) and the kernel. */
static int caller_is(struct cursor *c, const char *profile, const char *cwd,
                     const char *self_dir) {
    struct utsname un;
    if (!field_is(cursor_field(c), profile) || !field_is(cursor_field(c), cwd))
        return 0;
    if (cursor_uint(c, 4) != getuid() || cursor_uint(c, 4) != getgid() ||
        cursor_uint(c, 4) != geteuid() || cursor_uint(c, 4) != getegid())
        return 0;
    if (!field_is(cursor_field(c), self_dir))
        return 0;
    return uname(&un) == 0 && field_is(cursor_field(c), un.sysname) &&
           field_is(cursor_field(c), un.release) && field_is(cursor_field(c), un.version) &&
           field_is(cursor_field(c), un.machine);
}

/*
 * The userns sysctls and the variables of INDEX_ENV. The names come from our own lists,
 * not from the file: an index whose list differs (another build, or a writer that held
 * the key) would otherwise check a name nobody sets ("absent": true) in place of the one
 * that matters.
 */
static int sysctls_and_env_hold(struct cursor *c) {
    if (cursor_uint(c, 4) != N_ELEMENTS(index_sysctls))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(index_sysctls); k++) {
        int named = field_is(cursor_field(c), index_sysctls[k]);
        int present = cursor_flag(c);
        struct field content = cursor_field(c);
        if (!named || !c->ok || !file_is(index_sysctls[k], present, content))
            return 0;
    }
    if (cursor_uint(c, 4) != N_ELEMENTS(index_env))
        return 0;
    for (size_t k = 0; c->ok && k < N_ELEMENTS(index_env); k++) {
        int named = field_is(cursor_field(c), index_env[k]);
        int present = cursor_flag(c);
        struct field value = cursor_field(c);
        const char *now = getenv(index_env[k]);
        if (!named || !c->ok || (now != NULL) != present || (now && !field_is(value, now)))
            return 0;
    }
    return c->ok;
}

/* The realpath() inputs of isorun.cache.entry.variables: ${HOME}, ${CWD}, ${TMPDIR}, ... */
static int realpaths_hold(struct cursor *c) {
    char path[PATH_MAX], real[PATH_MAX];
    uint32_t n = (uint32_t)cursor_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        int ok = field_cstr(cursor_field(c), path, sizeof path);
        struct field want = cursor_field(c);
        if (!ok || !c->ok || realpath(path, real) == NULL || !field_is(want, real))
            return 0;
    }
    return c->ok;
}

/* The file at path has the recorded fingerprint (launch_index._fingerprint). */
int index_fingerprint_is(struct cursor *c, const char *path) {
    struct stat st;
    uint64_t dev = cursor_uint(c, 8), ino = cursor_uint(c, 8), size = cursor_uint(c, 8);
    uint64_t mtime = cursor_uint(c, 8), ctime = cursor_uint(c, 8);
    uint64_t mode = cursor_uint(c, 4);
    if (!c->ok || stat(path, &st) != 0)
        return 0;
    uint64_t now_mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    uint64_t now_ctime = (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
    return dev == (uint64_t)st.st_dev && ino == (uint64_t)st.st_ino &&
           size == (uint64_t)st.st_size && mtime == now_mtime && ctime == now_ctime &&
           mode == (uint64_t)st.st_mode;
}

/* Every profile file the plan came from, the isorun code that compiled it and the
 * interpreter: stat(2) fingerprints (isorun.cache.index.index_blob says why they suffice). */
static int files_hold(struct cursor *c) {
    char path[PATH_MAX];
    uint32_t n = (uint32_t)cursor_uint(c, 4);
    for (uint32_t k = 0; c->ok && k < n; k++) {
        int ok = field_cstr(cursor_field(c), path, sizeof path);
        if (!ok || !index_fingerprint_is(c, path))
            return 0;
    }
    return c->ok;
}

/* Which record this is: the native one, or the landlock backend's, named or as auto's
 * choice, with the warning an --allow-weaker run prints; then the record itself, last. */
static int record_holds(struct cursor *c, const char *backend, struct isorun_index *idx) {
    if (!field_is(cursor_field(c), backend))
        return 0;
    uint64_t mode = cursor_uint(c, 1);
    idx->needs_weaker = cursor_flag(c);
    struct field warning = cursor_field(c);
    if (!c->ok || mode > ISORUN_MODE_LANDLOCK_AUTO ||
        (mode == ISORUN_MODE_NATIVE && backend[0] != '\0'))
        return 0;
    idx->warning = warning.p;
    idx->warning_len = warning.len;
    if (mode == ISORUN_MODE_LANDLOCK_AUTO && !index_auto_choice_holds(c))
        return 0;
    struct field record = cursor_field(c);
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
           realpaths_hold(c) && index_env_projection_holds(c) && files_hold(c) &&
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
    const unsigned char *magic = cursor_take(&c, INDEX_MAGIC_LEN);
    uint64_t format = cursor_uint(&c, 4), body_len = cursor_uint(&c, 8);
    const unsigned char *tag = cursor_take(&c, MAC_TAG_SIZE);
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
