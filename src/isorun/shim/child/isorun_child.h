/*
 * Declarations shared by the shim's .c files, kept out of isorun_shim.h because cffi's
 * cdef() must not see system headers or functions that only the child may call.
 * Every isorun_child_* function runs between clone(2) and execve(2): async-signal-safe
 * calls only, no malloc, no stdio, no locks.
 */
#ifndef ISORUN_CHILD_H
#define ISORUN_CHILD_H

#include <stddef.h>

#include "consts.h" /* generated; isorun_shim.h uses it */
#include "isorun_shim.h"

/* fail.c: write (step, syscall, errno, index) to the error pipe, _exit(ISORUN_EXIT_SETUP). */
_Noreturn void isorun_child_fail(const struct isorun_spec *spec, const char *step,
                                 const char *syscall, int err, int index);

/* Like isorun_child_fail but with the given exit status (exec failures: 126/127). */
_Noreturn void isorun_child_fail_status(const struct isorun_spec *spec, const char *step,
                                        const char *syscall, int err, int index,
                                        int status);

/* The child entry point handed to clone(2). */
int isorun_child_main(void *arg);

/* The part of spec->clone_flags the child unshares itself rather than clone (ns.c). */
unsigned long isorun_deferred_flags(unsigned long clone_flags);
/* unshare(2) those namespaces: 0 or the errno, which the child reports after the wait. */
int isorun_child_unshare_deferred(const struct isorun_spec *spec);

void isorun_child_hostname(const struct isorun_spec *spec);
void isorun_child_loopback(const struct isorun_spec *spec);
void isorun_child_mount(const struct isorun_spec *spec);
void isorun_child_ids(const struct isorun_spec *spec);
void isorun_child_caps(const struct isorun_spec *spec);
void isorun_child_seccomp(const struct isorun_spec *spec);
void isorun_child_notify(const struct isorun_spec *spec);
void isorun_child_landlock(const struct isorun_spec *spec);

/*
 * exec.c's steps from the mapped ids to seccomp (setsid, ids, stdio, closing fds,
 * hostname, loopback, mounts, rlimits, caps, no_new_privs, Landlock, death signal), shared
 * with apply.c, which applies a spec to the calling process.
 */
void isorun_child_confine(const struct isorun_spec *spec);
void isorun_child_death_signal(const struct isorun_spec *spec);
/*
 * fds.c: the spec's stdio made the command's 0-2; then every descriptor closed but stdio,
 * the kept ones (made inheritable), the error pipe, the learn socket and mount trees.
 */
void isorun_child_stdio(const struct isorun_spec *spec);
void isorun_child_close_fds(const struct isorun_spec *spec);

/*
 * beneath.c: paths opened beneath the directory descriptor root, no link followed.
 * open_beneath returns a descriptor or -1 with errno; the others a descriptor or -errno.
 * open_parent makes missing directories (0755) and sets *name to the last component
 * (inside buf, PATH_MAX); it may return root itself, so release it with close_parent.
 * open_dst makes the last component when missing (a directory with mode, or an empty
 * file) and refuses a link or the wrong type there; an O_PATH descriptor.
 */
int isorun_child_open_beneath(int root, const char *path, int flags);
int isorun_child_open_parent(int root, const char *path, char *buf, const char **name);
void isorun_child_close_parent(int root, int fd);
int isorun_child_open_dst(int root, const char *path, int dir, unsigned int mode);
size_t isorun_leading_slashes(const char *s);

/* Join a and b into buf (size PATH_MAX); returns 0 or -ENAMETOOLONG. */
int isorun_join(char *buf, size_t size, const char *a, const char *b);
size_t isorun_strlen(const char *s);

#endif
