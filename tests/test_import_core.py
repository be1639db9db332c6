"""The importers' shared core (steps, folding) and what every importer does without its
library."""

import sys

import numpy as np
import pytest

from nnexposed import Network
from nnexposed.importers import Activation, Affine, Linear, network_from_steps
from nnexposed.reference import NUMPY_ACTIVATIONS


@pytest.mark.parametrize("method, module, extra", [
    ("from_sklearn", "sklearn", "sklearn"), ("from_torch", "torch", "torch"),
    ("from_onnx", "onnx", "onnx"),
])
def test_missing_library_names_the_extra(monkeypatch, method, module, extra):
    monkeypatch.setitem(sys.modules, module, None)        # makes `import module` fail
    with pytest.raises(ImportError, match=rf'pip install "nnexposed\[{extra}\]"'):
        getattr(Network, method)(object())


def test_missing_keras_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ImportError, match=r'pip install "nnexposed\[keras\]"'):
        Network.from_keras(object())


# --------------------------------------------------------------------------------------------
# Steps to layers: folding affine steps, without any library
# --------------------------------------------------------------------------------------------


def affine(rng, width):
    return Affine(rng.uniform(0.5, 2, width) * rng.choice([-1, 1], width),
                  rng.standard_normal(width))


def evaluate(steps, x):
    """The steps computed one by one in float64 with NumPy."""
    for step in steps:
        if isinstance(step, Linear):
            x = x @ step.weights.T.astype(np.float64) + step.biases
        elif isinstance(step, Affine):
            x = x * step.scale + step.shift
        else:
            x = NUMPY_ACTIVATIONS[step.name](x, step.alpha)
    return x


# Each placement of an affine step, and the layers (n_in, n_out, activation) it leaves.
PLACEMENTS = {
    "first": (lambda r: [affine(r, 3), Linear(r.standard_normal((4, 3))), Activation("tanh")],
              [(3, 4, "tanh")]),
    "after a linear": (lambda r: [Linear(r.standard_normal((4, 3)), r.standard_normal(4)),
                                  affine(r, 4), Activation("relu")], [(3, 4, "relu")]),
    "between activation and linear": (
        lambda r: [Linear(r.standard_normal((4, 3))), Activation("sigmoid"), affine(r, 4),
                   Linear(r.standard_normal((2, 4)))], [(3, 4, "sigmoid"), (4, 2, "linear")]),
    "last": (lambda r: [Linear(r.standard_normal((4, 3))), Activation("elu"), affine(r, 4)],
             [(3, 4, "elu"), (4, 4, "linear")]),
    "between activations": (
        lambda r: [Linear(r.standard_normal((4, 3))), Activation("tanh"), affine(r, 4),
                   Activation("softmax")], [(3, 4, "tanh"), (4, 4, "softmax")]),
    "scalars, three in a row": (
        lambda r: [Linear(r.standard_normal((4, 3))), Activation("relu"), Affine(2.0, 1.0),
                   Affine(-0.5), affine(r, 4), Linear(r.standard_normal((2, 4)))],
        [(3, 4, "relu"), (4, 2, "linear")]),
}


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_affine_steps_fold_into_a_neighbour(placement):
    rng = np.random.default_rng(4)
    make, expected = PLACEMENTS[placement]
    steps = make(rng)
    network = network_from_steps(steps)
    assert [(layer.n_in, layer.n_out, layer.activation) for layer in network.layers] == expected
    assert network.dtype == np.float64
    x = rng.standard_normal((10, 3))
    np.testing.assert_allclose(network(x), evaluate(steps, x), rtol=1e-12, atol=1e-12)


def test_folding_keeps_the_linear_layers_dtype():
    rng = np.random.default_rng(5)
    steps = [Affine(rng.standard_normal(3), rng.standard_normal(3)),
             Linear(rng.standard_normal((2, 3)).astype(np.float32))]
    network = network_from_steps(steps)
    assert network.dtype == np.float32
    x = rng.standard_normal((6, 3))
    np.testing.assert_allclose(network(x.astype(np.float32)), evaluate(steps, x), rtol=1e-5,
                               atol=1e-5)


def test_affine_step_errors():
    with pytest.raises(ValueError, match="scale must be finite"):
        Affine([1.0, np.inf])
    with pytest.raises(ValueError, match=r"scale of shape \(2,\) and shift of shape \(3,\)"):
        Affine([1.0, 2.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="has 2 features where 3 are expected"):
        network_from_steps([Affine([1.0, 2.0]), Linear(np.ones((2, 3)))])
    with pytest.raises(ValueError, match="no linear layer"):
        network_from_steps([Affine([1.0, 2.0]), Activation("relu")])
    with pytest.raises(ValueError, match="variance must be finite"):
        Affine.batch_norm([0.0], [np.nan])
