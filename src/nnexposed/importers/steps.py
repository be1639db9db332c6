"""The core shared by the importers: a model read as a list of steps, turned into layers.

An importer reads its model into a list of steps, in order:

- ``Linear(weights, biases)``: ``x @ weights.T + biases``;
- ``Activation(name, alpha)``: an activation from ``nnexposed.ACTIVATIONS``;
- ``Affine(scale, shift)``: ``x * scale + shift`` per feature (BatchNorm in eval mode, the
  scalers of scikit-learn, constant element-wise Mul/Add/Sub/Div in ONNX);
- ``Norm(weight, bias, eps)``: layer normalisation over the features.

``network_from_steps`` folds every Affine exactly into a neighbour — the Linear right
before it, else the Linear right after it, else the Norm right before it — and only where
there is none makes it a diagonal layer. Then a Linear followed by an activation is one Dense
layer, a Linear followed by a Linear or a Norm gets the identity activation, an activation
right after a Norm is the LayerNorm layer's activation, and an activation with nothing before
it gets an identity-weights layer. Folding is computed in float64 and rounded once to the
network's dtype, the dtype of the source's linear weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from nnexposed._validation import as_real_array, float_dtype_for
from nnexposed.activations import DEFAULT_ALPHAS, activation_code
from nnexposed.network import Dense, LayerNorm, Network, layer_arrays


def require(module: str, extra: str, caller: str) -> ModuleType:
    """Import ``module`` or raise ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{caller} needs the optional dependency {module!r}; install it "
                          f'with: pip install "nnexposed[{extra}]"') from error


def _float64_vector(value: Any, name: str) -> np.ndarray:
    array = as_real_array(value, name).astype(np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite to be folded exactly, got {array}")
    return array


class Linear:
    """A step ``x @ weights.T + biases``; weights: (n_out, n_in), biases: (n_out,) or None.

    ``dtype``: the dtype the network computes in for this layer (default: from the weights),
    kept when folding computes the arrays in float64.
    """

    def __init__(self, weights: Any, biases: Any = None, dtype: Any = None):
        self.weights, self.biases = layer_arrays(weights, biases)
        self.dtype = float_dtype_for(self.weights.dtype) if dtype is None else np.dtype(dtype)

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[0])

    def then_affine(self, affine: Affine) -> Linear:
        """This layer followed by ``affine``, as one Linear."""
        scale, shift = affine.broadcast(self.n_out)
        weights = self.weights.astype(np.float64) * scale[:, None]
        return Linear(weights, self.biases.astype(np.float64) * scale + shift, self.dtype)

    def after_affine(self, affine: Affine) -> Linear:
        """``affine`` followed by this layer, as one Linear."""
        scale, shift = affine.broadcast(self.n_in)
        weights = self.weights.astype(np.float64)
        return Linear(weights * scale[None, :], self.biases + weights @ shift, self.dtype)


class Activation:
    """A step applying an activation from ACTIVATIONS, with its alpha (None: the default)."""

    def __init__(self, name: str, alpha: float | None = None):
        activation_code(name)
        self.name = name
        self.alpha = DEFAULT_ALPHAS.get(name, 0.01) if alpha is None else float(alpha)


