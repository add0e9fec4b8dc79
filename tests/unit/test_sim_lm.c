/* Unit tests for the sim's pseudo language model (src/sim/lm.c): the distribution's
 * shape, scoring consistency, and the grammar greedy generation follows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/hash.h"
#include "sim/lm.h"
#include "tokenize/tokenize.h"

static uint64_t chain(const uint32_t *ids, size_t n)
{
    uint64_t h = SIM_LM_H0;
    for (size_t i = 0; i < n; i++)
        h = sim_lm_next(h, ids[i]);
    return h;
}

static size_t encode(const char *text, uint32_t *ids, size_t cap)
{
    struct tok_result r = {0};
    tok_encode(text, strlen(text), TOK_DEFAULT_VOCAB, &r);
    size_t n = r.n < cap ? r.n : cap;
    for (size_t i = 0; i < n; i++)
        ids[i] = r.pieces[i].id;
    tok_result_free(&r);
    return n;
}

static void test_dist_shape_and_scores(void **state)
{
    (void)state;
    uint64_t rng = 11;
    for (int round = 0; round < 300; round++) {
        uint32_t ctx[80];
        size_t n = 1 + hash_rand_below(&rng, 79);
        for (size_t i = 0; i < n; i++)
            ctx[i] = (uint32_t)hash_rand_below(&rng, TOK_DEFAULT_VOCAB);
        if (round % 3 == 0) /* real text too: grammar states other than "after noise" */
            n = encode(round % 2 ? " The model and the cache" : "Hi.\nThe serv", ctx, 80);
        uint64_t h = chain(ctx, n);
        struct sim_lm_dist d, d3, again;
        sim_lm_dist(ctx, n, h, SIM_LM_TOP, &d);
        sim_lm_dist(ctx, n, h, 3, &d3);
        sim_lm_dist(ctx, n, h, SIM_LM_TOP, &again);
        assert_int_equal(d.n, SIM_LM_TOP);
        assert_int_equal(d3.n, 3);
        assert_memory_equal(d.ids, again.ids, sizeof d.ids);
        for (uint32_t r = 0; r < d.n; r++) {
            if (r < 3) {
                assert_int_equal(d3.ids[r], d.ids[r]); /* a shorter list is a prefix */
                assert_true(d3.lp[r] == d.lp[r]);
            }
            assert_true(d.lp[r] < 0);
            if (r)
                assert_true(d.lp[r] < d.lp[r - 1]); /* rank order */
            for (uint32_t q = 0; q < r; q++)
                assert_int_not_equal(d.ids[q], d.ids[r]); /* distinct */
            double lp;
            uint32_t rank;
            sim_lm_score(&d, h, d.ids[r], &lp, &rank);
            assert_int_equal(rank, r + 1);
            assert_true(lp == d.lp[r]);
        }
        /* Tokens outside the list rank after it, and lower ranks score higher. */
        double prev_lp = 0;
        uint32_t prev_rank = 0;
        for (int t = 0; t < 20; t++) {
            uint32_t id = (uint32_t)hash_rand_below(&rng, TOK_DEFAULT_VOCAB);
            bool listed = false;
            for (uint32_t r = 0; r < d.n; r++)
                listed |= d.ids[r] == id;
            if (listed)
                continue;
            double lp;
            uint32_t rank;
            sim_lm_score(&d, h, id, &lp, &rank);
            assert_true(rank > SIM_LM_TOP && rank <= TOK_DEFAULT_VOCAB);
            assert_true(lp < d.lp[SIM_LM_TOP - 1]);
            if (prev_rank && rank != prev_rank)
                assert_true((rank < prev_rank) == (lp > prev_lp));
            prev_lp = lp;
            prev_rank = rank;
        }
    }
}

static void test_inside_a_word_the_next_piece_wins(void **state)
{
    (void)state;
    uint32_t ctx[16], word[8];
    size_t nw = encode(" important", word, 8);
    assert_true(nw >= 2);
    size_t n = encode(" the", ctx, 16);
    ctx[n++] = word[0];
    struct sim_lm_dist d;
    sim_lm_dist(ctx, n, chain(ctx, n), SIM_LM_TOP, &d);
    assert_true(d.mid_word);
    assert_int_equal(d.ids[0], word[1]);
    assert_true(d.lp[0] > -0.3); /* confident */
}

/* Greedy generation after a newline: sentences of known words, a capital first, a
 * period last, end of text only after a period; the text re-tokenizes to the ids. */
static void test_greedy_text_reads_like_sentences(void **state)
{
    (void)state;
    for (int prompt = 0; prompt < 20; prompt++) {
        char p[64];
        snprintf(p, sizeof p, "Question %d:\n", prompt);
        uint32_t ctx[600];
        size_t n0 = encode(p, ctx, 600), n = n0;
        char text[8192] = "";
        size_t len = 0;
        bool ended = false;
        uint64_t h = chain(ctx, n);
        while (n < 500) {
            struct sim_lm_dist d;
            sim_lm_dist(ctx, n, h, 2, &d);
            if (d.ids[0] == TOK_EOS_ID) {
                assert_true(len > 0 && text[len - 1] == '.');
                ended = true;
                break;
            }
            char t[TOK_ID_TEXT_MAX];
            size_t tl = tok_id_text(d.ids[0], TOK_DEFAULT_VOCAB, t);
            assert_non_null(tok_piece_text(d.ids[0], TOK_DEFAULT_VOCAB)); /* exact text */
            memcpy(text + len, t, tl + 1);
            len += tl;
            ctx[n++] = d.ids[0];
            h = sim_lm_next(h, d.ids[0]);
        }
        assert_true(ended);                            /* sentences end, and so does the text */
        assert_true(text[0] >= 'A' && text[0] <= 'Z'); /* a line starts with a capital */
        /* Every sentence: a capital after ". ", at least 4 words before its period. */
        int words = 0;
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ' || i == 0)
                words++;
            if (text[i] == '.') {
                assert_true(words >= 4);
                words = 0;
                if (i + 1 < len)
                    assert_true(text[i + 1] == ' ' && text[i + 2] >= 'A' && text[i + 2] <= 'Z');
            }
        }
        uint32_t back[600];
        size_t nb = encode(text, back, 600);
        assert_int_equal(nb, n - n0);
        assert_memory_equal(back, ctx + n0, nb * sizeof *back);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dist_shape_and_scores),
        cmocka_unit_test(test_inside_a_word_the_next_piece_wins),
        cmocka_unit_test(test_greedy_text_reads_like_sentences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
