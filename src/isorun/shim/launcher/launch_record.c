/*
 * The flat launch record (isorun.sandbox.flat, whose docstring is the format) parsed into
 * struct isorun_spec (printed back for tests by launch_record_dump.c), section by section
 * with the read primitives of launch_record_read.c.
 *
 * The record comes from our own encoder, not from a user: anything it does not expect is
 * a bug or a stale build, so the parser refuses it with the byte offset rather than
 * guessing. Every read is bounds-checked; every count is checked against the bytes left
 * before anything is allocated for it.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/filter.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "launch_record.h"
#include "launch_record_read.h"
#include "launcher.h"
#include "tables.h"

#define RECORD_MAGIC "IRLR"
/* The namespaces a record may ask for; any other clone flag (CLONE_VM...) is refused. */
#define RECORD_CLONE_FLAGS                                                                 \
    ((unsigned long)(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |           \
                     CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x80 /* NEWTIME */))

static int read_mount(struct reader *r, struct isorun_record *rec, struct isorun_mount *m) {
    long long kind, flags, mode, optional, step;

    if (reader_range(r, ISORUN_MOUNT_BIND, ISORUN_MOUNT_MASK, &kind, "unknown mount kind") < 0 ||
        reader_range(r, 0, LONG_MAX, &flags, "mount flags out of range") < 0 ||
        reader_range(r, 0, 07777, &mode, "mount mode out of range") < 0 ||
        reader_range(r, 0, 1, &optional, "mount optional is not 0 or 1") < 0 ||
        reader_range(r, -1, INT_MAX, &step, "mount step out of range") < 0)
        return -1;
    /* TREE descriptors are the helper's own (launch.c), never a record's. */
    if (kind == ISORUN_MOUNT_TREE)
        return reader_refuse(r, "unknown mount kind");
    m->kind = (int)kind;
    m->flags = (unsigned long)flags;
    m->mode = (unsigned int)mode;
    m->optional = (int)optional;
    m->step = (int)step;
    m->tree_fd = -1;
    if (reader_cstr(r, rec, 0, &m->dst, NULL) < 0 ||
        reader_cstr(r, rec, kind == ISORUN_MOUNT_FILE, &m->src, &m->src_len) < 0 ||
        reader_cstr(r, rec, 0, &m->data, NULL) < 0)
        return -1;
    if (m->dst[0] != '/')
        return reader_refuse(r, "mount dst is not absolute");
    if ((kind == ISORUN_MOUNT_BIND || kind == ISORUN_MOUNT_DEV_BIND ||
         kind == ISORUN_MOUNT_SYMLINK || kind == ISORUN_MOUNT_OVERLAY) &&
        m->src_len == 0)
        return reader_refuse(r, "bind or symlink without a src");
    if (m->data[0] == '\0')
        m->data = NULL;
    return 0;
}

/*
 * One parse_NAME per section of sandbox/record.py SECTIONS, called in that order by
 * parse() through the generated ISORUN_RECORD_SECTIONS. A check that needs an earlier
 * section (the id maps need CLONE_NEWUSER, report_bpf needs seccomp_bpf) is made where
 * the later one is read, so the offset it names is that section's, as it always was.
 */
static int parse_clone_flags(struct reader *r, struct isorun_record *rec) {
    long long v;

    if (reader_i64(r, &v) < 0)
        return -1;
    if ((unsigned long long)v & ~(unsigned long long)RECORD_CLONE_FLAGS) {
        r->pos -= 8;
        return reader_refuse(r, "clone_flags holds a flag other than CLONE_NEW*");
    }
    rec->spec.clone_flags = (unsigned long)v;
    return 0;
}

static int parse_uid(struct reader *r, struct isorun_record *rec) {
    long long v;

    if (reader_range(r, 0, UINT_MAX - 1, &v, "uid out of range") < 0)
        return -1;
    rec->spec.uid = (unsigned int)v;
    return 0;
}

static int parse_gid(struct reader *r, struct isorun_record *rec) {
    long long v;

    if (reader_range(r, 0, UINT_MAX - 1, &v, "gid out of range") < 0)
        return -1;
    rec->spec.gid = (unsigned int)v;
    return 0;
}

