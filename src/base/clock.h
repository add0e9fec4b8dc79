/* Time sources. Code that models time (the sim's engine) never reads the wall clock:
 * it is handed a struct clock, so a driver can substitute virtual time. */
#ifndef TANDEM_BASE_CLOCK_H
#define TANDEM_BASE_CLOCK_H

#include <stdint.h>

struct clock {
    uint64_t (*now_ns)(void *ctx); /* monotonic nanoseconds */
    void *ctx;
};

static inline uint64_t clock_now(const struct clock *c)
{
    return c->now_ns(c->ctx);
}

uint64_t clock_monotonic_ns(void); /* CLOCK_MONOTONIC */
uint64_t clock_realtime_ns(void);  /* CLOCK_REALTIME, for timestamps shown to users */
/* The real monotonic clock as a struct clock. */
extern const struct clock clock_real;

#endif
