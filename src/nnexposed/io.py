"""Model files: a network saved as one ``.npz`` file, loaded back without unpickling anything.

The file is an ordinary NumPy ``.npz`` archive (``np.load(path)`` reads it) holding:

- ``header``: a uint8 array, the UTF-8 bytes of a JSON object
  ``{"format": "nnexposed-model", "version": 1, "dtype": "float32",
  "layers": [{"n_in": 3, "n_out": 5, "activation": "relu", "alpha": 0.01}, ...]}``;
- ``weights_0``, ``biases_0``, ``weights_1``, ...: each layer's (n_out, n_in) and (n_out,)
  arrays in the header's dtype.

Version 2 holds what version 1 cannot; ``save`` writes it only for such networks (networks
of float32/float64 Dense layers are still written as version 1, which every nnexposed
reads), and ``load`` reads both versions. Its header adds:

- ``"precision"``: how the weights are stored, ``"float32"`` / ``"float64"`` (the header's
  dtype; the default when the key is absent) or ``"int8"`` | ``"bfloat16"`` | ``"float16"``
  (reduced precisions: dtype ``"float32"``). Reduced-precision weights are int8, uint16 (the
  bit patterns of bfloat16 values) or float16, the biases float32, and int8 layers have
  ``scales_0``, ... (n_out,) float32 arrays beside them.
- ``"kind"`` in each layer: ``"dense"`` (the default when absent) or ``"layer_norm"``, a
  layer ``{"kind": "layer_norm", "n_in": n, "n_out": n, "activation": ..., "alpha": ...,
  "eps": 1e-05}`` whose ``weights_k`` and ``biases_k`` are its weight and bias, both (n,),
  in the header's dtype. Reduced-precision networks hold Dense layers only.

``load`` checks all of it (every array's npy header before reading the array, so a hostile
file cannot make it allocate more than the header describes) and raises ``ValueError`` naming
what is wrong; ``save`` writes a temporary file in the target folder and renames it over the
target, so an interrupted save never leaves a half-written model in place of a good one.
"""

import contextlib
import json
import math
import os
import tempfile
import tokenize
import zipfile
import zlib
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from nnexposed._validation import FLOAT_DTYPES
from nnexposed.activations import ACTIVATIONS
from nnexposed.network import Dense, LayerNorm, Network
from nnexposed.precision import bfloat16_dtype

FORMAT_NAME = "nnexposed-model"
FORMAT_VERSION = 2
# Versions that load() reads; save() writes version 1 unless the network needs version 2
# (LayerNorm layers or a reduced precision).
READ_VERSIONS = (1, FORMAT_VERSION)
HEADER_KEYS = {"format", "version", "dtype", "layers"}
# Version 2 headers may also say how the weights are stored (absent: in the header's dtype).
OPTIONAL_HEADER_KEYS = {2: {"precision"}}
# How reduced-precision weights are stored in the file (bfloat16 as its bit patterns, so
# that np.load reads every array without ml_dtypes).
FILE_WEIGHT_DTYPES = {"int8": np.dtype(np.int8), "float16": np.dtype(np.float16),
                      "bfloat16": np.dtype(np.uint16)}
LAYER_KINDS = ("dense", "layer_norm")
LAYER_KEYS = {"n_in", "n_out", "activation", "alpha"}
LAYER_NORM_KEYS = LAYER_KEYS | {"kind", "eps"}
# The JSON header of any real model is far smaller; a bigger one is refused unread.
MAX_HEADER_BYTES = 1 << 20
# load() refuses files whose arrays would need more memory than this, unless told otherwise.
DEFAULT_MAX_BYTES = 4 << 30
# Deflate inflates at most about 1032 bytes per compressed byte; a zip member claiming more
# is lying about its sizes (other compression methods are held to the same bound).
MAX_COMPRESSION_RATIO = 1032
# The files of other libraries that load() recognises, and the importer to use instead.
FOREIGN_FILES = {
    "torch": ("a PyTorch file", "nnexposed.Network.from_state_dict(path) for a state dict, or "
                                "torch.load the module and use nnexposed.Network.from_torch"),
    "onnx": ("an ONNX model", "nnexposed.Network.from_onnx(path)"),
    "safetensors": ("a safetensors file", "nnexposed.Network.from_state_dict(path)"),
    "keras": ("a Keras model file", "keras.saving.load_model(path), then "
                                    "nnexposed.Network.from_keras(model)"),
    "hdf5": ("an HDF5 file (Keras?)", "keras.saving.load_model(path), then "
                                      "nnexposed.Network.from_keras(model)"),
}


