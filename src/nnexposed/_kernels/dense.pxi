# Dense-layer kernels, included by core.pxi. Written so the compiler vectorises them without
# reassociating sums it was not told to: independent partial sums live in small arrays of
# fixed length, whose loops become vector instructions of whatever ISA the module targets.

cdef extern from "_kernels/isa_tuning.h":
    enum: NNX_BLAS_AUTO_MIN_WEIGHTS

# The batched micro-kernel: one C source, its block shape chosen per ISA at compile time.
cdef extern from "_kernels/microkernel.h":
    const char* NNX_TILE_ISA
    enum: NNX_F32_MR
    enum: NNX_F32_NV
    enum: NNX_F32_LANES
    enum: NNX_F64_MR
    enum: NNX_F64_NV
    enum: NNX_F64_LANES
    enum: NNX_KC_F32
    enum: NNX_KC_F64
    enum: NNX_STREAMED_MIN_WEIGHTS
    void nnx_tile_f32(const float* x, const float* weights, const float* biases, float* y,
                      Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t stride, Py_ssize_t n_cols,
                      int relu, const char* ahead, Py_ssize_t ahead_bytes) noexcept nogil
    void nnx_tile_f64(const double* x, const double* weights, const double* biases, double* y,
                      Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t stride, Py_ssize_t n_cols,
                      int relu, const char* ahead, Py_ssize_t ahead_bytes) noexcept nogil

cdef enum:
    CACHE_LINE = 64


cdef inline floating dot_tail(const floating* acc, const floating* row, const floating* x,
                              Py_ssize_t start, Py_ssize_t n_in) noexcept nogil:
    """Sum of the LANES (16) partial sums in acc as a tree (four dependent adds, not
    fifteen), plus row[start:n_in] . x[start:n_in]."""
    cdef Py_ssize_t i
    cdef floating total = (((acc[0] + acc[8]) + (acc[4] + acc[12]))
                           + ((acc[2] + acc[10]) + (acc[6] + acc[14]))
                           + (((acc[1] + acc[9]) + (acc[5] + acc[13]))
                              + ((acc[3] + acc[11]) + (acc[7] + acc[15]))))
    for i in range(start, n_in):
        total += row[i] * x[i]
    return total


cdef inline void dense_row_narrow(const floating* x, const floating* weights,
                                  const floating* biases, floating* y, Py_ssize_t n_in,
                                  Py_ssize_t n_out) noexcept nogil:
    """dense_row for n_in < LANES: one plain dot product per output neuron."""
    cdef Py_ssize_t i, j
    cdef floating total
    for j in range(n_out):
        total = 0
        for i in range(n_in):
            total += weights[j * n_in + i] * x[i]
        y[j] = total + biases[j]


