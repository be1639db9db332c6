/* int8 layers: u8 inputs (quantized per sample, with a zero point) times s8 weights
 * (symmetric, a float32 scale per output neuron), summed exactly in int32; then, in float32,
 * y = (float)(acc - zp * row_sum) * (x_scale * w_scale) + bias, rounded after each operation
 * (the module is built without floating-point contraction), as nnexposed.precision's NumPy
 * reference computes it: every kernel gives the same bits.
 *
 * Layouts. Weights q: (n_out, n_in4), n_in4 = n_in rounded up to 4, zero padded. Quantized
 * inputs of a block of `cols` samples: xq[g][t][c] = input 4g+c of sample t, bytes, so that
 * one 32-bit lane holds 4 consecutive inputs of one sample (what vpdpbusd multiplies with 4
 * weights of one neuron). Float activations of a block: y[j][t], feature-major. One sample
 * is a block of cols = 1. */
#ifndef NNX_INT8_H
#define NNX_INT8_H

#include "quantized_common.h"

/* Samples per tile of the batched kernels; blocks hold a multiple of it. */
#define NNX_I8_TILE NNX_PANEL_TILE
/* Neurons per panel of the packed weights that the VNNI tile kernel reads. */
#define NNX_I8_PANEL NNX_PANEL_NEURONS

/* Panels from q (n_out, n_in4): panel p, group g holds q[16p + r][4g..4g+3] as 32-bit lane
 * r < 16 (zero past n_out); packed: ceil(n_out / 16) * 16 * n_in4 / 4 lanes. */
static void nnx_i8_pack_weights(const int8_t* q, ptrdiff_t n_in4, ptrdiff_t n_out,
                                uint32_t* packed) {
    ptrdiff_t n_groups = n_in4 / 4, p, g, r;
    for (p = 0; p * NNX_I8_PANEL < n_out; p++)
        for (g = 0; g < n_groups; g++)
            for (r = 0; r < NNX_I8_PANEL; r++) {
                uint32_t lane = 0;
                if (p * NNX_I8_PANEL + r < n_out)
                    memcpy(&lane, q + (p * NNX_I8_PANEL + r) * n_in4 + 4 * g, 4);
                packed[(p * n_groups + g) * NNX_I8_PANEL + r] = lane;
            }
}

static inline float nnx_i8_finish(int32_t acc, int32_t zero_point, int32_t row_sum,
                                  float x_scale, float w_scale, float bias) {
    float scale = x_scale * w_scale;
    float product = (float)(acc - zero_point * row_sum) * scale;
    return product + bias;
}

/* Per-sample quantization parameters from a sample's [low, high] (low <= 0 <= high, or NaN
 * when a value was NaN): see nnexposed.precision.quantize_inputs. */
static inline void nnx_i8_params(float low, float high, int has_nan, float* inv,
                                 float* x_scale, int32_t* zero_point) {
    float span = high - low;
    int finite = !has_nan && span - span == 0;
    if (finite && span > 0) {
        *inv = 255.0f / span;
        *x_scale = span / 255.0f;
        *zero_point = nnx_round_small(-low * *inv);
    } else {
        *inv = 0;
        *x_scale = finite ? 0.0f : NAN;
        *zero_point = 0;
    }
}

static inline uint8_t nnx_i8_level(float v, float inv, int32_t zero_point) {
    int32_t level = nnx_round_small(v * inv) + zero_point;
    return (uint8_t)(level < 0 ? 0 : (level > 255 ? 255 : level));
}

/* Inputs quantized at a time by quantize_rows (a multiple of 4). */
#define NNX_I8_CHUNK 256

/* Four levels, inputs 4g..4g+3 of one sample, as the 32-bit lane the kernels read. */
static inline uint32_t nnx_i8_pack(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    return (uint32_t)a | ((uint32_t)b << 8) | ((uint32_t)c << 16) | ((uint32_t)d << 24);
}

/* The quantizers, compiled for each target so that the compiler vectorises them for it.
 * quantize_cols: a feature-major float block y (n, cols) -> xq, x_scale, zero_point.
 * quantize_rows: `rows` samples of x (rows, n), sample-major, into a block of `cols`
 * samples; samples rows..cols-1 become zeros (their results are never read).
 * work: 2 * cols floats. xq: 4-byte aligned. */
