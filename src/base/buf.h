/* Growable byte buffer. Owns its storage; data is always NUL-terminated (the NUL is
 * not counted in len) so text can be passed to C string functions. */
#ifndef TANDEM_BASE_BUF_H
#define TANDEM_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* NULL until first append; owned */
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_reserve(struct buf *b, size_t extra); /* ensure cap >= len + extra + 1 */
void buf_append(struct buf *b, const void *data, size_t n);
void buf_append_str(struct buf *b, const char *s);
void buf_append_char(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b); /* len = 0, keeps storage */
void buf_free(struct buf *b);  /* frees storage; b is empty and reusable */
/* Hands the storage to the caller (free with free()); b becomes empty. Never NULL. */
char *buf_steal(struct buf *b, size_t *len_out);
/* Appends the whole file at path. Returns 0, or an errno value (ENOENT, EACCES, EIO...)
 * with whatever was read left in b. */
int buf_read_file(struct buf *b, const char *path);

#endif
