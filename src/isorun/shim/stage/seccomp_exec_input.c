/* isorun-seccomp-exec's inputs, each read whole from a descriptor and checked. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_exec.h"

#define MAX_ENV 4096
#define MAX_BPF_INSNS 4096
#define MAX_LANDLOCK (1 << 20)

/* The whole content of fd from offset 0 (pread: the runner and we share the offset). */
static char *read_fd(int fd, size_t limit, size_t *size, const char *step) {
    char *buf = malloc(limit + 1);
    size_t used = 0;

    if (buf == NULL)
        die(step, "malloc", ENOMEM);
    for (;;) {
        ssize_t n = pread(fd, buf + used, limit + 1 - used, (off_t)used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(step, "pread", errno);
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > limit)
            die(step, "pread", E2BIG);
    }
    buf[used] = '\0';
    *size = used;
    return buf;
}

char **stage_read_env(int fd) {
    size_t size, count = 0, i;
    char *data = read_fd(fd, 1 << 20, &size, "environment");
    char **env = calloc(MAX_ENV + 1, sizeof *env);

    if (env == NULL)
        die("environment", "calloc", ENOMEM);
    for (i = 0; i < size; i += strlen(data + i) + 1) {
        if (count == MAX_ENV)
            die("environment", "read", E2BIG);
        env[count++] = data + i;
    }
    env[count] = NULL;
    return env;
}

struct sock_fprog stage_read_seccomp(int fd) {
    size_t size;
    char *data = read_fd(fd, MAX_BPF_INSNS * sizeof(struct sock_filter), &size, "seccomp");
    struct sock_fprog prog;

    if (size == 0 || size % sizeof(struct sock_filter) != 0)
        die("seccomp", "read", EINVAL);
    prog.len = (unsigned short)(size / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)(void *)data;
    return prog;
}

static long long take_i64(const char *data, size_t size, size_t *pos) {
    unsigned long long v = 0;
    int k;

    if (size - *pos < 8)
        die("landlock", "read", EINVAL);
    for (k = 7; k >= 0; k--)
        v = v << 8 | (unsigned char)data[*pos + (size_t)k];
    *pos += 8;
    return (long long)v;
}

static size_t take_u32(const char *data, size_t size, size_t *pos) {
    size_t v = 0;
    int k;

    if (size - *pos < 4)
        die("landlock", "read", EINVAL);
    for (k = 3; k >= 0; k--)
        v = v << 8 | (unsigned char)data[*pos + (size_t)k];
    *pos += 4;
    return v;
}

struct ruleset stage_read_landlock(int fd) {
    size_t size, pos = 0, i, len;
    char *data = read_fd(fd, MAX_LANDLOCK, &size, "landlock");
    struct ruleset set;

    set.abi = take_i64(data, size, &pos);
    set.fs = take_i64(data, size, &pos);
    set.net = take_i64(data, size, &pos);
    set.scoped = take_i64(data, size, &pos);
    set.n = take_u32(data, size, &pos);
    if (set.abi < 0 || set.abi > 1000 || set.n > size / 28)
        die("landlock", "read", EINVAL);
    set.rules = calloc(set.n + 1, sizeof *set.rules);
    if (set.rules == NULL)
        die("landlock", "calloc", ENOMEM);
    for (i = 0; i < set.n; i++) {
        char *path = NULL;

        set.rules[i].port = (unsigned long long)take_i64(data, size, &pos);
        set.rules[i].access = (unsigned long long)take_i64(data, size, &pos);
        set.rules[i].optional = take_i64(data, size, &pos) != 0;
        len = take_u32(data, size, &pos);
        if (size - pos < len || memchr(data + pos, '\0', len) != NULL)
            die("landlock", "read", EINVAL);
        path = malloc(len + 1);
        if (path == NULL)
            die("landlock", "malloc", ENOMEM);
        memcpy(path, data + pos, len);
        path[len] = '\0';
        pos += len;
        if (path[0] != '\0' ? path[0] != '/' : set.rules[i].port == 0)
            die("landlock", "read", EINVAL);
        set.rules[i].path = path;
    }
    if (pos != size)
        die("landlock", "read", EINVAL);
    free(data);
    return set;
}
