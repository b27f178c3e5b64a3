/*
 * The flat launch record (isorun.sandbox.flat) parsed into struct isorun_spec: shared by
 * launch.c (which launches it) and its --dump test aid. Private to isorun-launch.
 */
#ifndef ISORUN_LAUNCH_RECORD_H
#define ISORUN_LAUNCH_RECORD_H

#include <stddef.h>

#include "launcher.h" /* isorun_shim.h has no include guard (cdef), launcher.h has */

/* Allocations of one parse, freed together (launch_record.c). */
struct isorun_chunk;

struct isorun_record {
    struct isorun_spec spec;
    /* spec.mounts, writable: the parent turns binds into trees (launch.c, resolve_mounts) */
    struct isorun_mount *mounts;
    const unsigned char *uid_map, *gid_map;
    size_t uid_map_len, gid_map_len;
    /* the plan step of each fixed step name, for the parent's own failures */
    const char **step_names;
    long long *step_indexes;
    size_t n_steps;
    /*
     * The refusal report (issue #17): report_bpf is seccomp_bpf with each ERRNO answer
     * turned into USER_NOTIF (empty: no report); refusal[nr] names the rule that refuses
     * native syscall nr (NULL: none named); notes is said when the command fails.
     */
    const unsigned char *report_bpf;
    size_t report_len;
    const char **refusal;
    size_t n_refusal;
    /* what refusal[] does not name: the default action's rule */
    const char *refusal_other;
    const char *notes;
    struct isorun_chunk *chunks;
};

/*
 * Parse blob (len bytes) into *rec with argv as the command. 0, or -1 with *error (a
 * fixed string) and *error_at (the byte offset) saying why. Free with
 * isorun_record_free either way; the record refers to argv, not to blob.
 */
int isorun_record_parse(struct isorun_record *rec, const unsigned char *blob, size_t len,
                        char *const argv[], const char **error, size_t *error_at);
void isorun_record_free(struct isorun_record *rec);
/* A copy of s that lives as long as rec (freed by isorun_record_free), or NULL. */
char *isorun_record_strdup(struct isorun_record *rec, const char *s);

#endif
