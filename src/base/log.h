/* Logging with levels. One line per event on stderr:
 *   2026-11-22T10:00:00.123Z INFO  sim: message
 * or, with log_set_json(true), one JSON object per line ({"ts","level","component","msg"}).
 * Thread-safe (one write(2) per line). */
#ifndef TANDEM_BASE_LOG_H
#define TANDEM_BASE_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3, LOG_TRACE = 4 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error|warn|info|debug|trace" or a number 0-4 (llm-d's --v style: higher is
 * more verbose). Returns false on an unknown name. */
bool log_parse_level(const char *s, enum log_level *out);
void log_set_json(bool json);
/* Redirect output to an fd (default 2). */
void log_set_fd(int fd);

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *component, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_enabled(lvl) ((lvl) <= log_get_level())
#define LOG_E(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)
#define LOG_W(comp, ...) log_msg(LOG_WARN, comp, __VA_ARGS__)
#define LOG_I(comp, ...)                                                                   \
    do {                                                                                   \
        if (log_enabled(LOG_INFO))                                                         \
            log_msg(LOG_INFO, comp, __VA_ARGS__);                                          \
    } while (0)
#define LOG_D(comp, ...)                                                                   \
    do {                                                                                   \
        if (log_enabled(LOG_DEBUG))                                                        \
            log_msg(LOG_DEBUG, comp, __VA_ARGS__);                                         \
    } while (0)

#endif
