# Activation kernels, included by _core.pyx: in place over float32/float64, NaN and inf
# propagated as NumPy propagates them, no overflow for any input.

cdef inline floating sigmoid_scalar(floating v) noexcept nogil:
    # exp of a non-positive number never overflows.
    cdef floating e
    if floating is float:
        e = expf(-fabsf(v))
    else:
        e = exp(-fabs(v))
    if v >= 0:
        return 1 / (1 + e)
    return e / (1 + e)


cdef void activate(floating* values, Py_ssize_t n, int activation,
                   floating alpha) noexcept nogil:
    """Apply an element-wise activation in place to ``values[0:n]`` (softmax: one vector)."""
    cdef Py_ssize_t i
    cdef floating v
    if activation == ACT_RELU:
        for i in range(n):
            v = values[i]
            values[i] = 0 if v < 0 else v     # NaN stays NaN, as np.maximum gives
    elif activation == ACT_LEAKY_RELU:
        for i in range(n):
            v = values[i]
            values[i] = alpha * v if v < 0 else v
    elif activation == ACT_SIGMOID:
        for i in range(n):
            values[i] = sigmoid_scalar(values[i])
    elif activation == ACT_TANH:
        for i in range(n):
            if floating is float:
                values[i] = tanhf(values[i])
            else:
                values[i] = tanh(values[i])
    elif activation == ACT_SOFTMAX:
        softmax_strided(values, n, 1)


cdef void softmax_strided(floating* values, Py_ssize_t n, Py_ssize_t stride) noexcept nogil:
    """Softmax in place over ``values[0], values[stride], ... values[(n-1)*stride]``."""
    cdef Py_ssize_t i
    cdef floating v, e, largest, total = 0
    if n <= 0:
        return
    largest = values[0]
    for i in range(1, n):
        v = values[i * stride]
        if v > largest or v != v:      # a NaN anywhere makes the whole vector NaN, as in NumPy
            largest = v
            if v != v:
                break
    for i in range(n):
        if floating is float:
            e = expf(values[i * stride] - largest)
        else:
            e = exp(values[i * stride] - largest)
        values[i * stride] = e
        total += e
    for i in range(n):
        values[i * stride] = values[i * stride] / total
