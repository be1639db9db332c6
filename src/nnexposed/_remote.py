"""What the Dask, Spark and file-scoring paths share: the network shipped to worker processes
as model-file bytes and loaded once per process (keyed by a hash of its content), and the
checks of input and output column names."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from nnexposed.io import archive_arrays, load, save
from nnexposed.network import Network

# Networks kept per worker process; a long-lived worker scoring many models drops the oldest.
CACHED_NETWORKS = 16
_cache: OrderedDict[str, Network] = OrderedDict()
_cache_lock = threading.Lock()


def content_hash(network: Network) -> str:
    """A SHA-256 hex digest of everything that defines ``network`` (header, weights, biases)."""
    digest = hashlib.sha256()
    for name, array in archive_arrays(network).items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_bytes(network: Network) -> bytes:
    """The bytes of ``network``'s model file, as ``nnexposed.save`` writes it."""
    buffer = io.BytesIO()
    save(network, buffer)
    return buffer.getvalue()


def cached_network(digest: str, data: Callable[[], bytes]) -> Network:
    """The network whose content hash is ``digest``, loaded from ``data()`` the first time this
    process asks for it."""
    with _cache_lock:
        network = _cache.get(digest)
        if network is not None:
            _cache.move_to_end(digest)
            return network
    network = load(io.BytesIO(data()))
    with _cache_lock:
        _cache[digest] = network
        while len(_cache) > CACHED_NETWORKS:
            _cache.popitem(last=False)
    return network


def arrow_features(columns: Sequence[Any], dtype: np.dtype) -> np.ndarray:
    """The (rows, len(columns)) array of equally long pyarrow arrays of numbers in ``dtype``;
    nulls become NaN."""
    x = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype)
    for j, column in enumerate(columns):
        x[:, j] = _numbers(column)
    return x


def _numbers(array: Any) -> np.ndarray:
    """A pyarrow array of bools, ints or floats as a NumPy array, nulls as NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.null_count or not pa.types.is_floating(array.type):
        array = pc.cast(array, pa.float64())
    return array.to_numpy(zero_copy_only=False)


def arrow_rows(lists: Any, n_in: int, dtype: np.dtype, name: str) -> np.ndarray:
    """The (rows, n_in) array of a pyarrow list column holding ``n_in`` numbers per row; null
    rows and null values become NaN."""
    import pyarrow.compute as pc

    x = np.full((len(lists), n_in), np.nan, dtype)
    valid = lists.is_valid()
    present = lists.filter(valid) if lists.null_count else lists
    lengths = pc.list_value_length(present).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != n_in).any():
        wrong = int(lengths[lengths != n_in][0])
        raise ValueError(f"column {name!r} holds a row of {wrong} values, the network expects "
                         f"{n_in}")
    rows = _numbers(present.flatten()).reshape(-1, n_in)
    if lists.null_count:
        x[valid.to_numpy(zero_copy_only=False)] = rows
    else:
        x[:] = rows
    return x


def input_names(columns: Iterable[str] | None, available: Sequence[str], n_in: int) -> list[str]:
    """The feature columns: ``columns`` (all of ``available`` if None), checked to exist and to
    number ``n_in``."""
    names = list(available) if columns is None else _name_list(columns, "columns")
    missing = [name for name in names if name not in available]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))} in the input; its columns "
                         f"are {', '.join(map(repr, available))}")
    if len(set(names)) != len(names):
        raise ValueError(f"columns names a column twice: {names}")
    if len(names) != n_in:
        which = "the input has" if columns is None else "columns names"
        raise ValueError(f"the network expects {n_in} input features, {which} {len(names)}: "
                         f"{_shorten(names)}")
    return names


def output_names(output_columns: Iterable[str] | None, n_out: int,
                 existing: Sequence[str] = ()) -> list[str]:
    """The output columns: ``output_columns`` or ``output_0 ... output_{n_out-1}``, checked to
    number ``n_out``, to be distinct, and not to clash with the ``existing`` columns."""
    if output_columns is None:
        names = [f"output_{k}" for k in range(n_out)]
    else:
        names = _name_list(output_columns, "output_columns")
    if len(names) != n_out:
        raise ValueError(f"the network has {n_out} outputs, output_columns names "
                         f"{len(names)}: {_shorten(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"output_columns names a column twice: {names}")
    clashes = [name for name in names if name in existing]
    if clashes:
        raise ValueError(f"output column {', '.join(map(repr, clashes))} already exists in "
                         f"the input; choose other names with output_columns")
    return names


def _name_list(names: Iterable[str], what: str) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{what} must be a list of column names, got the string {names!r}")
    return list(names)


def _shorten(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
