/* Deterministic pseudo-tokenizer: GPT-2 style pre-split, pieces of at most 4 bytes,
 * id = xxh64(piece, seed 0) mod vocab_size.
 *
 * Owns: the byte-class scanner (shared by tok_encode and tok_count so the two can never
 * disagree), the fixed generation vocabulary, the id -> piece text tables and the
 * chained block hashes the sim's prefix cache and the router's prefix index both use.
 *
 * Invariants: a pre-split piece never ends inside a UTF-8 sequence (every byte >= 0x80
 * is a letter, so a sequence always sits inside one letter run) and the 4-byte cut backs
 * off continuation bytes, so no emitted piece splits a sequence of valid UTF-8. The
 * vocabulary is chosen so that, at TOK_DEFAULT_VOCAB, no two of its pieces nor any
 * printable ASCII character share an id: generated text detokenizes exactly.
 * Piece tables are immutable once built and live until exit. */
#include "tokenize/tokenize.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

/* Inline xxh64: the tokenizer hashes one tiny piece per ~4 input bytes, so a call into
 * the shared library per piece would dominate. Same function, same values. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define TOK_MAX_PIECE 4
/* Chosen so no two pieces of the generation vocabulary (and no printable ASCII
 * character) share an id: generated text then detokenizes exactly. */
#define TOK_ID_SALT 94ULL

enum { C_LETTER = 0, C_DIGIT, C_SPACE, C_PUNCT };

/* Byte classes. Non-ASCII bytes count as letters so that words in any script (and any
 * UTF-8 sequence) stay in one run. */
/* clang-format off */
static const uint8_t tok_class[256] = {
    /* 0x00-0x1f: controls are "punctuation" (not letter, digit or space), except the
     * ASCII whitespace \t \n \v \f \r. */
    [0x00 ... 0x08] = C_PUNCT,
    [0x09 ... 0x0d] = C_SPACE,
    [0x0e ... 0x1f] = C_PUNCT,
    [' '] = C_SPACE,
    [0x21 ... 0x2f] = C_PUNCT,
    ['0' ... '9'] = C_DIGIT,
    [0x3a ... 0x40] = C_PUNCT,
    ['A' ... 'Z'] = C_LETTER,
    [0x5b ... 0x60] = C_PUNCT,
    ['a' ... 'z'] = C_LETTER,
    [0x7b ... 0x7f] = C_PUNCT,
    [0x80 ... 0xff] = C_LETTER,
};
/* clang-format on */

/* End of the pre-split piece that starts at i (i < len). */
static inline size_t tok_split_end(const uint8_t *s, size_t len, size_t i)
{
    uint8_t c = tok_class[s[i]];
    if (c == C_SPACE) {
        /* A single space joins a following letter or punctuation run (GPT-2's " ?\p{L}+"). */
        if (s[i] == ' ' && i + 1 < len) {
            uint8_t n = tok_class[s[i + 1]];
            if (n == C_LETTER || n == C_PUNCT) {
                size_t j = i + 2;
                while (j < len && tok_class[s[j]] == n)
                    j++;
                return j;
            }
        }
        size_t j = i + 1;
        while (j < len && tok_class[s[j]] == C_SPACE)
            j++;
        /* GPT-2's "\s+(?!\S)": a run followed by text leaves its last character to the
         * next piece, where a space becomes the next word's leading space. */
        if (j < len && j - i >= 2)
            j--;
        return j;
    }
    size_t j = i + 1;
    while (j < len && tok_class[s[j]] == c)
        j++;
    return j;
}

/* Where to cut a long piece [start, end) so the first part has at most 4 bytes and does
 * not end inside a UTF-8 sequence. */
static inline size_t tok_cut(const uint8_t *s, size_t start, size_t end)
{
    if (end - start <= TOK_MAX_PIECE)
        return end;
    size_t cut = start + TOK_MAX_PIECE;
    while (cut > start && (s[cut] & 0xc0) == 0x80)
        cut--;
    /* Only malformed UTF-8 (a run of continuation bytes) gets here: cut it anyway. */
    return cut == start ? start + TOK_MAX_PIECE : cut;
}

