/* vLLM's sha256_cbor prefix-cache block keys (vllm/v1/core/kv_cache_utils.py).
 *
 * Owns nothing: pure functions over token ids. vLLM keys block i as
 * sha256(cbor([parent, (tokens of block i...), extra_keys])) with canonical CBOR, the
 * parent being the previous block's 32-byte digest (bytes) and, for block 0, NONE_HASH =
 * sha256(cbor(PYTHONHASHSEED as a text string)). extra_keys is None (CBOR null) for
 * plain text requests (no LoRA, multimodal or cache_salt), the only shape encoded here.
 * KV events carry int(digest, big endian) & (2^64 - 1) when
 * VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES is on (its default): the digest's last 8 bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/alloc.h"
#include "tokenize/tokenize.h"

/* CBOR head with the minimal argument length (canonical / deterministic encoding). */
static size_t cbor_head(uint8_t *o, uint8_t major, uint64_t v)
{
    uint8_t m = (uint8_t)(major << 5);
    if (v < 24) {
        o[0] = m | (uint8_t)v;
        return 1;
    }
    size_t n = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    o[0] = m | (n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27);
    for (size_t i = 0; i < n; i++)
        o[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return 1 + n;
}

static void sha256(const uint8_t *in, size_t n, uint8_t out[32])
{
    unsigned int len = 32;
    EVP_Digest(in, n, out, &len, EVP_sha256(), NULL);
}

void tok_vllm_none_hash(const char *seed, uint8_t out[32])
{
    size_t len = strlen(seed);
    uint8_t *b = xmalloc(len + 9);
    size_t o = cbor_head(b, 3, len);
    memcpy(b + o, seed, len);
    sha256(b, o + len, out);
    free(b);
}

void tok_vllm_block_hash(const uint8_t parent[32], const uint32_t *ids, uint32_t block_size,
                         uint8_t out[32])
{
    /* 0x83, bytes(32) head + 32, array head, 5 bytes per token at most, null */
    uint8_t *b = xmalloc(1 + 2 + 32 + 9 + (size_t)block_size * 5 + 1);
    size_t o = 0;
    b[o++] = 0x83;
    o += cbor_head(b + o, 2, 32);
    memcpy(b + o, parent, 32);
    o += 32;
    o += cbor_head(b + o, 4, block_size);
    for (uint32_t i = 0; i < block_size; i++)
        o += cbor_head(b + o, 0, ids[i]);
    b[o++] = 0xf6;
    sha256(b, o, out);
    free(b);
}

uint64_t tok_vllm_key64(const uint8_t digest[32])
{
    uint64_t v = 0;
    for (int i = 24; i < 32; i++)
        v = v << 8 | digest[i];
    return v;
}

size_t tok_vllm_block_keys(const uint32_t *ids, size_t n_ids, uint32_t block_size, const char *seed,
                           uint64_t *out, size_t cap)
{
    if (!block_size)
        return 0;
    size_t nb = n_ids / block_size;
    if (nb > cap)
        nb = cap;
    uint8_t d[32];
    tok_vllm_none_hash(seed, d);
    for (size_t i = 0; i < nb; i++) {
        tok_vllm_block_hash(d, ids + i * block_size, block_size, d);
        out[i] = tok_vllm_key64(d);
    }
    return nb;
}
