"""nnexposed: the forward pass of multi-layer perceptrons in typed Cython.

    >>> import nnexposed
    >>> net = nnexposed.Network.from_sizes([3, 5, 5, 5, 2], seed=0)
    >>> net.n_params
    92
    >>> nnexposed.forward(net, [0.1, 0.2, 0.3]).shape
    (2,)
"""

import os

# Idle OpenMP threads spin for well under a millisecond after a parallel call, then sleep
# (OpenMP's defaults spin for up to hundreds of milliseconds; sleeping at once makes every
# call pay the threads' wake-up). Setting any of these variables yourself takes precedence.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # GNU libgomp: spin iterations
    os.environ.setdefault("KMP_BLOCKTIME", "1")  # LLVM libomp: milliseconds

from nnexposed import examples  # noqa: E402
from nnexposed._config import config_context, get_config, set_config  # noqa: E402
from nnexposed._show_versions import show_versions  # noqa: E402
from nnexposed._version import __version__  # noqa: E402
from nnexposed.activations import (  # noqa: E402
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
from nnexposed.inference import (  # noqa: E402
    dense,
    forward,
    get_num_threads,
    layer_output,
    set_num_threads,
    trace,
)
from nnexposed.io import load, save  # noqa: E402
from nnexposed.network import Dense, LayerNorm, Network  # noqa: E402

__all__ = [
    "ACTIVATIONS",
    "Dense",
    "LayerNorm",
    "Network",
    "__version__",
    "config_context",
    "dense",
    "elu",
    "examples",
    "forward",
    "gelu",
    "gelu_tanh",
    "get_config",
    "get_num_threads",
    "layer_output",
    "leaky_relu",
    "linear",
    "load",
    "relu",
    "save",
    "set_config",
    "set_num_threads",
    "show_versions",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
    "trace",
]
