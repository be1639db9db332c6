/* OpenMP as the kernels use it, and its stand-ins for a build without OpenMP. */
#ifndef NNX_OPENMP_H
#define NNX_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
static int nnx_openmp_enabled(void) { return 1; }
static int nnx_max_threads(void) { return omp_get_max_threads(); }
/* Inside a parallel region: its number of threads, and a barrier for all of them. */
static int nnx_team_size(void) { return omp_get_num_threads(); }
static void nnx_barrier(void) {
    #pragma omp barrier
}
#else
static int nnx_openmp_enabled(void) { return 0; }
static int nnx_max_threads(void) { return 1; }
static int nnx_team_size(void) { return 1; }
static void nnx_barrier(void) { }
#endif

#endif
