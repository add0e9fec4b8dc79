/* Unit tests for src/tokenize: splitting rules, determinism, UTF-8 safety, density on
 * English, vocabulary round trip, block hash chaining, speed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "tokenize/tokenize.h"

/* Pieces of text as strings joined with '|', e.g. "a| |b". */
static char *pieces_str(const char *text)
{
    struct tok_result r = {0};
    size_t len = strlen(text);
    tok_encode(text, len, TOK_DEFAULT_VOCAB, &r);
    char *out = xcalloc(len * 2 + 2, 1);
    size_t o = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (i)
            out[o++] = '|';
        memcpy(out + o, text + r.pieces[i].offset, r.pieces[i].len);
        o += r.pieces[i].len;
    }
    assert_int_equal(tok_count(text, len), r.n);
    tok_result_free(&r);
    return out;
}

static void expect_split(const char *text, const char *want)
{
    char *got = pieces_str(text);
    if (strcmp(got, want) != 0)
        fail_msg("split of \"%s\": got \"%s\", want \"%s\"", text, got, want);
    free(got);
}

static void test_split_rules(void **state)
{
    (void)state;
    expect_split("", "");
    expect_split("hello", "hell|o");
    expect_split("the cat", "the| cat");
    /* A space before a word is that word's leading space; extra spaces stand alone. */
    expect_split("a  b", "a| | b");
    expect_split("a   b", "a|  | b");
    expect_split("a b ", "a| b| ");
    expect_split("   ", "   ");
    /* Digit runs carry no leading space and are cut at 4. */
    expect_split("abc 123456", "abc| |1234|56");
    expect_split("x1y", "x|1|y");
    /* Punctuation runs take a leading space too. */
    expect_split("Hi, there!!", "Hi|,| the|re|!!");
    expect_split("a ...b", "a| ...|b");
    /* Newlines are whitespace; the last one before text stands alone. */
    expect_split("a\n\nb", "a|\n|\n|b");
    expect_split("a \nb", "a| |\n|b");
    expect_split("end\n", "end|\n");
    /* Long words are cut into 4-byte pieces from the left. */
    expect_split(" information", " inf|orma|tion");
    expect_split("tokenization", "toke|niza|tion");
}

static void test_utf8_not_split(void **state)
{
    (void)state;
    /* "é" is 2 bytes, "日本語" 3 bytes each, the emoji 4 bytes. */
    expect_split("caf\xc3\xa9s", "caf|\xc3\xa9s");
    expect_split("\xc3\xa9\xc3\xa9\xc3\xa9", "\xc3\xa9\xc3\xa9|\xc3\xa9");
    expect_split("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xe6\x97\xa5|\xe6\x9c\xac|\xe8\xaa\x9e");
    expect_split(" \xf0\x9f\x98\x80", " |\xf0\x9f\x98\x80");

    /* Fuzz-ish: random valid UTF-8 mixed with ASCII; no piece may start on a
     * continuation byte and pieces must tile the input. */
    uint64_t rng = 42;
    static const char *const parts[] = {
        "a",    "Z", " ", "\n", "7", ".", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80",
        "word", " x"};
    char buf[4096];
    for (int round = 0; round < 200; round++) {
        size_t len = 0;
        while (len < sizeof buf - 8) {
            const char *p = parts[hash_rand_below(&rng, sizeof parts / sizeof parts[0])];
            size_t n = strlen(p);
            memcpy(buf + len, p, n);
            len += n;
        }
        struct tok_result r = {0};
        tok_encode(buf, len, TOK_DEFAULT_VOCAB, &r);
        size_t at = 0;
        for (size_t i = 0; i < r.n; i++) {
            assert_int_equal(r.pieces[i].offset, at);
            assert_true(r.pieces[i].len >= 1 && r.pieces[i].len <= 4);
            assert_true(((unsigned char)buf[at] & 0xc0) != 0x80);
            at += r.pieces[i].len;
        }
        assert_int_equal(at, len);
        assert_int_equal(tok_count(buf, len), r.n);
        tok_result_free(&r);
    }
}

