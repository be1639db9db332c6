/* Shared by the reduced-precision kernels (int8.h, half.h): per-function ISA targets and the
 * run-time CPU checks that choose among them. Every kernel for an ISA extension is compiled
 * with a target attribute (gcc, clang) and only ever called after the check for that
 * extension passed, so the module itself builds for the baseline of its platform. MSVC
 * compiles intrinsics of any ISA without attributes; other CPUs (ARM) get the portable
 * kernels only. */
#ifndef NNX_QUANTIZED_COMMON_H
#define NNX_QUANTIZED_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#if !defined(_M_ARM64EC)
#define NNX_X86 1
#endif
#endif

#if defined(NNX_X86)
#include <immintrin.h>
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define NNX_TARGET(features)
#else
#include <cpuid.h>
#define NNX_TARGET(features) __attribute__((target(features)))
#endif
#endif

#define NNX_TARGET_AVX2 NNX_TARGET("avx2,fma,f16c")
#define NNX_TARGET_AVX512 NNX_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")
#define NNX_TARGET_VNNI \
    NNX_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
#define NNX_TARGET_BF16 \
    NNX_TARGET("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")

/* Kernel sets, best first within each family; the Cython side maps names to these. */
enum {
    NNX_Q_PORTABLE = 0,
    NNX_Q_AVX2 = 1,
    NNX_Q_AVX512 = 2,       /* AVX-512 F/BW/DQ/VL; half kernels convert in registers */
    NNX_Q_AVX512_VNNI = 3,  /* int8: vpdpbusd */
    NNX_Q_AVX512_BF16 = 4,  /* bfloat16: vdpbf16ps */
};

/* CPUID leaf 7 bits the float dispatch does not check (it has already checked that the OS
 * saves the AVX-512 state before these are asked about). */
static int nnx_cpuid_leaf7(unsigned int subleaf, unsigned int regs[4]) {
#if defined(NNX_X86) && defined(_MSC_VER) && !defined(__clang__)
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuidex(r, 7, (int)subleaf);
    regs[0] = (unsigned int)r[0]; regs[1] = (unsigned int)r[1];
    regs[2] = (unsigned int)r[2]; regs[3] = (unsigned int)r[3];
    return 1;
#elif defined(NNX_X86)
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, subleaf, regs[0], regs[1], regs[2], regs[3]);
    return 1;
#else
    (void)subleaf; (void)regs;
    return 0;
#endif
}

static int nnx_cpu_avx512_vnni(void) {
    unsigned int r[4];
    return nnx_cpuid_leaf7(0, r) && (r[2] & (1u << 11)) != 0;
}

static int nnx_cpu_avx512_bf16(void) {
    unsigned int r[4];
    return nnx_cpuid_leaf7(0, r) && r[0] >= 1 && nnx_cpuid_leaf7(1, r) && (r[0] & (1u << 5)) != 0;
}

/* round-to-nearest-even of |v| < 2**22 as an int, as np.rint then astype(int32): adding
 * 1.5 * 2**23 leaves the rounded integer in the low mantissa bits (no SSE4.1 needed). */
#define NNX_ROUND_MAGIC 12582912.0f
static inline int32_t nnx_round_small(float v) {
    return (int32_t)(v + NNX_ROUND_MAGIC) - 12582912;
}

/* Neurons per panel of packed weights and samples per tile of the panel kernels. */
#define NNX_PANEL_NEURONS 16
#define NNX_PANEL_TILE 32

/* The loops of the panel kernels (int8.h's VNNI, half.h's BF16 and widened panels): the
 * groups of inputs (one 32-bit lane each) in chunks [g0, g1) of at most CHUNK, panels p (each
 * begun by the statement PREPARE), halves of 8 neurons from `lane`, tiles t0; BLOCK(8) or
 * BLOCK(4) computes one. The caller declares p, lane, t0, g0, g1, rows and has weights,
 * n_out, cols in scope. */
