/* Hashes and ids: xxh64 (libxxhash), SHA-256 (libcrypto), splitmix64, UUIDv4. */
#include "base/clock.h"
#include "base/hash.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>

#include <openssl/sha.h>
#include <xxhash.h>

uint64_t hash_xxh64(const void *data, size_t len, uint64_t seed)
{
    return XXH64(data, len, seed);
}

uint64_t hash_str(const char *s, uint64_t seed)
{
    return XXH64(s, strlen(s), seed);
}

void hash_sha256(const void *data, size_t len, uint8_t out[32])
{
    SHA256(data, len, out);
}

uint64_t hash_rand_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t hash_rand_below(uint64_t *state, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Plain modulo favours small results when n does not divide 2^64; drop the first
     * (2^64 mod n) values so every residue is equally likely. For the small n callers
     * use, a rejection almost never happens, so sequences match plain modulo. */
    uint64_t threshold = (0 - n) % n;
    uint64_t r;
    do
        r = hash_rand_next(state);
    while (r < threshold);
    return r % n;
}

void hash_uuid4(char out[37])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* getrandom on Linux does not fail for 16 bytes once the pool is up; fall back
         * to a generator seeded from the clock and the pid rather than abort. */
        static _Thread_local uint64_t st;
        if (!st)
            st = clock_realtime_ns() ^ ((uint64_t)getpid() << 32) ^ 0x1234567;
        for (int i = 0; i < 16; i++)
            b[i] = (uint8_t)hash_rand_next(&st);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