static int parse_flags(struct reader *r, struct isorun_record *rec) {
    struct isorun_spec *s = &rec->spec;
    long long flags;

    if (reader_range(r, 0, ISORUN_FLAG_ALL, &flags, "unknown flag bits") < 0)
        return -1;
    s->setgroups_deny = !!(flags & ISORUN_FLAG_SETGROUPS_DENY);
    s->loopback_up = !!(flags & ISORUN_FLAG_LOOPBACK_UP);
    s->new_session = !(flags & ISORUN_FLAG_NEW_SESSION)   ? 0
                     : (flags & ISORUN_FLAG_TERMINAL_JOB) ? ISORUN_SESSION_TERMINAL_OK
                                                          : 1;
    s->die_with_parent = !!(flags & ISORUN_FLAG_DIE_WITH_PARENT);
    s->no_new_privs = !!(flags & ISORUN_FLAG_NO_NEW_PRIVS);
    s->init = !!(flags & ISORUN_FLAG_INIT);
    return 0;
}

static int parse_caps_keep(struct reader *r, struct isorun_record *rec) {
    long long caps;

    if (reader_i64(r, &caps) < 0)
        return -1;
    rec->spec.caps_keep = (unsigned long long)caps;
    return 0;
}

static int parse_uid_map(struct reader *r, struct isorun_record *rec) {
    return reader_bytes(r, &rec->uid_map, &rec->uid_map_len);
}

static int parse_gid_map(struct reader *r, struct isorun_record *rec) {
    if (reader_bytes(r, &rec->gid_map, &rec->gid_map_len) < 0)
        return -1;
    if ((rec->uid_map_len || rec->gid_map_len) && !(rec->spec.clone_flags & CLONE_NEWUSER))
        return reader_refuse(r, "uid_map/gid_map without a new user namespace");
    return 0;
}

static int parse_root(struct reader *r, struct isorun_record *rec) {
    const char *root;

    if (reader_cstr(r, rec, 0, &root, NULL) < 0)
        return -1;
    if (root[0] != '\0' && root[0] != '/' && strcmp(root, "tmpfs") != 0)
        return reader_refuse(r, "root must be empty, tmpfs or absolute");
    rec->spec.root = root;
    return 0;
}

static int parse_cwd(struct reader *r, struct isorun_record *rec) {
    return reader_cstr(r, rec, 0, &rec->spec.cwd, NULL);
}

static int parse_hostname(struct reader *r, struct isorun_record *rec) {
    return reader_cstr(r, rec, 0, &rec->spec.hostname, NULL);
}

static int parse_path(struct reader *r, struct isorun_record *rec) {
    return reader_cstr(r, rec, 0, &rec->spec.path, NULL);
}

static int parse_env(struct reader *r, struct isorun_record *rec) {
    const char **env;
    size_t i, n;

    if (reader_count(r, 4, &n) < 0 || (env = record_alloc(rec, (n + 1) * sizeof *env)) == NULL)
        return reader_refuse(r, "out of memory");
    for (i = 0; i < n; i++)
        if (reader_cstr(r, rec, 0, &env[i], NULL) < 0)
            return -1;
    env[n] = NULL;
    rec->spec.env = (char **)env;
    return 0;
}

static int parse_keep_fds(struct reader *r, struct isorun_record *rec) {
    long long v;
    size_t i, j, k, n;
    int *keep;

    if (reader_count(r, 8, &n) < 0 || (keep = record_alloc(rec, (n + 1) * sizeof *keep)) == NULL)
        return reader_refuse(r, "out of memory");
    /* 0, 1, 2 are stdio, kept anyway; a repeat would only be closed twice. */
    for (i = j = 0; i < n; i++) {
        if (reader_range(r, 0, INT_MAX, &v, "keep_fds holds a negative descriptor") < 0)
            return -1;
        for (k = 0; k < j && keep[k] != (int)v; k++)
            ;
        if (v > 2 && k == j)
            keep[j++] = (int)v;
    }
    rec->spec.keep_fds = keep;
    rec->spec.n_keep_fds = j;
    return 0;
}

