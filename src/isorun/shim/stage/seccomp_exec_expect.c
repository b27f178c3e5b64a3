/*
 * isorun-seccomp-exec's --expect: a mount the wrapper made is the file isorun checked
 * before the launch, reached with no link followed (seccomp_exec.c says why).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_exec.h"

/* DEV:INO:FLAGS:PATH -> the mount at PATH is the file isorun checked before the launch. */
void stage_check_expect(const char *spec) {
    unsigned long long dev, ino;
    char *end = NULL;
    const char *flags, *path;
    int readonly, noexec;
    struct open_how how;
    struct stat st;
    struct statvfs vfs;
    long fd;

    errno = 0;
    dev = strtoull(spec, &end, 10);
    if (errno != 0 || *end != ':')
        usage("--expect takes DEV:INO:FLAGS:PATH");
    ino = strtoull(end + 1, &end, 10);
    if (errno != 0 || *end != ':')
        usage("--expect takes DEV:INO:FLAGS:PATH");
    flags = end + 1;
    path = strchr(flags, ':');
    if (path == NULL || path[1] != '/')
        usage("--expect takes DEV:INO:FLAGS:PATH");
    readonly = memchr(flags, 'r', (size_t)(path - flags)) != NULL;
    noexec = memchr(flags, 'x', (size_t)(path - flags)) != NULL;
    path++;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    /* No link at all: the path was canonical when isorun walked it on the host. */
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    if (fd < 0) {
        fprintf(stderr, "isorun: error: mount check: %s: openat2: %s (a link in the path "
                "was swapped in after isorun checked it?)\n", path, strerror(errno));
        _exit(EXIT_SETUP);
    }
    if (fstat((int)fd, &st) < 0 || fstatvfs((int)fd, &vfs) < 0)
        die("mount check", "fstat", errno);
    close((int)fd);
    if ((unsigned long long)st.st_dev != dev || (unsigned long long)st.st_ino != ino) {
        fprintf(stderr, "isorun: error: mount check: %s is not the file isorun checked "
                "before the launch: a link was swapped in and the backend followed it; "
                "the command did not run\n", path);
        _exit(EXIT_SETUP);
    }
    if ((readonly && !(vfs.f_flag & ST_RDONLY)) || (noexec && !(vfs.f_flag & ST_NOEXEC))) {
        fprintf(stderr, "isorun: error: mount check: %s is not %s as the profile asks: the "
                "backend applied it elsewhere (a link swapped in after isorun's check?); "
                "the command did not run\n", path,
                readonly && !(vfs.f_flag & ST_RDONLY) ? "read-only" : "noexec");
        _exit(EXIT_SETUP);
    }
}
