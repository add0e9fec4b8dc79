/* base64 through libcrypto (no hand-rolled tables). Decoding first normalises the input
 * (URL-safe alphabet, whitespace, missing padding) into a scratch buffer, since
 * EVP_DecodeBlock wants the standard alphabet in whole 4-character groups; the padding
 * it decodes as zero bytes is trimmed. */
#include "base/b64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/alloc.h"

size_t b64_encode(const void *in, size_t n, char *out, size_t cap)
{
    size_t need = 4 * ((n + 2) / 3) + 1;
    if (cap == 0)
        return 0;
    if (cap < need || n > (size_t)1 << 30) {
        out[0] = '\0';
        return 0;
    }
    int w = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
    return w < 0 ? 0 : (size_t)w;
}

size_t b64_decode(const char *in, size_t len, char *out, size_t cap)
{
    if (len > (size_t)1 << 30)
        return (size_t)-1;
    char *clean = xmalloc(len + 4);
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=')
            break;
        clean[m++] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    if (m % 4 == 1) { /* no valid base64 ends with a lone character */
        free(clean);
        return (size_t)-1;
    }
    size_t pad = (4 - m % 4) % 4;
    for (size_t i = 0; i < pad; i++)
        clean[m++] = '=';
    size_t dec = m / 4 * 3;
    unsigned char *tmp = xmalloc(dec + 1);
    int r = m ? EVP_DecodeBlock(tmp, (const unsigned char *)clean, (int)m) : 0;
    free(clean);
    if (r < 0 || (size_t)r < pad || (size_t)r - pad + 1 > cap) {
        free(tmp);
        return (size_t)-1;
    }
    size_t n = (size_t)r - pad;
    memcpy(out, tmp, n);
    out[n] = '\0';
    free(tmp);
    return n;
}
