/* bfloat16 and float16 layers: weights stored in 16 bits, widened to float32 and summed in
 * float32. Batched, portable and AVX2: the weights of 4 neurons at a time are widened into a
 * float32 buffer (n_in x 4, interleaved), then every 32-sample tile of the block runs 4 x 32
 * accumulators that the compiler keeps in vector registers; AVX-512: panels of 16 neurons
 * widened a chunk of inputs at a time (below), or vdpbf16ps on bfloat16. One sample: the
 * weights are widened in registers as they stream (these layers are memory-bound at one
 * sample).
 *
 * Layouts as in int8.h: weights (n_out, n_in) uint16 bit patterns; a block's float
 * activations x[i][t] and y[j][t] feature-major, cols a multiple of NNX_HALF_TILE. */
#ifndef NNX_HALF_H
#define NNX_HALF_H

#include "quantized_common.h"

#define NNX_HALF_TILE 32
#define NNX_HALF_ROWS 4

enum { NNX_BFLOAT16 = 0, NNX_FLOAT16 = 1 };

static inline float nnx_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float nnx_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
    float f;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent == 0) {                  /* zero or subnormal: mantissa * 2**-24 */
        f = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -f : f;
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

/* Widen weights[first + r][i] into buffer[i * 4 + r] for r < rows (<= 4); rows past `rows`
 * are zeros. */
#define NNX_HALF_WIDEN_LOOP(CONVERT)                                                          \
    for (i = 0; i < n_in; i++)                                                                \
        for (r = 0; r < NNX_HALF_ROWS; r++)                                                   \
            buffer[i * NNX_HALF_ROWS + r] = r < rows ? CONVERT(w[r * n_in + i]) : 0.0f;

/* The batched kernel, compiled per target (the compiler vectorises the 32-sample loops for
 * it). x (n_in, cols), y (n_out, cols); buffer: 4 * n_in floats. */
#define NNX_HALF_DEFINE_TILE(SUFFIX, TARGET, WIDEN_F16, MULADD)                              \
TARGET static void nnx_half_tile_##SUFFIX(                                                   \
        const float* x, const uint16_t* weights, int kind, const float* biases,              \
        ptrdiff_t n_in, ptrdiff_t n_out, ptrdiff_t cols, float* y, int relu,                 \
        float* buffer) {                                                                     \
    ptrdiff_t j, i, r, t, t0;                                                                \
    for (j = 0; j < n_out; j += NNX_HALF_ROWS) {                                             \
        ptrdiff_t rows = n_out - j < NNX_HALF_ROWS ? n_out - j : NNX_HALF_ROWS;              \
        const uint16_t* w = weights + j * n_in;                                              \
        if (kind == NNX_BFLOAT16) {                                                          \
            NNX_HALF_WIDEN_LOOP(nnx_bf16_to_f32)                                             \
        } else {                                                                             \
            WIDEN_F16                                                                        \
        }                                                                                    \
        for (t0 = 0; t0 < cols; t0 += NNX_HALF_TILE) {                                       \
            float acc[NNX_HALF_ROWS][NNX_HALF_TILE];                                         \
            for (r = 0; r < NNX_HALF_ROWS; r++)                                              \
                for (t = 0; t < NNX_HALF_TILE; t++) acc[r][t] = 0;                           \
            for (i = 0; i < n_in; i++) {                                                     \
                const float* xi = x + i * cols + t0;                                         \
                const float* wi = buffer + i * NNX_HALF_ROWS;                                \
                for (r = 0; r < NNX_HALF_ROWS; r++)                                          \
                    for (t = 0; t < NNX_HALF_TILE; t++)                                      \
                        acc[r][t] = MULADD(wi[r], xi[t], acc[r][t]);                         \
            }                                                                                \
            for (r = 0; r < rows; r++)                                                       \
                for (t = 0; t < NNX_HALF_TILE; t++) {                                        \
                    float v = acc[r][t] + biases[j + r];                                     \
                    y[(j + r) * cols + t0 + t] = relu && v < 0 ? 0.0f : v;                   \
                }                                                                            \
        }                                                                                    \
    }                                                                                        \
}

#define NNX_MULADD(a, b, c) ((a) * (b) + (c))
NNX_HALF_DEFINE_TILE(portable, , NNX_HALF_WIDEN_LOOP(nnx_f16_to_f32), NNX_MULADD)

