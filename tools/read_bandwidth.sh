#!/usr/bin/env bash
# The machine's read bandwidth, the ceiling of a one-sample forward of a layer too big for the
# caches: the best of 20 sums of a 64 MiB float32 array (a 4096 x 4096 layer's weights), on
# 1 thread and on all cores (OpenMP).
#
# Usage: tools/read_bandwidth.sh [MiB]     (needs gcc with OpenMP)
set -euo pipefail

MEBIBYTES=${1:-64}
WORK=$(mktemp -d /tmp/nnexposed-bandwidth.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/read.c" <<'EOF'
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define LANES 16
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

int main(int argc, char** argv) {
    size_t n = (size_t)atol(argv[1]) * 1048576 / sizeof(vec);
    vec* data = aligned_alloc(64, n * sizeof(vec));
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < LANES; j++) data[i][j] = (float)(j & 3);
    for (int threads = 1; threads <= omp_get_num_procs(); threads = omp_get_num_procs()) {
        double best = 1e30, sink = 0;
        for (int round = 0; round < 20; round++) {
            double start = omp_get_wtime();
            #pragma omp parallel num_threads(threads) reduction(+:sink)
            {
                vec s0 = {0}, s1 = {0};    /* two chains: the adds never limit the reads */
                #pragma omp for schedule(static)
                for (size_t i = 0; i < n - n % 2; i += 2) { s0 += data[i]; s1 += data[i + 1]; }
                for (int j = 0; j < LANES; j++) sink += s0[j] + s1[j];
            }
            double seconds = omp_get_wtime() - start;
            if (seconds < best) best = seconds;
        }
        printf("%d thread%s: %.3f ms for %s MiB, %.1f GB/s%s\n", threads, threads == 1 ? " " : "s",
               best * 1e3, argv[1], n * sizeof(vec) / best / 1e9, sink == 0.5 ? " " : "");
        if (threads == omp_get_num_procs()) break;
    }
    free(data);
    return 0;
}
EOF
gcc -O3 -march=native -fopenmp "$WORK/read.c" -o "$WORK/read"
"$WORK/read" "$MEBIBYTES"
