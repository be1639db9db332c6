/* A monotonic clock in nanoseconds, and the calling thread's CPU time (the same clock where
   the system has none per thread), callable without the GIL. */
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
/* GetThreadTimes advances by scheduler ticks (about 15 ms): no use for microseconds. */
static long long nnx_thread_cpu_ns(void) { return nnx_now_ns(); }
#else
#include <time.h>
static long long nnx_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}
static long long nnx_thread_cpu_ns(void) {
#if defined(CLOCK_THREAD_CPUTIME_ID)
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
#else
    return nnx_now_ns();
#endif
}
#endif

#endif
