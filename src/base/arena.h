/* Per-request arena: bump allocation from chunks, freed all at once. Request-scoped
 * memory (parsed headers, JSON scratch, response strings) comes from here. */
#ifndef TANDEM_BASE_ARENA_H
#define TANDEM_BASE_ARENA_H

#include <stdarg.h>
#include <stddef.h>

struct arena_chunk;

struct arena {
    struct arena_chunk *head; /* current chunk; older chunks chained behind it */
    size_t chunk_size;        /* default size of new chunks */
};

/* chunk_size 0 picks 4 KiB. No allocation happens until the first arena_alloc. */
void arena_init(struct arena *a, size_t chunk_size);
/* Returns 16-byte aligned memory valid until arena_reset/arena_free. Never NULL.
 * Requests larger than the chunk size get their own chunk. */
void *arena_alloc(struct arena *a, size_t n);
void *arena_calloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_sprintf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vsprintf(struct arena *a, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Frees all chunks but the first, which is kept for reuse. */
void arena_reset(struct arena *a);
/* Frees everything; the arena may be re-initialised. */
void arena_free(struct arena *a);

#endif
