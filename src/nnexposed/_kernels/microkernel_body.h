/* The tile kernel for one element type (NNX_T, vectors NNX_V of NNX_LANES, blocks of NNX_MR
   neurons x NNX_NV vectors, inputs NNX_KC at a time); microkernel.h includes it once per type. */

/* Inputs [0, kc) of neurons 0..mr-1 (mr <= NNX_MR, a constant once inlined) on the
   NNX_NV * NNX_LANES samples at x and y; w: the first neuron's weights, rows w_stride apart.
   The partial sums start from zero (first) or from y, and are stored to y as they are, or
   (last) with the bias added and ReLU applied if relu. */
NNX_INLINE void NNX_NAME(nnx_tile_block)(const NNX_T* x, const NNX_T* w, ptrdiff_t w_stride,
                                         const NNX_T* biases, NNX_T* y, ptrdiff_t kc,
                                         ptrdiff_t stride, int first, int last, int relu,
                                         const int mr)
{
    NNX_V acc[NNX_MR][NNX_NV];
    NNX_V xv[NNX_NV];
    NNX_V wv, v;
    ptrdiff_t i;
    int r, t;
    for (r = 0; r < mr; r++)
        for (t = 0; t < NNX_NV; t++)
            acc[r][t] = first ? nnx_v_zero() : nnx_v_load(y + r * stride + t * NNX_LANES);
    for (i = 0; i < kc; i++) {
        for (t = 0; t < NNX_NV; t++)
            xv[t] = nnx_v_load(x + i * stride + t * NNX_LANES);
        for (r = 0; r < mr; r++) {
            wv = nnx_v_splat(w[r * w_stride + i]);
            for (t = 0; t < NNX_NV; t++)
                acc[r][t] = nnx_v_fma(acc[r][t], wv, xv[t]);
        }
    }
    for (r = 0; r < mr; r++) {
        NNX_V bias = nnx_v_splat(biases[r]);
        for (t = 0; t < NNX_NV; t++) {
            v = acc[r][t];
            if (last) {
                v = nnx_v_add(v, bias);
                /* max(0, v) keeps NaN and -0.0 as they are, like "0 if v < 0 else v". */
                if (relu)
                    v = nnx_v_max(nnx_v_zero(), v);
            }
            nnx_v_store(y + r * stride + t * NNX_LANES, v);
        }
    }
}

/* Inputs [k0, k0 + kc) of neurons [j, j + mr) on every sample of the tile, NNX_NV *
   NNX_LANES samples at a time (the weights of the block stay in L1 while the samples pass). */
NNX_INLINE void NNX_NAME(nnx_tile_rows)(const NNX_T* x, const NNX_T* weights,
                                        const NNX_T* biases, NNX_T* y, ptrdiff_t n_in,
                                        ptrdiff_t stride, ptrdiff_t n_cols, int relu,
                                        ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t j, const int mr)
{
    ptrdiff_t t0;
    for (t0 = 0; t0 < n_cols; t0 += NNX_NV * NNX_LANES)
        NNX_NAME(nnx_tile_block)(x + k0 * stride + t0, weights + j * n_in + k0, n_in,
                                 biases + j, y + j * stride + t0, kc, stride, k0 == 0,
                                 k0 + kc == n_in, relu, mr);
}

/* y = W @ x + b, then ReLU if relu, on a tile of n_cols samples (a multiple of
   NNX_NV * NNX_LANES) stored feature-major: x (n_in, n_cols), y (n_out, n_cols), rows
   stride apart; W (n_out, n_in) C order. Inputs are taken NNX_KC at a time, so that their
   rows of the tile stay in L1 while every neuron uses them, unless the layer has at least
   NNX_STREAMED_MIN_WEIGHTS weights: those come from memory, where reading each row of
   weights in one run (not a piece of every row per pass) was up to 1.3x faster on a
   4096 x 4096 layer. The ahead_bytes from ahead are fetched into cache along the way, a few
   lines per block of neurons. */
static void NNX_NAME(nnx_tile)(const NNX_T* x, const NNX_T* weights, const NNX_T* biases,
                               NNX_T* y, ptrdiff_t n_in, ptrdiff_t n_out, ptrdiff_t stride,
                               ptrdiff_t n_cols, int relu, const char* ahead,
                               ptrdiff_t ahead_bytes)
{
    const ptrdiff_t kc_max = n_in * n_out >= NNX_STREAMED_MIN_WEIGHTS ? n_in : NNX_KC;
    const ptrdiff_t n_blocks = n_out / NNX_MR;
    const ptrdiff_t ahead_lines = (ahead_bytes + 63) / 64;
    const ptrdiff_t lines_per_block = (ahead_lines + n_blocks) / (n_blocks > 0 ? n_blocks : 1);
    ptrdiff_t j, k0, kc, block, line;
    for (k0 = 0; k0 < n_in; k0 += kc) {
        kc = n_in - k0 < kc_max ? n_in - k0 : kc_max;
        j = 0;
        for (block = 0; block < n_blocks; block++, j += NNX_MR) {
            if (k0 == 0)
                for (line = block * lines_per_block;
                     line < (block + 1) * lines_per_block && line < ahead_lines; line++)
                    nnx_prefetch(ahead + line * 64);
            NNX_NAME(nnx_tile_rows)(x, weights, biases, y, n_in, stride, n_cols, relu, k0, kc,
                                    j, NNX_MR);
        }
        /* The neurons left, in blocks of 8, 4, 2, 1 below NNX_MR: a neuron's result does
           not depend on the block it is computed in. */
#if NNX_MR > 8
        for (; j + 8 <= n_out; j += 8)
            NNX_NAME(nnx_tile_rows)(x, weights, biases, y, n_in, stride, n_cols, relu, k0, kc,
                                    j, 8);
#endif
#if NNX_MR > 4
        for (; j + 4 <= n_out; j += 4)
            NNX_NAME(nnx_tile_rows)(x, weights, biases, y, n_in, stride, n_cols, relu, k0, kc,
                                    j, 4);
#endif
#if NNX_MR > 2
        for (; j + 2 <= n_out; j += 2)
            NNX_NAME(nnx_tile_rows)(x, weights, biases, y, n_in, stride, n_cols, relu, k0, kc,
                                    j, 2);
#endif
#if NNX_MR > 1
        for (; j < n_out; j++)
            NNX_NAME(nnx_tile_rows)(x, weights, biases, y, n_in, stride, n_cols, relu, k0, kc,
                                    j, 1);
#endif
    }
}
