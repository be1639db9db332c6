"""Example models shipped with nnexposed, each with its held-out test data.

    >>> from nnexposed.examples import digits
    >>> network, images, labels = digits()
    >>> predicted = network(images).argmax(axis=1)     # (300,) digits 0..9
"""

from importlib import resources

import numpy as np

from nnexposed.io import load


def digits():
    """A small MLP trained on scikit-learn's handwritten digits, and 300 held-out test images.

    Returns ``(network, images, labels)``: ``network`` maps (batch, 64) -> (batch, 10) class
    probabilities (float32, ReLU hidden layers, softmax output); ``images`` (300, 64) float32
    in [0, 1], each an 8x8 image row by row (``images.reshape(-1, 8, 8)``) of ink levels 0..16
    divided by 16; ``labels`` (300,) int64, the digits 0..9. None of the images was used in
    training (``tools/train_digits.py`` made both files, seed 0).
    """
    folder = resources.files(__name__)
    with (folder / "digits_mlp.npz").open("rb") as f:
        network = load(f)
    with (folder / "digits_test.npz").open("rb") as f, np.load(f, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    return network, (images / np.float32(16)).astype(np.float32), labels.astype(np.int64)