static int parse_mounts(struct reader *r, struct isorun_record *rec) {
    size_t i, n;

    /* One slot more than the record has: launch.c's resolve_mounts may put a rootfs tree
     * in front of the others. */
    if (reader_count(r, 5 * 8 + 3 * 4, &n) < 0 ||
        (rec->mounts = record_alloc(rec, (n + 1) * sizeof *rec->mounts)) == NULL)
        return reader_refuse(r, "out of memory");
    for (i = 0; i < n; i++)
        if (read_mount(r, rec, &rec->mounts[i]) < 0)
            return -1;
    rec->spec.mounts = rec->mounts;
    rec->spec.n_mounts = n;
    return 0;
}

static int parse_rlimits(struct reader *r, struct isorun_record *rec) {
    struct isorun_rlimit *rl;
    long long resource, soft, hard, step;
    size_t i, n;

    if (reader_count(r, 4 * 8, &n) < 0 || (rl = record_alloc(rec, (n + 1) * sizeof *rl)) == NULL)
        return reader_refuse(r, "out of memory");
    for (i = 0; i < n; i++) {
        if (reader_range(r, 0, RLIMIT_NLIMITS - 1, &resource, "unknown rlimit resource") < 0 ||
            reader_range(r, -1, LLONG_MAX, &soft, "rlimit soft out of range") < 0 ||
            reader_range(r, -1, LLONG_MAX, &hard, "rlimit hard out of range") < 0 ||
            reader_range(r, -1, INT_MAX, &step, "rlimit step out of range") < 0)
            return -1;
        rl[i].resource = (int)resource;
        rl[i].soft = soft;
        rl[i].hard = hard;
        rl[i].step = (int)step;
    }
    rec->spec.rlimits = rl;
    rec->spec.n_rlimits = n;
    return 0;
}