#define NNX_I8_DEFINE_QUANTIZERS(SUFFIX, TARGET)                                              \
TARGET static void nnx_i8_quantize_cols_##SUFFIX(                                            \
        const float* y, ptrdiff_t n, ptrdiff_t cols, uint8_t* xq, float* x_scale,            \
        int32_t* zero_point, float* work) {                                                  \
    float* low = work;                                                                       \
    float* high = work + cols;                                                               \
    uint32_t* lanes = (uint32_t*)xq;                                                         \
    ptrdiff_t i, t, g, c;                                                                    \
    for (t = 0; t < cols; t++) { low[t] = 0; high[t] = 0; }                                  \
    for (i = 0; i < n; i++) {                                                                \
        const float* row = y + i * cols;                                                     \
        for (t = 0; t < cols; t++) {                                                         \
            float v = row[t];                                                                \
            low[t] = v < low[t] ? v : low[t];                                                \
            /* NaN, which no comparison passes, sticks: it marks the sample */               \
            high[t] = v > high[t] || v != v ? v : high[t];                                   \
        }                                                                                    \
    }                                                                                        \
    for (t = 0; t < cols; t++) {                                                             \
        float inv;                                                                           \
        nnx_i8_params(low[t], high[t], high[t] != high[t], &inv, &x_scale[t],               \
                      &zero_point[t]);                                                       \
        low[t] = inv;                                                                        \
    }                                                                                        \
    for (g = 0; g + 4 <= n; g += 4) {                                                        \
        const float* r0 = y + g * cols;                                                      \
        for (t = 0; t < cols; t++) {                                                         \
            float inv = low[t];                                                              \
            int32_t zp = zero_point[t];                                                      \
            lanes[g / 4 * cols + t] = inv == 0 ? 0 : nnx_i8_pack(                            \
                nnx_i8_level(r0[t], inv, zp), nnx_i8_level(r0[cols + t], inv, zp),           \
                nnx_i8_level(r0[2 * cols + t], inv, zp),                                     \
                nnx_i8_level(r0[3 * cols + t], inv, zp));                                    \
        }                                                                                    \
    }                                                                                        \
    if (g < n) {                                                                             \
        for (t = 0; t < cols; t++) {                                                         \
            uint8_t level[4] = {0, 0, 0, 0};                                                 \
            if (low[t] != 0)                                                                 \
                for (c = 0; g + c < n; c++)                                                  \
                    level[c] = nnx_i8_level(y[(g + c) * cols + t], low[t], zero_point[t]);   \
            for (; c < 4; c++) level[c] = 0;                                                 \
            lanes[g / 4 * cols + t] = nnx_i8_pack(level[0], level[1], level[2], level[3]);   \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
TARGET static void nnx_i8_quantize_rows_##SUFFIX(                                            \
        const float* x, ptrdiff_t n, ptrdiff_t rows, ptrdiff_t cols, uint8_t* xq,            \
        float* x_scale, int32_t* zero_point) {                                               \
    uint32_t* lanes = (uint32_t*)xq;                                                         \
    ptrdiff_t i, t, g;                                                                       \
    for (t = 0; t < cols; t++) {                                                             \
        const float* row = x + t * n;                                                        \
        float low = 0, high = 0, inv = 0;                                                    \
        int32_t zp = 0;                                                                      \
        x_scale[t] = 0;                                                                      \
        if (t < rows) {                                                                      \
            for (i = 0; i < n; i++) {                                                        \
                float v = row[i];                                                            \
                low = v < low ? v : low;                                                     \
                high = v > high || v != v ? v : high;                                        \
            }                                                                                \
            nnx_i8_params(low, high, high != high, &inv, &x_scale[t], &zp);                  \
        }                                                                                    \
        zero_point[t] = zp;                                                                  \
        /* levels into a chunk (vectorised), then as 32-bit lanes into the block */          \
        for (g = 0; g < n; g += NNX_I8_CHUNK) {                                              \
            ptrdiff_t end = n - g < NNX_I8_CHUNK ? n - g : NNX_I8_CHUNK;                     \
            ptrdiff_t end4 = (end + 3) / 4 * 4;                                              \
            uint32_t chunk32[NNX_I8_CHUNK / 4];                                              \
            uint8_t* chunk = (uint8_t*)chunk32;                                              \
            if (inv == 0) {                                                                  \
                for (i = 0; i < end4; i++) chunk[i] = 0;                                     \
            } else {                                                                         \
                for (i = 0; i < end; i++) chunk[i] = nnx_i8_level(row[g + i], inv, zp);      \
                for (; i < end4; i++) chunk[i] = 0;                                          \
            }                                                                                \
            if (cols == 1) {                                                                 \
                memcpy(xq + g, chunk, (size_t)end4);                                         \
            } else {                                                                         \
                for (i = 0; i < end4 / 4; i++) lanes[(g / 4 + i) * cols + t] = chunk32[i];   \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}

NNX_I8_DEFINE_QUANTIZERS(portable, )

/* ---- portable kernels ------------------------------------------------------------------ */

/* y[j][t] for j in [0, n_out), t in [0, cols), cols a multiple of NNX_I8_TILE. */
static void nnx_i8_tile_portable(const uint8_t* xq, const int8_t* q, const int32_t* row_sums,
                                 const float* w_scales, const float* biases, ptrdiff_t n_in4,
                                 ptrdiff_t n_out, ptrdiff_t cols, const float* x_scale,
                                 const int32_t* zero_point, float* y, int relu) {
    ptrdiff_t j, t, t0, g;
    int32_t acc[NNX_I8_TILE];
    for (t0 = 0; t0 < cols; t0 += NNX_I8_TILE) {
        for (j = 0; j < n_out; j++) {
            const int8_t* w = q + j * n_in4;
            for (t = 0; t < NNX_I8_TILE; t++) acc[t] = 0;
            for (g = 0; g < n_in4; g += 4) {
                const uint8_t* x = xq + (g * cols + t0 * 4);
                int32_t w0 = w[g], w1 = w[g + 1], w2 = w[g + 2], w3 = w[g + 3];
                for (t = 0; t < NNX_I8_TILE; t++)
                    acc[t] += x[4 * t] * w0 + x[4 * t + 1] * w1 + x[4 * t + 2] * w2
                              + x[4 * t + 3] * w3;
            }
            for (t = 0; t < NNX_I8_TILE; t++) {
                float v = nnx_i8_finish(acc[t], zero_point[t0 + t], row_sums[j],
                                        x_scale[t0 + t], w_scales[j], biases[j]);
                y[j * cols + t0 + t] = relu && v < 0 ? 0.0f : v;
            }
        }
    }
}

/* One sample: y[j] for j in [first, last); xq holds n_in4 bytes. */
static void nnx_i8_row_portable(const uint8_t* xq, const int8_t* q, const int32_t* row_sums,
                                const float* w_scales, const float* biases, ptrdiff_t n_in4,
                                ptrdiff_t first, ptrdiff_t last, float x_scale,
                                int32_t zero_point, float* y, int relu) {
    ptrdiff_t j, i;
    for (j = first; j < last; j++) {
        const int8_t* w = q + j * n_in4;
        int32_t acc = 0;
        for (i = 0; i < n_in4; i++) acc += xq[i] * w[i];
        float v = nnx_i8_finish(acc, zero_point, row_sums[j], x_scale, w_scales[j], biases[j]);
        y[j] = relu && v < 0 ? 0.0f : v;
    }
}

#if defined(NNX_X86)

NNX_I8_DEFINE_QUANTIZERS(avx2, NNX_TARGET_AVX2)

/* quantize_cols in AVX-512 registers, 16 samples per vector (cols is a multiple of 16). */
NNX_TARGET_AVX512 static inline __m512i nnx_i8_levels16(const float* y, __m512 inv,
                                                       __m512i offset, __mmask16 usable) {
    __m512 magic = _mm512_set1_ps(NNX_ROUND_MAGIC);
    __m512i level = _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_add_ps(
        _mm512_mul_ps(_mm512_loadu_ps(y), inv), magic)), offset);
    level = _mm512_min_epi32(_mm512_max_epi32(level, _mm512_setzero_si512()),
                             _mm512_set1_epi32(255));
    return _mm512_maskz_mov_epi32(usable, level);
}

NNX_TARGET_AVX512 static void nnx_i8_quantize_cols_avx512_wide(
        const float* y, ptrdiff_t n, ptrdiff_t cols, uint8_t* xq, float* x_scale,
        int32_t* zero_point, float* work) {
    float* inv = work;
    uint32_t* lanes = (uint32_t*)xq;
    ptrdiff_t i, t, g, c;
    for (t = 0; t < cols; t += 16) {
        __m512 low = _mm512_setzero_ps(), high = _mm512_setzero_ps();
        __mmask16 nan = 0;
        float lows[16], highs[16];
        for (i = 0; i < n; i++) {
            __m512 v = _mm512_loadu_ps(y + i * cols + t);
            low = _mm512_min_ps(low, v);
            high = _mm512_max_ps(high, v);
            nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        }
        _mm512_storeu_ps(lows, low);
        _mm512_storeu_ps(highs, high);
        for (c = 0; c < 16; c++)
            nnx_i8_params(lows[c], highs[c], (nan >> c) & 1, &inv[t + c], &x_scale[t + c],
                          &zero_point[t + c]);
    }
    for (t = 0; t < cols; t += 16) {
        __m512 scale = _mm512_loadu_ps(inv + t);
        __mmask16 usable = _mm512_cmp_ps_mask(scale, _mm512_setzero_ps(), _CMP_NEQ_OQ);
        __m512i offset = _mm512_sub_epi32(
            _mm512_loadu_si512((const void*)(zero_point + t)), _mm512_set1_epi32(12582912));
        for (g = 0; g < n; g += 4) {
            __m512i packed = nnx_i8_levels16(y + g * cols + t, scale, offset, usable);
            for (c = 1; c < 4 && g + c < n; c++)
                packed = _mm512_or_si512(packed, _mm512_slli_epi32(nnx_i8_levels16(
                    y + (g + c) * cols + t, scale, offset, usable), 8 * (int)c));
            _mm512_storeu_si512((void*)(lanes + g / 4 * cols + t), packed);
        }
    }
}

/* quantize_rows in AVX-512 registers, 16 inputs at a time: the same operations in the same
 * order as nnx_i8_level (multiply, add the rounding constant, truncate), so the same bits. */
NNX_TARGET_AVX512 static void nnx_i8_quantize_rows_avx512_wide(
        const float* x, ptrdiff_t n, ptrdiff_t rows, ptrdiff_t cols, uint8_t* xq,
        float* x_scale, int32_t* zero_point) {
    uint32_t* lanes = (uint32_t*)xq;
    ptrdiff_t n4 = (n + 3) / 4 * 4, t, i, k;
    for (t = 0; t < cols; t++) {
        const float* row = x + t * n;
        float inv = 0;
        int32_t zp = 0;
        x_scale[t] = 0;
        if (t < rows) {
            __m512 low = _mm512_setzero_ps(), high = _mm512_setzero_ps();
            __mmask16 nan = 0;
            for (i = 0; i < n; i += 16) {
                __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
                __m512 v = _mm512_maskz_loadu_ps(m, row + i);
                low = _mm512_min_ps(low, v);
                high = _mm512_max_ps(high, v);
                nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            }
            nnx_i8_params(_mm512_reduce_min_ps(low), _mm512_reduce_max_ps(high), nan != 0,
                          &inv, &x_scale[t], &zp);
        }
        zero_point[t] = zp;
        if (inv == 0) {
            if (cols == 1) memset(xq, 0, (size_t)n4);
            else for (i = 0; i < n4 / 4; i++) lanes[i * cols + t] = 0;
            continue;
        }
        {
            const __m512 scale = _mm512_set1_ps(inv), magic = _mm512_set1_ps(NNX_ROUND_MAGIC);
            const __m512i offset = _mm512_set1_epi32(zp - 12582912);
            const __m512i top = _mm512_set1_epi32(255);
            for (i = 0; i < n4; i += 16) {
                __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
                __m512 v = _mm512_maskz_loadu_ps(m, row + i);
                __m512i level = _mm512_add_epi32(
                    _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(v, scale), magic)), offset);
                level = _mm512_min_epi32(_mm512_max_epi32(level, _mm512_setzero_si512()), top);
                /* inputs past n are zero bytes, as the portable quantizer writes them */
                level = _mm512_maskz_mov_epi32(m, level);
                __m128i bytes = _mm512_cvtepi32_epi8(level);
                ptrdiff_t groups = (n4 - i) / 4 < 4 ? (n4 - i) / 4 : 4;
                if (cols == 1) {
                    uint32_t four[4];
                    _mm_storeu_si128((__m128i*)four, bytes);
                    memcpy(xq + i, four, (size_t)groups * 4);
                } else {
                    uint32_t four[4];
                    _mm_storeu_si128((__m128i*)four, bytes);
                    for (k = 0; k < groups; k++) lanes[(i / 4 + k) * cols + t] = four[k];
                }
            }
        }
    }
}

/* ---- AVX-512 VNNI ---------------------------------------------------------------------- */

NNX_TARGET_VNNI static inline __m512 nnx_i8_finish_vnni(
        __m512i acc, __m512i zero_point, int32_t row_sum, __m512 x_scale, float w_scale,
        float bias, int relu) {
    __m512 scale = _mm512_mul_ps(x_scale, _mm512_set1_ps(w_scale));
    __m512i centred = _mm512_sub_epi32(acc, _mm512_mullo_epi32(zero_point,
                                                               _mm512_set1_epi32(row_sum)));
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(centred), scale),
                             _mm512_set1_ps(bias));
    /* max(0, v) keeps NaN, as relu does elsewhere */
    return relu ? _mm512_max_ps(_mm512_setzero_ps(), v) : v;
}

