"""Dense, Network, dense() and the article's layer output utility."""

import numpy as np
import pytest

import nnexposed
from nnexposed import Dense, Network
from nnexposed.reference import NUMPY_ACTIVATIONS, forward_numpy, layer_output_python
from tests.helpers import ALL_ACTIVATIONS, DTYPES, assert_close, random_network

# The article's style of example: 3 inputs, 3 neurons, weights[neuron][input].
INPUTS = [1.0, 2.0, 3.0]
WEIGHTS = [[0.2, 0.8, -0.5], [0.5, -0.91, 0.26], [-0.26, -0.27, 0.17]]
BIASES = [2.0, 3.0, 0.5]
# By hand: 1*0.2 + 2*0.8 + 3*-0.5 + 2 = 2.3; 0.5 - 1.82 + 0.78 + 3 = 2.46;
# -0.26 - 0.54 + 0.51 + 0.5 = 0.21.
BY_HAND = [2.3, 2.46, 0.21]


def test_article_network_has_92_parameters():
    network = Network.from_sizes([3, 5, 5, 5, 2])
    assert network.n_params == 92 == 3 * 5 + 5 * 5 + 5 * 5 + 5 * 2 + 17
    assert network.sizes == (3, 5, 5, 5, 2)
    assert (network.n_in, network.n_out) == (3, 2)
    assert [layer.n_params for layer in network.layers] == [20, 30, 30, 12]


