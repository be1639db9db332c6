"""Keras 3: Sequential models and functional chains of Dense, Activation, BatchNormalization,
LayerNormalization, Dropout, Flatten and InputLayer layers (any backend)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nnexposed.importers.steps import (
    Activation,
    Affine,
    Linear,
    Norm,
    Step,
    network_from_steps,
    require,
)
from nnexposed.importers.torch import is_keras
from nnexposed.network import Network

# Keras activation functions by name, with the parameter Keras gives them by default.
KERAS_ACTIVATIONS = {
    "linear": ("linear", None), "relu": ("relu", None), "sigmoid": ("sigmoid", None),
    "tanh": ("tanh", None), "softmax": ("softmax", None), "gelu": ("gelu", None),
    "silu": ("silu", None), "swish": ("silu", None), "elu": ("elu", 1.0),
    "leaky_relu": ("leaky_relu", 0.2), "softplus": ("softplus", None),
}
KERAS_LAYERS = ("Dense, Activation, ReLU, LeakyReLU, ELU, Softmax, BatchNormalization, "
                "LayerNormalization, Dropout, Flatten, InputLayer")


def from_keras(model: Any) -> Network:
    """The Network of a Keras 3 model: a Sequential or a functional model whose layers form
    a chain from its one input to its one output.

    Dense layers (with any supported ``activation=``), Activation, ReLU, LeakyReLU, ELU,
    Softmax (last axis), BatchNormalization (moving statistics, folded into the adjacent
    Dense layer), LayerNormalization (last axis), Dropout (the identity), Flatten and
    InputLayer; anything else is a ValueError naming the layer. float64 weights give a
    float64 network, others float32. Needs ``pip install "nnexposed[keras]"``.
    """
    keras = sys.modules.get("keras") if is_keras(model) else None
    if keras is None:
        keras = require("keras", "keras", "Network.from_keras")
    if not isinstance(model, keras.Model):
        raise TypeError(f"from_keras expects a Keras Model (Sequential or functional), got "
                        f"{type(model).__name__}")
    if not model.built:
        raise ValueError("the Keras model is not built yet: give it an input shape "
                         "(keras.Input) or call it once")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"the Keras model must have one input and one output, got "
                         f"{len(model.inputs)} and {len(model.outputs)}")
    steps: list[Step] = []
    current = model.inputs[0]
    for layer in model.layers:
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        if type(layer).__name__ == "InputLayer":
            continue
        if layer.input is not current:
            raise ValueError(f"{where} does not take the previous layer's output: only "
                             f"chains of layers are supported")
        steps += _layer_steps(keras, layer, where)
        current = layer.output
    if current is not model.outputs[0]:
        raise ValueError("the Keras model's output is not its last layer's output")
    return network_from_steps(steps, f"the Keras model {model.name!r}")


def _array(keras: Any, variable: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _activation(function: Any, where: str) -> list[Step]:
    name = getattr(function, "__name__", None)
    if name not in KERAS_ACTIVATIONS:
        raise ValueError(f"{where}: unsupported activation {name or function!r}; supported: "
                         f"{', '.join(KERAS_ACTIVATIONS)}")
    activation, alpha = KERAS_ACTIVATIONS[name]
    return [] if activation == "linear" else [Activation(activation, alpha)]


def _check_last_axis(layer: Any, where: str) -> None:
    axis = layer.axis
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if axes not in ([-1], [1]):
        raise ValueError(f"{where}: only axis=-1 (the features) is supported, got axis={axis}")


def _layer_steps(keras: Any, layer: Any, where: str) -> list[Step]:
    kind = type(layer).__name__
    if kind == "Dense":
        bias = None if layer.bias is None else _array(keras, layer.bias)
        return [Linear(_array(keras, layer.kernel).T, bias)] + _activation(layer.activation,
                                                                           where)
    if kind == "Activation":
        return _activation(layer.activation, where)
    if kind in ("Dropout", "Flatten"):
        return []
    if kind == "ReLU":
        if layer.max_value is not None or float(layer.threshold) != 0:
            raise ValueError(f"{where}: only ReLU without max_value and threshold is supported")
        slope = float(layer.negative_slope)
        return [Activation("relu")] if slope == 0 else [Activation("leaky_relu", slope)]
    if kind == "LeakyReLU":
        return [Activation("leaky_relu", float(layer.negative_slope))]
    if kind == "ELU":
        return [Activation("elu", float(layer.alpha))]
    if kind == "Softmax":
        _check_last_axis(layer, where)
        return [Activation("softmax")]
    if kind == "BatchNormalization":
        _check_last_axis(layer, where)
        gamma = None if layer.gamma is None else _array(keras, layer.gamma)
        beta = None if layer.beta is None else _array(keras, layer.beta)
        return [Affine.batch_norm(_array(keras, layer.moving_mean),
                                  _array(keras, layer.moving_variance), gamma, beta,
                                  layer.epsilon, where)]
    if kind == "LayerNormalization":
        _check_last_axis(layer, where)
        if getattr(layer, "rms_scaling", False):
            raise ValueError(f"{where}: rms_scaling=True is not supported")
        gamma = None if layer.gamma is None else _array(keras, layer.gamma)
        beta = None if layer.beta is None else _array(keras, layer.beta)
        width = int(layer.input.shape[-1])
        return [Norm(gamma, beta, layer.epsilon, width=width, source=where)]
    raise ValueError(f"unsupported Keras {where}; supported: {KERAS_LAYERS}")
