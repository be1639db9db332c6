"""Networks trained elsewhere: scikit-learn, PyTorch, ONNX, Keras and state dicts.

One module per source reads its models into a list of steps (``steps.Linear``,
``steps.Activation``, ``steps.Affine``, ``steps.Norm``); ``steps.network_from_steps`` folds the
normalisations and scalers and turns the steps into layers. Each importer imports its library
only when called and raises ImportError naming the extra to install
(``pip install "nnexposed[torch]"``) when it is missing.
"""

from nnexposed.importers.steps import Activation, Affine, Linear, Norm, network_from_steps

__all__ = ["Activation", "Affine", "Linear", "Norm", "network_from_steps"]
