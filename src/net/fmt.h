/* Internal to src/net: small appenders for hand-built HTTP heads on hot paths, where
 * printf's format parsing would dominate the cost of a short response head. */
#ifndef TANDEM_NET_FMT_H
#define TANDEM_NET_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"

static inline void fmt_lit(struct buf *b, const char *s, size_t n)
{
    buf_append(b, s, n);
}
#define FMT_LIT(b, s) fmt_lit((b), (s), sizeof(s) - 1)

static inline void fmt_uint(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_append(b, tmp + i, sizeof tmp - i);
}

/* Lower-case hex without leading zeros, written at p; returns the digit count. */
static inline size_t fmt_hex_to(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = digits[v & 15];
        v >>= 4;
    } while (v);
    memcpy(p, tmp + i, sizeof tmp - i);
    return sizeof tmp - i;
}

#endif