static void test_deterministic_ids(void **state)
{
    (void)state;
    const char *t = "The quick brown fox jumps over the lazy dog, 12345 times.";
    struct tok_result a = {0}, b = {0};
    tok_encode(t, strlen(t), TOK_DEFAULT_VOCAB, &a);
    tok_encode(t, strlen(t), TOK_DEFAULT_VOCAB, &b);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(a.pieces[i].id, b.pieces[i].id);
        assert_true(a.pieces[i].id < TOK_DEFAULT_VOCAB);
        /* id = mix64(piece bytes | len << 32 + 94) onto the vocab by multiply-shift:
         * the documented formula, so another process may recompute it. */
        uint64_t x = (uint64_t)a.pieces[i].len << 32;
        for (uint32_t k = 0; k < a.pieces[i].len; k++)
            x |= (uint64_t)(uint8_t)t[a.pieces[i].offset + k] << (8 * k);
        x += 94;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
        x ^= x >> 31;
        assert_int_equal(a.pieces[i].id,
                         (uint32_t)(((x & 0xFFFFFFFFULL) * TOK_DEFAULT_VOCAB) >> 32));
    }
    /* Appending keeps earlier pieces and offsets. */
    tok_encode(t, strlen(t), 1000, &a);
    assert_int_equal(a.n, 2 * b.n);
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(a.pieces[b.n + i].offset, b.pieces[i].offset);
        assert_true(a.pieces[b.n + i].id < 1000);
    }
    tok_result_free(&a);
    tok_result_free(&b);
}

static const char english[] =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
    "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it "
    "was the season of Light, it was the season of Darkness, it was the spring of hope, it "
    "was the winter of despair, we had everything before us, we had nothing before us, we "
    "were all going direct to Heaven, we were all going direct the other way. Large language "
    "models serve requests in batches; the scheduler routes each request to the replica "
    "whose prefix cache already holds the longest matching prefix of its prompt.";

static void test_english_density(void **state)
{
    (void)state;
    size_t len = strlen(english);
    size_t n = tok_count(english, len);
    double cpt = (double)len / (double)n;
    /* Pieces are at most 4 bytes and short words ("of", ",") take a whole token, so
     * English lands a little under 4. */
    if (cpt < 3.0 || cpt > 4.0)
        fail_msg("chars per token %.2f, want ~4", cpt);
    print_message("%.2f chars per token\n", cpt);
}

static void test_vocab_round_trip(void **state)
{
    (void)state;
    size_t nv = tok_vocab_size();
    assert_true(nv >= 400);
    assert_null(tok_vocab_word(nv));
    for (size_t i = 0; i < nv; i++) {
        const char *w = tok_vocab_word(i);
        assert_non_null(w);
        assert_true(w[0] == ' ' && strlen(w) >= 2);
    }
    /* Every printable ASCII character maps back to itself. */
    for (int c = 0x20; c < 0x7f; c++) {
        char ch = (char)c;
        struct tok_result r = {0};
        tok_encode(&ch, 1, TOK_DEFAULT_VOCAB, &r);
        assert_int_equal(r.n, 1);
        const char *p = tok_piece_text(r.pieces[0].id, TOK_DEFAULT_VOCAB);
        assert_non_null(p);
        assert_int_equal(strlen(p), 1);
        assert_int_equal(p[0], ch);
        tok_result_free(&r);
    }
    /* A generated text (random vocabulary words) re-encodes to ids whose piece texts
     * concatenate back to the text: no id collisions among vocabulary pieces. */
    uint64_t rng = 7;
    for (int round = 0; round < 20; round++) {
        char text[8192];
        size_t len = 0;
        for (int k = 0; k < 300; k++) {
            const char *w = tok_vocab_word(hash_rand_below(&rng, nv));
            size_t n = strlen(w);
            memcpy(text + len, w, n);
            len += n;
        }
        text[len] = '\0';
        struct tok_result r = {0};
        tok_encode(text, len, TOK_DEFAULT_VOCAB, &r);
        char back[8192];
        size_t b = 0;
        for (size_t i = 0; i < r.n; i++) {
            const char *p = tok_piece_text(r.pieces[i].id, TOK_DEFAULT_VOCAB);
            assert_non_null(p);
            size_t n = strlen(p);
            assert_true(b + n < sizeof back);
            memcpy(back + b, p, n);
            b += n;
        }
        back[b] = '\0';
        assert_string_equal(back, text);
        tok_result_free(&r);
    }
    /* Every word, alone, too (covers words the random draw missed). */
    for (size_t i = 0; i < nv; i++) {
        const char *w = tok_vocab_word(i);
        struct tok_result r = {0};
        tok_encode(w, strlen(w), TOK_DEFAULT_VOCAB, &r);
        char back[64] = "";
        for (size_t k = 0; k < r.n; k++)
            strcat(back, tok_piece_text(r.pieces[k].id, TOK_DEFAULT_VOCAB));
        assert_string_equal(back, w);
        tok_result_free(&r);
    }
    /* Another vocab size builds its own table lazily; vocabulary pieces win collisions. */
    const char *w = tok_vocab_word(3);
    struct tok_result r = {0};
    tok_encode(w, strlen(w), 30000, &r);
    assert_non_null(tok_piece_text(r.pieces[0].id, 30000));
    tok_result_free(&r);
    /* An id no piece maps to. */
    size_t unknown = 0;
    for (uint32_t id = 0; id < 200; id++)
        unknown += tok_piece_text(id, TOK_DEFAULT_VOCAB) == NULL;
    assert_true(unknown > 150);
}

