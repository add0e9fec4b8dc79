/* Unit tests for the KV event codec (src/sched/kvevents.c): payloads written out byte by
 * byte as vLLM's msgspec encoder produces them, round trips, the map form, and garbage. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sched/kvevents.h"

/* KVEventBatch(ts=1.5, events=[
 *   BlockStored(block_hashes=[1, 300], parent_block_hash=None, token_ids=[1..8],
 *               block_size=4, lora_id=None, medium="GPU"),
 *   BlockRemoved(block_hashes=[70000], medium="GPU"),
 *   AllBlocksCleared()], data_parallel_rank=0)
 * encoded by msgspec with array_like=True, omit_defaults=True, tag=True. */
static const uint8_t vllm_batch[] = {
    0x93,                                                 /* batch: 3 fields */
    0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,                   /* ts 1.5 (float64) */
    0x93,                                                 /* events: 3 */
    0x97,                                                 /* BlockStored: tag + 6 */
    0xab, 'B', 'l', 'o', 'c', 'k', 'S', 't', 'o', 'r', 'e', 'd',
    0x92, 0x01, 0xcd, 0x01, 0x2c,                         /* [1, 300] */
    0xc0,                                                 /* parent None */
    0x98, 1, 2, 3, 4, 5, 6, 7, 8,                         /* token_ids */
    0x04,                                                 /* block_size */
    0xc0,                                                 /* lora_id None */
    0xa3, 'G', 'P', 'U',                                  /* medium */
    0x93,                                                 /* BlockRemoved: tag + 2 */
    0xac, 'B', 'l', 'o', 'c', 'k', 'R', 'e', 'm', 'o', 'v', 'e', 'd',
    0x91, 0xce, 0x00, 0x01, 0x11, 0x70,                   /* [70000] */
    0xa3, 'G', 'P', 'U',
    0x91,                                                 /* AllBlocksCleared: tag only */
    0xb0, 'A', 'l', 'l', 'B', 'l', 'o', 'c', 'k', 's', 'C', 'l', 'e', 'a', 'r', 'e', 'd',
    0x00,                                                 /* data_parallel_rank 0 */
};

static void check_vllm_batch(const struct kvev_batch *b)
{
    assert_true(b->ts == 1.5);
    assert_true(b->has_dp_rank);
    assert_int_equal(b->dp_rank, 0);
    assert_int_equal(b->n_events, 3);
    const struct kvev_event *s = &b->events[0];
    assert_int_equal(s->type, KVEV_BLOCK_STORED);
    assert_int_equal(s->n_hashes, 2);
    assert_int_equal(s->hashes[0], 1);
    assert_int_equal(s->hashes[1], 300);
    assert_false(s->has_parent);
    assert_int_equal(s->n_tokens, 8);
    assert_int_equal(s->token_ids[7], 8);
    assert_int_equal(s->block_size, 4);
    assert_false(s->has_lora_id);
    assert_string_equal(s->medium, "GPU");
    const struct kvev_event *r = &b->events[1];
    assert_int_equal(r->type, KVEV_BLOCK_REMOVED);
    assert_int_equal(r->n_hashes, 1);
    assert_int_equal(r->hashes[0], 70000);
    assert_string_equal(r->medium, "GPU");
    assert_int_equal(b->events[2].type, KVEV_ALL_BLOCKS_CLEARED);
}

static void test_decode_vllm_bytes(void **state)
{
    (void)state;
    struct kvev_batch b;
    char err[128];
    assert_int_equal(kvev_decode(vllm_batch, sizeof vllm_batch, &b, err, sizeof err), 0);
    check_vllm_batch(&b);
    kvev_batch_free(&b);
}

/* The encoder must produce exactly msgspec's bytes for the same batch. */
static void test_encode_matches_vllm_bytes(void **state)
{
    (void)state;
    uint64_t h1[] = {1, 300}, h2[] = {70000};
    uint32_t toks[] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct kvev_event evs[3] = {
        {.type = KVEV_BLOCK_STORED, .n_hashes = 2, .hashes = h1, .n_tokens = 8,
         .token_ids = toks, .block_size = 4, .medium = "GPU"},
        {.type = KVEV_BLOCK_REMOVED, .n_hashes = 1, .hashes = h2, .medium = "GPU"},
        {.type = KVEV_ALL_BLOCKS_CLEARED},
    };
    struct kvev_batch b = {.ts = 1.5, .has_dp_rank = true, .dp_rank = 0, .n_events = 3,
                           .events = evs};
    struct buf out = BUF_INIT;
    kvev_encode(&b, &out);
    assert_int_equal(out.len, sizeof vllm_batch);
    assert_memory_equal(out.data, vllm_batch, sizeof vllm_batch);
    buf_free(&out);
}

