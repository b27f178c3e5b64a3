/*
 * The launch record's read primitives (launch_record.c parses its sections with them):
 * bounds-checked little-endian reads that stop at the first refusal, and the chunks the
 * parsed record is allocated from.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "launch_record_read.h"

/* The child reads its copy-on-write copy of these after clone; freed after the launch. */
struct isorun_chunk {
    struct isorun_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *record_alloc(struct isorun_record *rec, size_t n) {
    struct isorun_chunk *c = rec->chunks;
    size_t cap;

    n = (n + 15) & ~(size_t)15;
    if (c == NULL || c->cap - c->used < n) {
        cap = n > 16384 ? n : 16384;
        c = calloc(1, sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->next = rec->chunks;
        rec->chunks = c;
    }
    c->used += n;
    return c->data + c->used - n;
}

void isorun_record_free(struct isorun_record *rec) {
    struct isorun_chunk *c, *next;

    for (c = rec->chunks; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    rec->chunks = NULL;
}

char *isorun_record_strdup(struct isorun_record *rec, const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = record_alloc(rec, n);

    if (copy != NULL)
        memcpy(copy, s, n);
    return copy;
}

int reader_refuse(struct reader *r, const char *what) {
    if (r->error == NULL) {
        r->error = what;
        r->error_at = r->pos;
    }
    return -1;
}

int reader_take(struct reader *r, size_t n, const unsigned char **out) {
    if (r->error != NULL)
        return -1;
    if (n > r->len - r->pos)
        return reader_refuse(r, "truncated");
    *out = r->base + r->pos;
    r->pos += n;
    return 0;
}

int reader_u32(struct reader *r, uint32_t *value) {
    const unsigned char *p;

    if (reader_take(r, 4, &p) < 0)
        return -1;
    *value = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return 0;
}

int reader_i64(struct reader *r, long long *value) {
    const unsigned char *p;
    uint64_t v = 0;
    int i;

    if (reader_take(r, 8, &p) < 0)
        return -1;
    for (i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    /* Two's complement, as int.to_bytes(signed=True) wrote it. */
    *value = v > (uint64_t)LLONG_MAX ? -(long long)(~v) - 1 : (long long)v;
    return 0;
}

int reader_range(struct reader *r, long long lo, long long hi, long long *value,
                 const char *what) {
    if (reader_i64(r, value) < 0)
        return -1;
    if (*value < lo || *value > hi) {
        r->pos -= 8;
        return reader_refuse(r, what);
    }
    return 0;
}

int reader_bytes(struct reader *r, const unsigned char **data, size_t *len) {
    uint32_t n;

    if (reader_u32(r, &n) < 0 || reader_take(r, n, data) < 0)
        return -1;
    *len = n;
    return 0;
}

/* A copy with a NUL appended; refuses a NUL inside unless binary (FILE content). */
int reader_cstr(struct reader *r, struct isorun_record *rec, int binary, const char **out,
                size_t *out_len) {
    const unsigned char *data;
    char *copy;
    size_t len;

    if (reader_bytes(r, &data, &len) < 0)
        return -1;
    if (!binary && memchr(data, '\0', len) != NULL)
        return reader_refuse(r, "string holds a NUL byte");
    copy = record_alloc(rec, len + 1);
    if (copy == NULL)
        return reader_refuse(r, "out of memory");
    memcpy(copy, data, len);
    copy[len] = '\0';
    *out = copy;
    if (out_len != NULL)
        *out_len = len;
    return 0;
}

/* A count of items of at least min_size bytes each: more than could follow is refused
 * before anything is allocated for them. */
int reader_count(struct reader *r, size_t min_size, size_t *count) {
    uint32_t n;

    if (reader_u32(r, &n) < 0)
        return -1;
    if ((size_t)n > (r->len - r->pos) / min_size) {
        r->pos -= 4;
        return reader_refuse(r, "count larger than the record");
    }
    *count = n;
    return 0;
}