/* Every id has readable text: pieces keep theirs, others get stable pseudo-words. */
static void test_id_text(void **state)
{
    (void)state;
    char t[TOK_ID_TEXT_MAX], again[TOK_ID_TEXT_MAX];
    size_t pseudo = 0;
    for (uint32_t id = 0; id < TOK_DEFAULT_VOCAB; id += 7) {
        size_t n = tok_id_text(id, TOK_DEFAULT_VOCAB, t);
        assert_int_equal(strlen(t), n);
        assert_true(n >= 1 && n < TOK_ID_TEXT_MAX);
        assert_int_equal(tok_id_text(id, TOK_DEFAULT_VOCAB, again), n);
        assert_string_equal(t, again);
        const char *p = tok_piece_text(id, TOK_DEFAULT_VOCAB);
        if (p) {
            assert_string_equal(t, p);
            continue;
        }
        if (id == TOK_EOS_ID)
            continue;
        pseudo++;
        assert_null(strchr(t, '<')); /* never a placeholder */
        for (size_t i = t[0] == ' '; i < n; i++)
            assert_true(t[i] >= 'a' && t[i] <= 'z');
    }
    assert_true(pseudo > 6000);
    assert_int_equal(tok_id_text(TOK_EOS_ID, TOK_DEFAULT_VOCAB, t), 13);
    assert_string_equal(t, "<|endoftext|>");
    /* Capitalized words detokenize (the sim starts sentences with them). */
    struct tok_result r = {0};
    tok_encode(" The", 4, TOK_DEFAULT_VOCAB, &r);
    tok_id_text(r.pieces[0].id, TOK_DEFAULT_VOCAB, t);
    assert_string_equal(t, " The");
    tok_result_free(&r);
}