/* acc += x . w by vpdpbusd. GCC 12 copies every accumulator of the intrinsic's loop through
 * other registers and the stack (it does not tie the accumulator to the destination); the
 * instruction in inline assembly keeps them in place. */
#if defined(__GNUC__)
#define NNX_DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))
#else
#define NNX_DPBUSD(acc, x, w) ((acc) = _mm512_dpbusd_epi32((acc), (x), (w)))
#endif

/* Neuron R of NNX_I8_VNNI_BLOCK: its 4 weights of group g times both vectors of samples. */
#define NNX_I8_VNNI_NEURON(R)                                                                 \
    {                                                                                         \
        __m512i wv = _mm512_set1_epi32((int)w[R]);                                            \
        NNX_DPBUSD(low##R, x0, wv);                                                           \
        NNX_DPBUSD(high##R, x1, wv);                                                          \
    }

/* Neuron R's sums: finished into y once the last group is in, else stored there as int32
 * for the next chunk of groups to resume from. */
#define NNX_I8_VNNI_STORE(R)                                                                  \
    if (R < block_rows && R < rows) {                                                         \
        ptrdiff_t jr = p * NNX_I8_PANEL + lane + R;                                           \
        float* out = y + jr * cols + t0;                                                      \
        if (g1 == n_groups) {                                                                 \
            _mm512_storeu_ps(out, nnx_i8_finish_vnni(low##R, zp0, row_sums[jr], xs0,          \
                                                     w_scales[jr], biases[jr], relu));        \
            _mm512_storeu_ps(out + 16, nnx_i8_finish_vnni(high##R, zp1, row_sums[jr], xs1,    \
                                                          w_scales[jr], biases[jr], relu));   \
        } else {                                                                              \
            _mm512_storeu_si512((void*)out, low##R);                                          \
            _mm512_storeu_si512((void*)(out + 16), high##R);                                  \
        }                                                                                     \
    }

#define NNX_I8_VNNI_RESUME(R)                                                                 \
    if (g0 > 0 && R < block_rows && R < rows) {                                               \
        const float* sums = y + (p * NNX_I8_PANEL + lane + R) * cols + t0;                    \
        low##R = _mm512_loadu_si512((const void*)sums);                                       \
        high##R = _mm512_loadu_si512((const void*)(sums + 16));                               \
    }

/* NR (4 or 8) neurons (of a panel, from `lane`) x 32 samples over the groups [g0, g1):
 * 2 * NR accumulators, named rather than an array so that they stay in registers. */
#define NNX_I8_VNNI_BLOCK(NR)                                                                 \
    {                                                                                         \
        __m512i low0 = _mm512_setzero_si512(), high0 = low0, low1 = low0, high1 = low0;       \
        __m512i low2 = low0, high2 = low0, low3 = low0, high3 = low0, low4 = low0;            \
        __m512i high4 = low0, low5 = low0, high5 = low0, low6 = low0, high6 = low0;           \
        __m512i low7 = low0, high7 = low0;                                                    \
        const int block_rows = NR;                                                            \
        const uint32_t* w = panel + g0 * NNX_I8_PANEL + lane;                                 \
        const uint32_t* x = (const uint32_t*)xq + g0 * cols + t0;                             \
        NNX_I8_VNNI_RESUME(0) NNX_I8_VNNI_RESUME(1) NNX_I8_VNNI_RESUME(2)                     \
        NNX_I8_VNNI_RESUME(3) NNX_I8_VNNI_RESUME(4) NNX_I8_VNNI_RESUME(5)                     \
        NNX_I8_VNNI_RESUME(6) NNX_I8_VNNI_RESUME(7)                                           \
        for (g = g0; g < g1; g++, w += NNX_I8_PANEL, x += cols) {                             \
            __m512i x0 = _mm512_loadu_si512((const void*)x);                                  \
            __m512i x1 = _mm512_loadu_si512((const void*)(x + 16));                           \
            NNX_I8_VNNI_NEURON(0) NNX_I8_VNNI_NEURON(1)                                       \
            NNX_I8_VNNI_NEURON(2) NNX_I8_VNNI_NEURON(3)                                       \
            if (block_rows > 4) {                                                             \
                NNX_I8_VNNI_NEURON(4) NNX_I8_VNNI_NEURON(5)                                   \
                NNX_I8_VNNI_NEURON(6) NNX_I8_VNNI_NEURON(7)                                   \
            }                                                                                 \
        }                                                                                     \
        {                                                                                     \
            const __m512 xs0 = _mm512_loadu_ps(x_scale + t0);                                 \
            const __m512 xs1 = _mm512_loadu_ps(x_scale + t0 + 16);                            \
            const __m512i zp0 = _mm512_loadu_si512((const void*)(zero_point + t0));           \
            const __m512i zp1 = _mm512_loadu_si512((const void*)(zero_point + t0 + 16));      \
            NNX_I8_VNNI_STORE(0) NNX_I8_VNNI_STORE(1) NNX_I8_VNNI_STORE(2)                    \
            NNX_I8_VNNI_STORE(3) NNX_I8_VNNI_STORE(4) NNX_I8_VNNI_STORE(5)                    \
            NNX_I8_VNNI_STORE(6) NNX_I8_VNNI_STORE(7)                                         \
        }                                                                                     \
    }

/* Bytes of a block's quantized inputs that one pass over the weights reads: the groups are
 * taken in chunks of at most this many (times the block's samples), which stay in L2 while
 * every panel passes; the int32 sums wait in y between chunks. */
#define NNX_I8_CHUNK_BYTES (512 * 1024)

/* q: nnx_i8_pack_weights' panels. Neurons outer, sample tiles inner: 8 neurons' weights of
 * a chunk stay in L1 while the block's tiles pass. */
NNX_TARGET_VNNI static void nnx_i8_tile_vnni(
        const uint8_t* xq, const int8_t* q, const int32_t* row_sums, const float* w_scales,
        const float* biases, ptrdiff_t n_in4, ptrdiff_t n_out, ptrdiff_t cols,
        const float* x_scale, const int32_t* zero_point, float* y, int relu) {
    ptrdiff_t n_groups = n_in4 / 4, p, lane, t0, g, g0, g1, rows;
    ptrdiff_t chunk = NNX_I8_CHUNK_BYTES / 4 / cols;
    const int8_t* weights = q;
    NNX_PANEL_LOOPS(n_groups, chunk, (void)0, NNX_I8_VNNI_BLOCK)
}

/* NP panels of one sample: the sums of 16 neurons per vector, each group's 4 inputs
 * broadcast against the panels' weights (the int32 sums are exact: the bits of the batch). */
#define NNX_I8_ROW_PANELS(NP)                                                                 \
    {                                                                                         \
        __m512i acc[NP];                                                                      \
        int k;                                                                                \
        for (k = 0; k < NP; k++) acc[k] = _mm512_setzero_si512();                             \
        for (g = 0; g < n_groups; g++) {                                                      \
            __m512i xv = _mm512_set1_epi32((int)x_groups[g]);                                 \
            for (k = 0; k < NP; k++)                                                          \
                acc[k] = _mm512_dpbusd_epi32(                                                 \
                    acc[k], xv, _mm512_loadu_si512((const void*)(                             \
                                    panels + ((p + k) * n_groups + g) * NNX_I8_PANEL)));      \
        }                                                                                     \
        for (k = 0; k < NP; k++) {                                                            \
            ptrdiff_t j = (p + k) * NNX_I8_PANEL, valid = last - j;                           \
            __mmask16 m = (__mmask16)(valid >= 16 ? 0xFFFFu : (1u << valid) - 1);             \
            __m512i centred = _mm512_sub_epi32(                                               \
                acc[k], _mm512_mullo_epi32(_mm512_set1_epi32(zero_point),                     \
                                           _mm512_maskz_loadu_epi32(m, row_sums + j)));       \
            __m512 scale = _mm512_mul_ps(_mm512_set1_ps(x_scale),                             \
                                         _mm512_maskz_loadu_ps(m, w_scales + j));             \
            __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(centred), scale),       \
                                     _mm512_maskz_loadu_ps(m, biases + j));                   \
            if (relu) v = _mm512_max_ps(_mm512_setzero_ps(), v); /* keeps NaN and -0 */       \
            _mm512_mask_storeu_ps(y + j, m, v);                                               \
        }                                                                                     \
    }

/* One sample from the panels (q: nnx_i8_pack_weights' layout): y[j] for j in [first, last),
 * first a multiple of 16; 4 panels at a time. xq: 4-byte aligned. */
NNX_TARGET_VNNI static void nnx_i8_row_vnni(
        const uint8_t* xq, const int8_t* q, const int32_t* row_sums, const float* w_scales,
        const float* biases, ptrdiff_t n_in4, ptrdiff_t first, ptrdiff_t last, float x_scale,
        int32_t zero_point, float* y, int relu) {
    const uint32_t* panels = (const uint32_t*)q;
    const uint32_t* x_groups = (const uint32_t*)xq;
    ptrdiff_t n_groups = n_in4 / 4, g, p;
    ptrdiff_t end = (last + NNX_I8_PANEL - 1) / NNX_I8_PANEL;
    for (p = first / NNX_I8_PANEL; p < end;) {
        if (end - p >= 4) {
            NNX_I8_ROW_PANELS(4)
            p += 4;
        } else {
            NNX_I8_ROW_PANELS(1)
            p += 1;
        }
    }
}

/* ---- AVX2: u8 and s8 widened to 16 bits, then vpmaddwd (exact; vpmaddubsw would saturate
 * 255 * 127 * 2) ------------------------------------------------------------------------- */

NNX_TARGET_AVX2 static inline __m256 nnx_i8_finish_avx2(
        __m256i acc, const int32_t* zero_point, int32_t row_sum, const float* x_scale,
        float w_scale, float bias, int relu) {
    __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(x_scale), _mm256_set1_ps(w_scale));
    __m256i centred = _mm256_sub_epi32(
        acc, _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i*)zero_point),
                                _mm256_set1_epi32(row_sum)));
    __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(centred), scale),
                             _mm256_set1_ps(bias));
    return relu ? _mm256_max_ps(_mm256_setzero_ps(), v) : v;
}