def test_layer_output_by_hand():
    np.testing.assert_allclose(nnexposed.layer_output(INPUTS, WEIGHTS, BIASES), BY_HAND)
    np.testing.assert_allclose(layer_output_python(INPUTS, WEIGHTS, BIASES), BY_HAND)
    batch = nnexposed.layer_output([INPUTS, [0.0, 0.0, 0.0]], WEIGHTS, BIASES)
    np.testing.assert_allclose(batch, [BY_HAND, BIASES])
    assert nnexposed.layer_output(np.array(INPUTS), np.array(WEIGHTS), BIASES).shape == (3,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
@pytest.mark.parametrize("batch", [None, 0, 1, 5, 70])
def test_dense_matches_numpy(rng, dtype, activation, batch):
    weights = rng.standard_normal((6, 4)).astype(dtype)
    biases = rng.standard_normal(6).astype(dtype)
    x = rng.standard_normal((4,) if batch is None else (batch, 4)).astype(dtype)
    expected = NUMPY_ACTIVATIONS[activation](x @ weights.T + biases, 0.3)
    assert_close(nnexposed.dense(x, weights, biases, activation, alpha=0.3), expected, dtype)
    out = np.empty(expected.shape, dtype)
    assert nnexposed.dense(x, weights, biases, activation, alpha=0.3, out=out) is out
    assert_close(out, expected, dtype)


@pytest.mark.parametrize("x_dtype, w_dtype, expected", [
    (np.float32, np.float32, np.float32), (np.float16, np.float32, np.float32),
    (np.float32, np.float64, np.float64), (np.int64, np.float32, np.float64),
    (np.float64, np.float32, np.float64),
])
def test_dense_result_dtype(x_dtype, w_dtype, expected):
    result = nnexposed.dense(np.ones(3, x_dtype), np.ones((2, 3), w_dtype), np.zeros(2, w_dtype))
    assert result.dtype == expected
    np.testing.assert_allclose(result, [3.0, 3.0])


def test_dense_bad_shapes():
    with pytest.raises(ValueError, match=r"expected x of shape \(3,\) or \(batch, 3\)"):
        nnexposed.dense(np.ones(4), np.ones((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match=r"biases of shape \(2,\)"):
        nnexposed.dense(np.ones(3), np.ones((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="unknown activation 'swish'; expected one of: linear"):
        nnexposed.dense(np.ones(3), np.ones((2, 3)), np.zeros(2), "swish")


# --------------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------------


def test_dense_layer_attributes():
    layer = Dense(WEIGHTS, BIASES, "leaky_relu", alpha=0.2)
    assert (layer.n_in, layer.n_out, layer.n_params) == (3, 3, 12)
    assert layer.activation == "leaky_relu" and layer.alpha == 0.2
    assert layer.dtype == np.float64
    assert "leaky_relu" in repr(layer) and "alpha=0.2" in repr(layer)


def test_dense_layer_is_immutable_and_owns_its_arrays():
    weights = np.ones((2, 3), np.float32)
    layer = Dense(weights, np.zeros(2, np.float32))
    weights[0, 0] = 5.0
    assert layer.weights[0, 0] == 1.0
    with pytest.raises(ValueError):
        layer.weights[0, 0] = 2.0
    with pytest.raises(AttributeError):
        layer.activation = "relu"
    with pytest.raises(AttributeError):
        layer.weights = weights
    with pytest.raises(AttributeError):
        del layer.alpha


@pytest.mark.parametrize("given, expected", [
    (np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64),
    (np.int32, np.float64), (np.dtype(">f4"), np.float32),
])
def test_dense_layer_dtype(given, expected):
    layer = Dense(np.ones((2, 3), given), np.zeros(2, given))
    assert layer.weights.dtype == expected and layer.biases.dtype == expected
    assert layer.weights.flags.c_contiguous


def test_dense_layer_without_biases():
    layer = Dense(np.ones((2, 3)), None)
    np.testing.assert_array_equal(layer.biases, [0.0, 0.0])


@pytest.mark.parametrize("weights, biases, activation, error, message", [
    (np.ones(3), np.zeros(3), "linear", ValueError, r"\(n_out, n_in\).*got shape \(3,\)"),
    (np.ones((2, 3, 1)), np.zeros(2), "linear", ValueError, r"got shape \(2, 3, 1\)"),
    (np.ones((0, 3)), np.zeros(0), "linear", ValueError, r"got shape \(0, 3\)"),
    (np.ones((2, 3)), np.zeros(3), "linear", ValueError, r"biases of shape \(2,\).*\(3,\)"),
    (np.ones((2, 3)), np.zeros((2, 1)), "linear", ValueError, r"got shape \(2, 1\)"),
    (np.ones((2, 3)), np.zeros(2), "swish", ValueError, "unknown activation 'swish'"),
    (np.ones((2, 3)), np.zeros(2), None, TypeError, "activation must be a name"),
    (np.ones((2, 3), complex), np.zeros(2), "linear", TypeError, "complex128"),
    ([["a", "b"]], np.zeros(1), "linear", TypeError, "<U1"),
])
def test_dense_layer_validation(weights, biases, activation, error, message):
    with pytest.raises(error, match=message):
        Dense(weights, biases, activation)


def test_dense_layer_default_alpha_per_activation():
    assert Dense(np.ones((2, 3)), None, "leaky_relu").alpha == 0.01
    assert Dense(np.ones((2, 3)), None, "elu").alpha == 1.0
    assert Dense(np.ones((2, 3)), None, "elu", alpha=0.5).alpha == 0.5
    assert "alpha=1.0" in repr(Dense(np.ones((2, 3)), None, "elu"))
    x = np.array([[-1.0, -2.0, 3.0]])
    np.testing.assert_allclose(nnexposed.dense(x, np.eye(3), None, "elu"), nnexposed.elu(x))


def test_dense_layer_alpha_validation():
    with pytest.raises(TypeError, match="alpha"):
        Dense(np.ones((2, 3)), np.zeros(2), "leaky_relu", alpha=None)


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


def test_network_checks_layer_chain():
    with pytest.raises(ValueError, match="layer 1 expects 4 inputs but layer 0 gives 5"):
        Network([Dense(np.ones((5, 3)), None), Dense(np.ones((2, 4)), None)])
    with pytest.raises(ValueError, match="at least one layer"):
        Network([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be a nnexposed.Dense or LayerNorm, got "
                                        r"ndarray"):
        Network([Dense(np.ones((5, 3)), None), np.ones((2, 5))])
    with pytest.raises(TypeError, match="wrap one in a list"):
        Network(Dense(np.ones((5, 3)), None))


def test_network_dtype_is_promoted():
    network = Network([Dense(np.ones((5, 3), np.float32), None),
                       Dense(np.ones((2, 5), np.float64), None)])
    assert network.dtype == np.float64
    assert all(layer.dtype == np.float64 for layer in network.layers)
    assert forward_numpy(network, np.ones(3)).dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_astype(rng, dtype):
    network = random_network(rng, [3, 4, 2], ["tanh", "softmax"], np.float64)
    converted = network.astype(dtype)
    assert converted.dtype == dtype
    x = rng.standard_normal((3, 3))
    assert_close(converted(x), forward_numpy(network, x).astype(dtype), dtype)
    with pytest.raises(TypeError, match="float32 or float64"):
        network.astype(np.int32)


def test_from_sizes_is_reproducible_and_initialised_by_activation():
    a = Network.from_sizes([100, 400, 400, 3], seed=1)
    b = Network.from_sizes([100, 400, 400, 3], seed=1)
    c = Network.from_sizes([100, 400, 400, 3], seed=2)
    for la, lb, lc in zip(a.layers, b.layers, c.layers):
        np.testing.assert_array_equal(la.weights, lb.weights)
        assert not np.array_equal(la.weights, lc.weights)
    assert a.dtype == np.float32
    assert [layer.activation for layer in a.layers] == ["relu", "relu", "linear"]
    # He normal for ReLU layers: std sqrt(2 / n_in).
    assert a.layers[0].weights.std() == pytest.approx(np.sqrt(2 / 100), rel=0.05)
    # Glorot uniform otherwise: limit sqrt(6 / (n_in + n_out)).
    limit = np.sqrt(6 / (400 + 3))
    assert np.abs(a.layers[2].weights).max() <= limit
    assert np.abs(a.layers[2].weights).max() > 0.9 * limit
    tanh_net = Network.from_sizes([50, 60, 2], "tanh", "softmax", dtype=np.float64, seed=0)
    assert tanh_net.dtype == np.float64
    assert [layer.activation for layer in tanh_net.layers] == ["tanh", "softmax"]
    assert np.abs(tanh_net.layers[0].weights).max() <= np.sqrt(6 / 110)


@pytest.mark.parametrize("sizes, error, message", [
    ([3], ValueError, "at least two"),
    ([3, 0, 2], ValueError, r"sizes\[1\] must be >= 1, got 0"),
    ([3, 2.5], TypeError, r"sizes\[1\] must be an integer"),
    ([3, True], TypeError, "integer"),
])
def test_from_sizes_validation(sizes, error, message):
    with pytest.raises(error, match=message):
        Network.from_sizes(sizes)


def test_from_sizes_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown activation 'Relu'"):
        Network.from_sizes([3, 2], activation="Relu")
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        Network.from_sizes([3, 2], dtype="int64")


def test_summary():
    text = Network.from_sizes([3, 5, 5, 5, 2]).summary()
    lines = text.splitlines()
    assert "(3, 5, 5, 5, 2)" in lines[0]
    rows = [line for line in lines if line.startswith("dense_")]
    assert len(rows) == 4
    assert rows[0].split()[1:] == ["3", "->", "5", "relu", "20"]
    assert rows[3].split()[1:] == ["5", "->", "2", "linear", "12"]
    assert "Total params: 92" in lines[-1] and "float32" in lines[-1]


def test_network_repr():
    network = Network.from_sizes([3, 2], output_activation="sigmoid")
    assert repr(network) == ("Network(sizes=(3, 2), activations=('sigmoid',), "
                             "dtype=float32)")
