"""Forward passes over Spark DataFrames (``pip install "nnexposed[spark]"``).

``predict`` runs through ``DataFrame.mapInArrow``: each task gets Arrow record batches, turns
the feature columns into one NumPy array per batch (no Python per row) and computes it on one
thread by default, since Spark already runs one task per core. The network travels once, as
the bytes of its model file in a Spark broadcast variable, and each Python worker process loads
it once (keyed by a hash of its content). The workers need nnexposed installed.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from nnexposed._remote import (
    arrow_features,
    arrow_rows,
    cached_network,
    content_hash,
    model_bytes,
    output_names,
)
from nnexposed.inference import forward
from nnexposed.network import Network

try:
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql import types as T
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        f"nnexposed.spark needs PySpark and pyarrow: pip install \"nnexposed[spark]\" "
        f"({error})") from error

__all__ = ["predict"]

NUMERIC_TYPES = (T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType,
                 T.FloatType, T.DoubleType, T.DecimalType)


def predict(network: Network, df: DataFrame, *, input_cols: str | Iterable[str],
            output_cols: Iterable[str] | None = None, threads: int | None = 1) -> DataFrame:
    """The DataFrame with the network's outputs appended as new columns (lazy).

    Parameters
    ----------
    network : Network
        The network to run.
    df : pyspark.sql.DataFrame
        Rows to score.
    input_cols : list of str, or str
        Either ``network.n_in`` numeric columns, the features in order, or the name of one
        column holding ``network.n_in`` numbers per row: an array of numbers or a
        ``pyspark.ml.linalg`` vector (dense or sparse). Nulls become NaN, and so do their rows'
        outputs.
    output_cols : list of str, optional
        Names of the ``network.n_out`` new columns (default ``output_0``, ``output_1``, ...).
    threads : int or None, default 1
        Threads per batch's forward pass (None: ``nnexposed.get_num_threads()``).

    Returns
    -------
    pyspark.sql.DataFrame
        ``df``'s columns followed by the output columns: FloatType for a float32 network,
        DoubleType for float64.
    """
    if not isinstance(network, Network):
        raise TypeError(f"nnexposed.spark.predict expects a nnexposed.Network, got "
                        f"{type(network).__name__}")
    if not isinstance(df, DataFrame):
        raise TypeError(f"nnexposed.spark.predict expects a pyspark.sql.DataFrame, got "
                        f"{type(df).__name__}")
    fields = {field.name: field.dataType for field in df.schema.fields}
    names = [input_cols] if isinstance(input_cols, str) else list(input_cols)
    missing = [name for name in names if name not in fields]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))} in the DataFrame; its "
                         f"columns are {', '.join(map(repr, fields))}")
    dtype = network.dtype
    vector_column = None
    if len(names) == 1 and not isinstance(fields[names[0]], NUMERIC_TYPES):
        vector_column = names[0]
        df = df.withColumn(f"__nnexposed_features_{uuid.uuid4().hex}",
                           _as_array(vector_column, fields[vector_column], dtype))
    else:
        for name in names:
            if not isinstance(fields[name], NUMERIC_TYPES):
                raise TypeError(f"column {name!r} holds {fields[name].simpleString()}, "
                                f"expected numbers (or one array or vector column)")
        if len(names) != network.n_in:
            raise ValueError(f"the network expects {network.n_in} input features, input_cols "
                             f"names {len(names)}: {names}")
    outputs = output_names(output_cols, network.n_out, list(fields))
    value_type = T.FloatType() if dtype == np.float32 else T.DoubleType()
    schema = T.StructType(list(df.schema.fields)[:len(fields)] + [
        T.StructField(name, value_type, nullable=False) for name in outputs])
    model = df.sparkSession.sparkContext.broadcast(model_bytes(network))
    score = functools.partial(
        _score_batches, digest=content_hash(network), model=model,
        features=[] if vector_column else names,
        array_column=(df.columns[-1], vector_column) if vector_column else None,
        n_in=network.n_in, outputs=outputs, threads=threads, keep=len(fields))
    return df.mapInArrow(score, schema)


def _as_array(name: str, kind: Any, dtype: np.dtype) -> Any:
    """The column ``name`` (an array of numbers or an ML vector) as an array column."""
    from pyspark.sql import functions as F

    element = "float" if dtype == np.float32 else "double"
    if isinstance(kind, T.ArrayType) and isinstance(kind.elementType, NUMERIC_TYPES):
        return F.col(name).cast(f"array<{element}>")
    if type(kind).__name__ == "VectorUDT":
        from pyspark.ml.functions import vector_to_array
        return vector_to_array(F.col(name), dtype=str(dtype))
    raise TypeError(f"column {name!r} holds {kind.simpleString()}, expected numbers, an array "
                    f"of numbers or a pyspark.ml vector")


def _score_batches(batches: Iterator[pa.RecordBatch], *, digest: str, model: Any,
                   features: list[str], array_column: tuple[str, str] | None,
                   n_in: int,
                   outputs: list[str], threads: int | None,
                   keep: int) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function, run in the Python workers: each batch's first ``keep`` columns
    (the DataFrame's own) followed by the outputs."""
    network = cached_network(digest, lambda: model.value)
    for batch in batches:
        if array_column is None:
            x = arrow_features(batch, features, network.dtype)
        else:   # the array made of the user's column (named for messages)
            x = arrow_rows(batch.column(array_column[0]), n_in, network.dtype, array_column[1])
        y = forward(network, x, threads=threads)
        columns = batch.columns[:keep] + [pa.array(y[:, k]) for k in range(y.shape[1])]
        yield pa.RecordBatch.from_arrays(columns, names=batch.schema.names[:keep] + outputs)