/* 2 neurons x 32 samples (4 vectors of 8) per step. */
NNX_TARGET_AVX2 static void nnx_i8_tile_avx2(
        const uint8_t* xq, const int8_t* q, const int32_t* row_sums, const float* w_scales,
        const float* biases, ptrdiff_t n_in4, ptrdiff_t n_out, ptrdiff_t cols,
        const float* x_scale, const int32_t* zero_point, float* y, int relu) {
    ptrdiff_t j, t0, g, nr, r, v;
    const __m256i low_bytes = _mm256_set1_epi32(0x00FF00FF);
    for (j = 0; j < n_out; j += nr) {
        nr = n_out - j >= 2 ? 2 : 1;
        for (t0 = 0; t0 < cols; t0 += NNX_I8_TILE) {
            __m256i acc[2][4];
            for (r = 0; r < 2; r++)
                for (v = 0; v < 4; v++) acc[r][v] = _mm256_setzero_si256();
            for (g = 0; g < n_in4; g += 4) {
                const uint8_t* x = xq + (g * cols + t0 * 4);
                __m256i w_even[2], w_odd[2];
                for (r = 0; r < nr; r++) {
                    int32_t packed;
                    memcpy(&packed, q + (j + r) * n_in4 + g, 4);
                    __m256i wv = _mm256_set1_epi32(packed);
                    /* weights 0 and 2, 1 and 3 of the group as sign-extended 16-bit pairs */
                    w_even[r] = _mm256_srai_epi16(_mm256_slli_epi16(wv, 8), 8);
                    w_odd[r] = _mm256_srai_epi16(wv, 8);
                }
                for (v = 0; v < 4; v++) {
                    __m256i xv = _mm256_loadu_si256((const __m256i*)(x + 32 * v));
                    __m256i x_even = _mm256_and_si256(xv, low_bytes);
                    __m256i x_odd = _mm256_and_si256(_mm256_srli_epi16(xv, 8), low_bytes);
                    for (r = 0; r < nr; r++)
                        acc[r][v] = _mm256_add_epi32(
                            acc[r][v], _mm256_add_epi32(_mm256_madd_epi16(x_even, w_even[r]),
                                                        _mm256_madd_epi16(x_odd, w_odd[r])));
                }
            }
            for (r = 0; r < nr; r++) {
                ptrdiff_t jr = j + r;
                for (v = 0; v < 4; v++)
                    _mm256_storeu_ps(y + jr * cols + t0 + 8 * v, nnx_i8_finish_avx2(
                        acc[r][v], zero_point + t0 + 8 * v, row_sums[jr],
                        x_scale + t0 + 8 * v, w_scales[jr], biases[jr], relu));
            }
        }
    }
}

