"""Model files: save/load round trips, atomic saves, and a battery of broken or hostile files."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

import nnexposed
from nnexposed import Network
from tests.helpers import ALL_ACTIVATIONS, DTYPES, random_network

# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def assert_same_network(a, b):
    assert a.sizes == b.sizes and a.dtype == b.dtype
    for la, lb in zip(a.layers, b.layers):
        assert (la.activation, la.alpha) == (lb.activation, lb.alpha)
        assert la.weights.dtype == lb.weights.dtype
        np.testing.assert_array_equal(la.weights, lb.weights)
        np.testing.assert_array_equal(la.biases, lb.biases)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_activation(tmp_path, rng, dtype):
    n = len(ALL_ACTIVATIONS)
    network = random_network(rng, list(range(3, 3 + n + 1)), ALL_ACTIVATIONS, dtype, alpha=0.3)
    path = tmp_path / "model.npz"
    assert nnexposed.save(network, path) is None
    loaded = nnexposed.load(path)
    assert_same_network(loaded, network)
    x = rng.standard_normal((5, 3)).astype(dtype)
    np.testing.assert_array_equal(loaded(x), network(x))
    assert loaded.layers[0].weights.flags.c_contiguous
    assert not loaded.layers[0].weights.flags.writeable


def test_round_trip_str_path_file_object_and_default_alphas(tmp_path):
    network = Network([nnexposed.Dense(np.ones((2, 3)), None, "elu"),
                       nnexposed.Dense(np.ones((1, 2)), [0.5], "leaky_relu")])
    path = str(tmp_path / "model.npz")
    nnexposed.save(network, path)
    with open(path, "rb") as f:
        loaded = nnexposed.load(f)
    assert_same_network(loaded, network)
    assert [layer.alpha for layer in loaded.layers] == [1.0, 0.01]
    assert_same_network(nnexposed.load(io.BytesIO(open(path, "rb").read())), network)


def test_save_to_a_file_object(article_network):
    buffer = io.BytesIO()
    assert nnexposed.save(article_network, buffer) is None
    assert_same_network(nnexposed.load(io.BytesIO(buffer.getvalue())), article_network)


def test_file_is_a_plain_npz(tmp_path, article_network):
    path = tmp_path / "model.npz"
    nnexposed.save(article_network, path)
    with np.load(path, allow_pickle=False) as data:
        assert data.files == ["header", "weights_0", "biases_0", "weights_1", "biases_1",
                              "weights_2", "biases_2", "weights_3", "biases_3"]
        header = json.loads(data["header"].tobytes())
        np.testing.assert_array_equal(data["weights_1"], article_network.layers[1].weights)
    assert header["format"] == "nnexposed-model" and header["version"] == 1
    assert header["dtype"] == "float32"
    assert header["layers"][0] == {"n_in": 3, "n_out": 5, "activation": "relu", "alpha": 0.01}


def test_save_needs_a_network(tmp_path):
    with pytest.raises(TypeError, match="save expects a nnexposed.Network, got list"):
        nnexposed.save([1], tmp_path / "x.npz")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        nnexposed.load(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError):
        nnexposed.save(Network.from_sizes([2, 1]), tmp_path / "no" / "such" / "dir.npz")


# --------------------------------------------------------------------------------------------
# Atomic saves
# --------------------------------------------------------------------------------------------


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch, article_network):
    path = tmp_path / "model.npz"
    nnexposed.save(article_network, path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        nnexposed.save(Network.from_sizes([4, 4, 1], seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]      # no temporary file left behind
    assert_same_network(nnexposed.load(path), article_network)


def test_save_replaces_and_keeps_permissions(tmp_path, article_network):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    nnexposed.save(article_network, path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert_same_network(nnexposed.load(path), article_network)
    fresh = tmp_path / "fresh.npz"
    nnexposed.save(article_network, fresh)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(fresh).st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------------------------
# Broken and hostile files
# --------------------------------------------------------------------------------------------

GOOD_HEADER = {
    "format": "nnexposed-model", "version": 1, "dtype": "float64",
    "layers": [{"n_in": 3, "n_out": 2, "activation": "relu", "alpha": 0.01},
               {"n_in": 2, "n_out": 1, "activation": "linear", "alpha": 0.01}],
}


def good_arrays(dtype=np.float64):
    return {"weights_0": np.ones((2, 3), dtype), "biases_0": np.zeros(2, dtype),
            "weights_1": np.ones((1, 2), dtype), "biases_1": np.zeros(1, dtype)}


def write_model(path, header=GOOD_HEADER, arrays=None, raw_header=None):
    arrays = good_arrays() if arrays is None else arrays
    if raw_header is None:
        raw_header = json.dumps(header).encode() if not isinstance(header, bytes) else header
    np.savez(path, header=np.frombuffer(raw_header, np.uint8), **arrays)
    return path


def with_changes(base, **changes):
    return {**base, **changes}


def layer_changes(k, **changes):
    layers = [dict(layer) for layer in GOOD_HEADER["layers"]]
    layers[k].update(changes)
    return with_changes(GOOD_HEADER, layers=layers)


def test_the_good_file_loads(tmp_path):
    network = nnexposed.load(write_model(tmp_path / "m.npz"))
    assert network.sizes == (3, 2, 1) and network.dtype == np.float64


BAD_HEADERS = [
    (with_changes(GOOD_HEADER, format="other"), "expected format 'nnexposed-model'"),
    (with_changes(GOOD_HEADER, version=3), "unsupported format version 3; this nnexposed "
                                           "reads versions 1 and 2"),
    # Version 2's precision is optional (the dtype's), but must be one nnexposed knows.
    (with_changes(GOOD_HEADER, version=2, precision="float32"),
     "expected precision 'int8', 'float16', 'bfloat16' or the header's dtype 'float64'"),
    (with_changes(GOOD_HEADER, version=2, precision="int8"), "int8 networks compute in float32"),
    (with_changes(GOOD_HEADER, precision="float64"), r"unexpected \['precision'\]"),
    (with_changes(GOOD_HEADER, version=2, layers=[{**GOOD_HEADER["layers"][0], "kind": "conv"},
                                                  *GOOD_HEADER["layers"][1:]]),
     "unknown kind 'conv'; expected one of: 'dense', 'layer_norm'"),
    (with_changes(GOOD_HEADER, version="1"), "unsupported format version '1'"),
    (with_changes(GOOD_HEADER, version=True), "unsupported format version True"),
    ({k: v for k, v in GOOD_HEADER.items() if k != "dtype"}, r"missing \['dtype'\]"),
    (with_changes(GOOD_HEADER, extra=1), r"unexpected \['extra'\]"),
    (with_changes(GOOD_HEADER, dtype="int32"), "expected dtype 'float32' or 'float64'"),
    (with_changes(GOOD_HEADER, dtype="object"), "expected dtype"),
    (with_changes(GOOD_HEADER, layers=[]), "non-empty list of layers"),
    (with_changes(GOOD_HEADER, layers={"0": 1}), "non-empty list of layers"),
    (with_changes(GOOD_HEADER, layers=[1, 2]), "layer 0 of the header must be a JSON object"),
    (layer_changes(0, activation="swish"), "unknown activation 'swish'"),
    (layer_changes(1, alpha=float("nan")), "alpha must be a finite number"),
    (layer_changes(1, alpha="0.1"), "alpha must be a finite number"),
    (layer_changes(1, alpha=True), "alpha must be a finite number"),
    (layer_changes(0, n_in=0), "n_in must be a positive integer, got 0"),
    (layer_changes(0, n_in=3.0), "n_in must be a positive integer, got 3.0"),
    (layer_changes(0, n_out=-2), "n_out must be a positive integer"),
    (layer_changes(0, n_out=3), "layer 1 of the header: n_in is 2 but layer 0 has n_out 3"),
    (layer_changes(0, bias=1), r"layer 0 of the header has the wrong keys: unexpected \['bias'\]"),
    ([1, 2], "must be a JSON object, got list"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
]


@pytest.mark.parametrize("header, message", BAD_HEADERS)
def test_bad_header(tmp_path, header, message):
    path = write_model(tmp_path / "m.npz", header)
    with pytest.raises(ValueError, match=message):
        nnexposed.load(path)


BAD_ARRAYS = [
    # NaN-free arrays whose sizes disagree with the header.
    (with_changes(good_arrays(), weights_0=np.ones((3, 2))),
     r"'weights_0': expected shape \(2, 3\)"),
    (with_changes(good_arrays(), biases_0=np.zeros(3)), r"'biases_0': expected shape \(2,\)"),
    (with_changes(good_arrays(), biases_1=np.zeros((1, 1))), r"'biases_1': expected shape \(1,\)"),
    (with_changes(good_arrays(), weights_1=np.ones(2)), "'weights_1': expected shape"),
    (good_arrays(np.float32), "'weights_0': expected dtype float64, got float32"),
    (with_changes(good_arrays(), weights_0=np.ones((2, 3), np.int64)), "expected dtype float64"),
    (with_changes(good_arrays(), biases_1=np.zeros(1, complex)), "expected dtype float64"),
    (with_changes(good_arrays(), weights_0=np.array([["a"] * 3] * 2)), "expected dtype float64"),
    ({k: v for k, v in good_arrays().items() if k != "biases_1"}, "missing 'biases_1'"),
    (with_changes(good_arrays(), weights_2=np.ones((1, 1))), "unexpected 'weights_2'"),
]


@pytest.mark.parametrize("arrays, message", BAD_ARRAYS)
def test_arrays_inconsistent_with_header(tmp_path, arrays, message):
    path = write_model(tmp_path / "m.npz", arrays=arrays)
    with pytest.raises(ValueError, match=message):
        nnexposed.load(path)


def test_big_endian_arrays_are_accepted(tmp_path):
    arrays = {k: v.astype(">f8") for k, v in good_arrays().items()}
    network = nnexposed.load(write_model(tmp_path / "m.npz", arrays=arrays))
    assert network.layers[0].weights.dtype == np.dtype("=f8")


class _Payload:
    """Unpickling this would create a file: the test checks that it never happens."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def test_pickled_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    hostile = np.empty((2, 3), dtype=object)
    hostile[0, 0] = _Payload(marker)
    path = write_model(tmp_path / "m.npz", arrays=with_changes(good_arrays(), weights_0=hostile))
    with pytest.raises(ValueError, match="'weights_0': expected dtype float64, got object"):
        nnexposed.load(path)
    header = np.empty(1, dtype=object)
    header[0] = _Payload(marker)
    np.savez(tmp_path / "h.npz", header=header, **good_arrays())
    with pytest.raises(ValueError, match="'header': expected dtype uint8, got object"):
        nnexposed.load(tmp_path / "h.npz")
    assert not marker.exists()