static void test_block_hashes(void **state)
{
    (void)state;
    enum { BS = 16, NB = 8 };
    uint32_t ids[NB * BS + 5];
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        ids[i] = (uint32_t)(i * 2654435761u % 50257);
    uint64_t seed = tok_hash_seed("facebook/opt-125m", 0);
    assert_int_equal(seed, hash_xxh64("facebook/opt-125m", 17, 0));
    assert_true(seed != tok_hash_seed("facebook/opt-125m", 1));

    uint64_t h[NB + 2];
    /* Only full blocks are hashed; cap limits the output. */
    assert_int_equal(tok_block_hashes(ids, NB * BS + 5, BS, seed, h, NB + 2), NB);
    assert_int_equal(tok_block_hashes(ids, NB * BS + 5, BS, seed, h, 3), 3);
    assert_int_equal(tok_block_hashes(ids, BS - 1, BS, seed, h, NB), 0);
    assert_int_equal(tok_block_hashes(ids, NB * BS, BS, seed, h, NB), NB);

    /* The chain: h_i = xxh64(le32 ids of block i, seed = h_{i-1}). */
    uint64_t parent = seed;
    for (int i = 0; i < NB; i++) {
        assert_int_equal(h[i], tok_block_hash(parent, ids + i * BS, BS));
        assert_int_equal(h[i], hash_xxh64(ids + i * BS, BS * 4, parent)); /* LE host */
        parent = h[i];
    }
    /* Changing one token in block k changes hashes k.. only. */
    for (int k = 0; k < NB; k++) {
        uint32_t mod[NB * BS];
        memcpy(mod, ids, sizeof mod);
        mod[k * BS + 7] ^= 1;
        uint64_t h2[NB];
        tok_block_hashes(mod, NB * BS, BS, seed, h2, NB);
        for (int i = 0; i < NB; i++) {
            if (i < k)
                assert_int_equal(h2[i], h[i]);
            else
                assert_true(h2[i] != h[i]);
        }
    }
    /* The same ids under another seed (model) share no hash. */
    uint64_t h3[NB];
    tok_block_hashes(ids, NB * BS, BS, seed + 1, h3, NB);
    for (int i = 0; i < NB; i++)
        assert_true(h3[i] != h[i]);
    assert_int_equal(tok_block_hashes(ids, NB * BS, 0, seed, h3, NB), 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_speed(void **state)
{
    (void)state;
    /* A 220 KB prompt, the router's worst case. */
    size_t len = 220 * 1024;
    char *text = xmalloc(len);
    size_t el = strlen(english);
    for (size_t i = 0; i < len; i++)
        text[i] = english[i % el];
    struct tok_result r = {0};
    double best = 1e9;
    for (int k = 0; k < 5; k++) {
        r.n = 0;
        double t0 = now_s();
        tok_encode(text, len, TOK_DEFAULT_VOCAB, &r);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    double mbs = (double)len / best / 1e6;
    print_message("tok_encode: %.0f MB/s (%zu tokens)\n", mbs, r.n);
    /* Sanitizer builds run several times slower; keep a floor that still catches an
     * accidental quadratic or per-piece allocation. */
    assert_true(mbs > 5);
    assert_true(r.cap < len / 3 + 32); /* the reservation was enough */
    tok_result_free(&r);
    free(text);
}

/* vLLM sha256_cbor keys. Vectors derived by hand from the spec (vllm/v1/core/
 * kv_cache_utils.py hash_block_tokens + init_none_hash, canonical CBOR per RFC 8949
 * section 4.2.1) with an independent encoder in Python (hashlib, CBOR heads written out
 * by hand): NONE_HASH = sha256(61 30) for PYTHONHASHSEED=0; block 1 is
 * sha256(83 5820 <NONE_HASH> 90 18 64 19 03e8 1a 00011170 19 c450 00 .. 0b f6). */
static void test_vllm_keys(void **state)
{
    (void)state;
    uint8_t d[32];
    tok_vllm_none_hash("0", d);
    static const uint8_t none0[32] = {
        0x4e, 0x11, 0x95, 0xdf, 0x02, 0x0d, 0xe5, 0x9e, 0x0d, 0x65, 0xa3, 0x3a, 0x42, 0x79, 0xf1, 0x18,
        0x3e, 0x7a, 0xe4, 0xe5, 0xd9, 0x80, 0xe3, 0x09, 0xf8, 0xb5, 0x5a, 0xdf, 0xf2, 0xe6, 0x1c, 0x3e};
    assert_memory_equal(d, none0, 32);
    assert_int_equal(tok_vllm_key64(d), 0xf8b55adff2e61c3eull);
    uint32_t ids[36];
    for (uint32_t i = 0; i < 16; i++)
        ids[i] = i + 1;
    ids[16] = 100, ids[17] = 1000, ids[18] = 70000, ids[19] = 50256;
    for (uint32_t i = 0; i < 12; i++)
        ids[20 + i] = i;
    ids[32] = ids[33] = ids[34] = ids[35] = 7;
    uint64_t keys[4];
    /* 36 tokens: two full blocks; the partial third is not keyed */
    assert_int_equal(tok_vllm_block_keys(ids, 36, 16, "0", keys, 4), 2);
    assert_int_equal(keys[0], 0x2ceabcfae6d332eaull);
    assert_int_equal(keys[1], 0xa3df9de6a224f299ull);
    assert_int_equal(tok_vllm_block_keys(ids, 36, 16, "0", keys, 1), 1);
    /* the chain depends on the seed and on every parent token */
    assert_int_equal(tok_vllm_block_keys(ids, 32, 16, "1", keys, 4), 2);
    assert_true(keys[0] != 0x2ceabcfae6d332eaull && keys[1] != 0xa3df9de6a224f299ull);
    ids[0] = 2;
    assert_int_equal(tok_vllm_block_keys(ids, 32, 16, "0", keys, 4), 2);
    assert_true(keys[1] != 0xa3df9de6a224f299ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_rules),
        cmocka_unit_test(test_utf8_not_split),
        cmocka_unit_test(test_deterministic_ids),
        cmocka_unit_test(test_english_density),
        cmocka_unit_test(test_vocab_round_trip),
        cmocka_unit_test(test_id_text), cmocka_unit_test(test_block_hashes),
        cmocka_unit_test(test_vllm_keys),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