static int parse_seccomp_bpf(struct reader *r, struct isorun_record *rec) {
    struct isorun_spec *s = &rec->spec;

    if (reader_bytes(r, &s->seccomp_bpf, &s->seccomp_len) < 0)
        return -1;
    if (s->seccomp_len % sizeof(struct sock_filter) != 0 ||
        s->seccomp_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
        return reader_refuse(r, "seccomp_bpf is not a whole BPF program of at most 4096 "
                                "instructions");
    return 0;
}

static int read_landlock_rule(struct reader *r, struct isorun_record *rec,
                              struct isorun_landlock_rule *rule) {
    long long port, access, optional;

    if (reader_range(r, 0, 65535, &port, "landlock port out of range") < 0 ||
        reader_i64(r, &access) < 0 ||
        reader_range(r, 0, 1, &optional, "landlock optional is not 0 or 1") < 0 ||
        reader_cstr(r, rec, 0, &rule->path, NULL) < 0)
        return -1;
    if (rule->path[0] != '\0' ? rule->path[0] != '/' : port == 0)
        return reader_refuse(r, "landlock rule needs an absolute path or a port");
    rule->port = (unsigned long long)port;
    rule->access = (unsigned long long)access;
    rule->optional = (int)optional;
    return 0;
}

static int parse_landlock(struct reader *r, struct isorun_record *rec) {
    struct isorun_spec *s = &rec->spec;
    struct isorun_landlock_rule *rules;
    long long abi, fs, net, scoped;
    size_t i, n;

    if (reader_range(r, 0, INT_MAX, &abi, "landlock abi out of range") < 0 ||
        reader_i64(r, &fs) < 0 || reader_i64(r, &net) < 0 || reader_i64(r, &scoped) < 0)
        return -1;
    s->landlock_abi = (int)abi;
    s->landlock_fs = (unsigned long long)fs;
    s->landlock_net = (unsigned long long)net;
    s->landlock_scoped = (unsigned long long)scoped;
    if (reader_count(r, 3 * 8 + 4, &n) < 0 ||
        (rules = record_alloc(rec, (n + 1) * sizeof *rules)) == NULL)
        return reader_refuse(r, "out of memory");
    for (i = 0; i < n; i++)
        if (read_landlock_rule(r, rec, &rules[i]) < 0)
            return -1;
    s->landlock_rules = rules;
    s->n_landlock_rules = n;
    return 0;
}

static int parse_report(struct reader *r, struct isorun_record *rec) {
    long long nr;
    const char *text;
    size_t i, n;

    if (reader_bytes(r, &rec->report_bpf, &rec->report_len) < 0)
        return -1;
    if (rec->report_len % sizeof(struct sock_filter) != 0 ||
        rec->report_len / sizeof(struct sock_filter) > BPF_MAXINSNS ||
        (rec->report_len > 0 && rec->spec.seccomp_len == 0))
        return reader_refuse(r, "report_bpf is not a BPF program beside seccomp_bpf");
    if (reader_count(r, 8 + 4, &n) < 0)
        return -1;
    /* Indexed by number: as many slots as the highest number named, at most 4096. */
    rec->n_refusal = n ? 4096 : 0;
    if (n && (rec->refusal = record_alloc(rec, rec->n_refusal * sizeof *rec->refusal)) == NULL)
        return reader_refuse(r, "out of memory");
    if (n)
        memset(rec->refusal, 0, rec->n_refusal * sizeof *rec->refusal);
    for (i = 0; i < n; i++) {
        if (reader_range(r, 0, 4095, &nr, "refusal syscall number out of range") < 0 ||
            reader_cstr(r, rec, 0, &text, NULL) < 0)
            return -1;
        rec->refusal[nr] = text;
    }
    if (reader_cstr(r, rec, 0, &rec->refusal_other, NULL) < 0 ||
        reader_cstr(r, rec, 0, &rec->notes, NULL) < 0)
        return -1;
    return 0;
}

static int parse_step_index(struct reader *r, struct isorun_record *rec) {
    size_t i, n, len;

    if (reader_count(r, 4 + 8, &n) < 0 ||
        (rec->step_names = record_alloc(rec, (n + 1) * sizeof *rec->step_names)) == NULL ||
        (rec->step_indexes = record_alloc(rec, (n + 1) * sizeof *rec->step_indexes)) == NULL)
        return reader_refuse(r, "out of memory");
    for (i = 0; i < n; i++) {
        if (reader_cstr(r, rec, 0, &rec->step_names[i], &len) < 0 ||
            reader_range(r, -1, INT_MAX, &rec->step_indexes[i], "step index out of range") < 0)
            return -1;
        if (len == 0 || len >= ISORUN_NAME_MAX)
            return reader_refuse(r, "step name empty or too long");
    }
    rec->n_steps = n;
    return 0;
}

static int parse(struct reader *r, struct isorun_record *rec, char *const argv[]) {
    struct isorun_spec *s = &rec->spec;
    const unsigned char *magic;
    uint32_t version;

    if (reader_take(r, 4, &magic) < 0 || memcmp(magic, RECORD_MAGIC, 4) != 0)
        return reader_refuse(r, "not a launch record (bad magic)");
    if (reader_u32(r, &version) < 0)
        return -1;
    if (version != ISORUN_RECORD_VERSION) {
        r->pos -= 4;
        return reader_refuse(r, "record version differs from this isorun-launch (rebuild it)");
    }
#define PARSE_SECTION(name)                                                                \
    if (parse_##name(r, rec) < 0)                                                          \
        return -1;
    ISORUN_RECORD_SECTIONS(PARSE_SECTION)
#undef PARSE_SECTION
    if (r->pos != r->len)
        return reader_refuse(r, "trailing bytes after the record");
    if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0')
        return reader_refuse(r, "argv is empty");
    s->argv = (char **)argv;
    s->notify_bpf = (const unsigned char *)"";
    s->notify_len = 0;
    s->notify_fd = -1;
    return 0;
}

int isorun_record_parse(struct isorun_record *rec, const unsigned char *blob, size_t len,
                        char *const argv[], const char **error, size_t *error_at) {
    struct reader r = {blob, 0, len, NULL, 0};

    memset(rec, 0, sizeof *rec);
    if (blob != NULL && parse(&r, rec, argv) == 0)
        return 0;
    *error = r.error != NULL ? r.error : "no record";
    *error_at = r.error_at;
    return -1;
}
