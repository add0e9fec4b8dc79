/* Leveled logging. Each line is formatted into a stack buffer and written with one
 * write(2), so lines from several threads never interleave. */
#include "base/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"

static _Atomic int g_level = LOG_INFO;
static _Atomic bool g_json = false;
static _Atomic int g_fd = 2;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

void log_set_level(enum log_level level)
{
    atomic_store(&g_level, (int)level);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

bool log_parse_level(const char *s, enum log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return true;
    }
    if (s[0] >= '0' && s[0] <= '9' && s[1] == '\0') {
        int v = s[0] - '0';
        *out = (enum log_level)(v > 4 ? 4 : v);
        return true;
    }
    return false;
}

void log_set_json(bool json)
{
    atomic_store(&g_json, json);
}

void log_set_fd(int fd)
{
    atomic_store(&g_fd, fd);
}

void log_vmsg(enum log_level level, const char *component, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    char msg[2048];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        return;
    size_t mlen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;

    struct buf line = BUF_INIT;
    if (atomic_load(&g_json)) {
        buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", when,
                   level_names[level]);
        json_quote(&line, component, strlen(component));
        buf_append_str(&line, ",\"msg\":");
        json_quote(&line, msg, mlen);
        buf_append_str(&line, "}\n");
    } else {
        buf_printf(&line, "%s %-5s %s: ", when, level_names[level], component);
        buf_append(&line, msg, mlen);
        buf_append_char(&line, '\n');
    }
    (void)!write(atomic_load(&g_fd), line.data, line.len);
    buf_free(&line);
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, component, fmt, ap);
    va_end(ap);
}