/* One sample, 2 neurons at a time, 16 inputs per step widened to 16 bits. */
NNX_TARGET_AVX2 static void nnx_i8_row_avx2(
        const uint8_t* xq, const int8_t* q, const int32_t* row_sums, const float* w_scales,
        const float* biases, ptrdiff_t n_in4, ptrdiff_t first, ptrdiff_t last, float x_scale,
        int32_t zero_point, float* y, int relu) {
    ptrdiff_t j, i, r, nr;
    ptrdiff_t whole = n_in4 / 16 * 16;
    for (j = first; j < last; j += nr) {
        int32_t sums[2] = {0, 0};
        nr = last - j >= 2 ? 2 : 1;
        for (r = 0; r < nr; r++) {
            const int8_t* w = q + (j + r) * n_in4;
            __m256i acc = _mm256_setzero_si256();
            for (i = 0; i < whole; i += 16) {
                __m256i xv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i*)(xq + i)));
                __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(w + i)));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
            }
            __m128i half = _mm_add_epi32(_mm256_castsi256_si128(acc),
                                         _mm256_extracti128_si256(acc, 1));
            half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0x4E));
            half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0xB1));
            sums[r] = _mm_cvtsi128_si32(half);
            for (i = whole; i < n_in4; i++) sums[r] += xq[i] * w[i];
        }
        for (r = 0; r < nr; r++) {
            float v = nnx_i8_finish(sums[r], zero_point, row_sums[j + r], x_scale,
                                    w_scales[j + r], biases[j + r]);
            y[j + r] = relu && v < 0 ? 0.0f : v;
        }
    }
}

