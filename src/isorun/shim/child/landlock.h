/*
 * landlock.c's one entry point, shared by the shim's child (exec.c) and the wrapper
 * backends' exec stage (seccomp_exec.c, a separate static program built from this file
 * and landlock.c), so bwrap and firejail sandboxes get the very ruleset logic the native
 * shim applies. Not in isorun_shim.h: cffi's cdef() must not see it.
 */
#ifndef ISORUN_LANDLOCK_H
#define ISORUN_LANDLOCK_H

#include <stddef.h>

/* isorun_shim.h defines it; that header has no include guard (cdef() parses it), so the
 * includer includes it once, before this one. */
struct isorun_landlock_rule;

/*
 * Restrict the calling thread to the ruleset: abi is the ABI the plan was degraded to
 * (0: nothing to do), fs/net/scoped the handled masks, rules the grants. host_paths: the
 * paths name the host's own tree (no view was built), so no link is followed on the way
 * to them; else they name destinations of a view built just before. Returns 0, or an
 * errno with *call naming the call that failed; every caller then exits at once, so a
 * descriptor opened on the way is not closed. Async-signal-safe: no allocation.
 */
int isorun_landlock_restrict(int abi, unsigned long long fs, unsigned long long net,
                             unsigned long long scoped, const struct isorun_landlock_rule *rules,
                             size_t n_rules, int host_paths, const char **call);

#endif
