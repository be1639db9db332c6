"""nnexposed: the forward pass of multi-layer perceptrons in typed Cython.

    >>> import nnexposed
    >>> net = nnexposed.Network.from_sizes([3, 5, 5, 5, 2], seed=0)
    >>> net.n_params
    92
    >>> nnexposed.forward(net, [0.1, 0.2, 0.3]).shape
    (2,)
"""

from nnexposed import examples
from nnexposed._version import __version__
from nnexposed.activations import (
    ACTIVATIONS,
    elu,
    gelu,
    gelu_tanh,
    leaky_relu,
    linear,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from nnexposed.inference import dense, forward, layer_output
from nnexposed.io import load, save
from nnexposed.network import Dense, Network

__all__ = [
    "ACTIVATIONS",
    "Dense",
    "Network",
    "__version__",
    "dense",
    "elu",
    "examples",
    "forward",
    "gelu",
    "gelu_tanh",
    "layer_output",
    "leaky_relu",
    "linear",
    "load",
    "relu",
    "save",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]
