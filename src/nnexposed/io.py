"""Model files: a network saved as one ``.npz`` file, loaded back without unpickling anything.

The file is an ordinary NumPy ``.npz`` archive (``np.load(path)`` reads it) holding:

- ``header``: a uint8 array, the UTF-8 bytes of a JSON object
  ``{"format": "nnexposed-model", "version": 1, "dtype": "float32",
  "layers": [{"n_in": 3, "n_out": 5, "activation": "relu", "alpha": 0.01}, ...]}``;
- ``weights_0``, ``biases_0``, ``weights_1``, ...: each layer's (n_out, n_in) and (n_out,)
  arrays in the header's dtype.

Version 2, written for reduced-precision networks only (float networks are still written as
version 1, which every nnexposed reads), adds ``"precision": "int8" | "bfloat16" |
"float16"`` to the header; the weights are then int8, uint16 (the bit patterns of bfloat16
values) or float16, the biases float32, and int8 layers have ``scales_0``, ... (n_out,)
float32 arrays beside them.

``load`` checks all of it (every array's npy header before reading the array, so a hostile
file cannot make it allocate more than the header describes) and raises ``ValueError`` naming
what is wrong; ``save`` writes a temporary file in the target folder and renames it over the
target, so an interrupted save never leaves a half-written model in place of a good one.
"""

import json
import math
import os
import tempfile
import tokenize
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

from nnexposed._validation import FLOAT_DTYPES
from nnexposed.activations import ACTIVATIONS
from nnexposed.network import Dense, Network
from nnexposed.precision import bfloat16_dtype

FORMAT_NAME = "nnexposed-model"
FORMAT_VERSION = 2
# Version 1: float32/float64 networks; version 2 adds "precision" for reduced precisions.
HEADER_KEYS = {1: {"format", "version", "dtype", "layers"},
               2: {"format", "version", "dtype", "precision", "layers"}}
# How reduced-precision weights are stored in the file (bfloat16 as its bit patterns, so
# that np.load reads every array without ml_dtypes).
FILE_WEIGHT_DTYPES = {"int8": np.dtype(np.int8), "float16": np.dtype(np.float16),
                      "bfloat16": np.dtype(np.uint16)}
LAYER_KEYS = {"n_in", "n_out", "activation", "alpha"}
# The JSON header of any real model is far smaller; a bigger one is refused unread.
MAX_HEADER_BYTES = 1 << 20


def archive_arrays(network):
    """The arrays a model file holds, by name: ``header`` (JSON bytes) then each layer's."""
    reduced = network.precision in FILE_WEIGHT_DTYPES
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION if reduced else 1,
        "dtype": str(network.dtype),
        **({"precision": network.precision} if reduced else {}),
        "layers": [{"n_in": layer.n_in, "n_out": layer.n_out, "activation": layer.activation,
                    "alpha": layer.alpha} for layer in network.layers],
    }
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for k, layer in enumerate(network.layers):
        arrays[f"weights_{k}"] = (layer.weights.view(FILE_WEIGHT_DTYPES[network.precision])
                                  if reduced else layer.weights)
        arrays[f"biases_{k}"] = layer.biases
        if layer.scales is not None:
            arrays[f"scales_{k}"] = layer.scales
    return arrays


def save(network, path):
    """Write ``network`` to ``path`` (conventionally ``*.npz``) atomically; returns nothing.

    The file is written in full to a temporary file in the same folder, then renamed over
    ``path``: readers see either the old file or the new one, never a partial one. ``path``
    may also be a binary file object (``io.BytesIO()`` for the model file's bytes), which is
    written to as it is.
    """
    if not isinstance(network, Network):
        raise TypeError(f"save expects a nnexposed.Network, got {type(network).__name__}")
    arrays = archive_arrays(network)
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, _new_file_mode(path))
        os.replace(temporary, path)
        _fsync_folder(folder)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def load(path):
    """The ``Network`` saved in ``path`` (a path or a binary file object).

    Raises ValueError when the file is not a valid model file of this format and version
    (truncated, corrupted, inconsistent or hostile), OSError when it cannot be read at all.
    """
    if hasattr(path, "read"):
        return _load_from(path, getattr(path, "name", "<file>"))
    with open(path, "rb") as f:
        return _load_from(f, os.fspath(path))


