/*
 * A reader over the flat launch record and the allocations of one parse: shared by
 * launch_record.c (the sections) and launch_record_read.c (the primitives). Each read
 * returns 0, or -1 once anything was refused; the first refusal's reason and byte offset
 * stay in the reader.
 */
#ifndef ISORUN_LAUNCH_RECORD_READ_H
#define ISORUN_LAUNCH_RECORD_READ_H

#include <stddef.h>
#include <stdint.h>

#include "launch_record.h"

struct reader {
    const unsigned char *base;
    size_t pos, len;
    const char *error;
    size_t error_at;
};

/* n bytes (16-aligned) that live as long as rec, or NULL. */
void *record_alloc(struct isorun_record *rec, size_t n);
/* Refuse at the current offset, unless already refused; returns -1. */
int reader_refuse(struct reader *r, const char *what);
int reader_take(struct reader *r, size_t n, const unsigned char **out);
int reader_u32(struct reader *r, uint32_t *value);
int reader_i64(struct reader *r, long long *value);
/* An i64 in [lo, hi], else refused with what at its offset. */
int reader_range(struct reader *r, long long lo, long long hi, long long *value,
                 const char *what);
/* A u32 length, then that many bytes (not copied). */
int reader_bytes(struct reader *r, const unsigned char **data, size_t *len);
/* A copy with a NUL appended; refuses a NUL inside unless binary (FILE content). */
int reader_cstr(struct reader *r, struct isorun_record *rec, int binary, const char **out,
                size_t *out_len);
/* A count of items of at least min_size bytes each: more than could follow is refused
 * before anything is allocated for them. */
int reader_count(struct reader *r, size_t min_size, size_t *count);

#endif
