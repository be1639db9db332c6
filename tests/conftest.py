"""Shared helpers: random networks and per-dtype tolerances."""

import numpy as np
import pytest

import nnexposed
from nnexposed import Dense, Network, kernels

TOLERANCES = {
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}
DTYPES = [np.float32, np.float64]


def assert_close(actual, expected, dtype):
    """Equal within the dtype's tolerance; NaN where the other has NaN; same dtype and shape."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    np.testing.assert_allclose(actual, expected, equal_nan=True, **TOLERANCES[np.dtype(dtype)])


def random_network(rng, sizes, activations, dtype, alpha=0.1):
    """Weights ~ N(0, 1/n_in) so values stay O(1) through deep stacks; random biases."""
    layers = []
    for n_in, n_out, activation in zip(sizes, sizes[1:], activations):
        weights = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        biases = rng.standard_normal(n_out) * 0.5
        layers.append(Dense(weights.astype(dtype), biases.astype(dtype), activation,
                            alpha=alpha))
    return Network(layers)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def article_network():
    return Network.from_sizes([3, 5, 5, 5, 2], seed=7)


ALL_ACTIVATIONS = nnexposed.ACTIVATIONS


@pytest.fixture(autouse=True, scope="session")
def threads_never_back_off():
    """Parallel paths stay parallel whatever the machine's load: the back-off to one thread
    (which a busy test machine would trigger) is switched off except where a test turns it on."""
    previous = kernels.allow_backoff(False)
    yield
    kernels.allow_backoff(previous)
