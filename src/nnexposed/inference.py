"""The fast functions: a whole network, one layer, or the article's layer output utility."""

import numpy as np

from nnexposed import kernels
from nnexposed._validation import as_positive_int, as_real_array, float_dtype_for
from nnexposed.activations import DEFAULT, activation_code, resolve_alpha
from nnexposed.network import Network, layer_arrays


def forward(network, x, *, out=None, threads=None):
    """Run ``network`` on x in one call into compiled code, GIL released for the arithmetic.

    x: (n_in,) -> (n_out,) or (batch, n_in) -> (batch, n_out); any array-like of real numbers,
    cast to ``network.dtype``. out: optional C-contiguous array of the result's shape and dtype.
    threads: at most this many threads (default ``get_num_threads()``); small jobs use one.
    """
    if not isinstance(network, Network):
        raise TypeError(f"forward expects a nnexposed.Network, got {type(network).__name__}")
    if threads is None:  # the hot path: straight into compiled code
        return network._compiled.forward(x, out)
    return network.forward(x, out=out, threads=threads)


def trace(network, x, *, threads=None):
    """Every layer's (pre-activation, output) from one compiled forward pass.

    Same as ``network.trace(x, threads=threads)``; see ``Network.trace``.
    """
    if not isinstance(network, Network):
        raise TypeError(f"trace expects a nnexposed.Network, got {type(network).__name__}")
    return network.trace(x, threads=threads)


def get_num_threads():
    """Threads a forward pass may use: as set by ``set_num_threads``, else OMP_NUM_THREADS,
    else the number of cores. Wide layers of large batches run in BLAS, which keeps its own
    thread settings (see threadpoolctl)."""
    return kernels.get_num_threads()


def set_num_threads(n):
    """Let forward passes use up to ``n`` threads; ``None`` restores the default."""
    kernels.set_num_threads(0 if n is None
                            else min(as_positive_int(n, "n"), kernels.MAX_THREADS))


def dense(x, weights, biases, activation="linear", *, alpha=DEFAULT, out=None):
    """One fused layer: ``activation(x @ weights.T + biases)``.

    x: (n_in,) or (batch, n_in); weights: (n_out, n_in); biases: (n_out,).
    Computes in float32 when x, weights and biases are all float32 (or float16), else float64;
    biases may be None (zeros); alpha: leaky_relu's slope (default 0.01) or elu's alpha
    (default 1.0).
    """
    x = as_real_array(x, "x")
    w = as_real_array(weights, "weights")
    b = None if biases is None else as_real_array(biases, "biases")
    dtype = float_dtype_for(np.result_type(*(a.dtype for a in (x, w, b) if a is not None)))
    w, b = layer_arrays(w, b, dtype)
    if out is not None and (np.may_share_memory(out, w) or np.may_share_memory(out, b)):
        w, b = w.copy(), b.copy()    # the kernels read the weights while writing out
    layer = kernels.CompiledNetwork([w], [b], [activation_code(activation)],
                                  [resolve_alpha(alpha, activation)], keep_panels=False)
    return layer.forward(x, out)


def layer_output(inputs, weights, biases):
    """The article's layer output utility: ``inputs @ weights.T + biases``, no activation.

    inputs: (n_in,) or (batch, n_in), nested lists or arrays; weights: (n_out, n_in), i.e.
    ``weights[neuron][input]``; biases: (n_out,).
    """
    return dense(inputs, weights, biases, "linear")
