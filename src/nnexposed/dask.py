"""Forward passes over Dask arrays and DataFrames (``pip install "nnexposed[dask]"``).

The network enters the task graph once, as one key named by a hash of its content, which every
block's task depends on: the distributed scheduler sends it to each worker once (workers fetch
it from each other) instead of pickling it into every task, and a worker holds one copy. Each
task computes its block on one thread by default, since the engine already runs one task per
core.

    >>> import dask.array as da
    >>> import nnexposed, nnexposed.dask
    >>> network = nnexposed.Network.from_sizes([4, 8, 2], seed=0)
    >>> x = da.ones((10, 4), chunks=(5, 2))
    >>> nnexposed.dask.forward(network, x).compute().shape
    (10, 2)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from nnexposed._remote import content_hash, input_names, output_names
from nnexposed.inference import forward as _forward
from nnexposed.network import Network

try:
    import dask
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        f"nnexposed.dask needs Dask: pip install \"nnexposed[dask]\" ({error})") from error

if TYPE_CHECKING:
    from dask.delayed import Delayed

__all__ = ["forward", "predict"]

# Outputs up to this many are added as columns of their own (one block each); more are one
# block, joined with a copy of the partition (pandas warns of frames of over 100 blocks).
_MAX_INSERTED_COLUMNS = 32


def forward(network: Network, x: da.Array, *, threads: int | None = 1) -> da.Array:
    """The network's outputs for every row of a Dask array, as a lazy Dask array.

    Parameters
    ----------
    network : Network
        The network to run.
    x : dask.array.Array of shape (n, network.n_in)
        Real numbers (bool, int or float) in any chunking; the columns are rechunked into one
        chunk, the row chunks are kept.
    threads : int or None, default 1
        Threads per block's forward pass (None: ``nnexposed.get_num_threads()``).

    Returns
    -------
    dask.array.Array of shape (n, network.n_out)
        In ``network.dtype``, chunked like ``x``'s rows.
    """
    _check_network(network, "forward")
    if not isinstance(x, da.Array):
        raise TypeError(f"nnexposed.dask.forward expects a dask.array.Array, got "
                        f"{type(x).__name__} (use nnexposed.forward for in-memory arrays)")
    if x.ndim != 2 or x.shape[1] != network.n_in:
        raise ValueError(f"expected x of shape (n, {network.n_in}), got shape {x.shape}")
    _check_real(x.dtype, "x")
    if x.numblocks[1] != 1:
        x = x.rechunk({1: -1})
    dtype = network.dtype
    return da.map_blocks(_forward_block, x, _shared(network), threads,
                         chunks=(x.chunks[0], (network.n_out,)), dtype=dtype,
                         meta=np.empty((0, 0), dtype), token="nnexposed-forward")


def predict(network: Network, frame: dd.DataFrame, *, columns: Iterable[Any] | None = None,
            output_columns: Iterable[Any] | None = None,
            threads: int | None = 1) -> dd.DataFrame:
    """The frame with the network's outputs appended as new columns (lazy).

    Parameters
    ----------
    network : Network
        The network to run.
    frame : dask.dataframe.DataFrame
        Rows to score.
    columns : list of column names, optional
        The network's ``n_in`` input features, in order (default: all of the frame's columns).
        They must hold real numbers; missing values become NaN, and so do their rows' outputs.
    output_columns : list of column names, optional
        Names of the ``n_out`` new columns (default ``output_0``, ``output_1``, ...).
    threads : int or None, default 1
        Threads per partition's forward pass (None: ``nnexposed.get_num_threads()``).

    Returns
    -------
    dask.dataframe.DataFrame
        ``frame``'s columns followed by the output columns, in ``network.dtype``, partitioned
        and indexed like ``frame``.
    """
    _check_network(network, "predict")
    if not isinstance(frame, dd.DataFrame):
        raise TypeError(f"nnexposed.dask.predict expects a dask.dataframe.DataFrame, got "
                        f"{type(frame).__name__}")
    existing = list(frame.columns)
    names = input_names(columns, existing, network.n_in)
    for name in names:
        _check_real(frame.dtypes[name], f"column {name!r}")
    outputs = output_names(output_columns, network.n_out, existing)
    meta = _predict_partition(frame._meta, network, names, outputs, threads)
    return frame.map_partitions(_predict_partition, _shared(network), names, outputs, threads,
                                meta=meta, align_dataframes=False)


def _check_network(network: object, function: str) -> None:
    if not isinstance(network, Network):
        raise TypeError(f"nnexposed.dask.{function} expects a nnexposed.Network, got "
                        f"{type(network).__name__}")


def _check_real(dtype: Any, what: str) -> None:
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) or \
            pd.api.types.is_complex_dtype(dtype):
        raise TypeError(f"expected {what} of real numbers (bool, int or float), got dtype "
                        f"{dtype}")


def _shared(network: Network) -> Delayed:
    """The network as one graph key named by its content: sent to each worker once."""
    return dask.delayed(network, name=f"nnexposed-network-{content_hash(network)}",
                        traverse=False)


def _forward_block(block: np.ndarray, network: Network, threads: int | None) -> np.ndarray:
    return _forward(network, block, threads=threads)


def _predict_partition(part: pd.DataFrame, network: Network, columns: list[Any],
                       output_columns: list[Any], threads: int | None) -> pd.DataFrame:
    # The partition's own columns are copied neither in (all of them, in order, are one view
    # when they share a dtype, in row or column order, which forward reads in place) nor,
    # up to _MAX_INSERTED_COLUMNS outputs, out.
    features = part if list(part.columns) == columns else part[columns]
    x = features.to_numpy(dtype=network.dtype, na_value=math.nan)
    y = _forward(network, x, threads=threads)
    if len(output_columns) > _MAX_INSERTED_COLUMNS:
        scores = pd.DataFrame(y, index=part.index, columns=output_columns)
        return pd.concat([part, scores], axis=1)
    # New columns of a shallow copy: pandas 2's concat (without copy-on-write) copies the
    # partition, or merges its block with the outputs' (8-20 ms of a 35 ms task).
    scored = part.copy(deep=False)
    for k, name in enumerate(output_columns):
        scored[name] = y[:, k]
    return scored