static void test_round_trip(void **state)
{
    (void)state;
    uint64_t hs[] = {0, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, (uint64_t)UINT32_MAX + 1,
                     UINT64_MAX};
    uint32_t toks[160];
    for (uint32_t i = 0; i < 160; i++)
        toks[i] = i * 1000u;
    struct kvev_event evs[2] = {
        {.type = KVEV_BLOCK_STORED, .n_hashes = 10, .hashes = hs, .has_parent = true,
         .parent = 0xdeadbeefcafef00dull, .n_tokens = 160, .token_ids = toks, .block_size = 16,
         .has_lora_id = true, .lora_id = -3, .medium = NULL},
        {.type = KVEV_BLOCK_REMOVED, .n_hashes = 10, .hashes = hs, .medium = "CPU"},
    };
    struct kvev_batch in = {.ts = 1765080000.125, .has_dp_rank = true, .dp_rank = 7,
                            .n_events = 2, .events = evs};
    struct buf out = BUF_INIT;
    kvev_encode(&in, &out);
    struct kvev_batch b;
    char err[128];
    assert_int_equal(kvev_decode((const uint8_t *)out.data, out.len, &b, err, sizeof err), 0);
    assert_true(b.ts == in.ts);
    assert_int_equal(b.dp_rank, 7);
    assert_int_equal(b.n_events, 2);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(b.events[k].n_hashes, 10);
        assert_memory_equal(b.events[k].hashes, hs, sizeof hs);
    }
    assert_true(b.events[0].has_parent);
    assert_true(b.events[0].parent == 0xdeadbeefcafef00dull);
    assert_int_equal(b.events[0].n_tokens, 160);
    assert_memory_equal(b.events[0].token_ids, toks, sizeof toks);
    assert_true(b.events[0].has_lora_id);
    assert_int_equal(b.events[0].lora_id, -3);
    assert_null(b.events[0].medium);
    assert_string_equal(b.events[1].medium, "CPU");
    kvev_batch_free(&b);

    /* Without a rank: a 2-field batch. */
    in.has_dp_rank = false;
    in.n_events = 0;
    buf_reset(&out);
    kvev_encode(&in, &out);
    assert_int_equal((uint8_t)out.data[0], 0x92);
    assert_int_equal(kvev_decode((const uint8_t *)out.data, out.len, &b, err, sizeof err), 0);
    assert_false(b.has_dp_rank);
    assert_int_equal(b.n_events, 0);
    kvev_batch_free(&b);
    buf_free(&out);
}

/* Older vLLM: 2-field batch, BlockStored without medium, BlockRemoved with hashes only;
 * newer vLLM: bytes hashes (the last 8 bytes count), extra trailing fields. */
static void test_decode_other_vllm_versions(void **state)
{
    (void)state;
    static const uint8_t old[] = {
        0x92, 0xcb, 0x40, 0, 0, 0, 0, 0, 0, 0, /* ts 2.0 */
        0x92,
        0x96, 0xab, 'B', 'l', 'o', 'c', 'k', 'S', 't', 'o', 'r', 'e', 'd',
        0x91, 0x05, 0x07, 0x92, 0x0a, 0x0b, 0x02, 0x01, /* parent 7, lora_id 1 */
        0x92, 0xac, 'B', 'l', 'o', 'c', 'k', 'R', 'e', 'm', 'o', 'v', 'e', 'd', 0x91, 0x05,
    };
    struct kvev_batch b;
    char err[128];
    assert_int_equal(kvev_decode(old, sizeof old, &b, err, sizeof err), 0);
    assert_false(b.has_dp_rank);
    assert_int_equal(b.n_events, 2);
    assert_true(b.events[0].has_parent);
    assert_int_equal(b.events[0].parent, 7);
    assert_int_equal(b.events[0].lora_id, 1);
    assert_null(b.events[0].medium);
    assert_int_equal(b.events[1].hashes[0], 5);
    kvev_batch_free(&b);

    static const uint8_t newer[] = {
        0x93, 0xcb, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x91,
        0x99, 0xab, 'B', 'l', 'o', 'c', 'k', 'S', 't', 'o', 'r', 'e', 'd',
        0x91, 0xc4, 0x0a, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, /* 10 bytes: last 8 */
        0xc4, 0x02, 0x01, 0x02,                            /* parent: short, padded */
        0x91, 0x09, 0x01, 0xc0, 0xc0, 0xa4, 'l', 'o', 'r', 'a',
        0x91, 0xc0,                                        /* extra_keys: unknown, skipped */
        0x01,
    };
    assert_int_equal(kvev_decode(newer, sizeof newer, &b, err, sizeof err), 0);
    assert_int_equal(b.dp_rank, 1);
    assert_true(b.events[0].hashes[0] == 0x0102030405060708ull);
    assert_int_equal(b.events[0].parent, 0x0102);
    kvev_batch_free(&b);
}

