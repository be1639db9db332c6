#!/usr/bin/env bash
# The machine's peak for the reduced-precision kernels: instructions per second of 16
# independent AVX-512 vpdpbusd (int8: 64 u8 x s8 multiply-adds each) or vdpbf16ps (bfloat16:
# 32) accumulators, on 1 thread and on 2. The instructions are written in assembly so that the
# accumulators stay in registers whatever the compiler (GCC 12 moves an intrinsic's through
# others). Needs gcc and a CPU with AVX-512 VNNI and BF16.
#
# Usage: tools/dot_peak.sh
set -euo pipefail

WORK=$(mktemp -d /tmp/nnexposed-dot-peak.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/peak.c" <<'EOC'
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#define STEPS 20000000L
#define DOT(OP, K) OP " %%zmm16, %%zmm17, %%zmm" #K "\n\t"
#define STEP(OP) DOT(OP, 0) DOT(OP, 1) DOT(OP, 2) DOT(OP, 3) DOT(OP, 4) DOT(OP, 5) \
    DOT(OP, 6) DOT(OP, 7) DOT(OP, 8) DOT(OP, 9) DOT(OP, 10) DOT(OP, 11) DOT(OP, 12) \
    DOT(OP, 13) DOT(OP, 14) DOT(OP, 15)
#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
    "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
static int bf16;
static void* run(void* unused) {
    (void)unused;
    __asm__ volatile("vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
                     "vpternlogd $0xff, %%zmm17, %%zmm17, %%zmm17" ::: "xmm16", "xmm17");
    for (long s = 0; s < STEPS; s++) {
        if (bf16) __asm__ volatile(STEP("vdpbf16ps") ::: CLOBBERS);
        else __asm__ volatile(STEP("vpdpbusd") ::: CLOBBERS);
    }
    return NULL;
}
int main(void) {
    for (bf16 = 0; bf16 < 2; bf16++)
        for (int threads = 1; threads <= 2; threads++) {
            pthread_t ids[2];
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, run, NULL);
            for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
            clock_gettime(CLOCK_MONOTONIC, &b);
            double seconds = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
            double per_ns = STEPS * 16.0 * threads / seconds * 1e-9;
            printf("%-9s %d thread%s: %.2f instructions/ns, %.0f G multiply-adds/s\n",
                   bf16 ? "vdpbf16ps" : "vpdpbusd", threads, threads > 1 ? "s" : "", per_ns,
                   per_ns * (bf16 ? 32 : 64));
        }
    return 0;
}
EOC
gcc -O2 -mavx512f -pthread "$WORK/peak.c" -o "$WORK/peak"
"$WORK/peak"
