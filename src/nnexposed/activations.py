"""Activation functions, computed by the compiled kernels.

Each takes an array-like ``x`` of real numbers and returns a new ndarray of ``x``'s float dtype
(float16/float32 -> float32, anything else -> float64), or writes into ``out=``.
NaN and inf propagate as in NumPy; none of them overflows, and infinite inputs give the
function's limits (``silu(-inf) == 0``, ``elu(-inf) == -alpha``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from nnexposed import kernels
from nnexposed._validation import as_real_array, as_real_scalar, check_out, float_dtype_for

ACTIVATIONS = kernels.ACTIVATION_NAMES
"""The names of the activations, as ``Dense`` and ``Network.from_sizes`` take them."""

FloatArray = npt.NDArray[np.floating]
_F = TypeVar("_F", bound=Callable[..., Any])

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


# The sections every activation's docstring shares (filled in by _shared_doc).
_SHARED_DOC = {
    "x": """x : array_like
        Real numbers, any shape; float16 and float32 compute in float32, other dtypes in
        float64.""",
    "out": """out : ndarray, optional
        Where to write the result: writeable, C-contiguous, of x's shape and the result's
        dtype (it may be x itself).""",
    "returns": """Returns
    -------
    ndarray
        The result, of x's shape, float32 or float64 as above (``out`` when given).""",
}
_SHARED_DOC["parameters"] = """Parameters
    ----------
    {x}
    {out}

    {returns}""".format(**_SHARED_DOC)


def _shared_doc(function: _F) -> _F:
    """Fill the {parameters} (or {x}, {out} and {returns}) of an activation's docstring."""
    function.__doc__ = (function.__doc__ or "").format(**_SHARED_DOC)
    return function


@_shared_doc
def linear(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """The identity: x unchanged, as floats.

    {parameters}

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.linear([-1, 0, 2])
    array([-1.,  0.,  2.])
    """
    return _result_buffer(x, out)


@_shared_doc
def relu(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """``max(x, 0)``; NaN stays NaN.

    {parameters}

    Examples
    --------
    >>> import numpy as np, nnexposed
    >>> nnexposed.relu(np.array([-1.0, 0.0, 2.0], np.float32))
    array([0., 0., 2.], dtype=float32)
    """
    return _elementwise(x, "relu", out)


@_shared_doc
def leaky_relu(x: npt.ArrayLike, alpha: float = 0.01, *,
               out: FloatArray | None = None) -> FloatArray:
    """x where x >= 0, ``alpha * x`` elsewhere.

    Parameters
    ----------
    {x}
    alpha : float, default 0.01
        The slope for negative x.
    {out}

    {returns}

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.leaky_relu([-1.0, 0.0, 2.0], alpha=0.1)
    array([-0.1,  0. ,  2. ])
    """
    return _elementwise(x, "leaky_relu", out, alpha)


@_shared_doc
def sigmoid(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """The logistic function ``1 / (1 + exp(-x))``, computed without overflow.

    {parameters}

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.sigmoid([-1.0, 0.0, 2.0])
    array([0.26894142, 0.5       , 0.88079708])
    """
    return _elementwise(x, "sigmoid", out)


@_shared_doc
def tanh(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """The hyperbolic tangent.

    {parameters}

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.tanh([-1.0, 0.0, 2.0])
    array([-0.76159416,  0.        ,  0.96402758])
    """
    return _elementwise(x, "tanh", out)


@_shared_doc
def gelu(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """GELU, exact: ``x * Phi(x)``, Phi the standard normal CDF (computed with erfc).

    {parameters}

    See Also
    --------
    gelu_tanh : its tanh approximation.

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.gelu([-1.0, 0.0, 2.0])
    array([-0.15865525,  0.        ,  1.95449974])
    """
    return _elementwise(x, "gelu", out)


@_shared_doc
def gelu_tanh(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """GELU's tanh approximation, ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3)))``.

    {parameters}

    See Also
    --------
    gelu : the exact GELU.

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.gelu_tanh([-1.0, 0.0, 2.0])
    array([-0.15880801,  0.        ,  1.95459769])
    """
    return _elementwise(x, "gelu_tanh", out)


@_shared_doc
def silu(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """SiLU (also called swish): ``x * sigmoid(x)``.

    {parameters}

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.silu([-1.0, 0.0, 2.0])
    array([-0.26894142,  0.        ,  1.76159416])
    """
    return _elementwise(x, "silu", out)


@_shared_doc
def elu(x: npt.ArrayLike, alpha: float = 1.0, *, out: FloatArray | None = None) -> FloatArray:
    """ELU: x where x > 0, ``alpha * (exp(x) - 1)`` elsewhere.

    Parameters
    ----------
    {x}
    alpha : float, default 1.0
        The limit for x towards -inf is ``-alpha``.
    {out}

    {returns}

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.elu([-1.0, 0.0, 2.0])
    array([-0.63212056,  0.        ,  2.        ])
    """
    return _elementwise(x, "elu", out, alpha)


@_shared_doc
def softplus(x: npt.ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """``log(1 + exp(x))``, computed without overflow (as ``np.logaddexp(0, x)``).

    {parameters}

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.softplus([-1.0, 0.0, 2.0])
    array([0.31326169, 0.69314718, 2.12692801])
    """
    return _elementwise(x, "softplus", out)


def softmax(x: npt.ArrayLike, axis: int = -1, *, out: FloatArray | None = None) -> FloatArray:
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``: each slice sums to 1.

    Parameters
    ----------
    x : array_like
        Real numbers, at least 1-D; float16 and float32 compute in float32, other dtypes in
        float64.
    axis : int, default -1
        The axis along which the results sum to 1.
    out : ndarray, optional
        Where to write the result: writeable, C-contiguous, of x's shape and the result's
        dtype (it may be x itself).

    Returns
    -------
    ndarray
        The result, of x's shape, float32 or float64 as above (``out`` when given).

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.softmax([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    array([[0.09003057, 0.24472847, 0.66524096],
           [0.33333333, 0.33333333, 0.33333333]])
    """
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