/* A piece is 1-4 bytes: its bytes and length form one 64-bit word, mixed with
 * splitmix64's finalizer and mapped onto the vocabulary by multiply-shift (no division).
 * ~3x faster than xxh64 + modulo on the sim's 220 KB prompts. */
static inline uint32_t tok_id(const uint8_t *p, size_t n, uint32_t vocab_size)
{
    uint64_t x = (uint64_t)n << 32;
    for (size_t k = 0; k < n; k++)
        x |= (uint64_t)p[k] << (8 * k);
    x += TOK_ID_SALT;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return (uint32_t)(((x & 0xFFFFFFFFULL) * vocab_size) >> 32);
}

void tok_encode(const char *text, size_t len, uint32_t vocab_size, struct tok_result *out)
{
    const uint8_t *s = (const uint8_t *)text;
    if (vocab_size == 0)
        vocab_size = TOK_DEFAULT_VOCAB;
    /* English runs ~4 bytes per token; len/3 leaves room so the common case never grows. */
    size_t want = out->n + len / 3 + 16;
    if (out->cap < want) {
        out->pieces = xrealloc(out->pieces, want * sizeof *out->pieces);
        out->cap = want;
    }
    struct tok_piece *p = out->pieces;
    size_t n = out->n, cap = out->cap;
    size_t i = 0;
    while (i < len) {
        size_t end = tok_split_end(s, len, i);
        while (i < end) {
            size_t cut = tok_cut(s, i, end);
            if (n == cap) {
                cap *= 2;
                p = xrealloc(p, cap * sizeof *p);
            }
            p[n].id = tok_id(s + i, cut - i, vocab_size);
            p[n].offset = (uint32_t)i;
            p[n].len = (uint32_t)(cut - i);
            n++;
            i = cut;
        }
    }
    out->pieces = p;
    out->n = n;
    out->cap = cap;
}

void tok_result_free(struct tok_result *r)
{
    free(r->pieces);
    r->pieces = NULL;
    r->n = r->cap = 0;
}

size_t tok_count(const char *text, size_t len)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t n = 0, i = 0;
    while (i < len) {
        size_t end = tok_split_end(s, len, i);
        while (i < end) {
            i = tok_cut(s, i, end);
            n++;
        }
    }
    return n;
}

/* ---- generation vocabulary ---------------------------------------------------------- */

/* Common English words plus the serving domain's own. Curated (see the file comment):
 * adding a word needs test_tokenize's collision check to pass. */
