"""Reduced-precision weights: int8 with a scale per output neuron, bfloat16 and float16.

A layer's *precision* is the type its weights are stored in. Float layers ("float32",
"float64") compute in their dtype. The others compute in float32 from float32 inputs:

- "int8": weights ``q`` (int8, in [-127, 127]) and ``scales`` (float32, one per output
  neuron) with ``weights[j] ~= q[j] * scales[j]``; inputs are quantized per sample to
  unsigned 8 bits with a zero point (see ``quantize_inputs``), products summed in int32,
  then scaled, biased and activated in float32.
- "bfloat16" (``ml_dtypes.bfloat16``, needs ``pip install "nnexposed[bfloat16]"``) and
  "float16" (IEEE half): the weights are widened to float32 and summed in float32. On CPUs
  with AVX-512 BF16, bfloat16 layers round their inputs to bfloat16 too and multiply pairs
  with vdpbf16ps (as PyTorch and OpenVINO do in bfloat16).
"""

import numpy as np

FLOAT_PRECISIONS = ("float32", "float64")
REDUCED_PRECISIONS = ("int8", "bfloat16", "float16")
PRECISIONS = FLOAT_PRECISIONS + REDUCED_PRECISIONS

# Largest int8 weight magnitude that quantize gives: symmetric, so -128 is not used (layers
# imported from other libraries may hold it).
INT8_MAX = 127
# Unsigned 8-bit levels of a quantized input: 0..255.
UINT8_LEVELS = 255
# u8 x s8 products of this many inputs sum to less than 2**31 in the int32 accumulators.
INT8_MAX_INPUTS = (2**31 - 1) // (UINT8_LEVELS * 128)


def bfloat16_dtype():
    """``ml_dtypes.bfloat16`` as a NumPy dtype; ImportError naming the extra without it."""
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError('bfloat16 networks need ml_dtypes: pip install "nnexposed[bfloat16]"'
                          ) from None
    return np.dtype(ml_dtypes.bfloat16)


def as_precision(precision):
    """A precision name from PRECISIONS; ValueError/TypeError naming the valid ones."""
    if not isinstance(precision, str):
        raise TypeError(f"precision must be a name (str), got {type(precision).__name__}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of: "
                         f"{', '.join(PRECISIONS)}")
    return precision


# The precision of weights by their scalar type (dtype.name and dtype comparisons cost
# microseconds, and Network.trace asks on every call); bfloat16 is ml_dtypes', found by name.
_PRECISION_OF_TYPE = {np.int8: "int8", np.float16: "float16", np.float32: "float32",
                      np.float64: "float64"}


def precision_of(weights):
    """The precision that weights of this dtype are stored in, or None for other dtypes."""
    dtype = weights.dtype
    if not dtype.isnative:
        return None
    precision = _PRECISION_OF_TYPE.get(dtype.type)
    if precision is None and dtype.type.__name__ == "bfloat16":
        return "bfloat16"
    return precision


def storage_dtype(precision):
    """The dtype weights of a reduced precision are stored in."""
    if precision == "int8":
        return np.dtype(np.int8)
    if precision == "float16":
        return np.dtype(np.float16)
    return bfloat16_dtype()


def quantize_weights(weights, precision, where="weights"):
    """(stored weights, scales or None) of float weights (n_out, n_in) in ``precision``.

    int8: per output neuron, ``scales[j] = max|weights[j]| / 127`` (1 for an all-zero row)
    and ``q[j] = round(weights[j] / scales[j])``, ties to even. bfloat16 and float16: rounded
    to nearest. ValueError for non-finite weights or float16 overflow.
    """
    w = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"{where}: cannot quantize non-finite weights to {precision}")
    if precision == "int8":
        largest = np.abs(w).max(axis=1)
        scales = np.where(largest > 0, largest / INT8_MAX, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scales.astype(np.float64)[:, None]), -INT8_MAX, INT8_MAX)
        return q.astype(np.int8), scales
    with np.errstate(over="ignore"):
        stored = w.astype(storage_dtype(precision))
    if not np.isfinite(stored.astype(np.float32)).all():
        raise ValueError(f"{where}: weights up to {np.abs(w).max():g} overflow {precision} "
                         f"(largest finite {float(np.finfo(np.float16).max):g})")
    return stored, None


def dequantize_weights(weights, scales):
    """Float32 weights (n_out, n_in) from stored ones (and int8 scales)."""
    if weights.dtype == np.int8:
        return weights.astype(np.float32) * scales[:, None]
    return weights.astype(np.float32)


def round_to_bfloat16(x):
    """float32 x rounded to the nearest bfloat16 (ties to even; NaN stays NaN), as float32:
    the inputs of bfloat16 layers on the AVX-512 BF16 kernels."""
    return np.asarray(x, np.float32).astype(bfloat16_dtype()).astype(np.float32)


def quantize_inputs(x):
    """Per-sample dynamic quantization of float32 x (batch, n): (q, scale, zero_point).

    Each sample's range [min(x, 0), max(x, 0)] maps to 0..255: ``inv = 255 / range``,
    ``zero_point = rint(-min * inv)``, ``q = clip(rint(x * inv) + zero_point, 0, 255)``, and
    x ~= (q - zero_point) * scale with ``scale = range / 255``, all in float32 in this order
    (the compiled kernels round identically). A sample whose range is zero gets q = 0,
    scale 0; one with a non-finite value or range gets scale NaN (its outputs are NaN).
    q: (batch, n) uint8; scale: (batch,) float32; zero_point: (batch,) int32.
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        high = np.maximum(x.max(axis=1, initial=0), np.float32(0))
        low = np.minimum(x.min(axis=1, initial=0), np.float32(0))
        span = high - low
        finite = np.isfinite(span) & ~np.isnan(x).any(axis=1)
        usable = finite & (span > 0)
        inv = np.where(usable, np.float32(UINT8_LEVELS) / np.where(usable, span, 1), 0)
        inv = inv.astype(np.float32)
        zero_point = np.rint(-low * inv).astype(np.int32)
        scaled = np.rint(np.where(usable[:, None], x, 0) * inv[:, None]).astype(np.int32)
        q = np.clip(scaled + zero_point[:, None], 0, UINT8_LEVELS).astype(np.uint8)
        scale = np.where(finite, span / np.float32(UINT8_LEVELS), np.nan).astype(np.float32)
        scale = np.where(usable | ~finite, scale, 0).astype(np.float32)
    return q, scale, np.where(usable, zero_point, 0).astype(np.int32)


def int8_matmul_reference(x, q, scales, biases):
    """The int8 layer's affine part, as the kernels compute it: (batch, n_out) float32.

    ``((acc - zp * sum_i q[j, i]) as float32) * (scale_x * scales[j]) + biases[j]`` with acc
    the exact int32 sum of x's quantized values times q.
    """
    xq, x_scale, zero_point = quantize_inputs(x)
    acc = xq.astype(np.int64) @ q.T.astype(np.int64)
    acc -= zero_point.astype(np.int64)[:, None] * q.astype(np.int64).sum(axis=1)[None, :]
    combined = x_scale[:, None] * scales[None, :]
    with np.errstate(invalid="ignore", over="ignore"):
        return acc.astype(np.int32).astype(np.float32) * combined + biases
