/* KV event codec: vLLM's msgspec-encoded KVEventBatch (kvevents.h has the layout).
 *
 * Encoding goes through the msgpack C library's packer, which picks the same smallest
 * integer and string forms msgspec does. Decoding is a bounded cursor over the bytes
 * instead of msgpack_unpack: the library's unpacker reserves room for an array from its
 * declared element count before the elements arrive, so five hostile bytes can ask for
 * gigabytes. Here every declared count is checked against the bytes left (an element
 * takes at least one byte), nesting is capped, and everything a decoded batch points at
 * lives in one arena owned by the batch. */
#include "sched/kvevents.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "base/alloc.h"
#include "base/arena.h"

/* ---- reading ------------------------------------------------------------------------- */

enum mp_kind { MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT };

struct mpv {
    enum mp_kind kind;
    uint64_t u; /* MP_UINT, MP_BOOL; count for MP_ARRAY / MP_MAP; length for STR/BIN/EXT */
    int64_t i;  /* MP_INT (negative values only) */
    double f;
    const uint8_t *ptr; /* STR / BIN / EXT body */
};

struct cur {
    const uint8_t *p, *end;
    char *err;
    size_t errlen;
    bool failed;
};

#define KVEV_MAX_DEPTH 32

static int fail(struct cur *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct cur *c, const char *fmt, ...)
{
    if (!c->failed && c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    c->failed = true;
    return -EINVAL;
}

static size_t left(const struct cur *c)
{
    return (size_t)(c->end - c->p);
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads one value's header; bodies of str/bin/ext are stepped over (ptr points at
 * them); arrays and maps leave the cursor on their first element. */
static int mp_next(struct cur *c, struct mpv *v)
{
    if (!left(c))
        return fail(c, "truncated payload");
    uint8_t t = *c->p++;
    size_t need = 0, lenbytes = 0;
    memset(v, 0, sizeof *v);
    if (t <= 0x7f) {
        v->kind = MP_UINT;
        v->u = t;
        return 0;
    }
    if (t >= 0xe0) {
        v->kind = MP_INT;
        v->i = (int8_t)t;
        return 0;
    }
    if ((t & 0xf0) == 0x80 || (t & 0xf0) == 0x90) {
        v->kind = (t & 0xf0) == 0x80 ? MP_MAP : MP_ARRAY;
        v->u = t & 0x0f;
        goto container;
    }
    if ((t & 0xe0) == 0xa0) {
        v->kind = MP_STR;
        v->u = t & 0x1f;
        goto body;
    }
    switch (t) {
    case 0xc0: v->kind = MP_NIL; return 0;
    case 0xc2: case 0xc3: v->kind = MP_BOOL; v->u = t == 0xc3; return 0;
    case 0xc4: case 0xc5: case 0xc6:
        v->kind = MP_BIN; lenbytes = (size_t)1 << (t - 0xc4); break;
    case 0xd9: case 0xda: case 0xdb:
        v->kind = MP_STR; lenbytes = (size_t)1 << (t - 0xd9); break;
    case 0xc7: case 0xc8: case 0xc9:
        v->kind = MP_EXT; lenbytes = (size_t)1 << (t - 0xc7); break;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        /* fixext: one type byte, then 1/2/4/8/16 bytes */
        v->kind = MP_EXT;
        v->u = (uint64_t)1 << (t - 0xd4);
        if (left(c) < 1)
            return fail(c, "truncated ext");
        c->p++;
        goto body;
    case 0xca: case 0xcb:
        need = t == 0xca ? 4 : 8;
        if (left(c) < need)
            return fail(c, "truncated float");
        v->kind = MP_FLOAT;
        if (t == 0xca) {
            uint32_t b = (uint32_t)be(c->p, 4);
            float f;
            memcpy(&f, &b, 4);
            v->f = f;
        } else {
            uint64_t b = be(c->p, 8);
            memcpy(&v->f, &b, 8);
        }
        c->p += need;
        return 0;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        need = (size_t)1 << (t - 0xcc);
        if (left(c) < need)
            return fail(c, "truncated integer");
        v->kind = MP_UINT;
        v->u = be(c->p, need);
        c->p += need;
        return 0;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        need = (size_t)1 << (t - 0xd0);
        if (left(c) < need)
            return fail(c, "truncated integer");
        uint64_t raw = be(c->p, need);
        c->p += need;
        int64_t x;
        if (need == 8)
            memcpy(&x, &raw, 8);
        else /* sign-extend */
            x = (int64_t)(raw ^ ((uint64_t)1 << (need * 8 - 1))) - ((int64_t)1 << (need * 8 - 1));
        if (x >= 0) {
            v->kind = MP_UINT;
            v->u = (uint64_t)x;
        } else {
            v->kind = MP_INT;
            v->i = x;
        }
        return 0;
    }
    case 0xdc: case 0xdd:
        v->kind = MP_ARRAY; lenbytes = t == 0xdc ? 2 : 4;
        if (left(c) < lenbytes)
            return fail(c, "truncated array header");
        v->u = be(c->p, lenbytes);
        c->p += lenbytes;
        goto container;
    case 0xde: case 0xdf:
        v->kind = MP_MAP; lenbytes = t == 0xde ? 2 : 4;
        if (left(c) < lenbytes)
            return fail(c, "truncated map header");
        v->u = be(c->p, lenbytes);
        c->p += lenbytes;
        goto container;
    default:
        return fail(c, "invalid msgpack type byte 0x%02x", t);
    }
    /* str / bin / ext with an explicit length */
    if (left(c) < lenbytes)
        return fail(c, "truncated length");
    v->u = be(c->p, lenbytes);
    c->p += lenbytes;
    if (v->kind == MP_EXT) {
        if (left(c) < 1)
            return fail(c, "truncated ext");
        c->p++;
    }
body:
    if (v->u > left(c))
        return fail(c, "length %llu exceeds the %zu bytes left", (unsigned long long)v->u,
                    left(c));
    v->ptr = c->p;
    c->p += v->u;
    return 0;
container:
    if (v->u > left(c) / (v->kind == MP_MAP ? 2 : 1))
        return fail(c, "%s of %llu elements exceeds the %zu bytes left",
                    v->kind == MP_MAP ? "map" : "array", (unsigned long long)v->u, left(c));
    return 0;
}