#endif  /* NNX_X86 */

/* ---- the kernel set in use --------------------------------------------------------------- */

typedef void (*nnx_i8_tile_fn)(const uint8_t*, const int8_t*, const int32_t*, const float*,
                               const float*, ptrdiff_t, ptrdiff_t, ptrdiff_t, const float*,
                               const int32_t*, float*, int);
typedef void (*nnx_i8_row_fn)(const uint8_t*, const int8_t*, const int32_t*, const float*,
                              const float*, ptrdiff_t, ptrdiff_t, ptrdiff_t, float, int32_t,
                              float*, int);
typedef void (*nnx_i8_quantize_cols_fn)(const float*, ptrdiff_t, ptrdiff_t, uint8_t*, float*,
                                        int32_t*, float*);
typedef void (*nnx_i8_quantize_rows_fn)(const float*, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                                        uint8_t*, float*, int32_t*);

/* panels: the tile and row kernels read nnx_i8_pack_weights' panels (else q, row-major). */
typedef struct {
    nnx_i8_tile_fn tile;
    nnx_i8_row_fn row;
    nnx_i8_quantize_cols_fn quantize_cols;
    nnx_i8_quantize_rows_fn quantize_rows;
    int panels;
} nnx_i8_kernels;

/* The kernels of a set (NNX_Q_*); the caller has checked that the CPU runs them. Sets
 * without int8 kernels of their own take the next lower one. */
static nnx_i8_kernels nnx_i8_kernels_for(int set) {
    nnx_i8_kernels k = {nnx_i8_tile_portable, nnx_i8_row_portable,
                        nnx_i8_quantize_cols_portable, nnx_i8_quantize_rows_portable, 0};
#if defined(NNX_X86)
    if (set >= NNX_Q_AVX512_VNNI) {      /* the BF16 set: every such CPU has VNNI */
        k.tile = nnx_i8_tile_vnni;
        k.row = nnx_i8_row_vnni;
        k.quantize_cols = nnx_i8_quantize_cols_avx512_wide;
        k.quantize_rows = nnx_i8_quantize_rows_avx512_wide;
        k.panels = 1;
    } else if (set != NNX_Q_PORTABLE) {
        k.tile = nnx_i8_tile_avx2;
        k.row = nnx_i8_row_avx2;
        k.quantize_cols = nnx_i8_quantize_cols_avx2;
        k.quantize_rows = nnx_i8_quantize_rows_avx2;
    }
#else
    (void)set;
#endif
    return k;
}

#endif  /* NNX_INT8_H */