/* msgspec without array_like: maps, events tagged by "type"; unknown tags are skipped. */
static void test_decode_map_form(void **state)
{
    (void)state;
    static const uint8_t m[] = {
        0x83, 0xa2, 't', 's', 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
        0xa6, 'e', 'v', 'e', 'n', 't', 's', 0x92,
        0x82, 0xac, 'b', 'l', 'o', 'c', 'k', '_', 'h', 'a', 's', 'h', 'e', 's', 0x91, 0x2a,
        0xa4, 't', 'y', 'p', 'e', 0xac, 'B', 'l', 'o', 'c', 'k', 'R', 'e', 'm', 'o', 'v', 'e', 'd',
        0x81, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'N', 'e', 'w',
        0xb2, 'd', 'a', 't', 'a', '_', 'p', 'a', 'r', 'a', 'l', 'l', 'e', 'l', '_', 'r', 'a', 'n', 'k',
        0x02,
    };
    struct kvev_batch b;
    char err[128];
    assert_int_equal(kvev_decode(m, sizeof m, &b, err, sizeof err), 0);
    assert_true(b.ts == 1.0);
    assert_int_equal(b.dp_rank, 2);
    assert_int_equal(b.n_events, 1);
    assert_int_equal(b.n_unknown, 1);
    assert_int_equal(b.events[0].type, KVEV_BLOCK_REMOVED);
    assert_int_equal(b.events[0].hashes[0], 42);
    kvev_batch_free(&b);
}

static void expect_reject(const uint8_t *p, size_t n, const char *needle)
{
    struct kvev_batch b;
    char err[160];
    assert_int_equal(kvev_decode(p, n, &b, err, sizeof err), -EINVAL);
    assert_int_equal(b.n_events, 0);
    assert_null(b.mem);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_garbage_rejected(void **state)
{
    (void)state;
    expect_reject((const uint8_t *)"", 0, "truncated");
    /* every strict prefix of a valid payload is rejected */
    for (size_t n = 1; n < sizeof vllm_batch; n++) {
        struct kvev_batch b;
        char err[160];
        assert_int_equal(kvev_decode(vllm_batch, n, &b, err, sizeof err), -EINVAL);
        assert_true(err[0] != '\0');
    }
    /* an array declaring 4 billion elements in 5 bytes */
    static const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    expect_reject(huge, sizeof huge, "exceeds");
    static const uint8_t str[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    expect_reject(str, sizeof str, "length 4294967295 exceeds");
    static const uint8_t bad_type[] = {0xc1};
    expect_reject(bad_type, sizeof bad_type, "0xc1");
    static const uint8_t one_field[] = {0x91, 0x00};
    expect_reject(one_field, sizeof one_field, "at least 2");
    static const uint8_t bad_hash[] = {0x92, 0x00, 0x91, 0x92, 0xac, 'B', 'l', 'o', 'c', 'k',
                                       'R', 'e', 'm', 'o', 'v', 'e', 'd', 0x91, 0xa1, 'x'};
    expect_reject(bad_hash, sizeof bad_hash, "block_hashes");
    static const uint8_t short_stored[] = {0x92, 0x00, 0x91, 0x92, 0xab, 'B', 'l', 'o', 'c', 'k',
                                           'S', 't', 'o', 'r', 'e', 'd', 0x90};
    expect_reject(short_stored, sizeof short_stored, "BlockStored");
    static const uint8_t trailing[] = {0x92, 0x00, 0x90, 0x00};
    expect_reject(trailing, sizeof trailing, "trailing");
    /* nesting bomb inside a skipped field */
    uint8_t deep[200];
    static const uint8_t head[] = {0x93, 0x00, 0x90};
    memcpy(deep, head, sizeof head);
    for (size_t i = sizeof head; i < sizeof deep; i++)
        deep[i] = 0x91;
    expect_reject(deep, sizeof deep, "data_parallel_rank");
    static const uint8_t deep_event[] = {0x92, 0x00, 0x91, 0x92, 0xa1, 'X', 0x91, 0x91, 0x91,
                                         0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                                         0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                                         0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                                         0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90};
    expect_reject(deep_event, sizeof deep_event, "nesting");
}

static void test_seq_frame(void **state)
{
    (void)state;
    uint8_t b[8];
    kvev_put_seq(0x0102030405060708ull, b);
    static const uint8_t want[] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b, want, 8);
    uint64_t s = 0;
    assert_true(kvev_parse_seq(b, 8, &s));
    assert_true(s == 0x0102030405060708ull);
    assert_false(kvev_parse_seq(b, 7, &s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_vllm_bytes),
        cmocka_unit_test(test_encode_matches_vllm_bytes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode_other_vllm_versions),
        cmocka_unit_test(test_decode_map_form),
        cmocka_unit_test(test_garbage_rejected),
        cmocka_unit_test(test_seq_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