static int mp_skip_body(struct cur *c, const struct mpv *v, int depth)
{
    if (v->kind != MP_ARRAY && v->kind != MP_MAP)
        return 0;
    if (depth >= KVEV_MAX_DEPTH)
        return fail(c, "nesting deeper than %d", KVEV_MAX_DEPTH);
    uint64_t n = v->kind == MP_MAP ? v->u * 2 : v->u;
    for (uint64_t k = 0; k < n; k++) {
        struct mpv e;
        if (mp_next(c, &e) || mp_skip_body(c, &e, depth + 1))
            return -EINVAL;
    }
    return 0;
}

static int mp_skip(struct cur *c)
{
    struct mpv v;
    if (mp_next(c, &v))
        return -EINVAL;
    return mp_skip_body(c, &v, 1);
}

static const char *kind_name(enum mp_kind k)
{
    static const char *const names[] = {"nil", "bool", "uint", "int", "float",
                                        "str", "bin",  "array", "map", "ext"};
    return names[k];
}

static bool str_is(const struct mpv *v, const char *s)
{
    size_t n = strlen(s);
    return v->kind == MP_STR && v->u == n && memcmp(v->ptr, s, n) == 0;
}

/* ---- decoding the schema ------------------------------------------------------------- */

struct dec {
    struct cur c;
    struct arena *a;
};

