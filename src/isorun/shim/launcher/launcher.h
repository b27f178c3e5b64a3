/*
 * The parts of isorun-launch, the small program that starts native sandboxes without
 * cloning a Python process (see launch.c) and, installed as the `isorun` command, launches
 * a cached plan without starting Python at all (see frontend.c).
 *
 * Not part of the cffi ABI (isorun_shim.h): this header may #include and is never cdef'd.
 */
#ifndef ISORUN_LAUNCHER_H
#define ISORUN_LAUNCHER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "consts.h" /* generated; isorun_shim.h uses it */
#include "isorun_shim.h"

/*
 * Start the sandbox described by a flat record (isorun.sandbox.flat.encode) for argv,
 * stdio inherited, then wait for it, forwarding the signals the CLI forwards.
 *
 * report_fd >= 0 (the API): once the command is running or set-up failed, write one
 * struct isorun_failure there (err == 0: started; the pid follows as an int) and close it.
 * (When execve failed, the record says so, step "exec", and the pid follows as well; the
 * command's status is then 126/127. On a unix socket the sandbox's pidfd goes along as
 * SCM_RIGHTS. Descriptors other than stdio, report_fd and the record's keep_fds are
 * closed first, as posix_spawn leaves them open, and our stdio once the sandbox has its
 * copies, so that the caller's pipes see EOF when the command closes them. Signals a
 * terminal sends (si_code SI_KERNEL) are not forwarded then, only those sent with kill.)
 *
 * terminal: the caller stands for the command at its terminal (the CLI), so a record
 * that allows it (new_session ISORUN_SESSION_TERMINAL_OK) may make the sandbox the
 * terminal's foreground job; 0 (an API caller keeps its terminal) means a new session.
 *
 * Returns the command's wait status (>= 0) once it has ended; failure->err is then 0, or
 * the execve errno with failure->step "exec" when the command could not be executed
 * (status 126/127). Returns -1 when set-up failed before the command ran, with *failure
 * filled in; nothing of the sandbox is left behind then.
 */
int isorun_launch_record(const unsigned char *blob, size_t len, char *const argv[],
                         int report_fd, int terminal, int refusals,
                         struct isorun_failure *failure);

/*
 * The steps of a launch in files of their own (launch.c runs them in order). Each
 * returns 0, or -1 with *f filled in by isorun_launch_fail (caller.c): the failure of the plan
 * step named ``step`` (its index looked up in the record).
 */
struct isorun_record;
int isorun_launch_fail(struct isorun_failure *f, const struct isorun_record *rec,
                       const char *step, const char *syscall, int err);
/*
 * caller.c: close what posix_spawn left open but the spec does not keep (report_fd
 * aside); send the caller its one message (see isorun_launch_record) and close fd.
 */
void isorun_caller_close_unkept(const struct isorun_spec *s, int report_fd);
int isorun_caller_report(int fd, const struct isorun_failure *f, int pid, int pidfd);
/* launch_mounts.c: bind sources (and the root) resolved, trees cloned for a root caller. */
int isorun_launch_resolve_mounts(struct isorun_record *rec, struct isorun_failure *f);
void isorun_launch_close_trees(struct isorun_record *rec);
/* idmap.c: setgroups, gid_map and uid_map of the child pid, when it has a user namespace. */
int isorun_launch_id_maps(const struct isorun_record *rec, int pid, struct isorun_failure *f);
/*
 * terminal.c: note whether we are the terminal's foreground job as a sandbox that may
 * take it starts (may_take; returns the answer), and take the terminal back after it.
 */
int isorun_terminal_note(int may_take);
void isorun_terminal_reclaim(void);

/*
 * The refusal report (launch_report.c). refusals != 0 above: when the record carries a
 * reporting filter, the sandbox loads it and, if the command fails, the refused syscalls
 * and the record's notes are written to stderr.
 */
