/* The sim's pseudo language model (see lm.h for the contract, docs/sim.md for the
 * formula).
 *
 * Owns the grammar tables: the generation words (the tokenizer's vocabulary: " word",
 * " Word" and, at the start of a line, "Word") as token-id sequences, and one open-addressing table
 * keyed by the hash of an id sequence that says whether the sequence is a whole word, a word's
 * first piece, or a proper prefix of a word (and then which piece comes next). A word whose pieces
 * do not all detokenize back to their text is left out, so everything the model generates
 * detokenizes exactly. Tables are built once under pthread_once and never change.
 *
 * The state at a position comes from the ids before it only: inside a word (the last
 * ids are a proper prefix of a word) the argmax is the word's next piece; after a
 * period ending a sentence of >= 4 words the argmax is end of text with probability
 * 0.35; at a sentence start (after a period, "!", "?", ":", a newline or nothing) a
 * capitalized word; after >= 4 words of a sentence a period with probability
 * min(0.1 (w - 3), 0.75); otherwise a lowercase word. Which word, and every logprob, come
 * from the chained context hash. */
#include "sim/lm.h"

#include <pthread.h>
#include <string.h>

#include "base/alloc.h"
#include "tokenize/tokenize.h"

#define LM_MAX_PIECES 4
#define LM_SLOTS 16384 /* power of two, > 4 x the entries */
#define LM_NONE UINT32_MAX

enum { LM_WHOLE = 1, LM_PREFIX = 2, LM_FIRST = 4 };

struct lm_word {
    uint32_t ids[LM_MAX_PIECES];
    uint32_t n;
};

struct lm_slot {
    uint64_t key;  /* 0 = empty */
    uint32_t next; /* LM_PREFIX: the piece after this prefix */
    uint8_t flags;
};

static struct {
    struct lm_word *lower, *upper, *bare; /* " word", " Word", "Word" */
    size_t n_lower, n_upper, n_bare;
    uint32_t period;
    uint32_t breaks[16]; /* whitespace pieces with a newline: a sentence starts after them */
    size_t n_breaks;
    struct lm_slot *slots;
} lm;

static pthread_once_t lm_once = PTHREAD_ONCE_INIT;

static uint64_t seq_key(const uint32_t *ids, size_t n)
{
    uint64_t h = 0x51ed270b2c1f3a5dULL ^ n;
    for (size_t i = 0; i < n; i++)
        h = sim_lm_mix(h ^ ((uint64_t)ids[i] * 0x100000001B3ULL + i + 1));
    return h ? h : 1;
}

static struct lm_slot *slot_find(uint64_t key, bool insert)
{
    for (size_t i = key & (LM_SLOTS - 1);; i = (i + 1) & (LM_SLOTS - 1)) {
        struct lm_slot *s = &lm.slots[i];
        if (s->key == key)
            return s;
        if (s->key == 0) {
            if (!insert)
                return NULL;
            s->key = key;
            return s;
        }
    }
}

static uint8_t seq_flags(const uint32_t *ids, size_t n)
{
    const struct lm_slot *s = slot_find(seq_key(ids, n), false);
    return s ? s->flags : 0;
}

/* Tokenizes one word; false when it has too many pieces or a piece would not
 * detokenize back to its own text. */
static bool word_make(const char *text, struct lm_word *w)
{
    struct tok_result r = {0};
    tok_encode(text, strlen(text), TOK_DEFAULT_VOCAB, &r);
    bool ok = r.n >= 1 && r.n <= LM_MAX_PIECES;
    for (size_t k = 0; ok && k < r.n; k++) {
        const char *p = tok_piece_text(r.pieces[k].id, TOK_DEFAULT_VOCAB);
        ok = p && strlen(p) == r.pieces[k].len &&
             memcmp(p, text + r.pieces[k].offset, r.pieces[k].len) == 0;
        w->ids[k] = r.pieces[k].id;
    }
    w->n = (uint32_t)r.n;
    tok_result_free(&r);
    return ok;
}