def write_npy_member(path, key, raw_npy, arrays):
    header = np.frombuffer(json.dumps(GOOD_HEADER).encode(), np.uint8)
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in {"header": header, **arrays}.items():
            if name == key:
                archive.writestr(f"{name}.npy", raw_npy)
            else:
                buffer = io.BytesIO()
                np.save(buffer, array)
                archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


def npy_bytes(header_dict, payload=b""):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header_dict)
    return buffer.getvalue() + payload


def test_hostile_shape_is_refused_before_allocation(tmp_path):
    raw = npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**12, 10**6)})
    path = write_npy_member(tmp_path / "m.npz", "weights_0", raw, good_arrays())
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\).*got shape \(1000000000000"):
        nnexposed.load(path)
    raw = npy_bytes({"descr": "|u1", "fortran_order": False, "shape": (10**12,)})
    path = write_npy_member(tmp_path / "h.npz", "header", raw, good_arrays())
    with pytest.raises(ValueError, match="'header': expected a 1-D array of at most"):
        nnexposed.load(path)


def test_array_data_shorter_than_its_header(tmp_path):
    raw = npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (2, 3)}, b"\0" * 20)
    path = write_npy_member(tmp_path / "m.npz", "weights_0", raw, good_arrays())
    with pytest.raises(ValueError, match=r"'weights_0': the archive holds \d+ bytes, its shape "
                                         r"\(2, 3\) needs \d+"):
        nnexposed.load(path)