static const char *const tok_words[] = {
    " the",       " of",         " and",      " to",       " in",         " is",        " it",
    " that",      " for",        " on",       " was",      " with",       " as",        " at",
    " by",        " this",       " are",      " from",     " or",         " have",      " an",
    " not",       " but",        " had",      " they",     " his",        " she",       " her",
    " he",        " you",        " we",       " can",      " all",        " one",       " there",
    " their",     " which",      " were",     " been",     " has",        " would",     " will",
    " more",      " if",         " no",       " so",       " what",       " up",        " out",
    " about",     " who",        " get",      " them",     " some",       " could",     " my",
    " me",        " your",       " when",     " make",     " than",       " then",      " its",
    " also",      " into",       " only",     " other",    " new",        " time",      " these",
    " two",       " may",        " first",    " any",      " now",        " over",      " such",
    " our",       " like",       " just",     " most",     " very",       " even",      " back",
    " after",     " use",        " how",      " where",    " well",       " way",       " many",
    " much",      " should",     " because",  " each",     " those",      " people",    " through",
    " work",      " before",     " same",     " being",    " while",      " here",      " both",
    " between",   " under",      " never",    " another",  " know",       " during",    " without",
    " again",     " last",       " might",    " world",    " great",      " still",     " since",
    " life",      " own",        " around",   " good",     " little",     " long",      " year",
    " day",       " man",        " must",     " take",     " high",       " come",      " state",
    " part",      " made",       " place",    " case",     " point",      " need",      " form",
    " used",      " find",       " number",   " small",    " give",       " school",    " large",
    " show",      " thing",      " public",   " fact",     " hand",       " system",    " group",
    " old",       " children",   " every",    " week",     " company",    " often",     " right",
    " turn",      " early",      " real",     " best",     " better",     " far",       " family",
    " night",     " change",     " mean",     " next",     " local",      " open",      " few",
    " always",    " area",       " order",    " help",     " told",       " home",      " side",
    " country",   " line",       " possible", " course",   " problem",    " keep",      " head",
    " level",     " power",      " story",    " water",    " idea",       " money",     " word",
    " three",     " young",      " question", " later",    " book",       " member",    " service",
    " provide",   " kind",       " though",   " whole",    " today",      " month",     " study",
    " result",    " body",       " data",     " model",    " cache",      " token",     " block",
    " request",   " server",     " client",   " engine",   " memory",     " query",     " answer",
    " text",      " output",     " input",    " value",    " rate",       " speed",     " prefix",
    " route",     " router",     " decode",   " prefill",  " batch",      " queue",     " step",
    " layer",     " weight",     " network",  " signal",   " window",     " table",     " index",
    " field",     " label",      " metric",   " event",    " stream",     " header",    " source",
    " target",    " record",     " update",   " report",   " review",     " design",    " method",
    " process",   " program",    " project",  " version",  " release",    " feature",   " support",
    " library",   " module",     " option",   " config",   " setting",    " default",   " limit",
    " error",     " issue",      " test",     " check",    " build",      " deploy",    " cluster",
    " node",      " pod",        " health",   " ready",    " start",      " stop",      " begin",
    " end",       " finish",     " follow",   " leave",    " allow",      " agree",     " bring",
    " carry",     " create",     " cover",    " depend",   " describe",   " develop",   " draw",
    " drive",     " explain",    " fall",     " feel",     " fill",       " hear",      " hold",
    " include",   " increase",   " join",     " learn",    " lead",       " listen",    " lose",
    " meet",      " move",       " offer",    " pay",      " play",       " plan",      " put",
    " raise",     " reach",      " read",     " receive",  " remain",     " remember",  " run",
    " say",       " seem",       " send",     " serve",    " set",        " share",     " sit",
    " speak",     " spend",      " stand",    " suggest",  " talk",       " teach",     " tell",
    " think",     " understand", " walk",     " want",     " watch",      " win",       " write",
    " able",      " bad",        " big",      " black",    " blue",       " certain",   " clear",
    " close",     " common",     " current",  " dark",     " deep",       " different", " easy",
    " economic",  " final",      " free",     " full",     " general",    " green",     " hard",
    " human",     " important",  " late",     " light",    " low",        " main",      " major",
    " military",  " national",   " natural",  " nice",     " normal",     " past",      " personal",
    " political", " poor",       " popular",  " private",  " quick",      " recent",    " red",
    " short",     " simple",     " single",   " social",   " special",    " strong",    " sure",
    " true",      " white",      " wide",     " wrong",    " yellow",     " across",    " against",
    " almost",    " already",    " although", " among",    " away",       " behind",    " below",
    " beyond",    " else",       " enough",   " ever",     " everything", " forward",   " however",
    " instead",   " maybe",      " nothing",  " perhaps",  " quite",      " rather",    " really",
    " simply",    " sometimes",  " soon",     " together", " toward",     " usually",   " within",
    " yet",       " air",        " animal",   " art",      " bank",       " bed",       " bird",
    " blood",     " board",      " boat",     " bread",    " car",        " cell",      " center",
    " chair",     " city",       " class",    " color",    " cost",       " court",     " culture",
    " door",      " dream",      " earth",    " eye",      " face",       " farm",      " fire",
    " fish",      " floor",      " food",     " force",    " friend",     " future",    " game",
    " garden",    " glass",      " ground",   " hair",     " heart",      " hill",      " history",
    " horse",     " hospital",   " hotel",    " house",    " image",      " island",    " job",
    " key",       " king",       " land",     " law",      " letter",     " love",      " machine",
    " market",    " matter",     " minute",   " moment",   " mountain",   " music",     " name",
    " nature",    " news",       " office",   " paper",    " party",      " peace",     " phone",
    " picture",   " plant",      " police",   " price",    " river",      " road",      " room",
    " sea",       " season",     " shop",     " sky",      " song",       " sound",     " space",
    " sport",     " star",       " street",   " sun",      " tree",       " truth",     " unit",
    " voice",     " wall",       " war",      " weather",  " wind",       " wood",
};

