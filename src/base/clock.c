/* Clock sources: the real monotonic clock and a virtual one for tests and planning. */
#include "base/clock.h"

#include <time.h>

uint64_t clock_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t clock_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_now(void *ctx)
{
    (void)ctx;
    return clock_monotonic_ns();
}

const struct clock clock_real = {real_now, NULL};