static int rd_hash(struct dec *d, const struct mpv *v, uint64_t *out, const char *field)
{
    if (v->kind == MP_UINT) {
        *out = v->u;
        return 0;
    }
    if (v->kind == MP_INT) {
        *out = (uint64_t)v->i;
        return 0;
    }
    if (v->kind == MP_BIN) {
        if (v->u == 0)
            return fail(&d->c, "%s: empty hash bytes", field);
        /* The last 8 bytes, big-endian, zero-padded on the left when shorter. */
        size_t n = v->u < 8 ? (size_t)v->u : 8;
        *out = be(v->ptr + v->u - n, n);
        return 0;
    }
    return fail(&d->c, "%s: expected an integer or bytes hash, got %s", field, kind_name(v->kind));
}

static int rd_hashes(struct dec *d, struct kvev_event *ev)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind != MP_ARRAY)
        return fail(&d->c, "block_hashes: expected an array, got %s", kind_name(v.kind));
    ev->n_hashes = (uint32_t)v.u;
    ev->hashes = arena_alloc(d->a, (v.u ? v.u : 1) * sizeof *ev->hashes);
    for (uint64_t i = 0; i < v.u; i++) {
        struct mpv h;
        if (mp_next(&d->c, &h) || rd_hash(d, &h, &ev->hashes[i], "block_hashes"))
            return -EINVAL;
    }
    return 0;
}

static int rd_parent(struct dec *d, struct kvev_event *ev)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind == MP_NIL)
        return 0;
    ev->has_parent = true;
    return rd_hash(d, &v, &ev->parent, "parent_block_hash");
}

static int rd_tokens(struct dec *d, struct kvev_event *ev)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind != MP_ARRAY)
        return fail(&d->c, "token_ids: expected an array, got %s", kind_name(v.kind));
    ev->n_tokens = (uint32_t)v.u;
    ev->token_ids = arena_alloc(d->a, (v.u ? v.u : 1) * sizeof *ev->token_ids);
    for (uint64_t i = 0; i < v.u; i++) {
        struct mpv t;
        if (mp_next(&d->c, &t))
            return -EINVAL;
        if (t.kind != MP_UINT || t.u > UINT32_MAX)
            return fail(&d->c, "token_ids[%llu]: expected a token id", (unsigned long long)i);
        ev->token_ids[i] = (uint32_t)t.u;
    }
    return 0;
}

static int rd_uint32(struct dec *d, uint32_t *out, const char *field)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind != MP_UINT || v.u > UINT32_MAX)
        return fail(&d->c, "%s: expected an unsigned integer, got %s", field, kind_name(v.kind));
    *out = (uint32_t)v.u;
    return 0;
}

static int rd_opt_int(struct dec *d, bool *has, int64_t *out, const char *field)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind == MP_NIL)
        return 0;
    if (v.kind == MP_UINT && v.u <= INT64_MAX)
        *out = (int64_t)v.u;
    else if (v.kind == MP_INT)
        *out = v.i;
    else
        return fail(&d->c, "%s: expected an integer or nil, got %s", field, kind_name(v.kind));
    *has = true;
    return 0;
}

static int rd_opt_str(struct dec *d, const char **out, const char *field)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind == MP_NIL)
        return 0;
    if (v.kind != MP_STR)
        return fail(&d->c, "%s: expected a string or nil, got %s", field, kind_name(v.kind));
    *out = arena_strndup(d->a, (const char *)v.ptr, (size_t)v.u);
    return 0;
}

enum field { F_HASHES, F_PARENT, F_TOKENS, F_BLOCK_SIZE, F_LORA_ID, F_MEDIUM, F_OTHER };

static enum field field_by_name(const struct mpv *k)
{
    if (str_is(k, "block_hashes"))
        return F_HASHES;
    if (str_is(k, "parent_block_hash"))
        return F_PARENT;
    if (str_is(k, "token_ids"))
        return F_TOKENS;
    if (str_is(k, "block_size"))
        return F_BLOCK_SIZE;
    if (str_is(k, "lora_id"))
        return F_LORA_ID;
    if (str_is(k, "medium"))
        return F_MEDIUM;
    return F_OTHER;
}

