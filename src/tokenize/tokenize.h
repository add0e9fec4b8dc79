/* Deterministic pseudo-tokenizer shared by the sim and the router.
 *
 * Text is pre-split the way GPT-2 style tokenizers do (a letter run with an optional
 * leading space, a digit run, a punctuation run with an optional leading space, a
 * whitespace run); pieces longer than 4 bytes are cut into pieces of at most 4 bytes
 * (UTF-8 sequences are never cut). A token's id is splitmix64(piece bytes | length << 32, + 94)
 * mapped onto vocab_size by multiply-shift, so the same text always gives the same ids on every
 * process. Roughly 1 token per 4 characters of English.
 *
 * Ids cannot be reversed in general (the map is a hash). tok_piece_text() returns the
 * text of ids that came from the sim's fixed generation vocabulary (its words, their
 * capitalized forms, or a single ASCII character); tok_id_text() gives every other id a
 * readable pseudo-word, so detokenizing them is lossy but never shows placeholders. */
#ifndef TANDEM_TOKENIZE_TOKENIZE_H
#define TANDEM_TOKENIZE_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#define TOK_DEFAULT_VOCAB 50257u /* GPT-2's size, like the opt models */

struct tok_piece {
    uint32_t id;
    uint32_t offset; /* byte offset of the piece in the input text */
    uint32_t len;    /* bytes */
};

struct tok_result {
    struct tok_piece *pieces; /* owned; free with tok_result_free */
    size_t n;
    size_t cap;
};

/* Tokenizes text (len bytes, need not be NUL-terminated), appending to out. */
void tok_encode(const char *text, size_t len, uint32_t vocab_size, struct tok_result *out);
void tok_result_free(struct tok_result *r);
/* Number of tokens only (no allocation). */
size_t tok_count(const char *text, size_t len);

/* The fixed word list the sim generates output from. Each word carries a leading space
 * (" the", " model", ...). The sim emits a word as the tokens tok_encode gives for it, so
 * generated text re-tokenizes to the same ids when a client sends it back (multi-turn). */
size_t tok_vocab_size(void);
const char *tok_vocab_word(size_t i);
/* Text of an id if it is the id of a piece of some vocabulary word (or of a single
 * ASCII character), else NULL. Used by detokenize. The table is built once, thread-safely. */
const char *tok_piece_text(uint32_t id, uint32_t vocab_size);

/* Readable text for any id, so token-id prompts echo and detokenize as words rather
 * than placeholders: the piece's text when tok_piece_text knows it, "<|endoftext|>" for
 * TOK_EOS_ID, else a deterministic pseudo-word of 2-6 lowercase letters, with a leading
 * space for about two ids in three (" bako", "tiru"). Writes a NUL-terminated string to
 * out (at least TOK_ID_TEXT_MAX bytes) and returns its length. A pseudo-word need not
 * tokenize back to its id. */
#define TOK_ID_TEXT_MAX 16
#define TOK_EOS_ID 50256u /* GPT-2's <|endoftext|> */
size_t tok_id_text(uint32_t id, uint32_t vocab_size, char *out);

/* Chained block hashes over token ids, as the sim's prefix cache keys blocks:
 * h_{-1} = seed, h_i = xxh64(le32 token ids of block i, seed = h_{i-1}). Only full
 * blocks are hashed. Writes min(n_tokens / block_size, cap) hashes, returns how many. */
size_t tok_block_hashes(const uint32_t *ids, size_t n_ids, uint32_t block_size, uint64_t seed,
                        uint64_t *out, size_t cap);
/* Continues a chain: hash of one block given its parent hash. */
uint64_t tok_block_hash(uint64_t parent, const uint32_t *ids, uint32_t block_size);
/* The chain seed for a model: xxh64(model name, seed = hash_seed). */
uint64_t tok_hash_seed(const char *model, uint64_t hash_seed);

/* vLLM's `--prefix-caching-hash-algo sha256_cbor` block keys (see vllm_keys.c): the chain
 * root NONE_HASH = sha256(cbor(seed text)) where seed is vLLM's PYTHONHASHSEED, block i =
 * sha256(cbor([parent digest (32 bytes), [token ids], null])). tok_vllm_key64 is the key
 * vLLM's KV events carry (the digest's last 8 bytes, big endian). tok_vllm_block_keys
 * writes the 64-bit keys of min(n_ids / block_size, cap) full blocks, returns how many. */
void tok_vllm_none_hash(const char *seed, uint8_t out[32]);
/* out may alias parent. */
void tok_vllm_block_hash(const uint8_t parent[32], const uint32_t *ids, uint32_t block_size,
                         uint8_t out[32]);
uint64_t tok_vllm_key64(const uint8_t digest[32]);
size_t tok_vllm_block_keys(const uint32_t *ids, size_t n_ids, uint32_t block_size,
                           const char *seed, uint64_t *out, size_t cap);

#endif