def test_huge_layers_declared_with_little_data(tmp_path):
    # The JSON and npy headers agree on a 100,000 x 100,000 layer (80 GB), the data is absent.
    n = 100_000
    header = with_changes(GOOD_HEADER, layers=[
        {"n_in": n, "n_out": n, "activation": "relu", "alpha": 0.01}])
    raw = npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (n, n)})
    arrays = {"weights_0": np.ones((1, 1)), "biases_0": np.zeros(n)}
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.npy", _npy(np.frombuffer(json.dumps(header).encode(),
                                                          np.uint8)))
        archive.writestr("weights_0.npy", raw)
        archive.writestr("biases_0.npy", _npy(arrays["biases_0"]))
    with pytest.raises(ValueError, match=r"declares layers of 80,000,800,000 bytes, more than "
                                         r"max_bytes=4,294,967,296"):
        nnexposed.load(path)
    with pytest.raises(ValueError, match=r"'weights_0': the archive holds"):
        nnexposed.load(path, max_bytes=None)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("raw, message", [
    (b"\x93NUMPY garbage", r"'biases_0': unsupported npy version \(32, 103\)"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n", "not a readable nnexposed model file"),
    (b"not npy at all", "not a readable nnexposed model file"),
])
def test_garbage_npy_member(tmp_path, raw, message):
    path = write_npy_member(tmp_path / "m.npz", "biases_0", raw, good_arrays())
    with pytest.raises(ValueError, match=message):
        nnexposed.load(path)


def test_fortran_order_arrays_load_correctly(tmp_path):
    weights = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    path = write_model(tmp_path / "m.npz", arrays=with_changes(good_arrays(), weights_0=weights))
    np.testing.assert_array_equal(nnexposed.load(path).layers[0].weights, weights)


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable"),
    (b"hello, this is text", "not a readable"),
    (b"PK\x03\x04" + b"\0" * 50, "not a readable"),
])
def test_not_a_zip(tmp_path, content, message):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        nnexposed.load(path)


