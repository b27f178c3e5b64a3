/*
 * Credentials and capabilities: switch to the spec's uid/gid, keep only caps_keep in
 * every capability set, lock the securebits, set no_new_privs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "isorun_child.h"

static void fail(const struct isorun_spec *spec, const char *step, const char *syscall) {
    isorun_child_fail(spec, step, syscall, errno, -1);
}

static void drop_bounding(const struct isorun_spec *spec) {
    unsigned long cap;

    for (cap = 0; cap < 64; cap++) {
        if (spec->caps_keep & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            /* EINVAL past the last capability this kernel knows: done. */
            if (errno == EINVAL)
                break;
            fail(spec, "caps", "prctl(PR_CAPBSET_DROP)");
        }
    }
}

static void set_caps(const struct isorun_spec *spec) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    __u32 lo = (__u32)(spec->caps_keep & 0xffffffffu);
    __u32 hi = (__u32)(spec->caps_keep >> 32);

    data[0].effective = data[0].permitted = data[0].inheritable = lo;
    data[1].effective = data[1].permitted = data[1].inheritable = hi;
    if (syscall(SYS_capset, &hdr, data) < 0)
        fail(spec, "caps", "capset");
}

static void set_ambient(const struct isorun_spec *spec) {
    unsigned long cap;

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        fail(spec, "caps", "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
    /*
     * Ambient is the only set that survives execve(2) of a file without file
     * capabilities for a non-root uid, so a kept capability must be raised here.
     */
    for (cap = 0; cap < 64; cap++) {
        if (!(spec->caps_keep & (1ULL << cap)))
            continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            fail(spec, "caps", "prctl(PR_CAP_AMBIENT_RAISE)");
    }
}

/*
 * The landlock backend run by a normal user: no user namespace, so no capability to
 * lock, drop or switch ids with (each such call is EPERM). There is nothing to give up:
 * the command keeps the caller's ids, and no_new_privs makes setuid binaries and file
 * capabilities inert at its execve.
 */
static int unprivileged(const struct isorun_spec *spec) {
    return !(spec->clone_flags & CLONE_NEWUSER) && geteuid() != 0;
}

void isorun_child_ids(const struct isorun_spec *spec) {
    if (unprivileged(spec)) {
        /* Our own ids: allowed without privilege; a spec asking for others fails here. */
        if (setresgid(spec->gid, spec->gid, spec->gid) < 0)
            fail(spec, "ids", "setresgid");
        if (setresuid(spec->uid, spec->uid, spec->uid) < 0)
            fail(spec, "ids", "setresuid");
        return;
    }
    /*
     * Securebits first (needs CAP_SETPCAP, which we hold until the drop).
     * NO_SETUID_FIXUP keeps setresuid below from touching the capability sets, so the
     * privileged steps after it still work and the sets end up exactly as capset writes
     * them; NOROOT stops uid 0 from regaining every capability at execve; the LOCKED
     * bits stop the command from undoing either (capabilities(7)).
     */
    if (prctl(PR_SET_SECUREBITS,
              SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED,
              0, 0, 0) < 0)
        fail(spec, "securebits", "prctl(PR_SET_SECUREBITS)");
    /*
     * Supplementary groups before the gid and uid switch (needs CAP_SETGID). A user
     * namespace whose setgroups file says "deny" refuses the call; it then has no
     * supplementary groups besides the overflow gid anyway (user_namespaces(7)).
     */
    if (!((spec->clone_flags & CLONE_NEWUSER) && spec->setgroups_deny) &&
        setgroups(0, NULL) < 0)
        fail(spec, "setgroups", "setgroups");
    /*
     * Before any file is created: until now we carry the launcher's host ids, which the
     * new user namespace may not map (root launching with "0 100000 1"), and creating a
     * file or directory with an unmapped fsuid/fsgid fails with EOVERFLOW.
     * gid before uid: after the uid change CAP_SETGID may no longer apply.
     */
    if (setresgid(spec->gid, spec->gid, spec->gid) < 0)
        fail(spec, "ids", "setresgid");
    if (setresuid(spec->uid, spec->uid, spec->uid) < 0)
        fail(spec, "ids", "setresuid");
}

void isorun_child_caps(const struct isorun_spec *spec) {
    /* Bounding set first: PR_CAPBSET_DROP needs CAP_SETPCAP, which capset removes below. */
    if (!unprivileged(spec))
        drop_bounding(spec);
    set_caps(spec);
    /* After capset: raising an ambient capability needs it permitted and inheritable. */
    set_ambient(spec);
}
