/* Hashing and identifiers. xxh64 for everything that only needs to be fast and
 * stable; SHA-256 where compatibility asks for it. */
#ifndef TANDEM_BASE_HASH_H
#define TANDEM_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash_xxh64(const void *data, size_t len, uint64_t seed);
uint64_t hash_str(const char *s, uint64_t seed); /* xxh64 of strlen(s) bytes */
/* SHA-256 of data into out[32]. */
void hash_sha256(const void *data, size_t len, uint8_t out[32]);

/* splitmix64: a tiny deterministic PRNG; state advances on every call. */
uint64_t hash_rand_next(uint64_t *state);
/* Uniform in [0, n) (n > 0). */
uint64_t hash_rand_below(uint64_t *state, uint64_t n);

/* Random version-4 UUID text (36 chars + NUL) from the OS's randomness. */
void hash_uuid4(char out[37]);

#endif
