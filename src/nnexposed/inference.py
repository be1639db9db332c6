"""The fast functions: a whole network, one layer, or the article's layer output utility."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from nnexposed import _config, kernels
from nnexposed._cpu_limits import available_cpus
from nnexposed._validation import as_real_array, float_dtype_for
from nnexposed.activations import DEFAULT, FloatArray, activation_code, resolve_alpha
from nnexposed.network import Network, layer_arrays

# OpenMP's default counts the CPUs of the affinity mask, not a container's CPU quota. An
# explicit OMP_NUM_THREADS is the user's choice and stays as it is.
if "OMP_NUM_THREADS" not in os.environ:
    kernels.cap_default_threads(available_cpus())


def forward(network: Network, x: npt.ArrayLike, *, out: FloatArray | None = None,
            threads: int | None = None) -> FloatArray:
    """Run ``network`` on x in one call into compiled code, the GIL released.

    Parameters
    ----------
    network : Network
        The network to run.
    x : array_like, shape (n_in,) or (batch, n_in)
        One sample or a batch of real numbers, of any dtype and layout: cast to
        ``network.dtype``.
    out : ndarray, optional
        Where to write the result: writeable, C-contiguous, of the result's shape and
        ``network.dtype``; it may be x itself.
    threads : int, optional
        At most this many threads (default: ``get_num_threads()``); small jobs use one.

    Returns
    -------
    ndarray, shape (n_out,) or (batch, n_out)
        The last layer's output, of ``network.dtype`` (``out`` when given).

    Raises
    ------
    ValueError, TypeError
        For x or out of another shape, non-real dtypes, a bad ``threads``.

    Examples
    --------
    >>> import numpy as np, nnexposed
    >>> net = nnexposed.Network.from_sizes([3, 5, 2], seed=0)
    >>> nnexposed.forward(net, [0.5, -1.0, 2.0]).shape
    (2,)
    >>> out = np.empty((4, 2), np.float32)
    >>> nnexposed.forward(net, np.ones((4, 3)), out=out) is out
    True
    """
    if not isinstance(network, Network):
        raise TypeError(f"forward expects a nnexposed.Network, got {type(network).__name__}")
    if threads is None:  # the hot path: straight into compiled code
        return network._compiled.forward(x, out)
    return network.forward(x, out=out, threads=threads)


def trace(network, x, *, threads=None):
    """Every layer's (pre-activation, output) from one compiled forward pass.

    Same as ``network.trace(x, threads=threads)``; see ``Network.trace``.

    Parameters
    ----------
    network : Network
        The network to run.
    x : array_like, shape (n_in,) or (batch, n_in)
        Input samples, cast to ``network.dtype``.
    threads : int, optional
        At most this many threads (default ``get_num_threads()``).

    Returns
    -------
    tuple of LayerValues
        One ``(pre_activation, output)`` pair per layer, each of shape (batch, n_out) of
        that layer, or (n_out,) for x of shape (n_in,).

    Raises
    ------
    TypeError
        For a network that is not a ``nnexposed.Network``.
    ValueError, TypeError
        For x of another shape, non-real dtypes, a bad ``threads``.
    """
    if not isinstance(network, Network):
        raise TypeError(f"trace expects a nnexposed.Network, got {type(network).__name__}")
    return network.trace(x, threads=threads)


def get_num_threads() -> int:
    """Threads a forward pass may use.

    Returns
    -------
    int
        As set by ``set_num_threads`` (or ``set_config`` / ``config_context``), else
        ``OMP_NUM_THREADS``, else the CPUs this process may use (its affinity mask, capped
        by a cgroup CPU quota: docs/threads.md); at most 256. Wide layers of large
        batches that run in BLAS use BLAS's own thread settings (see threadpoolctl).
    """
    return _config.get_num_threads()


def set_num_threads(n: int | None) -> None:
    """Let forward passes use up to ``n`` threads, process-wide: ``set_config(threads=n)``.

    Parameters
    ----------
    n : int or None
        At least 1; more than 256 means 256. None restores the default (``OMP_NUM_THREADS``,
        else all cores).
    """
    _config.set_num_threads(n)


def dense(x: npt.ArrayLike, weights: npt.ArrayLike, biases: npt.ArrayLike | None,
          activation: str = "linear", *, alpha: object = DEFAULT,
          out: FloatArray | None = None) -> FloatArray:
    """One fused layer: ``activation(x @ weights.T + biases)``.

    Computes in float32 when x, weights and biases are all float32 (or float16), else in
    float64.

    Parameters
    ----------
    x : array_like, shape (n_in,) or (batch, n_in)
        One sample or a batch of real numbers.
    weights : array_like, shape (n_out, n_in)
        The layer's weights, ``weights[neuron][input]``.
    biases : array_like of shape (n_out,), or None
        The layer's biases; None for zeros.
    activation : str, default "linear"
        A name from ``nnexposed.ACTIVATIONS``.
    alpha : float, optional
        leaky_relu's negative slope (default 0.01) or elu's alpha (default 1.0).
    out : ndarray, optional
        Where to write the result: writeable, C-contiguous, of the result's shape and dtype.

    Returns
    -------
    ndarray, shape (n_out,) or (batch, n_out)
        float32 or float64 as above (``out`` when given).

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.dense([1, 2, 3], [[0.2, 0.8, -0.5], [-0.5, -0.91, 0.26]], [2, 3], "relu")
    array([2.3 , 1.46])
    """
    inputs = as_real_array(x, "x")
    w = as_real_array(weights, "weights")
    b = None if biases is None else as_real_array(biases, "biases")
    dtype = float_dtype_for(np.result_type(*(a.dtype for a in (inputs, w, b) if a is not None)))
    w, b = layer_arrays(w, b, dtype)
    if out is not None and (np.may_share_memory(out, w) or np.may_share_memory(out, b)):
        w, b = w.copy(), b.copy()    # the kernels read the weights while writing out
    layer = kernels.CompiledNetwork([w], [b], [activation_code(activation)],
                                  [resolve_alpha(alpha, activation)], keep_panels=False)
    return layer.forward(inputs, out)


def layer_output(inputs: npt.ArrayLike, weights: npt.ArrayLike,
                 biases: npt.ArrayLike | None) -> FloatArray:
    """The article's layer output utility: ``inputs @ weights.T + biases``, no activation.

    Parameters
    ----------
    inputs : array_like, shape (n_in,) or (batch, n_in)
        Nested lists or arrays of real numbers.
    weights : array_like, shape (n_out, n_in)
        ``weights[neuron][input]``.
    biases : array_like of shape (n_out,), or None
        None for zeros.

    Returns
    -------
    ndarray, shape (n_out,) or (batch, n_out)
        float32 when all arguments are float32 (or float16), else float64.

    Examples
    --------
    >>> import nnexposed
    >>> nnexposed.layer_output([1, 2, 3], [[0.2, 0.8, -0.5], [0.5, -0.91, 0.26]], [2, 3])
    array([2.3 , 2.46])
    """
    return dense(inputs, weights, biases, "linear")
