"""The shipped example: the digits network and its held-out test images."""

from importlib import resources

import numpy as np

import nnexposed
from nnexposed.examples import digits
from nnexposed.reference import forward_numpy


def test_digits_example():
    network, images, labels = digits()
    assert isinstance(network, nnexposed.Network)
    assert network.sizes == (64, 64, 32, 10) and network.dtype == np.float32
    assert network.layers[-1].activation == "softmax"
    assert images.shape == (300, 64) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 1
    assert np.all((images * 16) == np.round(images * 16))        # 16 ink levels
    assert labels.shape == (300,) and labels.dtype == np.int64
    assert set(labels.tolist()) == set(range(10))
    probabilities = network(images)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(probabilities, forward_numpy(network, images), rtol=1e-4,
                               atol=1e-6)
    accuracy = np.mean(probabilities.argmax(axis=1) == labels)
    assert accuracy > 0.95, accuracy


def test_digits_returns_fresh_arrays():
    _, images, labels = digits()
    images[:] = 0
    labels[:] = 0
    _, images_again, labels_again = digits()
    assert images_again.max() == 1 and labels_again.max() == 9


def test_package_data_is_small():
    folder = resources.files("nnexposed.examples")
    sizes = {name: len((folder / name).read_bytes())
             for name in ("digits_mlp.npz", "digits_test.npz")}
    assert sum(sizes.values()) < 100_000, sizes


def test_examples_is_reachable_from_the_package():
    assert nnexposed.examples.digits is digits
