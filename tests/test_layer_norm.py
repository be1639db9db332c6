"""LayerNorm, a layer kind of the compiled chain, against both references."""

import pickle

import numpy as np
import pytest

import nnexposed
from nnexposed import Dense, LayerNorm, Network
from nnexposed.reference import forward_numpy, forward_python
from tests.helpers import DTYPES, assert_close

# One sample, small batches (one sample at a time), tiles, several blocks, BLAS-sized blocks.
BATCHES = [None, 1, 3, 4, 31, 33, 100, 257]


def random_norm_network(rng, dtype, layout, width=6, n_in=5):
    """A chain of Dense and LayerNorm layers: LayerNorm first, last, twice in a row, with and
    without an activation."""
    def dense(n_in, n_out, activation="linear"):
        return Dense(rng.standard_normal((n_out, n_in)) / np.sqrt(n_in),
                     rng.standard_normal(n_out) * 0.5, activation)

    def norm(n, activation="linear", eps=1e-5):
        return LayerNorm(rng.uniform(0.5, 2, n) * rng.choice([-1, 1], n),
                         rng.standard_normal(n), eps, activation)

    layers = {
        "after dense": [dense(n_in, width), norm(width, "relu"), dense(width, 3)],
        "first": [norm(n_in, "tanh", eps=1e-3), dense(n_in, width, "gelu"), dense(width, 3)],
        "last": [dense(n_in, width, "silu"), norm(width, "softmax")],
        "twice": [dense(n_in, width), norm(width), norm(width, "leaky_relu"), dense(width, 2),
                  norm(2, eps=0.5)],
        "alone": [norm(n_in, eps=0.0)],
        "wide": [dense(n_in, 300, "relu"), norm(300, "elu"), dense(300, 260), norm(260),
                 dense(260, 4)],
    }[layout]
    return Network([layer.astype(dtype) for layer in layers])


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("layout", ["after dense", "first", "last", "twice", "alone", "wide"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_matches_both_references(layout, dtype, batch):
    rng = np.random.default_rng(hash((layout, batch)) % 2**32)
    network = random_norm_network(rng, dtype, layout)
    shape = (network.n_in,) if batch is None else (batch, network.n_in)
    x = (rng.standard_normal(shape) * 3 + rng.standard_normal(network.n_in)).astype(dtype)
    result = network(x)
    assert_close(result, forward_numpy(network, x), dtype)
    if batch is None or batch <= 33:
        assert_close(result, forward_python(network, x), dtype)
    for threads in (1, 2):
        np.testing.assert_array_equal(network(x, threads=threads), result)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_nan_and_inf_propagate_as_in_numpy(dtype):
    rng = np.random.default_rng(0)
    network = Network([LayerNorm(rng.standard_normal(4), rng.standard_normal(4)),
                       Dense(rng.standard_normal((3, 4)), None, "relu")]).astype(dtype)
    x = rng.standard_normal((40, 4)).astype(dtype)
    x[1, 2], x[2, 0], x[3, 3], x[4, :] = np.nan, np.inf, -np.inf, 7.0   # 7.0: zero variance
    x[5, 1], x[5, 2] = np.inf, -np.inf
    expected = forward_numpy(network, x)
    assert np.isnan(expected[1:6]).all() or np.isnan(expected[1:4]).all()
    assert_close(network(x), expected, dtype)
    assert_close(network(x[:3]), expected[:3], dtype)          # one sample at a time
    for k in range(6):
        assert_close(network(x[k]), expected[k], dtype)
    assert_close(forward_python(network, x[:6]), expected[:6], dtype)


def test_zero_variance_and_eps():
    """A constant sample is all bias with eps > 0 and NaN with eps == 0 (0 / 0), as NumPy."""
    weight, bias = np.array([2.0, -1.0, 0.5]), np.array([0.1, 0.2, 0.3])
    x = np.full((5, 3), 4.0)
    np.testing.assert_array_equal(Network([LayerNorm(weight, bias, 1e-5)])(x),
                                  np.tile(bias, (5, 1)))
    assert np.isnan(Network([LayerNorm(weight, bias, 0.0)])(x)).all()
    assert np.isnan(forward_numpy(Network([LayerNorm(weight, bias, 0.0)]), x)).all()


def test_layer_norm_layer_api():
    layer = LayerNorm([1.0, 2.0, 3.0], None, eps=1e-3, activation="leaky_relu", alpha=0.2)
    assert (layer.n_in, layer.n_out, layer.n_params, layer.eps, layer.alpha) == (3, 3, 6,
                                                                                 1e-3, 0.2)
    assert layer.dtype == np.float64 and layer.bias.tolist() == [0, 0, 0]
    assert LayerNorm(np.ones(3, np.float32)).dtype == np.float32
    assert layer.astype("float32").dtype == np.float32
    assert repr(layer) == ("LayerNorm(n=3, eps=0.001, activation='leaky_relu', alpha=0.2, "
                           "dtype=float64)")
    with pytest.raises(AttributeError, match="immutable"):
        layer.eps = 1.0
    with pytest.raises(ValueError, match="read-only"):
        layer.weight[0] = 5
    copy = pickle.loads(pickle.dumps(layer))
    assert copy.eps == layer.eps and np.array_equal(copy.weight, layer.weight)
    network = Network([Dense(np.ones((3, 2)), None), layer])
    assert network.sizes == (2, 3, 3) and network.n_params == 9 + 6
    summary = network.summary()
    assert "layer_norm_1   3 -> 3" in summary and "leaky_relu" in summary
    assert "Total params: 15" in summary
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(network))([[1.0, 2.0]]),
                                  network([[1.0, 2.0]]))


