/*
 * Escape prober: each subcommand attempts one forbidden act and prints "ok" if it
 * succeeded or "errno=N" with the failure. Arguments are chosen so a call that gets
 * past the sandbox does as little as possible. Built by tests/escape/conftest.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <termios.h>
#include <unistd.h>

static int report(long rc) {
    if (rc < 0)
        printf("errno=%d\n", errno);
    else
        printf("ok\n");
    return 0;
}

static long chroot_escape(void) {
    int i;

    /* The classic: chroot into a subdirectory while keeping cwd outside, walk up. */
    if (mkdir("/tmp/jail", 0700) < 0 && errno != EEXIST)
        return -1;
    if (chroot("/tmp/jail") < 0)
        return -1;
    for (i = 0; i < 64; i++)
        if (chdir("..") < 0)
            return -1;
    return chroot(".");
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    long arg = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    struct stat st;

    if (!strcmp(what, "chroot"))
        return report(chroot_escape());
    if (!strcmp(what, "proc1root"))
        /* /proc/1/root is the sandbox's own root at best; the host path must not exist. */
        return report(stat(argc > 2 ? argv[2] : "/proc/1/root/etc/hostname", &st));
    if (!strcmp(what, "ptrace"))
        return report(ptrace(PTRACE_ATTACH, (pid_t)arg, NULL, NULL));
    if (!strcmp(what, "kill"))
        return report(kill((pid_t)arg, 0));
    if (!strcmp(what, "mount"))
        return report(mount("none", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(what, "umount"))
        return report(umount2("/proc", MNT_DETACH));
    if (!strcmp(what, "remount"))
        return report(mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL));
    if (!strcmp(what, "nested_userns")) {
        /* A new user namespace grants capabilities only over namespaces it owns. */
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
            return report(-1);
        printf("unshared ");
        if (mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL) == 0)
            return printf("remount-ok\n"), 0;
        printf("remount-errno=%d ", errno);
        return report(sethostname("escaped", 7));
    }
    if (!strcmp(what, "sysctl"))
        return report(open("/proc/sys/kernel/hostname", O_WRONLY));
    if (!strcmp(what, "fd"))
        return report(fstat((int)arg, &st));
    if (!strcmp(what, "tiocsti")) {
        char c = '#';
        return report(ioctl(0, TIOCSTI, &c));
    }
    if (!strcmp(what, "ids")) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        printf("euid=%d ", (int)geteuid());
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7))
                printf("%.*s ", (int)strcspn(line, "\n"), line);
        printf("\n");
        return 0;
    }
    fprintf(stderr, "unknown probe %s\n", what);
    return 2;
}
