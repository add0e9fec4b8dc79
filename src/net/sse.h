/* Server-sent events framing (text/event-stream), as OpenAI-compatible servers use it:
 * each event is "data: <payload>\n\n"; the stream ends with "data: [DONE]\n\n". */
#ifndef TANDEM_NET_SSE_H
#define TANDEM_NET_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

/* Appends "data: " payload "\n\n". payload must not contain a newline pair. */
void sse_append_data(struct buf *out, const char *payload, size_t len);

/* Incremental parser for clients (router, bench, tests): feed bytes in any split,
 * receive each event's data (multiple data lines joined by "\n"). Comment lines
 * (starting with ':') and other fields are ignored. \r\n and \n line ends accepted. */
struct sse_parser {
    struct buf line;
    struct buf data;
    bool have_data;
};
typedef void (*sse_event_fn)(const char *data, size_t len, void *ctx);
void sse_parser_init(struct sse_parser *p);
/* Returns the number of events delivered. */
size_t sse_parser_feed(struct sse_parser *p, const char *bytes, size_t len, sse_event_fn fn,
                       void *ctx);
void sse_parser_free(struct sse_parser *p);

#endif
