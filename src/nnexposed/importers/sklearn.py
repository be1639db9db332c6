"""scikit-learn: fitted MLPClassifier / MLPRegressor, alone or at the end of a Pipeline whose
earlier steps are scalers (folded exactly into the first layer)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnexposed.importers.steps import Activation, Affine, Linear, Step, network_from_steps, require
from nnexposed.network import Network

SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh",
                       "relu": "relu", "softmax": "softmax"}
SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")


def from_sklearn(estimator: Any) -> Network:
    """The Network of a fitted ``MLPClassifier`` or ``MLPRegressor``, or of a fitted
    ``Pipeline`` of scalers ending with one, in the MLP's dtype.

    The output equals ``predict_proba`` (classifiers) or ``predict`` (regressors, as
    (batch, n_outputs)). Binary classifiers end with their logistic unit p followed by a
    linear layer giving ``[1 - p, p]``, the two columns of ``predict_proba``. A Pipeline's
    steps before the MLP may be StandardScaler, MinMaxScaler (clip=False), MaxAbsScaler,
    RobustScaler or 'passthrough'; they are folded into the first layer. Any other step
    is a ValueError naming it.
    """
    require("sklearn", "sklearn", "Network.from_sklearn")
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline

    steps: list[Step] = []
    if isinstance(estimator, Pipeline):
        for name, transformer in estimator.steps[:-1]:
            if transformer is None or transformer == "passthrough":
                continue
            steps.append(_scaler_step(transformer, f"Pipeline step {name!r}"))
        estimator = estimator.steps[-1][1]
        if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
            raise TypeError(f"from_sklearn expects a Pipeline ending with a fitted "
                            f"MLPClassifier or MLPRegressor, got one ending with "
                            f"{type(estimator).__name__}")
    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(f"from_sklearn expects a fitted MLPClassifier, MLPRegressor or a "
                        f"Pipeline ending with one, got {type(estimator).__name__}")
    if not hasattr(estimator, "coefs_"):
        raise ValueError(f"this {type(estimator).__name__} is not fitted yet; call fit first")
    for name in (estimator.activation, estimator.out_activation_):
        if name not in SKLEARN_ACTIVATIONS:
            raise ValueError(f"unsupported scikit-learn activation {name!r}; expected one of: "
                             f"{', '.join(SKLEARN_ACTIVATIONS)}")
    n_layers = len(estimator.coefs_)
    layers = zip(estimator.coefs_, estimator.intercepts_, strict=True)
    for k, (coef, intercept) in enumerate(layers):
        steps.append(Linear(np.asarray(coef).T, intercept))      # sklearn: (n_in, n_out)
        last = k == n_layers - 1
        name = estimator.out_activation_ if last else estimator.activation
        steps.append(Activation(SKLEARN_ACTIVATIONS[name]))
    if isinstance(estimator, MLPClassifier) and estimator.n_outputs_ == 1:
        dtype = np.asarray(estimator.coefs_[0]).dtype
        steps.append(Linear(np.array([[-1.0], [1.0]], dtype), np.array([1.0, 0.0], dtype)))
    return network_from_steps(steps, type(estimator).__name__)


def _scaler_step(scaler: Any, where: str) -> Affine:
    """The Affine step computing a fitted scaler's ``transform``."""
    kind = type(scaler).__name__
    if kind not in SCALERS or type(scaler).__module__.split(".")[0] != "sklearn":
        raise ValueError(f"{where} is a {kind}; only {', '.join(SCALERS)} and 'passthrough' "
                         f"can come before the MLP (they are folded into its first layer)")
    source = f"{where} ({kind})"
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted
    try:
        check_is_fitted(scaler)
    except NotFittedError:
        raise ValueError(f"{source} is not fitted yet; fit the Pipeline first") from None
    if kind == "StandardScaler":
        # transform: (x - mean_) / scale_, each part only where enabled.
        mean = scaler.mean_ if scaler.with_mean else 0.0
        scale = scaler.scale_ if scaler.with_std else 1.0
        return Affine(1.0 / np.asarray(scale, np.float64),
                      -np.asarray(mean, np.float64) / np.asarray(scale, np.float64), source)
    if kind == "MinMaxScaler":
        if scaler.clip:
            raise ValueError(f"{source} has clip=True, which is not a linear map; refit it "
                             f"with clip=False to import the Pipeline")
        return Affine(scaler.scale_, scaler.min_, source)    # transform: x * scale_ + min_
    if kind == "MaxAbsScaler":
        return Affine(1.0 / np.asarray(scaler.scale_, np.float64), 0.0, source)
    center = scaler.center_ if scaler.with_centering else 0.0   # RobustScaler
    scale = scaler.scale_ if scaler.with_scaling else 1.0
    return Affine(1.0 / np.asarray(scale, np.float64),
                  -np.asarray(center, np.float64) / np.asarray(scale, np.float64), source)
