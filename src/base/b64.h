/* base64 on libcrypto's EVP_EncodeBlock / EVP_DecodeBlock: the one base64 of the code
 * base (session tokens, kubeconfig -data fields). */
#ifndef TANDEM_BASE_B64_H
#define TANDEM_BASE_B64_H

#include <stddef.h>

/* Standard alphabet with padding, NUL-terminated. Returns the length, or 0 (out = "")
 * when cap is too small (4 * ceil(n / 3) + 1 bytes are needed). */
size_t b64_encode(const void *in, size_t n, char *out, size_t cap);
/* Decodes standard or URL-safe base64, padding optional, whitespace ignored, into out
 * (NUL-terminated). Returns the decoded length; (size_t)-1 on bad input or when cap is
 * too small. */
size_t b64_decode(const char *in, size_t len, char *out, size_t cap);

#endif