static int rd_field(struct dec *d, struct kvev_event *ev, enum field f)
{
    switch (f) {
    case F_HASHES: return rd_hashes(d, ev);
    case F_PARENT: return rd_parent(d, ev);
    case F_TOKENS: return rd_tokens(d, ev);
    case F_BLOCK_SIZE: return rd_uint32(d, &ev->block_size, "block_size");
    case F_LORA_ID: return rd_opt_int(d, &ev->has_lora_id, &ev->lora_id, "lora_id");
    case F_MEDIUM: return rd_opt_str(d, &ev->medium, "medium");
    case F_OTHER: return mp_skip(&d->c);
    }
    return mp_skip(&d->c);
}

static bool tag_type(const struct mpv *tag, enum kvev_type *t)
{
    if (str_is(tag, "BlockStored"))
        *t = KVEV_BLOCK_STORED;
    else if (str_is(tag, "BlockRemoved"))
        *t = KVEV_BLOCK_REMOVED;
    else if (str_is(tag, "AllBlocksCleared"))
        *t = KVEV_ALL_BLOCKS_CLEARED;
    else
        return false;
    return true;
}

/* Field order of the array_like form, after the tag. */
static const enum field stored_fields[] = {F_HASHES, F_PARENT, F_TOKENS, F_BLOCK_SIZE,
                                           F_LORA_ID, F_MEDIUM};
static const enum field removed_fields[] = {F_HASHES, F_MEDIUM};

/* Returns 1 when the event was decoded into *ev, 0 when it was skipped (unknown tag),
 * negative on a malformed payload. */
static int rd_event(struct dec *d, struct kvev_event *ev)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    memset(ev, 0, sizeof *ev);
    if (v.kind == MP_ARRAY) {
        if (v.u < 1)
            return fail(&d->c, "event: empty array, no tag");
        struct mpv tag;
        if (mp_next(&d->c, &tag))
            return -EINVAL;
        if (tag.kind != MP_STR)
            return fail(&d->c, "event: tag must be a string, got %s", kind_name(tag.kind));
        if (!tag_type(&tag, &ev->type)) {
            for (uint64_t i = 1; i < v.u; i++)
                if (mp_skip(&d->c))
                    return -EINVAL;
            return 0;
        }
        const enum field *fields = NULL;
        size_t nf = 0, required = 0;
        if (ev->type == KVEV_BLOCK_STORED) {
            fields = stored_fields;
            nf = sizeof stored_fields / sizeof *stored_fields;
            required = 4; /* through block_size; older vLLM stops at lora_id */
        } else if (ev->type == KVEV_BLOCK_REMOVED) {
            fields = removed_fields;
            nf = sizeof removed_fields / sizeof *removed_fields;
            required = 1;
        }
        if (v.u - 1 < required)
            return fail(&d->c, "%s: %llu fields, expected at least %zu", kvev_type_name(ev->type),
                        (unsigned long long)(v.u - 1), required);
        for (uint64_t i = 1; i < v.u; i++) {
            enum field f = i - 1 < nf ? fields[i - 1] : F_OTHER;
            if (rd_field(d, ev, f))
                return -EINVAL;
        }
        return 1;
    }
    if (v.kind == MP_MAP) {
        /* msgspec without array_like: the tag sits under "type", anywhere in the map. */
        bool tagged = false, known = false, seen_hashes = false;
        const uint8_t *start = d->c.p;
        for (uint64_t i = 0; i < v.u && !tagged; i++) {
            struct mpv k;
            if (mp_next(&d->c, &k))
                return -EINVAL;
            if (str_is(&k, "type")) {
                struct mpv tag;
                if (mp_next(&d->c, &tag))
                    return -EINVAL;
                if (tag.kind != MP_STR)
                    return fail(&d->c, "event: type must be a string");
                tagged = true;
                known = tag_type(&tag, &ev->type);
            } else if (mp_skip(&d->c)) {
                return -EINVAL;
            }
        }
        if (!tagged)
            return fail(&d->c, "event: map without a \"type\" tag");
        d->c.p = start; /* second pass: the fields */
        for (uint64_t i = 0; i < v.u; i++) {
            struct mpv k;
            if (mp_next(&d->c, &k))
                return -EINVAL;
            enum field f = known && k.kind == MP_STR && !str_is(&k, "type") ? field_by_name(&k)
                                                                            : F_OTHER;
            if (ev->type == KVEV_BLOCK_REMOVED && f != F_HASHES && f != F_MEDIUM)
                f = F_OTHER;
            if (ev->type == KVEV_ALL_BLOCKS_CLEARED)
                f = F_OTHER;
            if (f == F_HASHES)
                seen_hashes = true;
            if (rd_field(d, ev, f))
                return -EINVAL;
        }
        if (!known)
            return 0;
        if (ev->type != KVEV_ALL_BLOCKS_CLEARED && !seen_hashes)
            return fail(&d->c, "%s: missing block_hashes", kvev_type_name(ev->type));
        return 1;
    }
    return fail(&d->c, "event: expected an array or a map, got %s", kind_name(v.kind));
}

