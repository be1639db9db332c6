/* Atomic loads, stores, increments, exchanges and compare-exchanges of aligned ints and long
   longs: relaxed ones for values read and written from any thread (settings, counters, a
   clock reading, the back-off's balance), acquire/release ones to publish data written
   before a flag. */
#ifndef NNX_ATOMICS_H
#define NNX_ATOMICS_H

#if defined(_MSC_VER) && !defined(__clang__)
/* x64 and ARM64 Windows: aligned volatile accesses are atomic (and acquire/release with
   MSVC's default /volatile:ms on x64). */
#include <intrin.h>
#define nnx_load_ll(p) (*(volatile const long long*)(p))
#define nnx_store_ll(p, v) (*(volatile long long*)(p) = (v))
#define nnx_load_int(p) (*(volatile const int*)(p))
#define nnx_store_int(p, v) (*(volatile int*)(p) = (v))
#define nnx_add_ll(p, v) _InterlockedExchangeAdd64((volatile long long*)(p), (v))
#define nnx_add_int(p, v) _InterlockedExchangeAdd((volatile long*)(p), (v))
#define nnx_exchange_ll(p, v) _InterlockedExchange64((volatile long long*)(p), (v))
#define nnx_exchange_int(p, v) _InterlockedExchange((volatile long*)(p), (v))
#define nnx_load_acquire_int(p) (*(volatile const int*)(p))
#define nnx_store_release_int(p, v) (*(volatile int*)(p) = (v))
/* *p = desired if *p == *expected (returns 1); else *expected = *p (returns 0). */
static int nnx_cas_int(int* p, int* expected, int desired) {
    long seen = _InterlockedCompareExchange((volatile long*)p, desired, *expected);
    if (seen == *expected) return 1;
    *expected = (int)seen;
    return 0;
}
static int nnx_cas_ll(long long* p, long long* expected, long long desired) {
    long long seen = _InterlockedCompareExchange64((volatile long long*)p, desired, *expected);
    if (seen == *expected) return 1;
    *expected = seen;
    return 0;
}
#else
#define nnx_load_ll(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define nnx_store_ll(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define nnx_load_int(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define nnx_store_int(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define nnx_add_ll(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define nnx_add_int(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define nnx_exchange_ll(p, v) __atomic_exchange_n((p), (v), __ATOMIC_RELAXED)
#define nnx_exchange_int(p, v) __atomic_exchange_n((p), (v), __ATOMIC_RELAXED)
#define nnx_load_acquire_int(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define nnx_store_release_int(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* *p = desired if *p == *expected (returns 1); else *expected = *p (returns 0). */
#define nnx_cas_int(p, expected, desired) \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)
#define nnx_cas_ll(p, expected, desired) \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)
#endif

#endif
