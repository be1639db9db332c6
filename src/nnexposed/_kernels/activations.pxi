# Activation kernels, included by core.pxi: in place over float32/float64, NaN and inf
# propagated as NumPy propagates them, no overflow for any input. Infinite inputs give the
# function's limits (gelu(-inf) = silu(-inf) = softplus(-inf) = 0, elu(-inf) = -alpha).

from libc.math cimport erfc, erfcf, expm1, expm1f, log1p, log1pf

# sqrt(1/2) and 2 * sqrt(2/pi), for gelu and its tanh approximation.
cdef double SQRT_HALF = 0.70710678118654752440
cdef double TWO_SQRT_2_OVER_PI = 1.59576912160573071176

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


cdef inline floating times_gate(floating v, floating gate) noexcept nogil:
    # v * gate for a gate in [0, 1] (or NaN); 0 where the gate underflows to 0, so that
    # -inf * 0 gives the limit 0 instead of NaN.
    return v * gate if gate != 0 else 0


cdef inline floating gelu_scalar(floating v) noexcept nogil:
    # x * Phi(x) = x * erfc(-x / sqrt 2) / 2: erfc keeps full precision for negative x,
    # where 1 + erf(x / sqrt 2) would cancel.
    if floating is float:
        return times_gate(v, <float>0.5 * erfcf(-v * <float>SQRT_HALF))
    else:
        return times_gate(v, 0.5 * erfc(-v * SQRT_HALF))


cdef inline floating gelu_tanh_scalar(floating v) noexcept nogil:
    # x * (1 + tanh(u)) / 2 = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the sigmoid
    # form does not cancel for negative x.
    cdef floating u2 = <floating>TWO_SQRT_2_OVER_PI * (v + <floating>0.044715 * v * v * v)
    return times_gate(v, sigmoid_scalar(u2))


cdef inline floating elu_scalar(floating v, floating alpha) noexcept nogil:
    if v > 0:
        return v
    if floating is float:
        return alpha * expm1f(v)      # NaN stays NaN, -inf gives -alpha
    else:
        return alpha * expm1(v)


cdef inline floating softplus_scalar(floating v) noexcept nogil:
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), as np.logaddexp(0, x).
    if floating is float:
        return (v if v > 0 else 0) + log1pf(expf(-fabsf(v)))
    else:
        return (v if v > 0 else 0) + log1p(exp(-fabs(v)))


cdef void activate(floating* values, Py_ssize_t n, int activation,
                   floating alpha) noexcept nogil:
    """Apply an element-wise activation in place to ``values[0:n]`` (softmax: one vector).

    ``alpha`` is leaky_relu's negative slope and elu's alpha; the other activations ignore it.
    """
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
    elif activation == ACT_GELU:
        for i in range(n):
            values[i] = gelu_scalar(values[i])
    elif activation == ACT_GELU_TANH:
        for i in range(n):
            values[i] = gelu_tanh_scalar(values[i])
    elif activation == ACT_SILU:
        for i in range(n):
            v = values[i]
            values[i] = times_gate(v, sigmoid_scalar(v))
    elif activation == ACT_ELU:
        for i in range(n):
            values[i] = elu_scalar(values[i], alpha)
    elif activation == ACT_SOFTPLUS:
        for i in range(n):
            values[i] = softplus_scalar(values[i])


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
