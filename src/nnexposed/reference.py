"""Readable references that the compiled kernels are tested and benchmarked against.

``forward_python`` is the article's double loop over neurons and inputs, generalised to a
network; ``forward_numpy`` is idiomatic NumPy, ``x @ W.T + b`` then the activation. Both take
the same arguments and give the same results as ``nnexposed.forward``.
"""

import math
from collections import deque

import numpy as np
from scipy.special import erfc as _erfc

from nnexposed._validation import as_network_input
from nnexposed.network import LayerNorm, LayerValues, Network
from nnexposed.precision import (
    REDUCED_PRECISIONS,
    dequantize_weights,
    int8_matmul_reference,
    round_to_bfloat16,
)

# sqrt(1/2) and 2 * sqrt(2/pi), for gelu and its tanh approximation.
SQRT_HALF = math.sqrt(0.5)
TWO_SQRT_2_OVER_PI = 2.0 * math.sqrt(2.0 / math.pi)

# --------------------------------------------------------------------------------------------
# Pure Python
# --------------------------------------------------------------------------------------------


def layer_output_python(inputs, weights, biases):
    """The article's layer output utility: one value per neuron, ``weights[neuron][input]``."""
    outputs = []
    for neuron_weights, bias in zip(weights, biases):
        total = 0.0
        for value, weight in zip(inputs, neuron_weights):
            total += value * weight
        outputs.append(total + bias)
    return outputs


def _sigmoid_python(value):
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    e = math.exp(value)  # also reached by NaN, which stays NaN
    return e / (1.0 + e)


def _softmax_python(values):
    if any(math.isnan(value) for value in values):
        return [math.nan] * len(values)
    largest = max(values)
    exps = [math.exp(value - largest) for value in values]
    total = sum(exps)
    return [e / total for e in exps]


def _gated_python(value, gate):
    # value * gate, with the limit 0 where the gate is 0 (-inf * 0 would be NaN).
    return value * gate if gate != 0 else 0.0


def _gelu_python(value):
    return _gated_python(value, 0.5 * math.erfc(-value * SQRT_HALF))


def _gelu_tanh_python(value):
    u2 = TWO_SQRT_2_OVER_PI * (value + 0.044715 * value * value * value)
    return _gated_python(value, _sigmoid_python(u2))


def _softplus_python(value):
    return (value if value > 0 else 0.0) + math.log1p(math.exp(-abs(value)))


PYTHON_ACTIVATIONS = {
    "linear": lambda values, alpha: values,
    "relu": lambda values, alpha: [0.0 if v < 0 else v for v in values],
    "leaky_relu": lambda values, alpha: [alpha * v if v < 0 else v for v in values],
    "sigmoid": lambda values, alpha: [_sigmoid_python(v) for v in values],
    "tanh": lambda values, alpha: [math.tanh(v) for v in values],
    "softmax": lambda values, alpha: _softmax_python(values),
    "gelu": lambda values, alpha: [_gelu_python(v) for v in values],
    "gelu_tanh": lambda values, alpha: [_gelu_tanh_python(v) for v in values],
    "silu": lambda values, alpha: [_gated_python(v, _sigmoid_python(v)) for v in values],
    "elu": lambda values, alpha: [v if v > 0 else alpha * math.expm1(v) for v in values],
    "softplus": lambda values, alpha: [_softplus_python(v) for v in values],
}


def layer_norm_python(values, weight, bias, eps):
    """Layer normalisation of one sample: (x - mean) / sqrt(var + eps) * weight + bias."""
    mean = sum(values) / len(values)
    variance = sum((value - mean) * (value - mean) for value in values) / len(values)
    try:
        scale = 1.0 / math.sqrt(variance + eps)
    except (ZeroDivisionError, ValueError):     # 0 variance and eps; NaN is not an error
        scale = math.inf
    return [(value - mean) * scale * w + b for value, w, b in zip(values, weight, bias)]