static int rd_events(struct dec *d, struct kvev_batch *out)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind != MP_ARRAY)
        return fail(&d->c, "events: expected an array, got %s", kind_name(v.kind));
    out->events = arena_alloc(d->a, (v.u ? v.u : 1) * sizeof *out->events);
    for (uint64_t i = 0; i < v.u; i++) {
        int r = rd_event(d, &out->events[out->n_events]);
        if (r < 0)
            return r;
        if (r)
            out->n_events++;
        else
            out->n_unknown++;
    }
    return 0;
}

static int rd_ts(struct dec *d, struct kvev_batch *out)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind == MP_FLOAT)
        out->ts = v.f;
    else if (v.kind == MP_UINT)
        out->ts = (double)v.u;
    else if (v.kind == MP_INT)
        out->ts = (double)v.i;
    else
        return fail(&d->c, "ts: expected a number, got %s", kind_name(v.kind));
    return 0;
}

static int rd_batch(struct dec *d, struct kvev_batch *out)
{
    struct mpv v;
    if (mp_next(&d->c, &v))
        return -EINVAL;
    if (v.kind == MP_ARRAY) {
        if (v.u < 2)
            return fail(&d->c, "batch: %llu fields, expected at least 2 (ts, events)",
                        (unsigned long long)v.u);
        if (rd_ts(d, out) || rd_events(d, out))
            return -EINVAL;
        if (v.u > 2 && rd_opt_int(d, &out->has_dp_rank, &out->dp_rank, "data_parallel_rank"))
            return -EINVAL;
        for (uint64_t i = 3; i < v.u; i++)
            if (mp_skip(&d->c))
                return -EINVAL;
        return 0;
    }
    if (v.kind == MP_MAP) {
        bool ts = false, events = false;
        for (uint64_t i = 0; i < v.u; i++) {
            struct mpv k;
            if (mp_next(&d->c, &k))
                return -EINVAL;
            int r;
            if (str_is(&k, "ts") && !ts) {
                ts = true;
                r = rd_ts(d, out);
            } else if (str_is(&k, "events") && !events) {
                events = true;
                r = rd_events(d, out);
            } else if (str_is(&k, "data_parallel_rank")) {
                r = rd_opt_int(d, &out->has_dp_rank, &out->dp_rank, "data_parallel_rank");
            } else {
                r = mp_skip(&d->c);
            }
            if (r)
                return -EINVAL;
        }
        if (!ts || !events)
            return fail(&d->c, "batch: missing \"%s\"", ts ? "events" : "ts");
        return 0;
    }
    return fail(&d->c, "batch: expected an array or a map, got %s", kind_name(v.kind));
}

