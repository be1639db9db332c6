/* A monotonic clock in nanoseconds, callable without the GIL. */
#ifndef NNX_CLOCK_H
#define NNX_CLOCK_H

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
static long long nnx_now_ns(void) {
    LARGE_INTEGER frequency, count;
    QueryPerformanceFrequency(&frequency);
    QueryPerformanceCounter(&count);
    return (long long)((double)count.QuadPart * 1e9 / (double)frequency.QuadPart);
}
#else
#include <time.h>
static long long nnx_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}
#endif

#endif
