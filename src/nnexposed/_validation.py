"""Checks and conversions shared by the public API: array-likes in, validated ndarrays out.

Every message names what was expected and what was given.
"""

import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype_for(dtype):
    """The float dtype the kernels compute in for data of ``dtype``.

    float16 and float32 compute in float32; every other real type (ints, bools, float64,
    longdouble) in float64.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return FLOAT_DTYPES[0]
    return FLOAT_DTYPES[1]


def as_compute_dtype(dtype):
    """Parse a user-given dtype ('float32', np.float64, ...) that must be float32 or float64."""
    try:
        parsed = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"expected dtype float32 or float64, got {dtype!r}") from error
    if parsed not in FLOAT_DTYPES:
        raise TypeError(f"expected dtype float32 or float64, got {parsed}")
    return parsed


def as_real_array(value, name):
    """``np.asarray(value)``, refusing anything that is not real numbers."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} is not an array of real numbers: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected {name} of real numbers (bool, int or float), "
                        f"got dtype {array.dtype}")
    return array


def as_network_input(x, dtype, n_in):
    """x as a C-contiguous ``dtype`` array of shape (n_in,) or (batch, n_in)."""
    array = as_real_array(x, "x")
    if array.ndim not in (1, 2) or array.shape[-1] != n_in:
        raise ValueError(f"expected x of shape ({n_in},) or (batch, {n_in}), "
                         f"got shape {array.shape}")
    return as_c_array(array, dtype)


def as_c_array(array, dtype):
    """array as a C-contiguous, aligned, native-order ``dtype`` array, copied only if needed.

    (np.ascontiguousarray alone keeps an unaligned buffer, which the kernels must not get.)
    """
    result = np.ascontiguousarray(array, dtype=dtype)
    return result if result.flags.aligned else result.copy()


def check_out(out, shape, dtype):
    """Raise unless ``out`` can take a result of this shape and dtype in place."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {out.shape}")
    if not (out.flags.c_contiguous and out.flags.aligned):
        raise ValueError("out must be a C-contiguous (and aligned) array")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def as_positive_int(value, name):
    """An int >= 1 (numpy integers accepted, bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if number < 1:
        raise ValueError(f"{name} must be >= 1, got {number}")
    return number


def as_real_scalar(value, name):
    """A Python float from a real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, np.complexfloating):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)