def archive_arrays(network):
    """The arrays a model file holds, by name: ``header`` (JSON bytes) then each layer's."""
    reduced = network.precision in FILE_WEIGHT_DTYPES
    norms = any(isinstance(layer, LayerNorm) for layer in network.layers)
    version = 2 if reduced or norms else 1
    specs = []
    for layer in network.layers:
        spec = {"n_in": layer.n_in, "n_out": layer.n_out, "activation": layer.activation,
                "alpha": layer.alpha}
        if isinstance(layer, LayerNorm):
            spec.update(kind="layer_norm", eps=layer.eps)
        elif version >= 2:
            spec.update(kind="dense")
        specs.append(spec)
    header = {
        "format": FORMAT_NAME,
        "version": version,
        "dtype": str(network.dtype),
        **({"precision": network.precision} if version >= 2 else {}),
        "layers": specs,
    }
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for k, layer in enumerate(network.layers):
        if isinstance(layer, LayerNorm):
            arrays[f"weights_{k}"] = layer.weight
            arrays[f"biases_{k}"] = layer.bias
            continue
        arrays[f"weights_{k}"] = (layer.weights.view(FILE_WEIGHT_DTYPES[network.precision])
                                  if reduced else layer.weights)
        arrays[f"biases_{k}"] = layer.biases
        if layer.scales is not None:
            arrays[f"scales_{k}"] = layer.scales
    return arrays