/* One sample, portable: y[j] for j in [first, last). */
static void nnx_half_row_portable(const float* x, const uint16_t* weights, int kind,
                                  const float* biases, ptrdiff_t n_in, ptrdiff_t first,
                                  ptrdiff_t last, float* y, int relu) {
    ptrdiff_t j, i;
    for (j = first; j < last; j++) {
        const uint16_t* w = weights + j * n_in;
        float sum = 0;
        if (kind == NNX_BFLOAT16)
            for (i = 0; i < n_in; i++) sum += nnx_bf16_to_f32(w[i]) * x[i];
        else
            for (i = 0; i < n_in; i++) sum += nnx_f16_to_f32(w[i]) * x[i];
        float v = sum + biases[j];
        y[j] = relu && v < 0 ? 0.0f : v;
    }
}

#if defined(NNX_X86)

/* float16 widened with F16C, 8 at a time. */
#define NNX_HALF_WIDEN_F16C                                                                   \
    for (i = 0; i + 8 <= n_in; i += 8) {                                                      \
        __m256 v[NNX_HALF_ROWS];                                                              \
        float lanes[NNX_HALF_ROWS][8];                                                        \
        for (r = 0; r < NNX_HALF_ROWS; r++) {                                                 \
            v[r] = r < rows ? _mm256_cvtph_ps(_mm_loadu_si128(                                \
                                  (const __m128i*)(w + r * n_in + i))) : _mm256_setzero_ps(); \
            _mm256_storeu_ps(lanes[r], v[r]);                                                 \
        }                                                                                     \
        for (t = 0; t < 8; t++)                                                               \
            for (r = 0; r < NNX_HALF_ROWS; r++)                                               \
                buffer[(i + t) * NNX_HALF_ROWS + r] = lanes[r][t];                            \
    }                                                                                         \
    for (; i < n_in; i++)                                                                     \
        for (r = 0; r < NNX_HALF_ROWS; r++)                                                   \
            buffer[i * NNX_HALF_ROWS + r] = r < rows ? nnx_f16_to_f32(w[r * n_in + i]) : 0.0f;

/* fused multiply-adds where the target has them (the module is built without contraction) */
NNX_HALF_DEFINE_TILE(avx2, NNX_TARGET_AVX2, NNX_HALF_WIDEN_F16C, fmaf)

