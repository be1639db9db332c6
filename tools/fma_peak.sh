#!/usr/bin/env bash
# The machine's float32 FMA peak, the ceiling for every batched case of bench/: multiply-adds
# per second of 12 independent chains of vector FMAs, on 1 thread and on all cores (OpenMP).
# Compiled for this CPU (-march=native), so it uses the widest vectors the kernels can, or with
# the flags of a narrower build and its vector width (the AVX2 build's peak:
# FMA_PEAK_FLAGS="-mavx2 -mfma -DLANES=8").
#
# Usage: tools/fma_peak.sh            (needs gcc with OpenMP)
set -euo pipefail

WORK=$(mktemp -d /tmp/nnexposed-peak.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/peak.c" <<'EOF'
#include <omp.h>
#include <stdio.h>

#define CHAINS 12
#ifndef LANES
#define LANES 16            /* a 64-byte vector of float32 */
#endif
#define STEPS 50000000L
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

static double chains(void) {
    vec scale, shift, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
    for (int i = 0; i < LANES; i++) {
        scale[i] = 0.999f; shift[i] = 0.001f;
        /* different starting values, or the compiler merges identical chains */
        a0[i] = i; a1[i] = i + 1; a2[i] = i + 2; a3[i] = i + 3; a4[i] = i + 4; a5[i] = i + 5;
        a6[i] = i + 6; a7[i] = i + 7; a8[i] = i + 8; a9[i] = i + 9; a10[i] = i + 10;
        a11[i] = i + 11;
    }
    for (long s = 0; s < STEPS; s++) {     /* CHAINS independent accumulators, in registers */
        a0 = a0 * scale + shift; a1 = a1 * scale + shift; a2 = a2 * scale + shift;
        a3 = a3 * scale + shift; a4 = a4 * scale + shift; a5 = a5 * scale + shift;
        a6 = a6 * scale + shift; a7 = a7 * scale + shift; a8 = a8 * scale + shift;
        a9 = a9 * scale + shift; a10 = a10 * scale + shift; a11 = a11 * scale + shift;
    }
    vec sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    double total = 0;   /* keeps the loop from being optimised away */
    for (int i = 0; i < LANES; i++) total += sum[i];
    return total;
}

int main(void) {
    for (int threads = 1; threads <= omp_get_num_procs(); threads = omp_get_num_procs()) {
        double sink = 0, start = omp_get_wtime();
        #pragma omp parallel num_threads(threads) reduction(+:sink)
        sink += chains();
        double seconds = omp_get_wtime() - start;
        double macs = (double)threads * STEPS * CHAINS * LANES;
        printf("%d thread%s: %.1f GMAC/s (float32 multiply-adds)%s\n", threads,
               threads == 1 ? " " : "s", macs / seconds / 1e9, sink == 0.5 ? " " : "");
        if (threads == omp_get_num_procs()) break;
    }
    return 0;
}
EOF
gcc -O3 ${FMA_PEAK_FLAGS:--march=native} -ffp-contract=fast -fopenmp "$WORK/peak.c" -o "$WORK/peak"
"$WORK/peak"