@pytest.mark.parametrize("args, error, message", [
    (([[1.0, 2.0]],), ValueError, r"weight of shape \(n,\) with n >= 1, got shape \(1, 2\)"),
    (([],), ValueError, r"got shape \(0,\)"),
    (([1.0, 2.0], [1.0]), ValueError, r"bias of shape \(2,\), got shape \(1,\)"),
    (([1.0, 2.0], None, -1.0), ValueError, "eps >= 0 and finite, got -1.0"),
    (([1.0, 2.0], None, np.inf), ValueError, "eps >= 0 and finite, got inf"),
    (([1.0, 2.0], None, 1e-5, "swish"), ValueError, "unknown activation 'swish'"),
    ((["a", "b"],), TypeError, "weight of real numbers"),
])
def test_layer_norm_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        LayerNorm(*args)


def test_layer_norm_in_a_chain_of_the_wrong_size():
    with pytest.raises(ValueError, match="layer 1 expects 4 inputs but layer 0 gives 3"):
        Network([Dense(np.ones((3, 2)), None), LayerNorm(np.ones(4))])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_save_load_round_trip(tmp_path, dtype):
    import json
    import zipfile
    rng = np.random.default_rng(2)
    network = random_norm_network(rng, dtype, "twice")
    nnexposed.save(network, tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        header = json.loads(np.load(archive.open("header.npy")).tobytes())
    assert header["version"] == 2
    assert header["layers"][1] == {"n_in": 6, "n_out": 6, "activation": "linear",
                                   "alpha": 0.01, "kind": "layer_norm", "eps": 1e-5}
    loaded = nnexposed.load(tmp_path / "m.npz")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in network.layers]
    x = rng.standard_normal((7, network.n_in)).astype(dtype)
    np.testing.assert_array_equal(loaded(x), network(x))
    # Networks of Dense layers only are still written as version 1.
    nnexposed.save(Network([Dense(np.ones((2, 2)), None)]), tmp_path / "d.npz")
    with zipfile.ZipFile(tmp_path / "d.npz") as archive:
        assert json.loads(np.load(archive.open("header.npy")).tobytes())["version"] == 1


@pytest.mark.parametrize("batch", [None, 2, 50])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_in_trace_summary_and_plot(dtype, batch):
    from nnexposed.reference import trace_numpy
    rng = np.random.default_rng(9)
    network = random_norm_network(rng, dtype, "after dense")
    shape = (network.n_in,) if batch is None else (batch, network.n_in)
    x = rng.standard_normal(shape).astype(dtype)
    for values, expected in zip(network.trace(x), trace_numpy(network, x), strict=True):
        assert_close(values.pre_activation, expected.pre_activation, dtype)
        assert_close(values.output, expected.output, dtype)
    assert "layer_norm_1" in network.summary(x)
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    assert network.plot(x if batch is None else x[0]) is not None