def test_other_npz_and_npy_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="no 'header' array: not an nnexposed model file"):
        nnexposed.load(tmp_path / "other.npz")
    np.save(tmp_path / "plain.npy", np.ones(3))
    with pytest.raises(ValueError, match="not a readable"):
        nnexposed.load(tmp_path / "plain.npy")


def test_every_truncation_and_corruption_gives_value_error(tmp_path, article_network):
    path = tmp_path / "model.npz"
    nnexposed.save(article_network, path)
    data = path.read_bytes()
    broken = tmp_path / "broken.npz"
    cuts = sorted(set(range(0, len(data), max(1, len(data) // 97))) | {len(data) - 1})
    for cut in cuts:
        broken.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="broken.npz"):
            nnexposed.load(broken)
    rng = np.random.default_rng(0)
    for position in rng.integers(0, len(data), 150):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        broken.write_bytes(bytes(flipped))
        try:
            network = nnexposed.load(broken)
        except ValueError:
            continue
        # A flip that the zip format does not notice (e.g. in a timestamp) may load,
        # but then it must still be a valid network of the same shape.
        assert network.sizes == article_network.sizes


# --------------------------------------------------------------------------------------------
# Untrusted files: max_bytes, decompression bombs
# --------------------------------------------------------------------------------------------


def zeros_model(path, n, dtype="float32"):
    """A compressed model file of one n x n layer of zeros: a small file, a big model."""
    header = with_changes(GOOD_HEADER, dtype=dtype, layers=[
        {"n_in": n, "n_out": n, "activation": "relu", "alpha": 0.01}])
    np.savez_compressed(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                        weights_0=np.zeros((n, n), dtype), biases_0=np.zeros(n, dtype))
    return path


def test_decompression_bomb_is_refused_before_allocating(tmp_path):
    """A 2,000 x 2,000 layer of zeros deflates to 16 kB; with max_bytes below its 16 MB,
    load refuses it having allocated nothing of that size."""
    import tracemalloc
    path = zeros_model(tmp_path / "bomb.npz", 2000)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bomb.npz: its header declares layers of "
                                             r"16,008,000 bytes, more than max_bytes=1,000,000"):
            nnexposed.load(path, max_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert nnexposed.load(path).sizes == (2000, 2000)           # the default allows it


def test_max_bytes_is_a_bound_on_the_arrays(tmp_path, article_network):
    path = tmp_path / "m.npz"
    nnexposed.save(article_network, path)
    n_bytes = article_network.n_params * article_network.dtype.itemsize
    assert nnexposed.load(path, max_bytes=n_bytes).sizes == article_network.sizes
    with pytest.raises(ValueError, match=f"declares layers of {n_bytes} bytes"):
        nnexposed.load(path, max_bytes=n_bytes - 1)
    for bad in (0, -5, 1.5, True, "1"):
        with pytest.raises(ValueError, match="max_bytes must be a positive int or None"):
            nnexposed.load(path, max_bytes=bad)


def test_implausible_compression_ratio_is_refused(tmp_path, monkeypatch):
    """Deflate cannot inflate more than about 1032 bytes per byte: a member claiming more
    lies about its size. (Zeros deflate at about 1000:1, so the bound is lowered here to
    show the check at work on a file that zipfile can write.)"""
    path = zeros_model(tmp_path / "m.npz", 300)
    monkeypatch.setattr(nnexposed.io, "MAX_COMPRESSION_RATIO", 50)
    with pytest.raises(ValueError, match=r"'weights_0': the archive claims 360,128 bytes from "
                                         r"[\d,]+ compressed bytes, which is implausible"):
        nnexposed.load(path)


# --------------------------------------------------------------------------------------------
# Other libraries' files: load says which importer to use
# --------------------------------------------------------------------------------------------


def zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


FOREIGN = {
    # torch.save's zip format, and its legacy pickle format.
    "model.pt": (zip_bytes({"model/data.pkl": b"\x80\x02}q\x00.", "model/version": b"3"}),
                 r"is a PyTorch file.*Network.from_state_dict\(path\)"),
    "legacy.pth": (b"\x80\x02\x8a\x0alZ\xfc\x9cF\xf9 j\xa8P\x19.",
                   "is a PyTorch file.*Network.from_torch"),
    "model.onnx": (b"\x08\x08\x12\x07pytorch", r"is an ONNX model.*Network.from_onnx\(path\)"),
    "model.safetensors": (len(b'{"a":1}').to_bytes(8, "little") + b'{"a":1}',
                          r"is a safetensors file.*Network.from_state_dict\(path\)"),
    "model.keras": (zip_bytes({"config.json": b"{}", "metadata.json": b"{}",
                               "model.weights.h5": b""}),
                    r"is a Keras model file.*keras.saving.load_model\(path\), then "
                    r"nnexposed.Network.from_keras\(model\)"),
    "model.h5": (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "is an HDF5 file.*Network.from_keras"),
}


@pytest.mark.parametrize("name", list(FOREIGN))
def test_foreign_files_name_the_importer(tmp_path, name):
    content, message = FOREIGN[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        nnexposed.load(path)
    with pytest.raises(ValueError, match=message), open(path, "rb") as f:
        nnexposed.load(f)