class Affine:
    """A step ``x * scale + shift`` per feature; scale, shift: (n,) or scalars (any n)."""

    def __init__(self, scale: Any = 1.0, shift: Any = 0.0, source: str = "an affine step"):
        self.scale = _float64_vector(scale, f"{source}: scale")
        self.shift = _float64_vector(shift, f"{source}: shift")
        self.source = source
        sizes = {self.scale.size, self.shift.size} - {1}
        if len(sizes) > 1:
            raise ValueError(f"{source}: scale of shape {self.scale.shape} and shift of shape "
                             f"{self.shift.shape} do not fit together")

    @classmethod
    def batch_norm(cls, mean: Any, var: Any, weight: Any = None, bias: Any = None,
                   eps: float = 1e-5, source: str = "BatchNorm") -> Affine:
        """BatchNorm with running statistics: ``(x - mean) / sqrt(var + eps) * weight + bias``."""
        mean = _float64_vector(mean, f"{source}: mean")
        var = _float64_vector(var, f"{source}: variance")
        scale = 1.0 / np.sqrt(var + float(eps))
        if weight is not None:
            scale = scale * _float64_vector(weight, f"{source}: weight")
        shift = -mean * scale
        if bias is not None:
            shift = shift + _float64_vector(bias, f"{source}: bias")
        return cls(scale, shift, source)

    @property
    def width(self) -> int | None:
        """The number of features, or None for scalars (which fit any number)."""
        size = max(self.scale.size, self.shift.size)
        return None if size == 1 else size

    def broadcast(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift) as (width,) arrays."""
        if self.width not in (None, width):
            raise ValueError(f"{self.source} has {self.width} features where {width} are "
                             f"expected")
        return (np.broadcast_to(self.scale, (width,)).copy(),
                np.broadcast_to(self.shift, (width,)).copy())

    def then(self, other: Affine) -> Affine:
        """This step followed by ``other``, as one Affine."""
        width = self.width or other.width or 1
        scale, shift = self.broadcast(width)
        other_scale, other_shift = other.broadcast(width)
        return Affine(scale * other_scale, shift * other_scale + other_shift, self.source)


class Norm:
    """A step normalising each sample over its features: ``(x - mean) / sqrt(var + eps)``,
    then ``* weight + bias``; weight, bias: (n,) or None (ones, zeros)."""

    def __init__(self, weight: Any, bias: Any, eps: float, width: int | None = None,
                 source: str = "LayerNorm"):
        self.source = source
        width = width if weight is None else np.size(weight)
        if width is None:
            raise ValueError(f"{source}: the number of features is unknown")
        self.weight = np.ones(width) if weight is None else _float64_vector(
            weight, f"{source}: weight")
        self.bias = np.zeros(width) if bias is None else _float64_vector(
            bias, f"{source}: bias")
        if self.bias.shape != self.weight.shape:
            raise ValueError(f"{source}: weight of shape {self.weight.shape} and bias of "
                             f"shape {self.bias.shape} do not fit together")
        self.eps = float(eps)
        if not (self.eps >= 0 and np.isfinite(self.eps)):
            raise ValueError(f"{source}: eps must be finite and >= 0, got {eps}")

    @property
    def width(self) -> int:
        return int(self.weight.size)

    def then_affine(self, affine: Affine) -> Norm:
        """This normalisation followed by ``affine``, as one Norm."""
        scale, shift = affine.broadcast(self.width)
        return Norm(self.weight * scale, self.bias * scale + shift, self.eps,
                    source=self.source)


Step = Linear | Activation | Affine | Norm


def fold_affines(steps: Sequence[Step]) -> list[Step]:
    """The steps with every Affine folded into a neighbour where one can take it exactly:
    the Linear or Norm right before it, else the Linear right after it (through nothing
    else). Consecutive Affines are composed. Affines left over stay in the list."""
    folded: list[Step] = []
    for step in steps:
        previous = folded[-1] if folded else None
        if isinstance(step, Affine):
            if isinstance(previous, (Linear, Norm)):
                folded[-1] = previous.then_affine(step)
            elif isinstance(previous, Affine):
                folded[-1] = previous.then(step)
            else:
                folded.append(step)
        elif isinstance(step, Linear) and isinstance(previous, Affine):
            folded[-1] = step.after_affine(previous)
        else:
            folded.append(step)
    return folded


def network_from_steps(steps: Sequence[Step], source: str = "the model") -> Network:
    """A Network computing ``steps`` in order (see the module docstring)."""
    steps = fold_affines(steps)
    linears = [step for step in steps if isinstance(step, Linear)]
    if not linears:
        raise ValueError(f"{source} has no linear layer, so its input size is unknown")
    dtype = float_dtype_for(np.result_type(*(step.dtype for step in linears)))
    width = linears[0].n_in
    layers: list[Any] = []
    pending: Linear | Norm | None = None        # a layer waiting for its activation

    def flush(activation: str = "linear", alpha: float = 0.01) -> None:
        nonlocal pending
        if isinstance(pending, Linear):
            layers.append(Dense(pending.weights, pending.biases, activation, alpha=alpha))
        elif isinstance(pending, Norm):
            layers.append(LayerNorm(pending.weight, pending.bias, pending.eps, activation,
                                    alpha=alpha))
        pending = None

    for step in steps:
        if isinstance(step, Affine):              # nothing to fold it into: a diagonal layer
            scale, shift = step.broadcast(width)
            step = Linear(np.diag(scale), shift, dtype)
        if isinstance(step, Linear):
            flush()
            if step.n_in != width:
                raise ValueError(f"{source}: a linear layer expects {step.n_in} inputs but "
                                 f"gets {width}")
            pending, width = step, step.n_out
        elif isinstance(step, Norm):
            flush()
            if step.width != width:
                raise ValueError(f"{source}: {step.source} normalises {step.width} features "
                                 f"but gets {width}")
            pending = step
        elif pending is not None:
            flush(step.name, step.alpha)
        else:                                     # an activation first, or after another
            layers.append(Dense(np.eye(width), None, step.name, alpha=step.alpha))
    flush()
    return Network([layer.astype(dtype) for layer in layers])
