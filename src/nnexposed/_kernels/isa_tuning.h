/* What the instruction set a build targets means for the kernels' shapes and choices. */
#ifndef NNX_ISA_TUNING_H
#define NNX_ISA_TUNING_H

/* The batched kernel's block of neurons x samples per ISA: microkernel.h. */

/* With 256- or 512-bit FMA the tiled kernel outruns SciPy's BLAS on this project's
   layer sizes (bench/); with 128-bit vectors BLAS is faster for wide layers. */
#if defined(__AVX2__) || defined(__AVX512F__)
#define NNX_OWN_KERNELS_BEAT_BLAS 1
#else
#define NNX_OWN_KERNELS_BEAT_BLAS 0
#endif

/* Ask for a cache line ahead of its use (into L2); a no-op where the compiler has no
   such hint. */
#if defined(__GNUC__) || defined(__clang__)
#define nnx_prefetch(p) __builtin_prefetch((p), 0, 2)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define nnx_prefetch(p) _mm_prefetch((const char*)(p), _MM_HINT_T1)
#else
#define nnx_prefetch(p) ((void)(p))
#endif

#endif
