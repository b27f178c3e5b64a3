/*
 * The launch index's bounds-checked reader and the checks kept in files of their own
 * (index_auto.c, index_env.c); launch_index.c reads the rest and says what a hit needs.
 * Private to isorun-launch.
 */
#ifndef ISORUN_LAUNCH_INDEX_H
#define ISORUN_LAUNCH_INDEX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* A bounds-checked reader: past the end it stops, and ok stays 0 from then on. */
struct cursor {
    const unsigned char *p;
    const unsigned char *end;
    int ok;
};

/* A length-prefixed byte string of the index (p NULL once the cursor stopped). */
struct field {
    const unsigned char *p;
    size_t len;
};

static inline int field_is(struct field f, const char *s) {
    size_t len = strlen(s);
    return f.p != NULL && f.len == len && memcmp(f.p, s, len) == 0;
}

/* launch_index.c: an unsigned of n (1, 4 or 8) bytes, a 0/1 flag, a u32-prefixed field;
 * 0 (an empty field) once the cursor stopped. */
uint64_t cursor_uint(struct cursor *c, size_t n);
int cursor_flag(struct cursor *c);
struct field cursor_field(struct cursor *c);
/* launch_index.c: the file at path has the fingerprint the cursor holds next. */
int index_fingerprint_is(struct cursor *c, const char *path);

/* index_auto.c: auto's choice of the landlock backend would be made again now. */
int index_auto_choice_holds(struct cursor *c);
/* index_env.c: the environment the profile passes in is the one the plan saw. */
int index_env_projection_holds(struct cursor *c);

#endif
