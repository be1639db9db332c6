"""Example models shipped with nnexposed, each with its held-out test data.

    >>> from nnexposed.examples import digits
    >>> network, images, labels = digits()
    >>> predicted = network(images).argmax(axis=1)     # (300,) digits 0..9
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import numpy.typing as npt

from nnexposed.io import load
from nnexposed.network import Network


def digits() -> tuple[Network, npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """A small MLP trained on scikit-learn's handwritten digits, and 300 held-out test images.

    None of the images was used in training (``tools/train_digits.py`` made both files,
    seed 0).

    Returns
    -------
    network : Network
        64-64-32-10, float32, ReLU hidden layers and a softmax output: (batch, 64) images to
        (batch, 10) class probabilities.
    images : ndarray, shape (300, 64), float32
        Each an 8x8 image row by row (``images.reshape(-1, 8, 8)``) of ink levels 0..16
        divided by 16, in [0, 1].
    labels : ndarray, shape (300,), int64
        The digits 0..9.

    Examples
    --------
    >>> from nnexposed.examples import digits
    >>> network, images, labels = digits()
    >>> network.sizes, images.shape, labels.shape
    ((64, 64, 32, 10), (300, 64), (300,))
    """
    folder = resources.files(__name__)
    with (folder / "digits_mlp.npz").open("rb") as f:
        network = load(f)
    with (folder / "digits_test.npz").open("rb") as f, np.load(f, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    return network, (images / np.float32(16)).astype(np.float32), labels.astype(np.int64)
