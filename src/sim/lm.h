/* The sim's pseudo language model: a deterministic next-token distribution over a tiny
 * grammar (sentences of the tokenizer's vocabulary words, a capitalized first word, a
 * period, end of text after a period). The sim generates output from it and scores
 * every token it reports a logprob for with it (output, echoed prompt,
 * prompt_logprobs), so a token's logprob depends only on the token ids before it, its
 * position and the token, never on max_tokens, echo, stream or seed.
 *
 * Context: the chained hash h_0 = SIM_LM_H0, h_{i+1} = sim_lm_next(h_i, id_i) of every
 * token before the position, plus the last SIM_LM_WINDOW ids (grammar state). docs/sim.md
 * writes the distribution down.
 *
 * Ownership: nothing is allocated per call; the grammar tables are built once
 * (thread-safely) and live until exit. */
#ifndef TANDEM_SIM_LM_H
#define TANDEM_SIM_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_LM_TOP 20    /* tokens listed per position: vLLM's default --max-logprobs */
#define SIM_LM_WINDOW 64 /* context ids the grammar looks at */
#define SIM_LM_H0 0x74616e64656d4c4dULL

static inline uint64_t sim_lm_mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static inline uint64_t sim_lm_next(uint64_t h, uint32_t id)
{
    return sim_lm_mix(h ^ ((uint64_t)id + 0x9E3779B97F4A7C15ULL));
}

/* The listed head of one position's distribution: ids[r - 1] has rank r. */
struct sim_lm_dist {
    uint32_t n;
    uint32_t ids[SIM_LM_TOP];
    double lp[SIM_LM_TOP];
    bool mid_word; /* the argmax continues a word: sampling never strays there */
};

/* The distribution after ctx[0..n) (only the last SIM_LM_WINDOW ids are read; n is the
 * full count), whose chained hash is h. Lists the first k ranks (1..SIM_LM_TOP); the
 * first k of a longer list are the same. */
void sim_lm_dist(const uint32_t *ctx, size_t n, uint64_t h, uint32_t k, struct sim_lm_dist *d);

/* Logprob and rank (1-based) of token t at that position. d must list SIM_LM_TOP. */
void sim_lm_score(const struct sim_lm_dist *d, uint64_t h, uint32_t t, double *lp, uint32_t *rank);

/* The period's id (sentence end) and whether an id is the end of text. */
uint32_t sim_lm_period(void);

#endif
