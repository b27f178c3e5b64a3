/*
 * BLAKE2b (RFC 7693), keyed: the tag isorun.host.mac puts on every plan cache entry and launch
 * index, so that the front end launches only an index this user's isorun wrote under
 * this name (launch_index.c). Python computes the same with its builtin _blake2.
 *
 * Why BLAKE2b and not HMAC-SHA-256: a keyed BLAKE2b is a MAC by design (RFC 7693 sec.
 * 2.9, no HMAC construction needed), and portable C on 64-bit words hashes an index (a
 * launch record of about 16 KiB) in roughly a third of SHA-256's time; that time is paid
 * on every warm launch. Written from the RFC's description; tests/unit/test_blake2b_c.py
 * checks it against the RFC's vector and Python's hashlib.
 */
#include <stdint.h>
#include <string.h>

#include "launcher.h"

/* RFC 7693 sec. 2.6: the initialisation vector (SHA-512's) */
static const uint64_t blake2b_iv[8] = {
    0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull,
    0x510e527fade682d1ull, 0x9b05688c2b3e6c1full, 0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull,
};

/* RFC 7693 sec. 2.7: the message schedule; rounds 10 and 11 reuse rows 0 and 1 */
static const uint8_t blake2b_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static uint64_t rotr64(uint64_t x, unsigned n) { return (x >> n) | (x << (64 - n)); }

/* little-endian words, whatever the host's order (RFC 7693 sec. 2.4) */
static uint64_t load64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define G(a, b, c, d, x, y)                                                                        \
    do {                                                                                           \
        v[a] = v[a] + v[b] + (x);                                                                  \
        v[d] = rotr64(v[d] ^ v[a], 32);                                                            \
        v[c] = v[c] + v[d];                                                                        \
        v[b] = rotr64(v[b] ^ v[c], 24);                                                            \
        v[a] = v[a] + v[b] + (y);                                                                  \
        v[d] = rotr64(v[d] ^ v[a], 16);                                                            \
        v[c] = v[c] + v[d];                                                                        \
        v[b] = rotr64(v[b] ^ v[c], 63);                                                            \
    } while (0)

/* RFC 7693 sec. 3.2: the compression function F */
static void compress(struct isorun_blake2b *s, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = blake2b_iv[i];
    }
    v[12] ^= s->t[0];
    v[13] ^= s->t[1];
    if (last)
        v[14] = ~v[14];
    for (int i = 0; i < 16; i++)
        m[i] = load64(s->b + 8 * i);
    for (int r = 0; r < 12; r++) {
        const uint8_t *z = blake2b_sigma[r];
        G(0, 4, 8, 12, m[z[0]], m[z[1]]);
        G(1, 5, 9, 13, m[z[2]], m[z[3]]);
        G(2, 6, 10, 14, m[z[4]], m[z[5]]);
        G(3, 7, 11, 15, m[z[6]], m[z[7]]);
        G(0, 5, 10, 15, m[z[8]], m[z[9]]);
        G(1, 6, 11, 12, m[z[10]], m[z[11]]);
        G(2, 7, 8, 13, m[z[12]], m[z[13]]);
        G(3, 4, 9, 14, m[z[14]], m[z[15]]);
    }
    for (int i = 0; i < 8; i++)
        s->h[i] ^= v[i] ^ v[i + 8];
}

static void count(struct isorun_blake2b *s, size_t n) {
    s->t[0] += (uint64_t)n;
    if (s->t[0] < (uint64_t)n)
        s->t[1]++;
}

void isorun_blake2b_update(struct isorun_blake2b *s, const void *data, size_t len) {
    const unsigned char *p = data;
    while (len > 0) {
        /* A full buffer is compressed only once more input follows: the last block must
         * be compressed with the final flag (isorun_blake2b_final). */
        if (s->c == sizeof s->b) {
            count(s, s->c);
            compress(s, 0);
            s->c = 0;
        }
        size_t take = sizeof s->b - s->c;
        if (take > len)
            take = len;
        memcpy(s->b + s->c, p, take);
        s->c += take;
        p += take;
        len -= take;
    }
}

int isorun_blake2b_init(struct isorun_blake2b *s, size_t outlen, const void *key, size_t keylen) {
    if (outlen == 0 || outlen > 64 || keylen > 64)
        return -1;
    memset(s, 0, sizeof *s);
    memcpy(s->h, blake2b_iv, sizeof s->h);
    /* parameter block: digest length, key length, fanout 1, depth 1 (RFC 7693 sec. 2.5) */
    s->h[0] ^= 0x01010000u ^ ((uint64_t)keylen << 8) ^ (uint64_t)outlen;
    s->outlen = outlen;
    if (keylen > 0) {
        /* the key, zero-padded to a whole block, is the first block of input */
        unsigned char block[128] = {0};
        memcpy(block, key, keylen);
        isorun_blake2b_update(s, block, sizeof block);
    }
    return 0;
}

void isorun_blake2b_final(struct isorun_blake2b *s, unsigned char *out) {
    count(s, s->c);
    memset(s->b + s->c, 0, sizeof s->b - s->c);
    compress(s, 1);
    for (size_t i = 0; i < s->outlen; i++)
        out[i] = (unsigned char)(s->h[i / 8] >> (8 * (i % 8)));
}