static void lm_build(void)
{
    size_t nv = tok_vocab_size();
    lm.lower = xcalloc(nv, sizeof *lm.lower);
    lm.upper = xcalloc(nv, sizeof *lm.upper);
    lm.bare = xcalloc(nv, sizeof *lm.bare);
    lm.slots = xcalloc(LM_SLOTS, sizeof *lm.slots);
    for (size_t i = 0; i < nv; i++) {
        const char *w = tok_vocab_word(i);
        char cap[64];
        size_t len = strlen(w);
        if (word_make(w, &lm.lower[lm.n_lower]))
            lm.n_lower++;
        if (len < sizeof cap && w[1] >= 'a' && w[1] <= 'z') {
            memcpy(cap, w, len + 1);
            cap[1] = (char)(cap[1] - 'a' + 'A');
            if (word_make(cap, &lm.upper[lm.n_upper]))
                lm.n_upper++;
            if (word_make(cap + 1, &lm.bare[lm.n_bare]))
                lm.n_bare++;
        }
    }
    /* Whole words and first pieces first, so a prefix that is also a whole word
     * (" the" of " there") is a word end, never "inside a word". */
    for (int pass = 0; pass < 2; pass++) {
        for (int list = 0; list < 3; list++) {
            const struct lm_word *ws = list == 2 ? lm.bare : list ? lm.upper : lm.lower;
            size_t nw = list == 2 ? lm.n_bare : list ? lm.n_upper : lm.n_lower;
            for (size_t i = 0; i < nw; i++) {
                const struct lm_word *w = &ws[i];
                if (pass == 0) {
                    slot_find(seq_key(w->ids, w->n), true)->flags |= LM_WHOLE;
                    slot_find(seq_key(w->ids, 1), true)->flags |= LM_FIRST;
                    continue;
                }
                for (uint32_t j = 1; j < w->n; j++) {
                    struct lm_slot *s = slot_find(seq_key(w->ids, j), true);
                    if (!(s->flags & (LM_WHOLE | LM_PREFIX))) {
                        s->flags |= LM_PREFIX;
                        s->next = w->ids[j];
                    }
                }
            }
        }
    }
    struct tok_result r = {0};
    tok_encode(".", 1, TOK_DEFAULT_VOCAB, &r);
    lm.period = r.pieces[0].id;
    tok_result_free(&r);
    static const char *const breaks[] = {"\n", "\n\n", "\n\n\n", " \n", "\r\n", "\n ", "\t\n"};
    for (size_t i = 0; i < sizeof breaks / sizeof *breaks; i++) {
        struct tok_result b = {0};
        tok_encode(breaks[i], strlen(breaks[i]), TOK_DEFAULT_VOCAB, &b);
        if (b.n == 1)
            lm.breaks[lm.n_breaks++] = b.pieces[0].id;
        tok_result_free(&b);
    }
}

static void lm_init(void)
{
    pthread_once(&lm_once, lm_build);
}

uint32_t sim_lm_period(void)
{
    lm_init();
    return lm.period;
}

/* A uniform double in [0, 1) from the context hash and a salt. */
static double unit(uint64_t h, uint64_t salt)
{
    return (double)(sim_lm_mix(h ^ (salt * 0x9E3779B97F4A7C15ULL)) >> 11) * 0x1p-53;
}

/* The word piece that continues a word the context ends inside, or LM_NONE. The word's
 * first piece is the last one (of the last 4) that starts some word. */
static uint32_t mid_word_next(const uint32_t *w, size_t wn)
{
    for (size_t j = 1; j <= LM_MAX_PIECES && j <= wn; j++) {
        const uint32_t *s = w + wn - j;
        if (!(seq_flags(s, 1) & LM_FIRST))
            continue;
        const struct lm_slot *sl = slot_find(seq_key(s, j), false);
        return sl && (sl->flags & LM_PREFIX) ? sl->next : LM_NONE;
    }
    return LM_NONE;
}

/* Whole generation words that end at w[e - 1], counted backwards (at most 12). */
static uint32_t words_before(const uint32_t *w, size_t e)
{
    uint32_t count = 0;
    while (count < 12) {
        size_t j = 1;
        while (j <= LM_MAX_PIECES && j <= e && !(seq_flags(w + e - j, j) & LM_WHOLE))
            j++;
        if (j > LM_MAX_PIECES || j > e)
            break;
        e -= j;
        count++;
    }
    return count;
}

