/*
 * The launch index's environment condition: the variables the profile passes in, as the
 * Python CLI would see them (launch_index.c reads the other conditions).
 */
#define _GNU_SOURCE
#include <langinfo.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "launch_index.h"

extern char **environ;

/*
 * What CPython sets LC_CTYPE to in its own environment at start-up, or NULL for nothing.
 *
 * PEP 538: when the LC_CTYPE locale the environment selects is "C" (LANG unset, C or
 * POSIX, or a locale that does not exist) and LC_ALL is not set, the interpreter sets
 * LC_CTYPE to the first of C.UTF-8, C.utf8 and UTF-8 the C library accepts, with
 * setenv(3). The Python CLI then reads that back as the caller's, the recorded
 * projection has it, and the command gets it. This asks the C library the same question
 * the same way (Python/pylifecycle.c: _Py_LegacyLocaleDetected, _Py_CoerceLegacyLocale),
 * so such a caller is not a miss on every launch. PYTHONCOERCECLOCALE (0 turns it off,
 * "warn" prints a warning the Python CLI would show) means a miss.
 */
static const char *python_coerced_ctype(void) {
    static const char *const targets[] = {"C.UTF-8", "C.utf8", "UTF-8"};
    const char *all = getenv("LC_ALL");
    const char *result = NULL;
    if (getenv("PYTHONCOERCECLOCALE") != NULL || (all != NULL && all[0] != '\0'))
        return NULL;
    setlocale(LC_CTYPE, "");
    const char *now = setlocale(LC_CTYPE, NULL);
    if (now != NULL && strcmp(now, "C") == 0) {
        for (size_t k = 0; result == NULL && k < sizeof targets / sizeof *targets; k++) {
            const char *codeset = setlocale(LC_CTYPE, targets[k]) ? nl_langinfo(CODESET) : NULL;
            if (codeset != NULL && codeset[0] != '\0')
                result = targets[k];
        }
    }
    setlocale(LC_CTYPE, "C"); /* as every program starts; the launch code expects no other */
    return result;
}

static int pattern_selects(int whole, const struct field *patterns, uint32_t n_patterns,
                           const char *name, size_t name_len) {
    int selected = whole;
    for (uint32_t k = 0; !selected && k < n_patterns; k++) {
        struct field p = patterns[k];
        if (p.len > 0 && p.p[p.len - 1] == '*')
            selected = name_len >= p.len - 1 && memcmp(name, p.p, p.len - 1) == 0;
        else
            selected = name_len == p.len && memcmp(name, p.p, p.len) == 0;
    }
    return selected;
}

/* Mark the recorded (name, value) pair equal to this one; 0 if there is none left. */
static int match_pair(const struct field *pairs, uint32_t n_pairs, unsigned char *used,
                      const char *name, size_t name_len, const char *value) {
    size_t value_len = strlen(value);
    for (uint32_t k = 0; k < n_pairs; k++) {
        struct field n = pairs[2 * k], v = pairs[2 * k + 1];
        if (!used[k] && n.len == name_len && memcmp(n.p, name, name_len) == 0 &&
            v.len == value_len && memcmp(v.p, value, value_len) == 0) {
            used[k] = 1;
            return 1;
        }
    }
    return 0;
}

/*
 * environ's NAME=value entries the patterns select (exact names or PREFIX*), compared as
 * a set with the recorded pairs: cache.record.env_projection, which cache.record.usable
 * compares, of the environment the Python CLI would see, which is environ with LC_CTYPE
 * set to ctype when that is not NULL (see python_coerced_ctype).
 */
static int env_projection_is(int whole, const struct field *patterns, uint32_t n_patterns,
                             const struct field *pairs, uint32_t n_pairs, const char *ctype) {
    unsigned char *used = calloc(n_pairs ? n_pairs : 1, 1);
    uint32_t matched = 0;
    int ok = used != NULL;
    for (char **e = environ; ok && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue; /* Python's os.environ skips these too */
        size_t name_len = (size_t)(eq - *e);
        if (ctype != NULL && name_len == 8 && memcmp(*e, "LC_CTYPE", 8) == 0)
            continue; /* replaced by setenv(3), counted below */
        if (!pattern_selects(whole, patterns, n_patterns, *e, name_len))
            continue;
        /* Not recorded, or a second entry of one name (Python would see only the first,
         * the command maybe both): either way not the environment the record was made for. */
        ok = match_pair(pairs, n_pairs, used, *e, name_len, eq + 1);
        matched += (uint32_t)ok;
    }
    if (ok && ctype != NULL && pattern_selects(whole, patterns, n_patterns, "LC_CTYPE", 8)) {
        ok = match_pair(pairs, n_pairs, used, "LC_CTYPE", 8, ctype);
        matched += (uint32_t)ok;
    }
    free(used);
    return ok && matched == n_pairs;
}

/* The environment the profile passes in, as the plan saw it. */
int index_env_projection_holds(struct cursor *c) {
    int whole = cursor_flag(c);
    uint32_t n_patterns = (uint32_t)cursor_uint(c, 4);
    if (!c->ok || n_patterns > (size_t)(c->end - c->p) / 4)
        return 0;
    struct field *patterns = calloc(n_patterns ? n_patterns : 1, sizeof *patterns);
    if (patterns == NULL)
        return 0;
    for (uint32_t k = 0; k < n_patterns; k++)
        patterns[k] = cursor_field(c);
    uint32_t n_pairs = (uint32_t)cursor_uint(c, 4);
    struct field *pairs = NULL;
    if (c->ok && n_pairs <= (size_t)(c->end - c->p) / 8)
        pairs = calloc(n_pairs ? 2 * (size_t)n_pairs : 1, sizeof *pairs);
    for (uint32_t k = 0; pairs && k < 2 * n_pairs; k++)
        pairs[k] = cursor_field(c);
    int env_ok = pairs != NULL && c->ok &&
                 env_projection_is(whole, patterns, n_patterns, pairs, n_pairs, NULL);
    if (!env_ok && pairs != NULL && c->ok) {
        /* Only now, as it reads locale files: the common caller never gets here. */
        const char *ctype = python_coerced_ctype();
        env_ok =
            ctype != NULL && env_projection_is(whole, patterns, n_patterns, pairs, n_pairs, ctype);
    }
    free(patterns);
    free(pairs);
    return env_ok;
}
