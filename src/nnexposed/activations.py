"""Activation functions, computed by the compiled kernels.

Each takes an array-like ``x`` of real numbers and returns a new ndarray of ``x``'s float dtype
(float16/float32 -> float32, anything else -> float64), or writes into ``out=``.
NaN and inf propagate as in NumPy; none of them overflows, and infinite inputs give the
function's limits (``silu(-inf) == 0``, ``elu(-inf) == -alpha``).
"""

import numpy as np

from nnexposed import kernels
from nnexposed._validation import as_real_array, as_real_scalar, check_out, float_dtype_for

ACTIVATIONS = kernels.ACTIVATION_NAMES

# The parameter of the activations that take one: leaky_relu's negative slope, elu's alpha.
DEFAULT_ALPHAS = {"leaky_relu": 0.01, "elu": 1.0}


class _Default:
    """Marks an ``alpha`` left out: each activation then uses its own default."""

    def __repr__(self):
        return "default"


DEFAULT = _Default()


def resolve_alpha(alpha, activation):
    """alpha as a float; ``DEFAULT`` gives 1.0 for elu and 0.01 (leaky_relu's) otherwise."""
    if alpha is DEFAULT:
        return DEFAULT_ALPHAS.get(activation, 0.01)
    return as_real_scalar(alpha, "alpha")


def activation_code(name):
    """Index of an activation name in ACTIVATIONS; ValueError listing the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (str), got {type(name).__name__}")
    try:
        return ACTIVATIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown activation {name!r}; expected one of: "
                         f"{', '.join(ACTIVATIONS)}") from None


def _result_buffer(x, out):
    """A C-contiguous float copy of x: in ``out`` when given, else a new array."""
    array = as_real_array(x, "x")
    dtype = float_dtype_for(array.dtype)
    if out is None:
        return np.array(array, dtype=dtype, order="C", copy=True)
    check_out(out, array.shape, dtype)
    np.copyto(out, array, casting="unsafe")
    return out


def _elementwise(x, name, out, alpha=DEFAULT):
    return kernels.activate_inplace(_result_buffer(x, out), activation_code(name),
                                  resolve_alpha(alpha, name))


def linear(x, *, out=None):
    """Identity: x unchanged (as float). x: any shape."""
    return _result_buffer(x, out)


def relu(x, *, out=None):
    """max(x, 0); NaN stays NaN. x: any shape."""
    return _elementwise(x, "relu", out)


def leaky_relu(x, alpha=0.01, *, out=None):
    """x where x >= 0, alpha * x elsewhere. x: any shape."""
    return _elementwise(x, "leaky_relu", out, alpha)


def sigmoid(x, *, out=None):
    """1 / (1 + exp(-x)), computed without overflow. x: any shape."""
    return _elementwise(x, "sigmoid", out)


def tanh(x, *, out=None):
    """Hyperbolic tangent. x: any shape."""
    return _elementwise(x, "tanh", out)


def gelu(x, *, out=None):
    """x * Phi(x), Phi the standard normal CDF (exact, with erf). x: any shape."""
    return _elementwise(x, "gelu", out)


def gelu_tanh(x, *, out=None):
    """GELU's tanh approximation, x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). x: any shape."""
    return _elementwise(x, "gelu_tanh", out)


def silu(x, *, out=None):
    """x * sigmoid(x) (also called swish). x: any shape."""
    return _elementwise(x, "silu", out)


def elu(x, alpha=1.0, *, out=None):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere. x: any shape."""
    return _elementwise(x, "elu", out, alpha)


def softplus(x, *, out=None):
    """log(1 + exp(x)), computed without overflow (as np.logaddexp(0, x)). x: any shape."""
    return _elementwise(x, "softplus", out)


def softmax(x, axis=-1, *, out=None):
    """exp(x - max) / sum(exp(x - max)) along ``axis``. x: at least 1-D."""
    array = as_real_array(x, "x")
    if array.ndim == 0:
        raise ValueError("softmax needs an array with at least one axis, got a 0-d array")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}")
    if not -array.ndim <= axis < array.ndim:
        raise np.exceptions.AxisError(int(axis), array.ndim)
    dtype = float_dtype_for(array.dtype)
    work = np.array(np.moveaxis(array, axis, -1), dtype=dtype, order="C", copy=True)
    kernels.activate_inplace(work, activation_code("softmax"))
    result = np.moveaxis(work, -1, axis)
    if out is None:
        return np.ascontiguousarray(result)
    check_out(out, array.shape, dtype)
    np.copyto(out, result)
    return out
