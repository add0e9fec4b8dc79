/* Allocation that never returns NULL: on out-of-memory it logs and aborts, so callers
 * never check. Every heap allocation in tandem goes through these. */
#ifndef TANDEM_BASE_ALLOC_H
#define TANDEM_BASE_ALLOC_H

#include <stddef.h>

/* All return memory owned by the caller (free with free()). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