/* 16 weights of a row as float32: bfloat16 shifted into the high half, float16 by F16C. */
NNX_TARGET_AVX512 static inline __m512 nnx_half_load16(const uint16_t* w, int kind) {
    __m256i h = _mm256_loadu_si256((const __m256i*)w);
    if (kind == NNX_BFLOAT16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* One sample, 4 neurons x 16 lanes of partial sums, widened in registers. */
NNX_TARGET_AVX512 static void nnx_half_row_avx512(
        const float* x, const uint16_t* weights, int kind, const float* biases,
        ptrdiff_t n_in, ptrdiff_t first, ptrdiff_t last, float* y, int relu) {
    ptrdiff_t j, i, r, nr;
    ptrdiff_t whole = n_in / 16 * 16;
    for (j = first; j < last; j += nr) {
        __m512 acc[4];
        float sums[4];
        nr = last - j >= 4 ? 4 : 1;
        for (r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
        for (i = 0; i < whole; i += 16) {
            __m512 xv = _mm512_loadu_ps(x + i);
            for (r = 0; r < nr; r++)
                acc[r] = _mm512_fmadd_ps(nnx_half_load16(weights + (j + r) * n_in + i, kind),
                                         xv, acc[r]);
        }
        for (r = 0; r < nr; r++) {
            sums[r] = _mm512_reduce_add_ps(acc[r]);
            for (i = whole; i < n_in; i++) {
                uint16_t h = weights[(j + r) * n_in + i];
                sums[r] += (kind == NNX_BFLOAT16 ? nnx_bf16_to_f32(h) : nnx_f16_to_f32(h)) * x[i];
            }
            float v = sums[r] + biases[j + r];
            y[j + r] = relu && v < 0 ? 0.0f : v;
        }
    }
}

NNX_TARGET_AVX2 static inline __m256 nnx_half_load8(const uint16_t* w, int kind) {
    __m128i h = _mm_loadu_si128((const __m128i*)w);
    if (kind == NNX_BFLOAT16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

NNX_TARGET_AVX2 static void nnx_half_row_avx2(
        const float* x, const uint16_t* weights, int kind, const float* biases,
        ptrdiff_t n_in, ptrdiff_t first, ptrdiff_t last, float* y, int relu) {
    ptrdiff_t j, i, r, nr;
    ptrdiff_t whole = n_in / 8 * 8;
    for (j = first; j < last; j += nr) {
        __m256 acc[4];
        float sums[4];
        nr = last - j >= 4 ? 4 : 1;
        for (r = 0; r < 4; r++) acc[r] = _mm256_setzero_ps();
        for (i = 0; i < whole; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i);
            for (r = 0; r < nr; r++)
                acc[r] = _mm256_fmadd_ps(nnx_half_load8(weights + (j + r) * n_in + i, kind),
                                         xv, acc[r]);
        }
        for (r = 0; r < nr; r++) {
            float lanes[8];
            _mm256_storeu_ps(lanes, acc[r]);
            sums[r] = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                      + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
            for (i = whole; i < n_in; i++) {
                uint16_t h = weights[(j + r) * n_in + i];
                sums[r] += (kind == NNX_BFLOAT16 ? nnx_bf16_to_f32(h) : nnx_f16_to_f32(h)) * x[i];
            }
            float v = sums[r] + biases[j + r];
            y[j + r] = relu && v < 0 ? 0.0f : v;
        }
    }
}

#endif  /* NNX_X86 */

/* ---- bfloat16 with AVX-512 BF16: vdpbf16ps ---------------------------------------------
 * The inputs are rounded to bfloat16 too (to nearest even, vcvtne2ps2bf16, as PyTorch and
 * OpenVINO do in bfloat16), and each instruction adds the products of 2 inputs x 2 weights
 * to a float32 sum. Weights are packed in panels of 16 neurons (nnx_bf16_pack_weights'
 * layout): panel p, pair g holds (w[16p + r][2g], w[16p + r][2g + 1]) for r < 16 as 32-bit
 * lanes, zero past n_in and n_out. Every sum adds the pairs in order g = 0, 1, ..., so one
 * sample gives the same bits as in a batch. */

#define NNX_BF16_PANEL NNX_PANEL_NEURONS

static inline ptrdiff_t nnx_bf16_pairs(ptrdiff_t n_in) { return (n_in + 1) / 2; }

/* Panel layout from row-major bit patterns (n_out, n_in): packed holds
 * ceil(n_out / 16) * 16 * nnx_bf16_pairs(n_in) 32-bit lanes. */
static void nnx_bf16_pack_weights(const uint16_t* weights, ptrdiff_t n_in, ptrdiff_t n_out,
                                  uint32_t* packed) {
    ptrdiff_t n_pairs = nnx_bf16_pairs(n_in), p, g, r;
    for (p = 0; p * NNX_BF16_PANEL < n_out; p++)
        for (g = 0; g < n_pairs; g++)
            for (r = 0; r < NNX_BF16_PANEL; r++) {
                ptrdiff_t j = p * NNX_BF16_PANEL + r;
                uint32_t even = 0, odd = 0;
                if (j < n_out) {
                    even = weights[j * n_in + 2 * g];
                    odd = 2 * g + 1 < n_in ? weights[j * n_in + 2 * g + 1] : 0;
                }
                packed[(p * n_pairs + g) * NNX_BF16_PANEL + r] = even | (odd << 16);
            }
}

#if defined(NNX_X86)

/* bfloat16 lanes 0..15 from a, 16..31 from b -> pairs (a[k], b[k]) in 32-bit lane k */
static const uint16_t nnx_bf16_interleave[32] = {
    0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

/* A feature-major block x (n_in, cols) as input pairs: pairs[g * cols + t] holds
 * bf16(x[2g][t]) | bf16(x[2g + 1][t]) << 16 (zero past n_in). cols: a multiple of 16. */
NNX_TARGET_BF16 static void nnx_bf16_pack_block(const float* x, ptrdiff_t n_in,
                                                ptrdiff_t cols, uint32_t* pairs) {
    const __m512i order = _mm512_loadu_si512((const void*)nnx_bf16_interleave);
    ptrdiff_t g, t;
    for (g = 0; g < nnx_bf16_pairs(n_in); g++) {
        const float* even = x + 2 * g * cols;
        int has_odd = 2 * g + 1 < n_in;
        for (t = 0; t < cols; t += 16) {
            __m512 a = _mm512_loadu_ps(even + t);
            __m512 b = has_odd ? _mm512_loadu_ps(even + cols + t) : _mm512_setzero_ps();
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            _mm512_storeu_si512((void*)(pairs + g * cols + t),
                                _mm512_permutexvar_epi16(order, both));
        }
    }
}

/* NR neurons (of a panel, from `lane`) x 32 samples: 2 * NR float32 sums over the groups
 * [g0, g1) of inputs, started from zero (g0 == 0) or from the sums stored by the previous
 * groups; the bias and ReLU once the last group is in. Group g: the vectors LOAD_X(X_AT +
 * (g - g0) * cols) and (... + 16) of 16 samples each, weights BROADCAST_W(W_AT[(g - g0) * 16
 * + r]) of neuron r, DOT(acc, x, w) adds their products. */
#define NNX_PANEL_FLOAT_SUMS(NR, XTYPE, X_AT, LOAD_X, W_AT, BROADCAST_W, DOT, N_GROUPS)       \
    {                                                                                         \
        __m512 acc[NR][2];                                                                    \
        const uint32_t* w = (const uint32_t*)(W_AT) + lane;                                   \
        const uint32_t* xg = (const uint32_t*)(X_AT);                                         \
        float* first_row = y + (p * NNX_PANEL_NEURONS + lane) * cols + t0;                    \
        int r;                                                                                \
        for (r = 0; r < NR; r++) {                                                            \
            int stored = g0 > 0 && r < rows;                                                  \
            acc[r][0] = stored ? _mm512_loadu_ps(first_row + r * cols) : _mm512_setzero_ps(); \
            acc[r][1] = stored ? _mm512_loadu_ps(first_row + r * cols + 16)                   \
                               : _mm512_setzero_ps();                                         \
        }                                                                                     \
        for (g = g0; g < g1; g++, w += NNX_PANEL_NEURONS, xg += cols) {                       \
            XTYPE x0 = LOAD_X(xg);                                                            \
            XTYPE x1 = LOAD_X(xg + 16);                                                       \
            for (r = 0; r < NR; r++) {                                                        \
                XTYPE wv = BROADCAST_W(w + r);                                                \
                acc[r][0] = DOT(acc[r][0], x0, wv);                                           \
                acc[r][1] = DOT(acc[r][1], x1, wv);                                           \
            }                                                                                 \
        }                                                                                     \
        for (r = 0; r < NR && r < rows; r++) {                                                \
            __m512 v0 = acc[r][0], v1 = acc[r][1];                                            \
            if (g1 == N_GROUPS) {                                                             \
                __m512 bias = _mm512_set1_ps(biases[p * NNX_PANEL_NEURONS + lane + r]);       \
                v0 = _mm512_add_ps(v0, bias);                                                 \
                v1 = _mm512_add_ps(v1, bias);                                                 \
                if (relu) { /* max(0, v) keeps NaN */                                         \
                    v0 = _mm512_max_ps(_mm512_setzero_ps(), v0);                              \
                    v1 = _mm512_max_ps(_mm512_setzero_ps(), v1);                              \
                }                                                                             \
            }                                                                                 \
            _mm512_storeu_ps(first_row + r * cols, v0);                                       \
            _mm512_storeu_ps(first_row + r * cols + 16, v1);                                  \
        }                                                                                     \
    }

#define NNX_LOAD_BF16_PAIRS(at) ((__m512bh)_mm512_loadu_si512((const void*)(at)))
#define NNX_BROADCAST_BF16_PAIR(at) ((__m512bh)_mm512_set1_epi32((int)*(at)))
#define NNX_BF16_DOT_BLOCK(NR)                                                                \
    NNX_PANEL_FLOAT_SUMS(NR, __m512bh, pairs + g0 * cols + t0, NNX_LOAD_BF16_PAIRS,           \
                         panel + g0 * NNX_BF16_PANEL, NNX_BROADCAST_BF16_PAIR,                \
                         _mm512_dpbf16_ps, n_pairs)

/* ---- Widened panels (AVX-512 without BF16, and float16 everywhere on AVX-512) -----------
 * Per panel of 16 neurons and chunk of inputs [g0, g1), the 16-bit weights are widened (F16C,
 * or bfloat16 shifted) into a float32 panel wide[(i - g0) * 16 + r], which NR neurons x 32
 * samples then read as broadcasts, summed by fused multiply-adds in input order. */

/* Inputs of a block's float x that one pass over the weights reads, as for the BF16 pairs. */
#define NNX_WIDE_CHUNK_BYTES (512 * 1024)

NNX_TARGET_AVX512 static void nnx_half_widen_panel(const uint16_t* weights, int kind,
                                                   ptrdiff_t n_in, ptrdiff_t n_out,
                                                   ptrdiff_t p, ptrdiff_t g0, ptrdiff_t g1,
                                                   float* wide) {
    float square[NNX_PANEL_NEURONS * 16];
    ptrdiff_t i0, r, rows = n_out - p * NNX_PANEL_NEURONS;
    for (i0 = g0; i0 < g1; i0 += 16) {
        ptrdiff_t n = g1 - i0 < 16 ? g1 - i0 : 16;
        __mmask16 mask = (__mmask16)(n == 16 ? 0xFFFFu : (1u << n) - 1);
        for (r = 0; r < NNX_PANEL_NEURONS; r++) {
            __m512 v = _mm512_setzero_ps();
            if (r < rows) {
                __m256i h = _mm256_maskz_loadu_epi16(
                    mask, weights + (p * NNX_PANEL_NEURONS + r) * n_in + i0);
                v = kind == NNX_BFLOAT16
                    ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                    : _mm512_cvtph_ps(h);
            }
            _mm512_storeu_ps(square + r * 16, v);
        }
        nnx_transpose_avx512(square, NNX_PANEL_NEURONS, n, 16,
                             wide + (i0 - g0) * NNX_PANEL_NEURONS, NNX_PANEL_NEURONS);
    }
}

#define NNX_LOAD_FLOATS(at) _mm512_loadu_ps((const float*)(at))
#define NNX_BROADCAST_FLOAT(at) _mm512_set1_ps(*(const float*)(at))
#define NNX_FMA(acc, x, w) _mm512_fmadd_ps(w, x, acc)
#define NNX_WIDE_FMA_BLOCK(NR)                                                                \
    NNX_PANEL_FLOAT_SUMS(NR, __m512, x + g0 * cols + t0, NNX_LOAD_FLOATS, wide,               \
                         NNX_BROADCAST_FLOAT, NNX_FMA, n_in)

/* The batched kernel: weights row-major; buffer: 16 * n_in floats. */
NNX_TARGET_AVX512 static void nnx_half_tile_avx512_wide(
        const float* x, const uint16_t* weights, int kind, const float* biases,
        ptrdiff_t n_in, ptrdiff_t n_out, ptrdiff_t cols, float* y, int relu, float* buffer) {
    ptrdiff_t p, lane, t0, g, g0, g1, rows;
    ptrdiff_t chunk = NNX_WIDE_CHUNK_BYTES / 4 / cols;
    float* wide = buffer;
    NNX_PANEL_LOOPS(n_in, chunk,
                    nnx_half_widen_panel(weights, kind, n_in, n_out, p, g0, g1, wide),
                    NNX_WIDE_FMA_BLOCK)
}

/* Bytes of a block's input pairs that one pass over the weights reads: the pairs are taken
 * in chunks of at most this many (times the block's samples) so that they stay in L2 while
 * every panel passes; the sums wait in y between chunks (float32 either way: the same
 * bits as in one pass). */
#define NNX_BF16_CHUNK_BYTES (512 * 1024)

/* The batched kernel (float16 layers: the widened panels). weights: the panels;
 * buffer: nnx_bf16_pairs(n_in) * cols floats. */
NNX_TARGET_BF16 static void nnx_half_tile_bf16(
        const float* x, const uint16_t* weights, int kind, const float* biases,
        ptrdiff_t n_in, ptrdiff_t n_out, ptrdiff_t cols, float* y, int relu, float* buffer) {
    ptrdiff_t n_pairs = nnx_bf16_pairs(n_in), p, lane, t0, g, g0, g1, rows;
    ptrdiff_t chunk = NNX_BF16_CHUNK_BYTES / 4 / cols;
    uint32_t* pairs = (uint32_t*)buffer;
    if (kind != NNX_BFLOAT16) {
        nnx_half_tile_avx512_wide(x, weights, kind, biases, n_in, n_out, cols, y, relu,
                                  buffer);
        return;
    }
    nnx_bf16_pack_block(x, n_in, cols, pairs);
    NNX_PANEL_LOOPS(n_pairs, chunk, (void)0, NNX_BF16_DOT_BLOCK)
}

/* NP panels of one sample: sums of 16 neurons each, the weights streamed once. */
#define NNX_BF16_ROW_PANELS(NP)                                                               \
    {                                                                                         \
        __m512 acc[NP];                                                                       \
        int k;                                                                                \
        for (k = 0; k < NP; k++) acc[k] = _mm512_setzero_ps();                                \
        for (i = 0; i < n_in; i += 32) {                                                      \
            ptrdiff_t left = n_in - i, gn = (left < 32 ? left + 1 : 32) / 2;                  \
            __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);               \
            __mmask16 m1 = left >= 32 ? 0xFFFF                                                \
                         : (left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1));           \
            __m512 a = _mm512_maskz_loadu_ps(m0, x + i);                                      \
            __m512 b = _mm512_maskz_loadu_ps(m1, x + i + 16);                                 \
            uint32_t xpairs[16];                                                              \
            const uint32_t* w = (const uint32_t*)weights                                      \
                                + (p * n_pairs + i / 2) * NNX_BF16_PANEL;                     \
            _mm512_storeu_si512((void*)xpairs, (__m512i)_mm512_cvtne2ps_pbh(b, a));           \
            for (g = 0; g < gn; g++, w += NNX_BF16_PANEL) {                                   \
                __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xpairs[g]);                    \
                for (k = 0; k < NP; k++)                                                      \
                    acc[k] = _mm512_dpbf16_ps(                                                \
                        acc[k], xv, (__m512bh)_mm512_loadu_si512(                             \
                                        (const void*)(w + k * n_pairs * NNX_BF16_PANEL)));    \
            }                                                                                 \
        }                                                                                     \
        for (k = 0; k < NP; k++) {                                                            \
            ptrdiff_t j = (p + k) * NNX_BF16_PANEL, valid = last - j;                         \
            __mmask16 m = valid >= 16 ? 0xFFFF : (__mmask16)((1u << valid) - 1);             \
            __m512 v = _mm512_add_ps(acc[k], _mm512_maskz_loadu_ps(m, biases + j));           \
            if (relu) v = _mm512_max_ps(_mm512_setzero_ps(), v);                              \
            _mm512_mask_storeu_ps(y + j, m, v);                                               \
        }                                                                                     \
    }

/* One sample: y[j] for j in [first, last), first a multiple of 16. */
NNX_TARGET_BF16 static void nnx_half_row_bf16(
        const float* x, const uint16_t* weights, int kind, const float* biases,
        ptrdiff_t n_in, ptrdiff_t first, ptrdiff_t last, float* y, int relu) {
    ptrdiff_t n_pairs = nnx_bf16_pairs(n_in), p, i, g;
    ptrdiff_t end = (last + NNX_BF16_PANEL - 1) / NNX_BF16_PANEL;
    if (kind != NNX_BFLOAT16) {
        nnx_half_row_avx512(x, weights, kind, biases, n_in, first, last, y, relu);
        return;
    }
    for (p = first / NNX_BF16_PANEL; p < end;) {
        if (end - p >= 4) {
            NNX_BF16_ROW_PANELS(4)
            p += 4;
        } else {
            NNX_BF16_ROW_PANELS(1)
            p += 1;
        }
    }
}

#endif  /* NNX_X86 */

typedef void (*nnx_half_tile_fn)(const float*, const uint16_t*, int, const float*, ptrdiff_t,
                                 ptrdiff_t, ptrdiff_t, float*, int, float*);
typedef void (*nnx_half_row_fn)(const float*, const uint16_t*, int, const float*, ptrdiff_t,
                                ptrdiff_t, ptrdiff_t, float*, int);

/* bf16_panels: the kernels read bfloat16 weights as nnx_bf16_pack_weights' panels (float16
 * ones always row-major). */
typedef struct {
    nnx_half_tile_fn tile;
    nnx_half_row_fn row;
    int bf16_panels;
} nnx_half_kernels;

static nnx_half_kernels nnx_half_kernels_for(int set) {
    nnx_half_kernels k = {nnx_half_tile_portable, nnx_half_row_portable, 0};
#if defined(NNX_X86)
    if (set == NNX_Q_AVX512_BF16) {
        k.tile = nnx_half_tile_bf16;
        k.row = nnx_half_row_bf16;
        k.bf16_panels = 1;
    } else if (set >= NNX_Q_AVX512) {
        k.tile = nnx_half_tile_avx512_wide;
        k.row = nnx_half_row_avx512;
    } else if (set == NNX_Q_AVX2) {
        k.tile = nnx_half_tile_avx2;
        k.row = nnx_half_row_avx2;
    }
#else
    (void)set;
#endif
    return k;
}

#endif  /* NNX_HALF_H */
