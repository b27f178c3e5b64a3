/*
 * isorun-launch --dump: the struct isorun_spec a flat record parses into, printed one
 * section at a time in sandbox/record.py SECTIONS order (the generated
 * ISORUN_RECORD_SECTIONS), for tests (tests/unit/test_flat.py).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "launch_record.h"
#include "launcher.h"
#include "tables.h"

static void dump_bytes(FILE *out, const char *name, const void *data, size_t len) {
    const unsigned char *p = data;
    size_t i;

    fprintf(out, "%s ", name);
    for (i = 0; i < len; i++) {
        if (p[i] >= 0x21 && p[i] < 0x7f && p[i] != '\\')
            fputc(p[i], out);
        else
            fprintf(out, "\\x%02x", p[i]);
    }
    fputc('\n', out);
}

/* One dump_NAME per section, as parse reads them (isorun-launch --dump, for tests). */
static void dump_clone_flags(FILE *out, const struct isorun_record *rec) {
    fprintf(out, "clone_flags %#lx\n", rec->spec.clone_flags);
}

static void dump_uid(FILE *out, const struct isorun_record *rec) {
    fprintf(out, "uid %u\n", rec->spec.uid);
}

static void dump_gid(FILE *out, const struct isorun_record *rec) {
    fprintf(out, "gid %u\n", rec->spec.gid);
}

static void dump_flags(FILE *out, const struct isorun_record *rec) {
    const struct isorun_spec *s = &rec->spec;

    fprintf(out, "setgroups_deny %d\nloopback_up %d\nnew_session %d\ndie_with_parent %d\n",
            s->setgroups_deny, s->loopback_up, s->new_session, s->die_with_parent);
    fprintf(out, "no_new_privs %d\ninit %d\n", s->no_new_privs, s->init);
}

static void dump_caps_keep(FILE *out, const struct isorun_record *rec) {
    fprintf(out, "caps_keep %#llx\n", rec->spec.caps_keep);
}

static void dump_uid_map(FILE *out, const struct isorun_record *rec) {
    dump_bytes(out, "uid_map", rec->uid_map, rec->uid_map_len);
}

static void dump_gid_map(FILE *out, const struct isorun_record *rec) {
    dump_bytes(out, "gid_map", rec->gid_map, rec->gid_map_len);
}

static void dump_str(FILE *out, const char *name, const char *s) {
    dump_bytes(out, name, s, strlen(s));
}

static void dump_root(FILE *out, const struct isorun_record *rec) {
    dump_str(out, "root", rec->spec.root);
}

static void dump_cwd(FILE *out, const struct isorun_record *rec) {
    dump_str(out, "cwd", rec->spec.cwd);
}

static void dump_hostname(FILE *out, const struct isorun_record *rec) {
    dump_str(out, "hostname", rec->spec.hostname);
}

static void dump_path(FILE *out, const struct isorun_record *rec) {
    dump_str(out, "path", rec->spec.path);
}

static void dump_env(FILE *out, const struct isorun_record *rec) {
    for (size_t i = 0; rec->spec.env[i] != NULL; i++)
        dump_str(out, "env", rec->spec.env[i]);
}

static void dump_keep_fds(FILE *out, const struct isorun_record *rec) {
    for (size_t i = 0; i < rec->spec.n_keep_fds; i++)
        fprintf(out, "keep_fd %d\n", rec->spec.keep_fds[i]);
}

static void dump_mounts(FILE *out, const struct isorun_record *rec) {
    for (size_t i = 0; i < rec->spec.n_mounts; i++) {
        const struct isorun_mount *m = &rec->spec.mounts[i];
        fprintf(out, "mount %d %#lx %04o %d %d\n", m->kind, m->flags, m->mode, m->optional,
                m->step);
        dump_str(out, " dst", m->dst);
        dump_bytes(out, " src", m->src, m->src_len);
        dump_str(out, " data", m->data != NULL ? m->data : "");
    }
}

static void dump_rlimits(FILE *out, const struct isorun_record *rec) {
    for (size_t i = 0; i < rec->spec.n_rlimits; i++) {
        const struct isorun_rlimit *rl = &rec->spec.rlimits[i];
        fprintf(out, "rlimit %d %lld %lld %d\n", rl->resource, rl->soft, rl->hard, rl->step);
    }
}

static void dump_seccomp_bpf(FILE *out, const struct isorun_record *rec) {
    fprintf(out, "seccomp_len %zu\n", rec->spec.seccomp_len);
}

static void dump_landlock(FILE *out, const struct isorun_record *rec) {
    const struct isorun_spec *s = &rec->spec;

    fprintf(out, "landlock %d %#llx %#llx %#llx\n", s->landlock_abi, s->landlock_fs,
            s->landlock_net, s->landlock_scoped);
    for (size_t i = 0; i < s->n_landlock_rules; i++) {
        const struct isorun_landlock_rule *l = &s->landlock_rules[i];
        fprintf(out, "landlock_rule %llu %#llx %d\n", l->port, l->access, l->optional);
        dump_str(out, " path", l->path);
    }
}

static void dump_report(FILE *out, const struct isorun_record *rec) {
    fprintf(out, "report_len %zu\n", rec->report_len);
    for (size_t i = 0; i < rec->n_refusal; i++)
        if (rec->refusal[i] != NULL)
            fprintf(out, "refusal %zu %s\n", i, rec->refusal[i]);
    dump_str(out, "refusal_other", rec->refusal_other);
    dump_str(out, "notes", rec->notes);
}

static void dump_step_index(FILE *out, const struct isorun_record *rec) {
    for (size_t i = 0; i < rec->n_steps; i++)
        fprintf(out, "step %s %lld\n", rec->step_names[i], rec->step_indexes[i]);
}

int isorun_dump_record(const unsigned char *blob, size_t len, FILE *out) {
    static char *const argv[] = {(char *)"-", NULL};
    struct isorun_record rec;
    const char *error;
    size_t at;

    if (isorun_record_parse(&rec, blob, len, argv, &error, &at) < 0) {
        fprintf(stderr, "isorun-launch: error: malformed launch record at byte %zu of %zu: %s\n",
                at, len, error);
        isorun_record_free(&rec);
        return -1;
    }
#define DUMP_SECTION(name) dump_##name(out, &rec);
    ISORUN_RECORD_SECTIONS(DUMP_SECTION)
#undef DUMP_SECTION
    isorun_record_free(&rec);
    return 0;
}
