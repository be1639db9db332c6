/* Work that threads claim as they come free: counters of claimed and of finished pieces.

   A piece is claimed by incrementing its counter (whoever gets index i computes piece i), so
   no thread waits for a piece another thread has not started: a thread the OS has taken off
   its core delays a forward pass by at most the piece it holds. A thread that finishes a
   piece adds it to a "done" counter with release order, and a thread that needs all pieces
   (the next layer reads them) waits for that counter with acquire order. */
#ifndef NNX_CLAIMS_H
#define NNX_CLAIMS_H

/* One counter per cache line: threads claiming from different counters do not slow each
   other down by sharing a line. */
typedef struct {
    long long value;
    char padding[64 - sizeof(long long)];
} nnx_counter;

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static long long nnx_claim(nnx_counter* c) {
    return _InterlockedExchangeAdd64(&c->value, 1);
}
static void nnx_add_done(nnx_counter* c, long long n) {   /* a full barrier */
    _InterlockedExchangeAdd64(&c->value, n);
}
static long long nnx_done(nnx_counter* c) {
    long long value = *(volatile long long*)&c->value;
#if defined(_M_ARM64)
    __dmb(_ARM64_BARRIER_ISH);
#else
    _ReadWriteBarrier();
#endif
    return value;
}
static void nnx_pause(void) {
#if defined(_M_ARM64)
    __yield();
#else
    _mm_pause();
#endif
}
#else
static long long nnx_claim(nnx_counter* c) {
    return __atomic_fetch_add(&c->value, 1, __ATOMIC_RELAXED);
}
static void nnx_add_done(nnx_counter* c, long long n) {
    __atomic_fetch_add(&c->value, n, __ATOMIC_RELEASE);
}
static long long nnx_done(nnx_counter* c) {
    return __atomic_load_n(&c->value, __ATOMIC_ACQUIRE);
}
static void nnx_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}
#endif

/* Wait until the counter reaches ``target`` (the pieces it counts are all finished). */
static void nnx_wait_done(nnx_counter* c, long long target) {
    while (nnx_done(c) < target)
        nnx_pause();
}

#endif
