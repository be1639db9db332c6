"""Forward passes over Spark DataFrames (``pip install "nnexposed[spark]"``).

``predict`` adds one scalar Arrow UDF to the query, over the feature columns only: each task
sends Arrow record batches of those columns to a Python worker, which turns them into one NumPy
array per batch (no Python per row) and computes it on one thread by default, since Spark
already runs one task per core. The UDF returns a struct of the outputs, which the query
expands into columns beside the DataFrame's own (the other columns never go through Python).
The network travels once, as the bytes of its model file in a Spark broadcast variable, and
each Python worker process loads it once (keyed by a hash of its content). The workers need
nnexposed installed.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    from pyspark.sql import Column, DataFrame
    from pyspark.sql import functions as F
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
        features = [_as_array(vector_column, fields[vector_column], dtype)]
    else:
        for name in names:
            if not isinstance(fields[name], NUMERIC_TYPES):
                raise TypeError(f"column {name!r} holds {fields[name].simpleString()}, "
                                f"expected numbers (or one array or vector column)")
        if len(names) != network.n_in:
            raise ValueError(f"the network expects {network.n_in} input features, input_cols "
                             f"names {len(names)}: {names}")
        features = [_column(name) for name in names]
    outputs = output_names(output_cols, network.n_out, list(fields))
    value_type = T.FloatType() if dtype == np.float32 else T.DoubleType()
    scores_type = T.StructType([T.StructField(name, value_type, nullable=False)
                                for name in outputs])
    digest = content_hash(network)
    model = df.sparkSession.sparkContext.broadcast(model_bytes(network))
    n_in = network.n_in

    def score(*columns: pa.Array) -> pa.Array:
        """The outputs of one Arrow batch of the features, run in the Python workers."""
        loaded = cached_network(digest, lambda: model.value)
        if vector_column is None:
            x = arrow_features(columns, dtype)
        else:
            x = arrow_rows(columns[0], n_in, dtype, vector_column)
        y = forward(loaded, x, threads=threads)
        return pa.StructArray.from_arrays([pa.array(y[:, k]) for k in range(y.shape[1])],
                                          names=outputs)

    # (PySpark's stubs lack this form, whose kind is told by the type hints)
    scores = F.arrow_udf(score, scores_type)(*features)  # type: ignore[call-overload]
    # Spark evaluates the UDF once for all the fields taken from its struct.
    return df.select("*", *[scores.getField(name).alias(name) for name in outputs])


def _column(name: str) -> Column:
    """The column named ``name``, whatever characters (dots, backticks) the name holds."""
    return F.col("`" + name.replace("`", "``") + "`")


def _as_array(name: str, kind: Any, dtype: np.dtype) -> Any:
    """The column ``name`` (an array of numbers or an ML vector) as an array column."""
    element = "float" if dtype == np.float32 else "double"
    if isinstance(kind, T.ArrayType) and isinstance(kind.elementType, NUMERIC_TYPES):
        return _column(name).cast(f"array<{element}>")
    if type(kind).__name__ == "VectorUDT":
        from pyspark.ml.functions import vector_to_array
        return vector_to_array(_column(name), dtype=str(dtype))
    raise TypeError(f"column {name!r} holds {kind.simpleString()}, expected numbers, an array "
                    f"of numbers or a pyspark.ml vector")
