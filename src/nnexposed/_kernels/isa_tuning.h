/* What the instruction set a build targets means for the kernels' shapes and choices. */
#ifndef NNX_ISA_TUNING_H
#define NNX_ISA_TUNING_H

/* The batched kernel's block of neurons x samples per ISA: microkernel.h. */

/* Layers of at least this many weights go to SciPy's BLAS by default (allow_blas(None));
   0: never. Where a layer's weights fit in cache the micro-kernel beats OpenBLAS's kernels of
   the same class of CPU (784x256 at batch 64, one thread: 1.2x Nehalem's with the x86-64-v2
   build, 1.15x Haswell's with AVX2); a layer of 4096x4096 streams its weights from memory
   once per tile of 32 samples, and there BLAS's blocking was 1.15-1.25x faster. The AVX-512
   build beat BLAS at every size measured. */
#if defined(__AVX512F__)
#define NNX_BLAS_AUTO_MIN_WEIGHTS 0
#else
#define NNX_BLAS_AUTO_MIN_WEIGHTS (1 << 22)
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