def _load_from(f, name):
    try:
        with zipfile.ZipFile(f) as archive:
            return _read_network(archive)
    except _ModelFileError as error:
        raise ValueError(f"{name}: {error}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError) as error:
        # zipfile and numpy's readers report corrupted data with these (a corrupted .npy
        # header reaches Python's tokenizer).
        raise ValueError(f"{name}: not a readable nnexposed model file "
                         f"({type(error).__name__}: {error})") from None


class _ModelFileError(Exception):
    """A model file that reads fine but is not a valid model."""


def _read_network(archive):
    members = set(archive.namelist())
    if "header.npy" not in members:
        raise _ModelFileError("no 'header' array: not an nnexposed model file")
    header = _parse_header(_read_array(archive, "header", np.dtype(np.uint8), None))
    dtype = np.dtype(header["dtype"])
    precision = header.get("precision", header["dtype"])
    weight_dtype = FILE_WEIGHT_DTYPES.get(precision, dtype)
    expected = {"header.npy"}
    for k in range(len(header["layers"])):
        expected |= {f"weights_{k}.npy", f"biases_{k}.npy"}
        if precision == "int8":
            expected.add(f"scales_{k}.npy")
    if members != expected:
        details = []
        if expected - members:
            details.append(f"missing {_names(expected - members)}")
        if members - expected:
            details.append(f"unexpected {_names(members - expected)}")
        raise _ModelFileError(f"the arrays do not match the header's "
                              f"{len(header['layers'])} layers: {'; '.join(details)}")
    layers = []
    for k, spec in enumerate(header["layers"]):
        weights = _read_array(archive, f"weights_{k}", weight_dtype,
                              (spec["n_out"], spec["n_in"]))
        biases = _read_array(archive, f"biases_{k}", dtype, (spec["n_out"],))
        scales = None
        if precision == "int8":
            scales = _read_array(archive, f"scales_{k}", dtype, (spec["n_out"],))
        elif precision == "bfloat16":
            weights = weights.view(bfloat16_dtype())
        try:
            layers.append(Dense(weights, biases, spec["activation"], alpha=spec["alpha"],
                                scales=scales, precision=precision))
        except (ValueError, TypeError) as error:
            raise _ModelFileError(f"layer {k}: {error}") from None
    return Network(layers)


def _names(members):
    return ", ".join(sorted(repr(m.removesuffix(".npy")) for m in members))


def _read_array(archive, key, dtype, shape):
    """The array ``key``, after checking its npy header against the dtype and shape expected
    (shape None: any 1-D array of at most MAX_HEADER_BYTES elements)."""
    member = f"{key}.npy"
    with archive.open(member) as f:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            found_shape, fortran_order, found_dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            found_shape, fortran_order, found_dtype = npy_format.read_array_header_2_0(f)
        else:
            raise _ModelFileError(f"array {key!r}: unsupported npy version {version}")
        header_bytes = f.tell()
    if found_dtype.hasobject or found_dtype.kind != dtype.kind or \
            found_dtype.itemsize != dtype.itemsize:
        raise _ModelFileError(f"array {key!r}: expected dtype {dtype}, got {found_dtype}")
    if shape is None:
        if len(found_shape) != 1 or found_shape[0] > MAX_HEADER_BYTES:
            raise _ModelFileError(f"array {key!r}: expected a 1-D array of at most "
                                  f"{MAX_HEADER_BYTES} bytes, got shape {found_shape}")
    elif found_shape != shape:
        raise _ModelFileError(f"array {key!r}: expected shape {shape} from the header, "
                              f"got shape {found_shape}")
    # Nothing is allocated for data that the archive does not claim to hold.
    n_bytes = header_bytes + math.prod(found_shape) * found_dtype.itemsize
    if archive.getinfo(member).file_size < n_bytes:
        raise _ModelFileError(f"array {key!r}: the archive holds "
                              f"{archive.getinfo(member).file_size} bytes, its shape "
                              f"{found_shape} needs {n_bytes}")
    with archive.open(member) as f:
        array = npy_format.read_array(f, allow_pickle=False)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _parse_header(raw):
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise _ModelFileError(f"the header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise _ModelFileError(f"the header must be a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT_NAME:
        raise _ModelFileError(f"expected format {FORMAT_NAME!r} in the header, "
                              f"got {header.get('format')!r}")
    version = header.get("version")
    if not _is_int(version) or version not in HEADER_KEYS:
        raise _ModelFileError(f"unsupported format version {version!r}; this nnexposed reads "
                              f"versions 1 to {FORMAT_VERSION}")
    _check_keys(header, HEADER_KEYS[version], "the header")
    if header["dtype"] not in [str(dtype) for dtype in FLOAT_DTYPES]:
        raise _ModelFileError(f"expected dtype 'float32' or 'float64' in the header, "
                              f"got {header['dtype']!r}")
    if version >= 2:
        if header["precision"] not in FILE_WEIGHT_DTYPES:
            raise _ModelFileError(f"expected precision {', '.join(map(repr, FILE_WEIGHT_DTYPES))}"
                                  f" in the header, got {header['precision']!r}")
        if header["dtype"] != "float32":
            raise _ModelFileError(f"{header['precision']} networks compute in float32, "
                                  f"the header says {header['dtype']!r}")
    layers = header["layers"]
    if not isinstance(layers, list) or not layers:
        raise _ModelFileError(f"expected a non-empty list of layers in the header, "
                              f"got {layers!r}")
    for k, spec in enumerate(layers):
        where = f"layer {k} of the header"
        if not isinstance(spec, dict):
            raise _ModelFileError(f"{where} must be a JSON object, got {spec!r}")
        _check_keys(spec, LAYER_KEYS, where)
        for key in ("n_in", "n_out"):
            if not _is_int(spec[key]) or spec[key] < 1:
                raise _ModelFileError(f"{where}: {key} must be a positive integer, "
                                      f"got {spec[key]!r}")
        if spec["activation"] not in ACTIVATIONS:
            raise _ModelFileError(f"{where}: unknown activation {spec['activation']!r}; "
                                  f"expected one of: {', '.join(ACTIVATIONS)}")
        alpha = spec["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or \
                not math.isfinite(alpha):
            raise _ModelFileError(f"{where}: alpha must be a finite number, got {alpha!r}")
        if k > 0 and spec["n_in"] != layers[k - 1]["n_out"]:
            raise _ModelFileError(f"{where}: n_in is {spec['n_in']} but layer {k - 1} has "
                                  f"n_out {layers[k - 1]['n_out']}")
    return header


def _check_keys(mapping, keys, where):
    if set(mapping) != keys:
        missing, extra = keys - set(mapping), set(mapping) - keys
        details = ([f"missing {sorted(missing)}"] if missing else []) + (
            [f"unexpected {sorted(extra)}"] if extra else [])
        raise _ModelFileError(f"{where} has the wrong keys: {'; '.join(details)}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _fsync_folder(folder):
    """Make the rename durable where the platform allows syncing a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path):
    """The mode a file written at ``path`` should get: the old file's, else 0o666 - umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