/* 0: mid-sentence; 1: a sentence starts after a space ("x. The"); 2: at the start of a
 * line or of everything ("\nThe"). */
static int sentence_start(const uint32_t *w, size_t wn)
{
    if (wn == 0)
        return 2;
    for (size_t i = 0; i < lm.n_breaks; i++)
        if (w[wn - 1] == lm.breaks[i])
            return 2;
    char t[TOK_ID_TEXT_MAX];
    size_t len = tok_id_text(w[wn - 1], TOK_DEFAULT_VOCAB, t);
    if (len > 0 && t[len - 1] == '\n')
        return 2;
    return len > 0 && strchr(".!?:", t[len - 1]) != NULL;
}

static bool listed(const struct sim_lm_dist *d, uint32_t id)
{
    for (uint32_t i = 0; i < d->n; i++)
        if (d->ids[i] == id)
            return true;
    return false;
}

void sim_lm_dist(const uint32_t *ctx, size_t n, uint64_t h, uint32_t k, struct sim_lm_dist *d)
{
    lm_init();
    if (k > SIM_LM_TOP)
        k = SIM_LM_TOP;
    if (k < 1)
        k = 1;
    size_t wn = n < SIM_LM_WINDOW ? n : SIM_LM_WINDOW;
    const uint32_t *w = ctx + (n - wn);
    d->n = 0;
    d->mid_word = false;
    int start = 0; /* which word list: lower, upper, bare */
    uint32_t special = LM_NONE;
    bool special_first = false;
    uint32_t next = wn ? mid_word_next(w, wn) : LM_NONE;
    if (next != LM_NONE) {
        d->mid_word = true;
        d->ids[d->n++] = next;
    } else if (wn && w[wn - 1] == lm.period) {
        start = 1;
        if (words_before(w, wn - 1) >= 4) {
            special = TOK_EOS_ID;
            special_first = unit(h, 1) < 0.35;
        }
    } else {
        start = sentence_start(w, wn);
    }
    if (!d->mid_word && start == 0) {
        uint32_t nw = words_before(w, wn);
        if (nw >= 4) {
            double p = 0.1 * (nw - 3);
            special = lm.period;
            special_first = unit(h, 2) < (p < 0.75 ? p : 0.75);
        }
    }
    const struct lm_word *list = start == 2 ? lm.bare : start ? lm.upper : lm.lower;
    size_t nl = start == 2 ? lm.n_bare : start ? lm.n_upper : lm.n_lower;
    for (uint64_t salt = 0; d->n < k && salt < 4096;) {
        uint32_t id;
        if (special != LM_NONE && (special_first || d->n == 1)) {
            id = special;
            special = LM_NONE;
        } else {
            id = list[sim_lm_mix(h ^ (0xC0FFEEULL + salt++ * 0x100000001B3ULL)) % nl].ids[0];
        }
        if (!listed(d, id))
            d->ids[d->n++] = id;
    }
    /* Logprobs: a confident argmax inside a word, a spread one between words; each next
     * rank 0.15-1.25 lower. */
    double u0 = unit(h, 0x10);
    double lp = d->mid_word ? -(0.002 + 0.25 * u0) : -(0.25 + 1.75 * u0);
    for (uint32_t r = 0; r < d->n; r++) {
        if (r)
            lp -= 0.15 + 1.1 * unit(h, 0x10 + r);
        d->lp[r] = lp;
    }
}

void sim_lm_score(const struct sim_lm_dist *d, uint64_t h, uint32_t t, double *lp, uint32_t *rank)
{
    for (uint32_t i = 0; i < d->n; i++) {
        if (d->ids[i] == t) {
            *lp = d->lp[i];
            *rank = i + 1;
            return;
        }
    }
    /* The tail: a rank past the listed ones from (h, t), the logprob falling with it. */
    const uint32_t v = TOK_DEFAULT_VOCAB, first = SIM_LM_TOP + 1;
    uint32_t r =
        first + (uint32_t)(sim_lm_mix(h ^ ((uint64_t)t * 0xD6E8FEB86659FD93ULL)) % (v - first));
    *rank = r;
    *lp = d->lp[d->n - 1] - 0.5 - 12.0 * (double)(r - first) / (double)(v - first);
}
