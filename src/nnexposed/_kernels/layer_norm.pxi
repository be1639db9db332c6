# Layer normalisation, a layer kind of the chain (LayerPlan.kind == KIND_LAYER_NORM): each
# sample's n features become (x - mean) / sqrt(var + eps) * weight + bias, then the layer's
# activation. The moments are summed in double in both dtypes, as reference.forward_numpy
# computes them, so NaN and inf propagate alike (one NaN or inf makes the sample all NaN).
# Included by core.pxi.

from libc.math cimport sqrt


cdef void layer_norm_strided(const floating* x, floating* y, Py_ssize_t n, Py_ssize_t stride,
                             const floating* weight, const floating* bias,
                             double eps) noexcept nogil:
    """One sample whose n features are ``stride`` apart in x and in y (which may be x)."""
    cdef Py_ssize_t j
    cdef double mean = 0, var = 0, d, rstd
    for j in range(n):
        mean += x[j * stride]
    mean /= n
    for j in range(n):
        d = x[j * stride] - mean
        var += d * d
    rstd = 1.0 / sqrt(var / n + eps)
    for j in range(n):
        y[j * stride] = <floating>((x[j * stride] - mean) * rstd * weight[j] + bias[j])


cdef void layer_norm_block(const LayerPlan* layer, const floating* x, floating* y,
                           Py_ssize_t cols) noexcept nogil:
    """A block of ``cols`` samples stored feature-major, x and y: (n, cols), TILE samples at
    a time with their moments in vector lanes; cols a multiple of TILE."""
    cdef Py_ssize_t n = layer.n_out
    cdef Py_ssize_t j, t, block
    cdef double mean[TILE]
    cdef double rstd[TILE]
    cdef double d
    cdef const floating* weight = <const floating*>layer.weights
    cdef const floating* bias = <const floating*>layer.biases
    cdef const floating* xt
    cdef floating* yt
    for block in range(cols // TILE):
        xt = x + block * TILE
        yt = y + block * TILE
        for t in range(TILE):
            mean[t] = 0
            rstd[t] = 0
        for j in range(n):
            for t in range(TILE):
                mean[t] += xt[j * cols + t]
        for t in range(TILE):
            mean[t] /= n
        for j in range(n):
            for t in range(TILE):
                d = xt[j * cols + t] - mean[t]
                rstd[t] += d * d
        for t in range(TILE):
            rstd[t] = 1.0 / sqrt(rstd[t] / n + layer.eps)
        for j in range(n):
            for t in range(TILE):
                yt[j * cols + t] = <floating>((xt[j * cols + t] - mean[t]) * rstd[t]
                                              * weight[j] + bias[j])