#define NNX_PANEL_LOOPS(N_GROUPS, CHUNK, PREPARE, BLOCK)                                      \
    for (g0 = 0; g0 < N_GROUPS; g0 = g1) {                                                    \
        g1 = N_GROUPS - g0 <= CHUNK ? N_GROUPS : g0 + CHUNK;                                  \
        for (p = 0; p * NNX_PANEL_NEURONS < n_out; p++) {                                     \
            const uint32_t* panel =                                                           \
                (const uint32_t*)weights + p * N_GROUPS * NNX_PANEL_NEURONS;                  \
            (void)panel; /* not read by every BLOCK */                                        \
            PREPARE;                                                                          \
            for (lane = 0; lane < NNX_PANEL_NEURONS; lane += 8) {                             \
                rows = n_out - p * NNX_PANEL_NEURONS - lane;                                  \
                if (rows <= 0) break;                                                         \
                for (t0 = 0; t0 < cols; t0 += NNX_PANEL_TILE) {                               \
                    if (rows > 4) BLOCK(8)                                                    \
                    else BLOCK(4)                                                             \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

/* b[c * ldb + r] = a[r * lda + c] for r < n_rows, c < n_cols: the transpositions between a
 * batch (sample-major) and a block (feature-major), in squares of 16 so that few cache lines
 * and pages are open at a time. */
#define NNX_TRANSPOSE_SIDE 16

static void nnx_transpose_portable(const float* a, ptrdiff_t n_rows, ptrdiff_t n_cols,
                                   ptrdiff_t lda, float* b, ptrdiff_t ldb) {
    ptrdiff_t r0, c0, r, c;
    for (r0 = 0; r0 < n_rows; r0 += NNX_TRANSPOSE_SIDE) {
        ptrdiff_t r_end = n_rows - r0 < NNX_TRANSPOSE_SIDE ? n_rows
                                                           : r0 + NNX_TRANSPOSE_SIDE;
        for (c0 = 0; c0 < n_cols; c0 += NNX_TRANSPOSE_SIDE) {
            ptrdiff_t c_end = n_cols - c0 < NNX_TRANSPOSE_SIDE ? n_cols
                                                               : c0 + NNX_TRANSPOSE_SIDE;
            for (c = c0; c < c_end; c++)
                for (r = r0; r < r_end; r++) b[c * ldb + r] = a[r * lda + c];
        }
    }
}

#if defined(NNX_X86)
/* 16 x 16 squares in AVX-512 registers: 16 rows in (masked past the edges), 16 columns out. */
NNX_TARGET_AVX512 static void nnx_transpose_avx512(const float* a, ptrdiff_t n_rows,
                                                   ptrdiff_t n_cols, ptrdiff_t lda, float* b,
                                                   ptrdiff_t ldb) {
    ptrdiff_t r0, c0, i;
    for (r0 = 0; r0 < n_rows; r0 += 16) {
        ptrdiff_t nr = n_rows - r0 < 16 ? n_rows - r0 : 16;
        __mmask16 row_mask = (__mmask16)(nr == 16 ? 0xFFFFu : (1u << nr) - 1);
        for (c0 = 0; c0 < n_cols; c0 += 16) {
            ptrdiff_t nc = n_cols - c0 < 16 ? n_cols - c0 : 16;
            __mmask16 col_mask = (__mmask16)(nc == 16 ? 0xFFFFu : (1u << nc) - 1);
            __m512 v[16], t[16];
            for (i = 0; i < 16; i++)
                v[i] = i < nr ? _mm512_maskz_loadu_ps(col_mask, a + (r0 + i) * lda + c0)
                              : _mm512_setzero_ps();
            for (i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
            }
            for (i = 0; i < 16; i += 4) {
                v[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
                v[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
                v[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                v[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
            }
            for (i = 0; i < 4; i++) {
                t[i] = _mm512_shuffle_f32x4(v[i], v[i + 4], 0x88);
                t[i + 4] = _mm512_shuffle_f32x4(v[i], v[i + 4], 0xDD);
                t[i + 8] = _mm512_shuffle_f32x4(v[i + 8], v[i + 12], 0x88);
                t[i + 12] = _mm512_shuffle_f32x4(v[i + 8], v[i + 12], 0xDD);
            }
            for (i = 0; i < 8; i++) {
                v[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
                v[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
            }
            for (i = 0; i < nc; i++)
                _mm512_mask_storeu_ps(b + (c0 + i) * ldb + r0, row_mask, v[i]);
        }
    }
}
#endif

typedef void (*nnx_transpose_fn)(const float*, ptrdiff_t, ptrdiff_t, ptrdiff_t, float*,
                                 ptrdiff_t);

static nnx_transpose_fn nnx_transpose_for(int set) {
#if defined(NNX_X86)
    if (set >= NNX_Q_AVX512) return nnx_transpose_avx512;
#else
    (void)set;
#endif
    return nnx_transpose_portable;
}

#endif
