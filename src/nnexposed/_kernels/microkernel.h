/* Register-blocked tile kernel of nnexposed: y = W @ x + b (ReLU optional) on a tile of
   samples stored feature-major, MR output neurons x NV vectors of samples at a time.

   One source for every ISA: the vector type, its operations and the block shape come from
   the build's target (the ISA macros the compiler defines for each variant of setup.py).
   The shapes follow the register files, as BLIS chooses its micro-kernels: MR * NV
   accumulators + NV input vectors + one broadcast weight must fit in the vector registers
   (16 on x86-64 up to AVX2, 32 with AVX-512 and on AArch64). */
#ifndef NNX_MICROKERNEL_H
#define NNX_MICROKERNEL_H

#include <stddef.h>

#if defined(_MSC_VER) && !defined(__clang__)
#define NNX_INLINE static __forceinline
#else
#define NNX_INLINE static inline __attribute__((always_inline))
#endif

#include "isa_tuning.h"  /* nnx_prefetch */

#if defined(__AVX512F__)
#include <immintrin.h>
#define NNX_TILE_ISA "avx512"
typedef __m512 nnx_vf32;
typedef __m512d nnx_vf64;
#define NNX_F32_LANES 16
#define NNX_F64_LANES 8
#define NNX_F32_MR 8
#define NNX_F32_NV 2
#define NNX_F64_MR 8
#define NNX_F64_NV 2
#define nnx_f32_zero() _mm512_setzero_ps()
#define nnx_f32_load(p) _mm512_loadu_ps(p)
#define nnx_f32_store(p, v) _mm512_storeu_ps((p), (v))
#define nnx_f32_splat(s) _mm512_set1_ps(s)
#define nnx_f32_fma(acc, a, b) _mm512_fmadd_ps((a), (b), (acc))
#define nnx_f32_add(a, b) _mm512_add_ps((a), (b))
#define nnx_f32_max(a, b) _mm512_max_ps((a), (b))
#define nnx_f64_zero() _mm512_setzero_pd()
#define nnx_f64_load(p) _mm512_loadu_pd(p)
#define nnx_f64_store(p, v) _mm512_storeu_pd((p), (v))
#define nnx_f64_splat(s) _mm512_set1_pd(s)
#define nnx_f64_fma(acc, a, b) _mm512_fmadd_pd((a), (b), (acc))
#define nnx_f64_add(a, b) _mm512_add_pd((a), (b))
#define nnx_f64_max(a, b) _mm512_max_pd((a), (b))
#elif defined(__AVX2__) && (defined(__FMA__) || defined(_MSC_VER))
#include <immintrin.h>
#define NNX_TILE_ISA "avx2"
typedef __m256 nnx_vf32;
typedef __m256d nnx_vf64;
#define NNX_F32_LANES 8
#define NNX_F64_LANES 4
#define NNX_F32_MR 6
#define NNX_F32_NV 2
#define NNX_F64_MR 6
#define NNX_F64_NV 2
#define nnx_f32_zero() _mm256_setzero_ps()
#define nnx_f32_load(p) _mm256_loadu_ps(p)
#define nnx_f32_store(p, v) _mm256_storeu_ps((p), (v))
#define nnx_f32_splat(s) _mm256_set1_ps(s)
#define nnx_f32_fma(acc, a, b) _mm256_fmadd_ps((a), (b), (acc))
#define nnx_f32_add(a, b) _mm256_add_ps((a), (b))
#define nnx_f32_max(a, b) _mm256_max_ps((a), (b))
#define nnx_f64_zero() _mm256_setzero_pd()
#define nnx_f64_load(p) _mm256_loadu_pd(p)
#define nnx_f64_store(p, v) _mm256_storeu_pd((p), (v))
#define nnx_f64_splat(s) _mm256_set1_pd(s)
#define nnx_f64_fma(acc, a, b) _mm256_fmadd_pd((a), (b), (acc))
#define nnx_f64_add(a, b) _mm256_add_pd((a), (b))
#define nnx_f64_max(a, b) _mm256_max_pd((a), (b))
#elif defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>
#define NNX_TILE_ISA "neon"
typedef float32x4_t nnx_vf32;
typedef float64x2_t nnx_vf64;
#define NNX_F32_LANES 4
#define NNX_F64_LANES 2
#define NNX_F32_MR 5
#define NNX_F32_NV 4
#define NNX_F64_MR 5
#define NNX_F64_NV 4
#define nnx_f32_zero() vdupq_n_f32(0.0f)
#define nnx_f32_load(p) vld1q_f32(p)
#define nnx_f32_store(p, v) vst1q_f32((p), (v))
#define nnx_f32_splat(s) vdupq_n_f32(s)
#define nnx_f32_fma(acc, a, b) vfmaq_f32((acc), (a), (b))
#define nnx_f32_add(a, b) vaddq_f32((a), (b))
#define nnx_f32_max(a, b) vmaxq_f32((a), (b))
#define nnx_f64_zero() vdupq_n_f64(0.0)
#define nnx_f64_load(p) vld1q_f64(p)
#define nnx_f64_store(p, v) vst1q_f64((p), (v))
#define nnx_f64_splat(s) vdupq_n_f64(s)
#define nnx_f64_fma(acc, a, b) vfmaq_f64((acc), (a), (b))
#define nnx_f64_add(a, b) vaddq_f64((a), (b))
#define nnx_f64_max(a, b) vmaxq_f64((a), (b))
#elif defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define NNX_TILE_ISA "sse2"
typedef __m128 nnx_vf32;
typedef __m128d nnx_vf64;
#define NNX_F32_LANES 4
#define NNX_F64_LANES 2
#define NNX_F32_MR 6
#define NNX_F32_NV 2
#define NNX_F64_MR 6
#define NNX_F64_NV 2
#define nnx_f32_zero() _mm_setzero_ps()
#define nnx_f32_load(p) _mm_loadu_ps(p)
#define nnx_f32_store(p, v) _mm_storeu_ps((p), (v))
#define nnx_f32_splat(s) _mm_set1_ps(s)
#define nnx_f32_fma(acc, a, b) _mm_add_ps((acc), _mm_mul_ps((a), (b)))
#define nnx_f32_add(a, b) _mm_add_ps((a), (b))
#define nnx_f32_max(a, b) _mm_max_ps((a), (b))
#define nnx_f64_zero() _mm_setzero_pd()
#define nnx_f64_load(p) _mm_loadu_pd(p)
#define nnx_f64_store(p, v) _mm_storeu_pd((p), (v))
#define nnx_f64_splat(s) _mm_set1_pd(s)
#define nnx_f64_fma(acc, a, b) _mm_add_pd((acc), _mm_mul_pd((a), (b)))
#define nnx_f64_add(a, b) _mm_add_pd((a), (b))
#define nnx_f64_max(a, b) _mm_max_pd((a), (b))
#else
#define NNX_TILE_ISA "scalar"
typedef float nnx_vf32;
typedef double nnx_vf64;
#define NNX_F32_LANES 1
#define NNX_F64_LANES 1
#define NNX_F32_MR 4
#define NNX_F32_NV 4
#define NNX_F64_MR 4
#define NNX_F64_NV 4
#define nnx_f32_zero() 0.0f
#define nnx_f32_load(p) (*(p))
#define nnx_f32_store(p, v) (*(p) = (v))
#define nnx_f32_splat(s) (s)
#define nnx_f32_fma(acc, a, b) ((acc) + (a) * (b))
#define nnx_f32_add(a, b) ((a) + (b))
#define nnx_f32_max(a, b) ((a) > (b) ? (a) : (b))
#define nnx_f64_zero() 0.0
#define nnx_f64_load(p) (*(p))
#define nnx_f64_store(p, v) (*(p) = (v))
#define nnx_f64_splat(s) (s)
#define nnx_f64_fma(acc, a, b) ((acc) + (a) * (b))
#define nnx_f64_add(a, b) ((a) + (b))
#define nnx_f64_max(a, b) ((a) > (b) ? (a) : (b))
#endif