def forward_python(network, x):
    """``nnexposed.forward`` written as plain Python loops over lists of floats.

    bfloat16 and float16 networks run on their weights widened to float32; int8 networks
    are not covered (use ``forward_numpy``).

    Parameters
    ----------
    network : Network
        The network to run.
    x : array_like, shape (n_in,) or (batch, n_in)
        Input samples, cast to ``network.dtype``.

    Returns
    -------
    ndarray, shape (n_out,) or (batch, n_out)
        The last layer's output, in ``network.dtype``.

    Raises
    ------
    TypeError
        For a network that is not a ``nnexposed.Network``, or x not of real numbers.
    ValueError
        For x of another shape, or an int8 network.
    """
    _check_network(network)
    if network.precision == "int8":
        raise ValueError("forward_python runs float, bfloat16 and float16 networks; "
                         "forward_numpy is the reference of int8 ones")
    x = as_network_input(x, network.dtype, network.n_in)
    samples = x.tolist() if x.ndim == 2 else [x.tolist()]
    layers = [(isinstance(layer, LayerNorm), _python_weights(layer),
               (layer.bias if isinstance(layer, LayerNorm) else layer.biases).tolist(),
               getattr(layer, "eps", 0.0), layer.activation, layer.alpha)
              for layer in network.layers]
    results = []
    for values in samples:
        for norm, weights, biases, eps, activation, alpha in layers:
            values = (layer_norm_python(values, weights, biases, eps) if norm
                      else layer_output_python(values, weights, biases))
            values = PYTHON_ACTIVATIONS[activation](values, alpha)
        results.append(values)
    result = np.array(results, dtype=network.dtype).reshape(len(samples), network.n_out)
    return result if x.ndim == 2 else result[0]


def _python_weights(layer):
    """A layer's weights as nested lists of floats (reduced precisions widened)."""
    if isinstance(layer, LayerNorm):
        return layer.weight.tolist()
    if layer.precision in REDUCED_PRECISIONS:
        return dequantize_weights(layer.weights, layer.scales).tolist()
    return layer.weights.tolist()


# --------------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------------


def _sigmoid_numpy(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax_numpy(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gated_numpy(z, gate):
    # z * gate, with the limit 0 where the gate is 0 (-inf * 0 would be NaN).
    return np.where(gate == 0, 0, z) * gate


def _gelu_numpy(z, erfc=None):
    z = np.asarray(z)
    return _gated_numpy(z, 0.5 * (erfc or _erfc)(-z * z.dtype.type(SQRT_HALF)))


def _gelu_tanh_numpy(z):
    z = np.asarray(z)
    u2 = z.dtype.type(TWO_SQRT_2_OVER_PI) * (z + z.dtype.type(0.044715) * z * z * z)
    return _gated_numpy(z, _sigmoid_numpy(u2))


NUMPY_ACTIVATIONS = {
    "linear": lambda z, alpha: z,
    "relu": lambda z, alpha: np.maximum(z, 0),
    "leaky_relu": lambda z, alpha: np.where(z >= 0, z, alpha * z),
    "sigmoid": lambda z, alpha: _sigmoid_numpy(z),
    "tanh": lambda z, alpha: np.tanh(z),
    "softmax": lambda z, alpha: _softmax_numpy(z),
    "gelu": lambda z, alpha: _gelu_numpy(z),
    "gelu_tanh": lambda z, alpha: _gelu_tanh_numpy(z),
    "silu": lambda z, alpha: _gated_numpy(z, _sigmoid_numpy(z)),
    "elu": lambda z, alpha: np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0))),
    "softplus": lambda z, alpha: np.logaddexp(0, z),
}