cdef void dense_row(const floating* x, const floating* weights, const floating* biases,
                    floating* y, Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """y = weights @ x + biases for one sample; x: (n_in,), weights: (n_out, n_in).

    Four rows at a time, each with LANES partial sums, so x is loaded once per four rows.
    """
    cdef Py_ssize_t i, j, lane
    cdef Py_ssize_t n_vec = n_in - n_in % LANES
    cdef const floating* r0
    cdef const floating* r1
    cdef const floating* r2
    cdef const floating* r3
    cdef floating xv
    cdef floating a0[LANES]
    cdef floating a1[LANES]
    cdef floating a2[LANES]
    cdef floating a3[LANES]
    if n_vec == 0:
        dense_row_narrow(x, weights, biases, y, n_in, n_out)
        return
    j = 0
    while j + 4 <= n_out:
        r0 = weights + j * n_in
        r1 = r0 + n_in
        r2 = r1 + n_in
        r3 = r2 + n_in
        for lane in range(LANES):
            a0[lane] = 0
            a1[lane] = 0
            a2[lane] = 0
            a3[lane] = 0
        for i in range(0, n_vec // LANES):
            for lane in range(LANES):
                xv = x[i * LANES + lane]
                a0[lane] += r0[i * LANES + lane] * xv
                a1[lane] += r1[i * LANES + lane] * xv
                a2[lane] += r2[i * LANES + lane] * xv
                a3[lane] += r3[i * LANES + lane] * xv
        y[j] = dot_tail(a0, r0, x, n_vec, n_in) + biases[j]
        y[j + 1] = dot_tail(a1, r1, x, n_vec, n_in) + biases[j + 1]
        y[j + 2] = dot_tail(a2, r2, x, n_vec, n_in) + biases[j + 2]
        y[j + 3] = dot_tail(a3, r3, x, n_vec, n_in) + biases[j + 3]
        j += 4
    while j < n_out:
        r0 = weights + j * n_in
        for lane in range(LANES):
            a0[lane] = 0
        for i in range(0, n_vec // LANES):
            for lane in range(LANES):
                a0[lane] += r0[i * LANES + lane] * x[i * LANES + lane]
        y[j] = dot_tail(a0, r0, x, n_vec, n_in) + biases[j]
        j += 1


def tile_shape():
    """The batched micro-kernel of this build: {"isa": vector instructions it uses, "float32"
    and "float64": (neurons, samples, inputs) per block — output neurons and samples whose sums
    accumulate in registers, inputs taken per pass over a tile — and "streamed_min_weights":
    layers of at least this many weights take all their inputs in one pass}."""
    return {"isa": NNX_TILE_ISA.decode(),
            "float32": (NNX_F32_MR, NNX_F32_NV * NNX_F32_LANES, NNX_KC_F32),
            "float64": (NNX_F64_MR, NNX_F64_NV * NNX_F64_LANES, NNX_KC_F64),
            "streamed_min_weights": NNX_STREAMED_MIN_WEIGHTS}


cdef inline void dense_tile(const floating* x, const floating* weights,
                            const floating* biases, floating* y, Py_ssize_t n_in,
                            Py_ssize_t n_out, Py_ssize_t stride, bint relu, const char* ahead,
                            Py_ssize_t ahead_bytes) noexcept nogil:
    """One layer on a tile of TILE samples stored feature-major, with ReLU applied as the
    results are stored if ``relu``.

    x: (n_in, TILE) and y: (n_out, TILE) with rows ``stride`` apart; weights: (n_out, n_in).
    Blocks of neurons x samples accumulate in registers (this build's micro-kernel:
    tile_shape()). The ``ahead_bytes`` from ``ahead`` (the next tile's input, say) are
    fetched into cache along the way, a few lines per block of neurons.
    """
    if floating is float:
        nnx_tile_f32(x, weights, biases, y, n_in, n_out, stride, TILE, relu, ahead, ahead_bytes)
    else:
        nnx_tile_f64(x, weights, biases, y, n_in, n_out, stride, TILE, relu, ahead, ahead_bytes)


cdef void dense_panels(const floating* x, const floating* panels, const floating* biases,
                       floating* y, Py_ssize_t n_in, Py_ssize_t first,
                       Py_ssize_t last) noexcept nogil:
    """y[j] = weights[j] @ x + biases[j] for one sample and the neurons j of panels first to
    last - 1; x: (n_in,), panels: LayerPlan.panels, y: (n_out,).

    Output neurons sit in the vector lanes (a panel's OUT_BLOCK accumulate in registers over
    all inputs while its weights stream in order), so no horizontal sums are needed.
    """
    cdef Py_ssize_t i, t, p
    cdef floating xi
    cdef floating acc[OUT_BLOCK]
    cdef const floating* w
    for p in range(first, last):
        w = panels + p * n_in * OUT_BLOCK
        for t in range(OUT_BLOCK):
            acc[t] = 0
        for i in range(n_in):
            xi = x[i]
            for t in range(OUT_BLOCK):
                acc[t] += xi * w[i * OUT_BLOCK + t]
        for t in range(OUT_BLOCK):
            y[p * OUT_BLOCK + t] = acc[t] + biases[p * OUT_BLOCK + t]