/* Layers of at least this many weights (1 MB of float32, a core's L2 or more) are read from
   memory rather than cache: see nnx_tile. */
#define NNX_STREAMED_MIN_WEIGHTS ((ptrdiff_t)1 << 18)

#define NNX_T float
#define NNX_V nnx_vf32
#define NNX_LANES NNX_F32_LANES
#define NNX_MR NNX_F32_MR
#define NNX_NV NNX_F32_NV
#ifndef NNX_KC_F32
#define NNX_KC_F32 256
#endif
#define NNX_KC NNX_KC_F32
#define NNX_NAME(name) name##_f32
#define nnx_v_zero nnx_f32_zero
#define nnx_v_load nnx_f32_load
#define nnx_v_store nnx_f32_store
#define nnx_v_splat nnx_f32_splat
#define nnx_v_fma nnx_f32_fma
#define nnx_v_add nnx_f32_add
#define nnx_v_max nnx_f32_max
#include "microkernel_body.h"
#undef NNX_T
#undef NNX_V
#undef NNX_LANES
#undef NNX_MR
#undef NNX_NV
#undef NNX_KC
#undef NNX_NAME
#undef nnx_v_zero
#undef nnx_v_load
#undef nnx_v_store
#undef nnx_v_splat
#undef nnx_v_fma
#undef nnx_v_add
#undef nnx_v_max

#define NNX_T double
#define NNX_V nnx_vf64
#define NNX_LANES NNX_F64_LANES
#define NNX_MR NNX_F64_MR
#define NNX_NV NNX_F64_NV
#ifndef NNX_KC_F64
#define NNX_KC_F64 128
#endif
#define NNX_KC NNX_KC_F64
#define NNX_NAME(name) name##_f64
#define nnx_v_zero nnx_f64_zero
#define nnx_v_load nnx_f64_load
#define nnx_v_store nnx_f64_store
#define nnx_v_splat nnx_f64_splat
#define nnx_v_fma nnx_f64_fma
#define nnx_v_add nnx_f64_add
#define nnx_v_max nnx_f64_max
#include "microkernel_body.h"
#undef NNX_T
#undef NNX_V
#undef NNX_LANES
#undef NNX_MR
#undef NNX_NV
#undef NNX_KC
#undef NNX_NAME
#undef nnx_v_zero
#undef nnx_v_load
#undef nnx_v_store
#undef nnx_v_splat
#undef nnx_v_fma
#undef nnx_v_add
#undef nnx_v_max

#endif
