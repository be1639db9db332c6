"""Readable references that the compiled kernels are tested and benchmarked against.

``forward_python`` is the article's double loop over neurons and inputs, generalised to a
network; ``forward_numpy`` is idiomatic NumPy, ``x @ W.T + b`` then the activation. Both take
the same arguments and give the same results as ``nnexposed.forward``.
"""

import math

import numpy as np

from nnexposed._validation import as_network_input
from nnexposed.network import Network

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


PYTHON_ACTIVATIONS = {
    "linear": lambda values, alpha: values,
    "relu": lambda values, alpha: [0.0 if v < 0 else v for v in values],
    "leaky_relu": lambda values, alpha: [alpha * v if v < 0 else v for v in values],
    "sigmoid": lambda values, alpha: [_sigmoid_python(v) for v in values],
    "tanh": lambda values, alpha: [math.tanh(v) for v in values],
    "softmax": lambda values, alpha: _softmax_python(values),
}


def forward_python(network, x):
    """``nnexposed.forward`` written as plain Python loops over lists of floats."""
    _check_network(network)
    x = as_network_input(x, network.dtype, network.n_in)
    samples = x.tolist() if x.ndim == 2 else [x.tolist()]
    layers = [(layer.weights.tolist(), layer.biases.tolist(), layer.activation, layer.alpha)
              for layer in network.layers]
    results = []
    for values in samples:
        for weights, biases, activation, alpha in layers:
            values = PYTHON_ACTIVATIONS[activation](
                layer_output_python(values, weights, biases), alpha)
        results.append(values)
    result = np.array(results, dtype=network.dtype).reshape(len(samples), network.n_out)
    return result if x.ndim == 2 else result[0]


# --------------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------------


def _sigmoid_numpy(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax_numpy(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


NUMPY_ACTIVATIONS = {
    "linear": lambda z, alpha: z,
    "relu": lambda z, alpha: np.maximum(z, 0),
    "leaky_relu": lambda z, alpha: np.where(z >= 0, z, alpha * z),
    "sigmoid": lambda z, alpha: _sigmoid_numpy(z),
    "tanh": lambda z, alpha: np.tanh(z),
    "softmax": lambda z, alpha: _softmax_numpy(z),
}


def forward_numpy(network, x):
    """``nnexposed.forward`` written as idiomatic NumPy."""
    _check_network(network)
    x = as_network_input(x, network.dtype, network.n_in)
    for layer in network.layers:
        x = NUMPY_ACTIVATIONS[layer.activation](x @ layer.weights.T + layer.biases, layer.alpha)
    return x


def _check_network(network):
    if not isinstance(network, Network):
        raise TypeError(f"expected a nnexposed.Network, got {type(network).__name__}")
