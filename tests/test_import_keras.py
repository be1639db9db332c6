"""Keras 3 importer (run with the torch backend), against the model's own output."""

import os

import numpy as np
import pytest

from nnexposed import Network
from tests.helpers import DTYPES
from tests.import_helpers import assert_matches_library

# Keras picks its backend when first imported; these tests use PyTorch's.
os.environ.setdefault("KERAS_BACKEND", "torch")
# Keras's torch backend converts with np.array(tensor), which NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def keras():
    pytest.importorskip("torch", reason="PyTorch (the Keras backend used here) is not installed")
    return pytest.importorskip("keras", reason="Keras is not installed")


def keras_output(keras, model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def assert_matches_keras(actual, expected, dtype):
    """Keras 3.15's torch backend multiplies float64 Dense layers in float32 (its
    result_type of two torch float64 dtypes is float32), so float64 results agree with it
    to float32 precision only; the network keeps float64."""
    assert actual.dtype == np.dtype(dtype)
    assert_matches_library(actual.astype(np.float32), expected.astype(np.float32), np.float32)


def randomise_batch_norms(keras, model, seed):
    """Random moving statistics and affine parameters, as a trained model has."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ in ("BatchNormalization", "LayerNormalization"):
            for variable in layer.weights:
                shape, dtype = variable.shape, variable.dtype
                values = rng.uniform(0.5, 2.0, shape) if "variance" in variable.path else \
                    rng.standard_normal(shape)
                variable.assign(values.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_sequential_every_activation(keras, dtype):
    layers = keras.layers
    keras.utils.set_random_seed(0)
    names = ["relu", "sigmoid", "tanh", "gelu", "silu", "swish", "elu", "leaky_relu",
             "softplus", "linear", None]
    stack = [keras.Input((5,), dtype=dtype)]
    for name in names:
        stack.append(layers.Dense(6, activation=name, dtype=dtype))
    stack += [layers.Activation("tanh", dtype=dtype), layers.ReLU(negative_slope=0.1, dtype=dtype),
              layers.LeakyReLU(0.3, dtype=dtype), layers.ELU(0.5, dtype=dtype),
              layers.Dropout(0.5, dtype=dtype), layers.Flatten(dtype=dtype),
              layers.Dense(3, dtype=dtype), layers.Softmax(dtype=dtype)]
    model = keras.Sequential(stack)
    network = Network.from_keras(model)
    assert network.dtype == dtype
    assert [layer.activation for layer in network.layers] == [
        "relu", "sigmoid", "tanh", "gelu", "silu", "silu", "elu", "leaky_relu", "softplus",
        "linear", "tanh", "leaky_relu", "leaky_relu", "elu", "softmax"]
    assert network.layers[7].alpha == pytest.approx(0.2)     # Keras's default slope
    x = np.random.default_rng(0).standard_normal((8, 5)).astype(dtype) * 2
    assert_matches_keras(network(x), keras_output(keras, model, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_functional_chain_with_batch_normalization(keras, dtype):
    layers = keras.layers
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,), dtype=dtype)
    h = layers.BatchNormalization(dtype=dtype)(inputs)                  # before a Dense
    h = layers.Dense(7, dtype=dtype)(h)
    h = layers.BatchNormalization(epsilon=1e-2, dtype=dtype)(h)         # after a Dense
    h = layers.Activation("relu", dtype=dtype)(h)
    h = layers.BatchNormalization(dtype=dtype)(h)                       # after an activation
    h = layers.Dense(3, activation="tanh", dtype=dtype)(h)
    outputs = layers.BatchNormalization(center=False, dtype=dtype)(h)   # last
    model = keras.Model(inputs, outputs)
    randomise_batch_norms(keras, model, 1)
    network = Network.from_keras(model)
    assert [(layer.n_in, layer.n_out, layer.activation) for layer in network.layers] == [
        (4, 7, "relu"), (7, 3, "tanh"), (3, 3, "linear")]
    x = np.random.default_rng(1).standard_normal((9, 4)).astype(dtype) * 2
    assert_matches_keras(network(x), keras_output(keras, model, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_layer_normalization(keras, dtype):
    layers = keras.layers
    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((4,), dtype=dtype), layers.LayerNormalization(epsilon=1e-2, dtype=dtype),
        layers.Dense(6, dtype=dtype), layers.LayerNormalization(dtype=dtype),
        layers.Activation("gelu", dtype=dtype), layers.Dense(3, activation="softmax",
                                                             dtype=dtype),
        layers.LayerNormalization(center=False, scale=False, dtype=dtype)])
    randomise_batch_norms(keras, model, 2)
    network = Network.from_keras(model)
    assert [(type(layer).__name__, layer.activation) for layer in network.layers] == [
        ("LayerNorm", "linear"), ("Dense", "linear"), ("LayerNorm", "gelu"),
        ("Dense", "softmax"), ("LayerNorm", "linear")]
    x = np.random.default_rng(2).standard_normal((9, 4)).astype(dtype) * 2
    assert_matches_keras(network(x), keras_output(keras, model, x), dtype)


def test_keras_errors(keras):
    layers = keras.layers
    torch = pytest.importorskip("torch")
    inputs = keras.Input((4,))
    branch = layers.Add()([layers.Dense(4)(inputs), inputs])
    cases = [
        (keras.Model(inputs, branch), "does not take the previous layer's output"),
        (keras.Sequential([keras.Input((4, 1)), layers.Conv1D(2, 1)]),
         r"unsupported Keras layer 'conv1d.*' \(Conv1D\)"),
        (keras.Sequential([keras.Input((4,)), layers.Dense(2, activation="selu")]),
         "unsupported activation 'selu'"),
        (keras.Sequential([layers.Dense(2)]), "not built yet"),
    ]
    for model, message in cases:
        with pytest.raises(ValueError, match=message):
            Network.from_keras(model)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    assert isinstance(model, torch.nn.Module)
    with pytest.raises(TypeError, match="is a Keras model; import it with "
                                        "nnexposed.Network.from_keras"):
        Network.from_torch(model)
    with pytest.raises(TypeError, match="expects a Keras Model"):
        Network.from_keras(torch.nn.Linear(2, 3))
