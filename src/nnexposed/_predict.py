"""``nnexposed predict``: score a .npy, .csv or .parquet file into another, batch by batch.

Memory stays bounded by the batch size whatever the file size: .npy inputs are memory-mapped,
.csv and .parquet are read and written by blocks / row groups with pyarrow. The output goes to
a temporary file beside the target, renamed over it at the end, so a failure or Ctrl-C never
leaves a partial output file. ``--scheduler`` sends the batches to a Dask cluster instead of
computing them here (the network is sent to each worker once).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import struct
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from nnexposed._remote import arrow_features, input_names, output_names
from nnexposed.inference import forward
from nnexposed.io import atomic_file
from nnexposed.network import Network

FORMATS = (".npy", ".csv", ".parquet")
DEFAULT_BATCH_SIZE = 65536
# .npy outputs reserve this much for their header, written once the row count is known.
NPY_HEADER_BYTES = 128


class PredictError(Exception):
    """Bad input or arguments: the message is the whole story, shown on one line."""


# --------------------------------------------------------------------------------------------
# Inputs: each yields (x, kept) batches, x a (rows, n_in) array in the network's dtype and kept
# a pyarrow Table of the columns carried over to the output (None when there are none).
# --------------------------------------------------------------------------------------------


class NpyInput:
    """A 2-D .npy array of real numbers, memory-mapped."""

    def __init__(self, path: str, network: Network, columns: list[str] | None,
                 keep_columns: list[str] | None) -> None:
        if columns is not None or keep_columns:
            raise PredictError(f"{path}: a .npy input has no column names, so --columns and "
                               f"--keep-columns do not apply")
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise PredictError(f"{path}: not a readable .npy array ({one_line(error)})") from None
        if self.array.dtype.kind not in "biuf":
            raise PredictError(f"{path}: expected real numbers (bool, int or float), got dtype "
                               f"{self.array.dtype}")
        if self.array.ndim != 2 or self.array.shape[1] != network.n_in:
            raise PredictError(f"{path}: the network expects {network.n_in} input features, "
                               f"expected an array of shape (rows, {network.n_in}), got shape "
                               f"{self.array.shape}")
        self.dtype = network.dtype
        self.rows: int | None = self.array.shape[0]
        self.kept_schema: list[Any] = []

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, Any]]:
        for start in range(0, self.array.shape[0], batch_size):
            yield np.asarray(self.array[start:start + batch_size], dtype=self.dtype), None


class _TableInput:
    """What .csv and .parquet inputs share: feature columns to a 2-D array, kept columns."""

    path: str
    dtype: np.dtype

    def _choose(self, names: list[str], network: Network, columns: list[str] | None,
                keep_columns: list[str] | None) -> None:
        try:
            self.features = input_names(columns, names, network.n_in)
            self.kept = input_names(keep_columns or [], names, len(keep_columns or []))
        except ValueError as error:
            raise PredictError(f"{self.path}: {error}") from None
        self.dtype = network.dtype

    def _batches(self, batches: Iterator[Any], batch_size: int) -> Iterator[tuple[np.ndarray,
                                                                                   Any]]:
        for batch in batches:
            for start in range(0, batch.num_rows, batch_size):
                yield self._split(batch.slice(start, batch_size))

    def _split(self, batch: Any) -> tuple[np.ndarray, Any]:
        import pyarrow as pa

        kept = pa.Table.from_batches([batch.select(self.kept)]) if self.kept else None
        return arrow_features([batch.column(name) for name in self.features],
                              self.dtype), kept


class CsvInput(_TableInput):
    """A CSV file with a header row, read in blocks by pyarrow's streaming reader."""

    def __init__(self, path: str, network: Network, columns: list[str] | None,
                 keep_columns: list[str] | None) -> None:
        import csv

        self.path = path
        with open(path, newline="", encoding="utf-8") as f:
            try:
                header = next(csv.reader(f), None)
            except (csv.Error, UnicodeDecodeError) as error:
                raise PredictError(f"{path}: not a readable CSV file "
                                   f"({one_line(error)})") from None
            first_lines = f.read(1 << 16)
        if not header:
            raise PredictError(f"{path}: empty file, expected a header row of column names")
        self._choose(header, network, columns, keep_columns)
        self.header = header
        self.rows = None
        self.bytes_per_row = max(16, len(first_lines) // max(1, first_lines.count("\n")))

    @property
    def kept_schema(self) -> Any:
        """The kept columns' types for a file with no rows (else inferred from the data)."""
        import pyarrow as pa
        return pa.schema([(name, pa.string()) for name in self.kept])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, Any]]:
        import pyarrow as pa
        from pyarrow import csv

        types = {name: pa.float64() for name in self.features}
        options = csv.ConvertOptions(column_types=types,
                                     include_columns=self.features + [
                                         name for name in self.kept if name not in types])
        read = csv.ReadOptions(block_size=int(min(max(batch_size * self.bytes_per_row, 1 << 16),
                                                  1 << 30)))
        try:
            reader = csv.open_csv(self.path, read_options=read, convert_options=options)
            yield from self._batches(reader, batch_size)
        except pa.ArrowInvalid as error:
            raise PredictError(f"{self.path}: {self._name_columns(one_line(error))}") from None

    def _name_columns(self, message: str) -> str:
        """pyarrow numbers the CSV columns from 0; say their names too."""
        def name(match: re.Match[str]) -> str:
            k = int(match.group(1))
            return f"{match.group(0)} ({self.header[k]!r})" if k < len(self.header) else \
                match.group(0)
        return re.sub(r"CSV column #(\d+)", name, message)