#define TOK_NWORDS (sizeof tok_words / sizeof tok_words[0])

size_t tok_vocab_size(void)
{
    return TOK_NWORDS;
}

const char *tok_vocab_word(size_t i)
{
    return i < TOK_NWORDS ? tok_words[i] : NULL;
}

/* ---- id -> piece text ---------------------------------------------------------------- */

struct tok_entry {
    uint32_t id;
    uint32_t order; /* insertion order: on an id collision the first piece wins */
    char text[TOK_MAX_PIECE + 1];
};

struct tok_table {
    uint32_t vocab_size;
    size_t n;
    struct tok_entry *e; /* sorted by id, ids unique */
    struct tok_table *next;
};

static int tok_entry_cmp(const void *a, const void *b)
{
    const struct tok_entry *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void tok_table_add(struct tok_entry *e, size_t *n, const char *p, size_t len,
                          uint32_t vocab_size)
{
    struct tok_entry *t = &e[*n];
    t->id = tok_id((const uint8_t *)p, len, vocab_size);
    t->order = (uint32_t)*n;
    memcpy(t->text, p, len);
    t->text[len] = '\0';
    (*n)++;
}

static struct tok_table *tok_table_build(uint32_t vocab_size)
{
    /* Upper bound: every word (and its two capitalized forms) cut into pieces, plus the
     * 95 printable ASCII characters. */
    size_t max = 95;
    for (size_t w = 0; w < TOK_NWORDS; w++)
        max += 3 * strlen(tok_words[w]);
    struct tok_entry *e = xcalloc(max, sizeof *e);
    size_t n = 0;
    /* Vocabulary pieces first: generated text must detokenize even where a piece's id
     * collides with a single character's at some vocab size. */
    for (size_t w = 0; w < TOK_NWORDS; w++) {
        const char *word = tok_words[w];
        struct tok_result r = {0};
        tok_encode(word, strlen(word), vocab_size, &r);
        for (size_t k = 0; k < r.n; k++)
            tok_table_add(e, &n, word + r.pieces[k].offset, r.pieces[k].len, vocab_size);
        tok_result_free(&r);
    }
    for (int c = 0x20; c < 0x7f; c++) {
        char ch = (char)c;
        tok_table_add(e, &n, &ch, 1, vocab_size);
    }
    /* Capitalized words (sentence starts), last: they lose every collision, and the sim
     * only generates those whose pieces all map back (sim/lm.c checks). */
    for (size_t w = 0; w < TOK_NWORDS; w++) {
        char cap[32];
        size_t len = strlen(tok_words[w]);
        if (len >= sizeof cap)
            continue;
        memcpy(cap, tok_words[w], len + 1);
        if (cap[1] >= 'a' && cap[1] <= 'z')
            cap[1] = (char)(cap[1] - 'a' + 'A');
        /* " The" (mid-text) and "The" (after a newline). */
        for (size_t skip = 0; skip < 2; skip++) {
            struct tok_result r = {0};
            tok_encode(cap + skip, len - skip, vocab_size, &r);
            for (size_t k = 0; k < r.n; k++)
                tok_table_add(e, &n, cap + skip + r.pieces[k].offset, r.pieces[k].len,
                              vocab_size);
            tok_result_free(&r);
        }
    }
    qsort(e, n, sizeof *e, tok_entry_cmp);
    size_t u = 0;
    for (size_t k = 0; k < n; k++)
        if (u == 0 || e[u - 1].id != e[k].id)
            e[u++] = e[k];
    struct tok_table *t = xcalloc(1, sizeof *t);
    t->vocab_size = vocab_size;
    t->n = u;
    t->e = e;
    return t;
}

static const char *tok_table_find(const struct tok_table *t, uint32_t id)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->e[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && t->e[lo].id == id ? t->e[lo].text : NULL;
}

static pthread_once_t tok_default_once = PTHREAD_ONCE_INIT;
static struct tok_table *tok_default_table;
/* Other vocab sizes: built on first use, kept for the process's life (few sizes expected). */
static pthread_mutex_t tok_tables_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tok_table *tok_tables;

static void tok_default_init(void)
{
    tok_default_table = tok_table_build(TOK_DEFAULT_VOCAB);
}

const char *tok_piece_text(uint32_t id, uint32_t vocab_size)
{
    if (vocab_size == 0 || vocab_size == TOK_DEFAULT_VOCAB) {
        pthread_once(&tok_default_once, tok_default_init);
        return tok_table_find(tok_default_table, id);
    }
    pthread_mutex_lock(&tok_tables_lock);
    struct tok_table *t = tok_tables;
    while (t && t->vocab_size != vocab_size)
        t = t->next;
    if (!t) {
        t = tok_table_build(vocab_size);
        t->next = tok_tables;
        tok_tables = t;
    }
    pthread_mutex_unlock(&tok_tables_lock);
    return tok_table_find(t, id);
}

size_t tok_id_text(uint32_t id, uint32_t vocab_size, char *out)
{
    const char *p = tok_piece_text(id, vocab_size);
    if (p) {
        size_t n = strlen(p);
        memcpy(out, p, n + 1);
        return n;
    }
    if (id == TOK_EOS_ID) {
        memcpy(out, "<|endoftext|>", 14);
        return 13;
    }
    /* Consonant-vowel syllables drawn from the id's bits: pronounceable, stable. */
    static const char cons[] = "bdfghklmnprstvz", vow[] = "aeiou";
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    x = (x ^ (x >> 31)) * 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    size_t n = 0;
    if (x % 3 != 0)
        out[n++] = ' ';
    x /= 3;
    unsigned syll = 1 + (unsigned)(x % 3);
    x /= 3;
    for (unsigned k = 0; k < syll; k++) {
        out[n++] = cons[x % (sizeof cons - 1)];
        x /= sizeof cons - 1;
        out[n++] = vow[x % (sizeof vow - 1)];
        x /= sizeof vow - 1;
    }
    out[n] = '\0';
    return n;
}

/* ---- block hashes -------------------------------------------------------------------- */

uint64_t tok_block_hash(uint64_t parent, const uint32_t *ids, uint32_t block_size)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return XXH64(ids, (size_t)block_size * sizeof *ids, parent);
#else
    /* The hash is defined over little-endian bytes so every host agrees. */
    XXH64_state_t st;
    XXH64_reset(&st, parent);
    for (uint32_t k = 0; k < block_size; k++) {
        uint8_t b[4] = {(uint8_t)ids[k], (uint8_t)(ids[k] >> 8), (uint8_t)(ids[k] >> 16),
                        (uint8_t)(ids[k] >> 24)};
        XXH64_update(&st, b, sizeof b);
    }
    return XXH64_digest(&st);
#endif
}

size_t tok_block_hashes(const uint32_t *ids, size_t n_ids, uint32_t block_size, uint64_t seed,
                        uint64_t *out, size_t cap)
{
    if (block_size == 0)
        return 0;
    size_t n = n_ids / block_size;
    if (n > cap)
        n = cap;
    uint64_t h = seed;
    for (size_t i = 0; i < n; i++) {
        h = tok_block_hash(h, ids + i * block_size, block_size);
        out[i] = h;
    }
    return n;
}

uint64_t tok_hash_seed(const char *model, uint64_t hash_seed)
{
    return XXH64(model, strlen(model), hash_seed);
}