def forward_numpy(network, x, *, bfloat16_inputs=None):
    """``nnexposed.forward`` written as idiomatic NumPy.

    int8 layers quantize each sample's inputs and sum in integers exactly as the kernels do
    (``nnexposed.precision.int8_matmul_reference``); bfloat16 and float16 layers compute in
    float32 with their weights widened to float32, bfloat16 layers on inputs rounded to
    bfloat16 first where the kernels do so (AVX-512 BF16).

    Parameters
    ----------
    network : Network
        The network to run.
    x : array_like, shape (n_in,) or (batch, n_in)
        Input samples, cast to ``network.dtype``.
    bfloat16_inputs : bool, optional
        Round the inputs of bfloat16 layers to bfloat16. Default: as the kernels in use do
        (``nnexposed._quantized.rounds_bfloat16_inputs()``).

    Returns
    -------
    ndarray, shape (n_out,) or (batch, n_out)
        The last layer's output.

    Raises
    ------
    TypeError
        For a network that is not a ``nnexposed.Network``, or x not of real numbers.
    ValueError
        For x of another shape.
    """
    last = deque(_layer_values_numpy(network, x, bfloat16_inputs), maxlen=1)
    return last[0].output


def _layer_values_numpy(network, x, bfloat16_inputs):
    """Check the network and x, then yield each layer's LayerValues(pre-activation, output)."""
    _check_network(network)
    x = as_network_input(x, network.dtype, network.n_in)
    bfloat16_inputs = _rounds_bfloat16_inputs(network, bfloat16_inputs)
    for layer in network.layers:
        pre = _pre_activation_numpy(layer, x, bfloat16_inputs)
        x = NUMPY_ACTIVATIONS[layer.activation](pre, layer.alpha)
        yield LayerValues(pre, x)


def _rounds_bfloat16_inputs(network, bfloat16_inputs):
    if bfloat16_inputs is not None:
        return bool(bfloat16_inputs)
    if network.precision != "bfloat16":
        return False
    from nnexposed import _quantized

    return _quantized.rounds_bfloat16_inputs()


def _pre_activation_numpy(layer, x, bfloat16_inputs=False):
    if isinstance(layer, LayerNorm):
        return layer_norm_numpy(x, layer.weight, layer.bias, layer.eps)
    return _affine_numpy(layer, x, bfloat16_inputs)


def layer_norm_numpy(x, weight, bias, eps):
    """Layer normalisation over the last axis, the moments in float64, the result in x's
    dtype: (x - mean) / sqrt(var + eps) * weight + bias."""
    wide = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):      # NaN and inf propagate
        centred = wide - wide.mean(axis=-1, keepdims=True)
        variance = (centred * centred).mean(axis=-1, keepdims=True)
        scale = 1.0 / np.sqrt(variance + eps)
        return (centred * scale * weight + bias).astype(x.dtype)


def trace_numpy(network, x, *, bfloat16_inputs=None):
    """``Network.trace`` written as idiomatic NumPy: (pre-activation, output) per layer.

    Parameters
    ----------
    network : Network
        The network to run.
    x : array_like, shape (n_in,) or (batch, n_in)
        Input samples, cast to ``network.dtype``.
    bfloat16_inputs : bool, optional
        As for ``forward_numpy``.

    Returns
    -------
    tuple of LayerValues
        One ``(pre_activation, output)`` pair per layer, each of shape (batch, n_out) of
        that layer, or (n_out,) for x of shape (n_in,).

    Raises
    ------
    TypeError
        For a network that is not a ``nnexposed.Network``, or x not of real numbers.
    ValueError
        For x of another shape.
    """
    return tuple(_layer_values_numpy(network, x, bfloat16_inputs))


def _affine_numpy(layer, x, bfloat16_inputs=False):
    """``x @ weights.T + biases`` of one layer, as its kernels compute it."""
    if layer.precision == "int8":
        pre = int8_matmul_reference(x.reshape(-1, layer.n_in), layer.weights, layer.scales,
                                    layer.biases)
        return pre[0] if x.ndim == 1 else pre
    if layer.precision in REDUCED_PRECISIONS:
        if layer.precision == "bfloat16" and bfloat16_inputs:
            x = round_to_bfloat16(x)
        return x @ dequantize_weights(layer.weights, None).T + layer.biases
    return x @ layer.weights.T + layer.biases


def _check_network(network):
    if not isinstance(network, Network):
        raise TypeError(f"expected a nnexposed.Network, got {type(network).__name__}")