class ParquetInput(_TableInput):
    """A Parquet file, read by row groups."""

    def __init__(self, path: str, network: Network, columns: list[str] | None,
                 keep_columns: list[str] | None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except pa.ArrowException as error:
            raise PredictError(f"{path}: not a readable Parquet file "
                               f"({one_line(error)})") from None
        schema = self.file.schema_arrow
        self._choose(schema.names, network, columns, keep_columns)
        for name in self.features:
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind)):
                raise PredictError(f"{path}: column {name!r} holds {kind}, expected real "
                                   f"numbers (bool, int or float)")
        self.rows = self.file.metadata.num_rows
        self.kept_schema = pa.schema([schema.field(name) for name in self.kept])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, Any]]:
        columns = self.features + [name for name in self.kept if name not in self.features]
        yield from self._batches(
            self.file.iter_batches(batch_size=batch_size, columns=columns), batch_size)


# --------------------------------------------------------------------------------------------
# Outputs: written to an open temporary file, batch by batch.
# --------------------------------------------------------------------------------------------


class NpyOutput:
    """A (rows, n_out) .npy array; the header is written last, when the row count is known."""

    def __init__(self, f: Any, n_out: int, dtype: np.dtype) -> None:
        self.f, self.n_out, self.dtype, self.rows = f, n_out, dtype, 0
        f.write(b"\0" * NPY_HEADER_BYTES)

    def write(self, y: np.ndarray, kept: Any) -> None:
        self.f.write(y.tobytes())
        self.rows += len(y)

    def discard(self) -> None:
        pass

    def close(self) -> None:
        self.f.seek(0)
        self.f.write(npy_header((self.rows, self.n_out), self.dtype))


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version 1.0 .npy header of exactly NPY_HEADER_BYTES bytes."""
    described = (f"{{'descr': {np.lib.format.dtype_to_descr(np.dtype(dtype))!r}, "
                 f"'fortran_order': False, 'shape': {tuple(shape)!r}, }}")
    text = described.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


class _TableOutput:
    """.csv and .parquet outputs: the kept columns, then the output columns."""

    def __init__(self, f: Any, names: list[str], dtype: np.dtype, kept_schema: Any) -> None:
        import pyarrow as pa

        self.f, self.names = f, names
        self.empty_schema = pa.schema(list(kept_schema) + [
            (name, pa.from_numpy_dtype(dtype)) for name in names])
        self.writer: Any = None

    def write(self, y: np.ndarray, kept: Any) -> None:
        import pyarrow as pa

        columns = (list(kept.columns) if kept is not None else []) + [
            pa.array(y[:, k]) for k in range(y.shape[1])]
        names = (kept.column_names if kept is not None else []) + self.names
        table = pa.Table.from_arrays(columns, names=names)
        if self.writer is None:
            self.writer = self._open(table.schema)
        self.writer.write_table(table)

    def _open(self, schema: Any) -> Any:
        raise NotImplementedError

    def discard(self) -> None:
        """Close the writer of a file that is being thrown away."""
        import pyarrow as pa

        if self.writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.writer.close()
            self.writer = None

    def close(self) -> None:
        if self.writer is None:                  # no rows: still a valid, empty file
            self.writer = self._open(self.empty_schema)
        self.writer.close()


class CsvOutput(_TableOutput):
    def _open(self, schema: Any) -> Any:
        from pyarrow import csv
        return csv.CSVWriter(self.f, schema)


class ParquetOutput(_TableOutput):
    def _open(self, schema: Any) -> Any:
        import pyarrow.parquet as pq
        return pq.ParquetWriter(self.f, schema)


INPUTS = {".npy": NpyInput, ".csv": CsvInput, ".parquet": ParquetInput}
OUTPUTS = {".csv": CsvOutput, ".parquet": ParquetOutput}


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def predict_file(network: Network, input_path: str, output_path: str, *,
                 columns: list[str] | None = None, output_columns: list[str] | None = None,
                 keep_columns: list[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 threads: int | None = None, scheduler: str | None = None,
                 progress: bool = False) -> int:
    """Score every row of ``input_path`` into ``output_path``; returns the number of rows.

    Raises PredictError (bad input or arguments), OSError (files), KeyboardInterrupt; in every
    case no output file is left behind.
    """
    in_format, out_format = _format_of(input_path, "input"), _format_of(output_path, "output")
    if out_format == ".npy" and (output_columns is not None or keep_columns):
        raise PredictError(f"{output_path}: a .npy output holds the outputs only, so "
                           f"--output-columns and --keep-columns do not apply")
    folder = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(folder):
        raise PredictError(f"{output_path}: no folder {folder}")
    if os.path.exists(output_path) and os.path.samefile(input_path, output_path):
        raise PredictError(f"the output {output_path} is the input file")
    if in_format != ".npy" or out_format != ".npy":
        _require_pyarrow(in_format if in_format != ".npy" else out_format)
    source: Any = INPUTS[in_format](input_path, network, columns, keep_columns)
    bar = _progress_bar(source.rows, progress)
    rows = 0
    try:
        with atomic_file(output_path) as f:
            if out_format == ".npy":
                sink: Any = NpyOutput(f, network.n_out, network.dtype)
            else:
                names = output_names(output_columns, network.n_out, keep_columns or [])
                sink = OUTPUTS[out_format](f, names, network.dtype, source.kept_schema)
            batches = source.batches(batch_size)
            results = _on_cluster(network, batches, scheduler, threads) if scheduler else (
                (forward(network, x, threads=threads), kept) for x, kept in batches)
            try:
                for y, kept in results:
                    sink.write(y, kept)
                    rows += len(y)
                    bar.update(len(y))
            except BaseException:
                sink.discard()
                raise
            sink.close()
    finally:
        bar.close()
    return rows


def _format_of(path: str, which: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise PredictError(f"{path}: unknown {which} extension {extension or '(none)'!r}; "
                           f"expected one of {', '.join(FORMATS)}")
    return extension


def _require_pyarrow(extension: str) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise PredictError(f"{extension} files need pyarrow: pip install "
                           f"\"nnexposed[files]\"") from None


def _on_cluster(network: Network, batches: Iterator[tuple[np.ndarray, Any]], address: str,
                threads: int | None) -> Iterator[tuple[np.ndarray, Any]]:
    """The batches' outputs computed on the Dask cluster at ``address``, in order, with a
    bounded number of batches in flight."""
    try:
        from distributed import Client
    except ImportError:
        raise PredictError("--scheduler needs Dask: pip install \"nnexposed[dask]\"") from None
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise PredictError(f"cannot reach the Dask scheduler at {address}: "
                           f"{one_line(error)}") from None
    with client:
        shared = client.scatter(network, broadcast=True)
        in_flight: collections.deque[tuple[Any, Any]] = collections.deque()
        depth = 2 * max(1, sum(client.nthreads().values()))
        for x, kept in batches:
            in_flight.append((client.submit(forward, shared, x, threads=threads or 1,
                                            pure=False), kept))
            if len(in_flight) >= depth:
                future, kept = in_flight.popleft()
                yield future.result(), kept
        while in_flight:
            future, kept = in_flight.popleft()
            yield future.result(), kept


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit=" rows", unit_scale=True, file=sys.stderr)


def one_line(error: BaseException | str) -> str:
    """An error's message on one line; for OSErrors, the file and the reason."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split())
