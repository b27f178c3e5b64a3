/*
 * The launch index's file name: FNV-1a 64 of "profile\0cwd\0uid[\0backend]", as
 * isorun.cache.index.index_name computes it when it writes the index (the Python CLI,
 * which has no C module loaded on that path). A file of its own so that
 * tests/unit/test_blake2b_c.py can run it beside the Python one on the same inputs.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "launcher.h"

static uint64_t fnv1a64(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void isorun_index_name(const char *profile, const char *cwd, unsigned int uid,
                       const char *backend, char name[ISORUN_INDEX_NAME_SIZE]) {
    char id[16];
    snprintf(id, sizeof id, "%u", uid);
    uint64_t h = fnv1a64(0xcbf29ce484222325ull, profile, strlen(profile));
    h = fnv1a64(h, "", 1);
    h = fnv1a64(h, cwd, strlen(cwd));
    h = fnv1a64(h, "", 1);
    h = fnv1a64(h, id, strlen(id));
    if (backend[0] != '\0') {
        h = fnv1a64(h, "", 1);
        h = fnv1a64(h, backend, strlen(backend));
    }
    snprintf(name, ISORUN_INDEX_NAME_SIZE, "%016llx.launch", (unsigned long long)h);
}