#define REPORT_KINDS 256
struct isorun_record;
struct isorun_report {
    struct isorun_supervisor sup;
    struct isorun_seen seen[REPORT_KINDS];
    struct isorun_event events[1];
    int sock, child_sock, active, listener_done, no_listener;
};
int isorun_report_prepare(struct isorun_report *r, struct isorun_record *rec, int enabled);
void isorun_report_spawned(struct isorun_report *r);
int isorun_report_take(struct isorun_report *r, int err_fd);
int isorun_report_wait(struct isorun_report *r, int fd);
/* The child's failure record from the error pipe fd, read to EOF: 1 when one came. */
int isorun_report_read_failure(struct isorun_report *r, int fd, struct isorun_failure *f);
void isorun_report_close(struct isorun_report *r);
/* The report's lines; returns how many calls were refused. */
unsigned long long isorun_report_print(const struct isorun_report *r,
                                       const struct isorun_record *rec, FILE *out);

/* Test aid: the parsed record as text, one field a line (isorun-launch --dump). 0 or -1. */
int isorun_dump_record(const unsigned char *blob, size_t len, FILE *out);

/* A launch index read whole (launch_index.c): the flat record and the warning lie
 * inside data. */
struct isorun_index {
    unsigned char *data;
    const unsigned char *record;
    size_t record_len;
    /* the --allow-weaker warning to print before the launch (warning_len 0: none) */
    const unsigned char *warning;
    size_t warning_len;
    /* the run loses rules: only with --allow-weaker (else the Python CLI refuses it) */
    int needs_weaker;
};

/*
 * The launch index of `isorun --profile profile [--backend backend]` for this process
 * now (backend "" without the option): 1 when it exists, is safe to trust and every
 * condition in it holds (free idx->data after use), else 0, a miss. self_dir is the
 * directory of the running program.
 */
int isorun_load_index(const char *profile, const char *backend, const char *self_dir,
                      struct isorun_index *idx);

/*
 * git_guard.c: the sources of the .git guards in s that are missing now, into out (at
 * most cap; cap + 1 when there are more); after the sandbox has ended, move each that
 * appeared aside and say so on stderr. Returns how many appeared.
 */
#define ISORUN_GIT_GUARDS_MAX 256
size_t isorun_git_guards_missing(const struct isorun_spec *s, const char **out, size_t cap);
int isorun_git_guards_quarantine(const char *const *missing, size_t n);
/*
 * Every guard's source (at most cap; cap + 1 when there are more), taken before
 * resolve_mounts turns binds into trees; then, once the sandbox has ended, planted.c's
 * walk below each one's directory (a writable bind's source). since: CLOCK_REALTIME_COARSE
 * read before the clone.
 */
struct timespec;
size_t isorun_git_guards_all(const struct isorun_spec *s, const char **out, size_t cap);
void isorun_git_guards_walk(const char *const *guards, size_t n, const struct timespec *since);

/* The launch index's file name for profile, cwd, uid and backend ("" for none), as
 * isorun.cache.index.index_name makes it (index_name.c): 16 hex digits, ".launch". */
#define ISORUN_INDEX_NAME_SIZE 24
void isorun_index_name(const char *profile, const char *cwd, unsigned int uid,
                       const char *backend, char name[ISORUN_INDEX_NAME_SIZE]);

/* Keyed BLAKE2b (RFC 7693, blake2b.c): the tag of isorun.host.mac on entries and indexes.
 * init: outlen 1..64 bytes, key up to 64 bytes (0: unkeyed); -1 on a bad length. */
struct isorun_blake2b {
    uint64_t h[8], t[2];
    unsigned char b[128];
    size_t c, outlen;
};
int isorun_blake2b_init(struct isorun_blake2b *s, size_t outlen, const void *key, size_t keylen);
void isorun_blake2b_update(struct isorun_blake2b *s, const void *data, size_t len);
void isorun_blake2b_final(struct isorun_blake2b *s, unsigned char *out);

/* `isorun ...` as typed by a user: a cached launch, or exec of the Python CLI. */
int isorun_frontend_main(int argc, char **argv);

#endif
