"""Train the example digits MLP shipped in src/nnexposed/examples/ (reproducible: seed 0).

    python tools/train_digits.py

Needs scikit-learn (``pip install "nnexposed[sklearn]"``). Splits scikit-learn's handwritten
digits (1,797 8x8 images, 16 ink levels) into a stratified training set and N_TEST held-out
test images, trains an MLPClassifier on pixels / 16 in float32, converts it with
``Network.from_sklearn`` and writes:

- ``digits_mlp.npz``: the network, saved with ``nnexposed.save``;
- ``digits_test.npz``: the held-out ``images`` (N_TEST, 64) as uint8 0..16 and their
  ``labels`` (N_TEST,) as uint8 0..9, compressed.
"""

import pathlib

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import nnexposed

SEED = 0
N_TEST = 300
HIDDEN = (64, 32)
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "src" / "nnexposed" / "examples"


def main():
    pixels, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        pixels, labels, test_size=N_TEST, stratify=labels, random_state=SEED)
    classifier = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", alpha=1e-3,
                               max_iter=500, random_state=SEED)
    classifier.fit((x_train / 16).astype(np.float32), y_train)
    network = nnexposed.Network.from_sklearn(classifier)
    images = (x_test / 16).astype(np.float32)
    np.testing.assert_allclose(network(images), classifier.predict_proba(images),
                               rtol=1e-4, atol=1e-6)
    accuracy = np.mean(network(images).argmax(axis=1) == y_test)
    nnexposed.save(network, EXAMPLES / "digits_mlp.npz")
    np.savez_compressed(EXAMPLES / "digits_test.npz", images=x_test.astype(np.uint8),
                        labels=y_test.astype(np.uint8))
    print(network.summary())
    print(f"held-out accuracy: {accuracy:.4f} on {N_TEST} images "
          f"(training accuracy {classifier.score(x_train / 16, y_train):.4f})")
    for name in ("digits_mlp.npz", "digits_test.npz"):
        print(f"wrote {EXAMPLES / name} ({(EXAMPLES / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