def save(network, path):
    """Write ``network`` to a model file at ``path``, atomically.

    The file is written in full to a temporary file in the same folder, then renamed over
    ``path``: readers see either the old file or the new one, never a partial one.

    Parameters
    ----------
    network : Network
        The network to save.
    path : str, os.PathLike or binary file object
        Where to write, conventionally ``*.npz``; a file object (``io.BytesIO()`` for the
        model file's bytes) is written to as it is.

    Raises
    ------
    TypeError
        When ``network`` is not a Network.
    OSError
        When the file cannot be written.

    See Also
    --------
    load : read a model file.

    Examples
    --------
    >>> import io, nnexposed
    >>> net = nnexposed.Network.from_sizes([3, 5, 2], seed=0)
    >>> model_file = io.BytesIO()
    >>> nnexposed.save(net, model_file)
    >>> nnexposed.load(io.BytesIO(model_file.getvalue())).sizes
    (3, 5, 2)
    """
    if not isinstance(network, Network):
        raise TypeError(f"save expects a nnexposed.Network, got {type(network).__name__}")
    arrays = archive_arrays(network)
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    with atomic_file(path) as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def atomic_file(path):
    """A new binary file (open for writing and reading) that replaces ``path`` when the
    ``with`` block ends without an exception, and leaves no trace when it raises.

    The file is a temporary file in ``path``'s folder, synced and renamed over ``path``:
    readers see either the old file or the new one, never a partial one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
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


def load(path: str | os.PathLike[str] | IO[bytes], *,
         max_bytes: int | None = DEFAULT_MAX_BYTES) -> Network:
    """The ``Network`` saved in ``path`` (a path or a binary file object).

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        The model file.
    max_bytes : int or None, default 4 GiB
        The most memory the model's arrays may need (None for no limit). A file whose header
        declares more is refused before anything is allocated, as is any array that the
        archive claims to inflate from implausibly little compressed data.

    Returns
    -------
    Network

    Raises
    ------
    ValueError
        When the file is not a valid model file of this format and version (truncated,
        corrupted, inconsistent, hostile or too big) — naming the importer to use for a
        PyTorch, ONNX, safetensors or Keras file — or ``max_bytes`` is not a positive int
        or None.
    OSError
        When the file cannot be read.
    """
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(
            max_bytes, int) or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive int or None, got {max_bytes!r}")
    if hasattr(path, "read"):
        return _load_from(path, getattr(path, "name", "<file>"), max_bytes)
    with open(path, "rb") as f:
        return _load_from(f, os.fspath(path), max_bytes)


def _load_from(f, name, max_bytes):
    foreign = _foreign_kind(f, str(name))
    if foreign is not None:
        what, how = FOREIGN_FILES[foreign]
        raise ValueError(f"{name} is {what}, not an nnexposed model file: import it with "
                         f"{how}")
    try:
        with zipfile.ZipFile(f) as archive:
            return _read_network(archive, max_bytes)
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


def _foreign_kind(f, name):
    """The key in FOREIGN_FILES of a file of another library, or None."""
    try:
        start = f.tell()
        head = f.read(16)
        f.seek(start)
    except (OSError, AttributeError, ValueError):
        return None
    if not isinstance(head, bytes):
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if len(head) >= 9 and head[8:9] == b"{" and \
            int.from_bytes(head[:8], "little") < (100 << 20):
        return "safetensors"                    # an 8-byte header length, then JSON
    if head.startswith(b"\x80") and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"                          # a pickle: PyTorch's legacy format
    if name.lower().endswith(".onnx") and not head.startswith(b"PK"):
        return "onnx"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(f) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError):
            return None
        finally:
            f.seek(start)
        if "header.npy" in names:
            return None
        if any(member.endswith("data.pkl") for member in names):
            return "torch"
        if "config.json" in names and "metadata.json" in names:
            return "keras"
    return None


def _read_network(archive, max_bytes=DEFAULT_MAX_BYTES):
    members = set(archive.namelist())
    if "header.npy" not in members:
        raise _ModelFileError("no 'header' array: not an nnexposed model file")
    header = _parse_header(_read_array(archive, "header", np.dtype(np.uint8), None))
    dtype = np.dtype(header["dtype"])
    precision = header.get("precision", header["dtype"])
    weight_dtype = FILE_WEIGHT_DTYPES.get(precision, dtype)
    n_bytes = sum(spec["n_out"] * 2 * dtype.itemsize if _is_norm(spec) else
                  spec["n_out"] * (spec["n_in"] * weight_dtype.itemsize + dtype.itemsize
                                   + (dtype.itemsize if precision == "int8" else 0))
                  for spec in header["layers"])
    if max_bytes is not None and n_bytes > max_bytes:
        raise _ModelFileError(f"its header declares layers of {n_bytes:,} bytes, more than "
                              f"max_bytes={max_bytes:,}; pass load(path, max_bytes=...) to "
                              f"load a model this big")
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
        if _is_norm(spec):
            weight = _read_array(archive, f"weights_{k}", dtype, (spec["n_out"],))
            bias = _read_array(archive, f"biases_{k}", dtype, (spec["n_out"],))
            try:
                layers.append(LayerNorm(weight, bias, spec["eps"], spec["activation"],
                                        alpha=spec["alpha"]))
            except (ValueError, TypeError) as error:
                raise _ModelFileError(f"layer {k}: {error}") from None
            continue
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
    info = archive.getinfo(member)
    if info.file_size > MAX_COMPRESSION_RATIO * info.compress_size + 1024 or (
            info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size):
        raise _ModelFileError(f"array {key!r}: the archive claims {info.file_size:,} bytes "
                              f"from {info.compress_size:,} compressed bytes, which is "
                              f"implausible")
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
    if not _is_int(version) or version not in READ_VERSIONS:
        raise _ModelFileError(f"unsupported format version {version!r}; this nnexposed reads "
                              f"versions {' and '.join(map(str, READ_VERSIONS))}")
    optional = OPTIONAL_HEADER_KEYS.get(version, set())
    _check_keys(header, HEADER_KEYS | (optional & set(header)), "the header")
    if header["dtype"] not in [str(dtype) for dtype in FLOAT_DTYPES]:
        raise _ModelFileError(f"expected dtype 'float32' or 'float64' in the header, "
                              f"got {header['dtype']!r}")
    precision = header.get("precision", header["dtype"])
    if precision != header["dtype"]:
        if not isinstance(precision, str) or precision not in FILE_WEIGHT_DTYPES:
            raise _ModelFileError(f"expected precision {', '.join(map(repr, FILE_WEIGHT_DTYPES))}"
                                  f" or the header's dtype {header['dtype']!r} in the header, "
                                  f"got {precision!r}")
        if header["dtype"] != "float32":
            raise _ModelFileError(f"{precision} networks compute in float32, "
                                  f"the header says {header['dtype']!r}")
    layers = header["layers"]
    if not isinstance(layers, list) or not layers:
        raise _ModelFileError(f"expected a non-empty list of layers in the header, "
                              f"got {layers!r}")
    for k, spec in enumerate(layers):
        where = f"layer {k} of the header"
        if not isinstance(spec, dict):
            raise _ModelFileError(f"{where} must be a JSON object, got {spec!r}")
        if version >= 2 and "kind" in spec and (not isinstance(spec["kind"], str)
                                                or spec["kind"] not in LAYER_KINDS):
            raise _ModelFileError(f"{where}: unknown kind {spec['kind']!r}; expected one of: "
                                  f"{', '.join(map(repr, LAYER_KINDS))}")
        norm = version >= 2 and _is_norm(spec)
        if version < 2:
            keys = LAYER_KEYS
        elif norm:
            keys = LAYER_NORM_KEYS
        else:   # a Dense layer, its kind optional
            keys = LAYER_KEYS | ({"kind"} & set(spec))
        _check_keys(spec, keys, where)
        if norm and precision in FILE_WEIGHT_DTYPES:
            raise _ModelFileError(f"{where}: {precision} networks hold Dense layers only, "
                                  f"not layer_norm ones")
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
        if norm:
            eps = spec["eps"]
            if spec["n_in"] != spec["n_out"]:
                raise _ModelFileError(f"{where}: a layer_norm layer has n_in == n_out, got "
                                      f"{spec['n_in']} and {spec['n_out']}")
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or \
                    not (math.isfinite(eps) and eps >= 0):
                raise _ModelFileError(f"{where}: eps must be a finite number >= 0, "
                                      f"got {eps!r}")
        if k > 0 and spec["n_in"] != layers[k - 1]["n_out"]:
            raise _ModelFileError(f"{where}: n_in is {spec['n_in']} but layer {k - 1} has "
                                  f"n_out {layers[k - 1]['n_out']}")
    return header


def _is_norm(spec):
    return spec.get("kind") == "layer_norm"


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