int kvev_decode(const uint8_t *p, size_t n, struct kvev_batch *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    struct arena *a = xmalloc(sizeof *a);
    arena_init(a, n < 2048 ? 4096 : 2 * n + 1024);
    struct dec d = {.c = {.p = p, .end = p + n, .err = err, .errlen = errlen}, .a = a};
    int r = rd_batch(&d, out);
    if (!r && left(&d.c))
        r = fail(&d.c, "%zu trailing bytes after the batch", left(&d.c));
    if (r) {
        arena_free(a);
        free(a);
        memset(out, 0, sizeof *out);
        return -EINVAL;
    }
    out->mem = a;
    return 0;
}

void kvev_batch_free(struct kvev_batch *b)
{
    if (b->mem) {
        arena_free(b->mem);
        free(b->mem);
    }
    memset(b, 0, sizeof *b);
}

/* ---- encoding ------------------------------------------------------------------------ */

static int buf_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void kvev_encode(const struct kvev_batch *b, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    msgpack_pack_array(&pk, b->has_dp_rank ? 3 : 2);
    msgpack_pack_double(&pk, b->ts);
    msgpack_pack_array(&pk, b->n_events);
    for (size_t i = 0; i < b->n_events; i++) {
        const struct kvev_event *ev = &b->events[i];
        switch (ev->type) {
        case KVEV_BLOCK_STORED:
            msgpack_pack_array(&pk, 7);
            pack_cstr(&pk, "BlockStored");
            msgpack_pack_array(&pk, ev->n_hashes);
            for (uint32_t k = 0; k < ev->n_hashes; k++)
                msgpack_pack_uint64(&pk, ev->hashes[k]);
            if (ev->has_parent)
                msgpack_pack_uint64(&pk, ev->parent);
            else
                msgpack_pack_nil(&pk);
            msgpack_pack_array(&pk, ev->n_tokens);
            for (uint32_t k = 0; k < ev->n_tokens; k++)
                msgpack_pack_uint32(&pk, ev->token_ids[k]);
            msgpack_pack_uint32(&pk, ev->block_size);
            if (ev->has_lora_id)
                msgpack_pack_int64(&pk, ev->lora_id);
            else
                msgpack_pack_nil(&pk);
            if (ev->medium)
                pack_cstr(&pk, ev->medium);
            else
                msgpack_pack_nil(&pk);
            break;
        case KVEV_BLOCK_REMOVED:
            msgpack_pack_array(&pk, 3);
            pack_cstr(&pk, "BlockRemoved");
            msgpack_pack_array(&pk, ev->n_hashes);
            for (uint32_t k = 0; k < ev->n_hashes; k++)
                msgpack_pack_uint64(&pk, ev->hashes[k]);
            if (ev->medium)
                pack_cstr(&pk, ev->medium);
            else
                msgpack_pack_nil(&pk);
            break;
        case KVEV_ALL_BLOCKS_CLEARED:
            msgpack_pack_array(&pk, 1);
            pack_cstr(&pk, "AllBlocksCleared");
            break;
        }
    }
    if (b->has_dp_rank)
        msgpack_pack_int64(&pk, b->dp_rank);
}

bool kvev_parse_seq(const uint8_t *p, size_t n, uint64_t *seq)
{
    if (n != KVEV_SEQ_BYTES)
        return false;
    *seq = be(p, KVEV_SEQ_BYTES);
    return true;
}

void kvev_put_seq(uint64_t seq, uint8_t out[KVEV_SEQ_BYTES])
{
    for (int i = KVEV_SEQ_BYTES - 1; i >= 0; i--) {
        out[i] = (uint8_t)seq;
        seq >>= 8;
    }
}

const char *kvev_type_name(enum kvev_type t)
{
    switch (t) {
    case KVEV_BLOCK_STORED: return "BlockStored";
    case KVEV_BLOCK_REMOVED: return "BlockRemoved";
    case KVEV_ALL_BLOCKS_CLEARED: return "AllBlocksCleared";
    }
    return "?";
}
