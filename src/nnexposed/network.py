"""The model: immutable ``Dense`` and ``LayerNorm`` layers chained into a ``Network``.

A layer's weights have shape (n_out, n_in), as the article's ``weights[neuron][input]`` and
PyTorch's ``nn.Linear``; biases have shape (n_out,).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from nnexposed import activations as _activations
from nnexposed import kernels
from nnexposed import precision as _precision
from nnexposed._config import clamp_threads
from nnexposed._validation import (
    as_c_array,
    as_compute_dtype,
    as_positive_int,
    as_real_array,
    float_dtype_for,
)
from nnexposed.activations import (
    DEFAULT,
    DEFAULT_ALPHAS,
    FloatArray,
    _Default,
    activation_code,
    resolve_alpha,
)

# Activations initialised with He (Kaiming) normal weights; the others get Glorot uniform.
HE_INIT_ACTIVATIONS = frozenset({"relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "elu"})


def layer_arrays(weights, biases, dtype=None):
    """Validated (weights, biases) as C-contiguous arrays of one float dtype.

    weights: (n_out, n_in) with n_out, n_in >= 1; biases: (n_out,) or None for zeros.
    ``dtype`` None picks float32 for float16/float32 weights, float64 otherwise.
    """
    w = as_real_array(weights, "weights")
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"expected weights of shape (n_out, n_in) with n_out, n_in >= 1, "
                         f"got shape {w.shape}")
    dtype = float_dtype_for(w.dtype) if dtype is None else dtype
    if biases is None:
        b = np.zeros(w.shape[0], dtype)
    else:
        b = as_real_array(biases, "biases")
        if b.shape != (w.shape[0],):
            raise ValueError(f"expected biases of shape ({w.shape[0]},) for weights of shape "
                             f"{w.shape}, got shape {b.shape}")
    return as_c_array(w, dtype), as_c_array(b, dtype)


def _read_only_copy(array):
    copy = array.copy()
    copy.setflags(write=False)
    return copy


def _dense_from_state(weights, biases, activation, alpha, scales=None):
    return Dense(weights, biases, activation, alpha=alpha, scales=scales,
                 precision=_precision.precision_of(weights))


def _reduced_layer_arrays(weights, biases, scales, precision):
    """Validated (weights, biases, scales) of a reduced-precision layer: weights (n_out, n_in)
    of the precision's storage dtype, biases (n_out,) float32 (None: zeros), scales (n_out,)
    float32 for int8 (None otherwise)."""
    w = np.asarray(weights)
    expected = _precision.storage_dtype(precision)
    if w.dtype != expected:
        raise TypeError(f"{precision} layers take weights of dtype {expected}, "
                        f"got {w.dtype}")
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"expected weights of shape (n_out, n_in) with n_out, n_in >= 1, "
                         f"got shape {w.shape}")
    _, b = layer_arrays(np.zeros((w.shape[0], 1), np.float32), biases, np.dtype(np.float32))
    if precision != "int8":
        if scales is not None:
            raise ValueError(f"scales are for int8 layers, not {precision} ones")
        return np.ascontiguousarray(w), b, None
    if scales is None:
        raise ValueError("int8 layers need scales: one float32 per output neuron")
    if w.shape[1] > _precision.INT8_MAX_INPUTS:
        raise ValueError(f"int8 layers take at most {_precision.INT8_MAX_INPUTS} inputs, "
                         f"got {w.shape[1]}")
    s = as_real_array(scales, "scales")
    if s.shape != (w.shape[0],):
        raise ValueError(f"expected scales of shape ({w.shape[0]},) for weights of shape "
                         f"{w.shape}, got shape {s.shape}")
    s = as_c_array(s, np.float32)
    if not (np.isfinite(s).all() and (s >= 0).all()):
        raise ValueError("int8 scales must be finite and >= 0")
    return np.ascontiguousarray(w), b, s


class _ImmutableLayer:
    """A layer whose attributes are set once, in ``__init__`` (through object.__setattr__)."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} layers are immutable; build a new one "
                             "instead")

    def __delattr__(self, name):
        self.__setattr__(name, None)   # refused as a change is


class Dense(_ImmutableLayer):
    """One fully connected layer: ``activation(x @ weights.T + biases)``.

    Parameters
    ----------
    weights : array_like, shape (n_out, n_in)
        The layer's weights, ``weights[neuron][input]``; n_out, n_in >= 1.
    biases : array_like, shape (n_out,), or None
        The layer's biases; None for zeros.
    activation : str, default "linear"
        A name from ``nnexposed.ACTIVATIONS``.
    alpha : float, optional
        The negative slope of ``leaky_relu`` (default 0.01) or the alpha of ``elu``
        (default 1.0), unused by the other activations.
    scales : array_like, shape (n_out,), optional
        int8 layers only: one float32 scale per output neuron (finite, >= 0).
    precision : str, optional
        None infers it from the weights' dtype; otherwise it must match it.

    Raises
    ------
    ValueError
        For weights, biases or scales of the wrong shape, an unknown activation, scales
        given to a non-int8 layer or missing from an int8 one, or int8 scales that are not
        finite and >= 0.
    TypeError
        For arrays that are not real numbers, or reduced-precision weights not of the
        precision's storage dtype.

    Notes
    -----
    The arrays are copied and stored read-only, in float32 (float16/float32 weights) or
    float64 (otherwise).

    Reduced-precision layers (see ``nnexposed.precision``) keep their weights as given:
    int8 weights with ``scales`` (n_out,), one float32 per output neuron;
    ``ml_dtypes.bfloat16`` weights; float16 weights with ``precision="float16"`` (without
    it, float16 weights are widened to float32 as before). Their biases are float32.
    """

    __slots__ = ("weights", "biases", "activation", "alpha", "scales")
    weights: FloatArray
    biases: FloatArray
    activation: str
    alpha: float
    scales: FloatArray | None

    def __init__(self, weights, biases, activation="linear", *, alpha=DEFAULT, scales=None,
                 precision=None):
        given = getattr(weights, "dtype", None)
        if precision is None:
            # int8 weights without scales are plain integers, as before reduced precisions.
            if scales is not None:
                precision = "int8"
            elif given is not None and np.dtype(given).type.__name__ == "bfloat16":
                precision = "bfloat16"
        else:
            precision = _precision.as_precision(precision)
            if precision in _precision.FLOAT_PRECISIONS:
                if scales is not None:
                    raise ValueError(f"scales are for int8 layers, not {precision} ones")
                precision = None
        if precision is None:
            w, b = layer_arrays(weights, biases)
            s = None
        else:
            w, b, s = _reduced_layer_arrays(weights, biases, scales, precision)
        activation_code(activation)
        set_attr = object.__setattr__
        set_attr(self, "weights", _read_only_copy(w))
        set_attr(self, "biases", _read_only_copy(b))
        set_attr(self, "scales", None if s is None else _read_only_copy(s))
        set_attr(self, "activation", activation)
        set_attr(self, "alpha", resolve_alpha(alpha, activation))

    def __reduce__(self):
        return _dense_from_state, (self.weights, self.biases, self.activation, self.alpha,
                                   self.scales)

    @property
    def n_in(self):
        return self.weights.shape[1]

    @property
    def n_out(self):
        return self.weights.shape[0]

    @property
    def n_params(self):
        return self.weights.size + self.biases.size

    @property
    def dtype(self):
        """The dtype the layer computes in (float32 for reduced precisions)."""
        return self.biases.dtype

    @property
    def precision(self):
        """How the weights are stored: "float32", "float64", "int8", "bfloat16", "float16"."""
        return _precision.precision_of(self.weights)

    @property
    def nbytes(self):
        """Bytes of weights, biases and scales."""
        return sum(a.nbytes for a in (self.weights, self.biases, self.scales) if a is not None)

    def astype(self, dtype):
        """The same layer with float32 or float64 arrays (reduced precisions: dequantized)."""
        dtype = as_compute_dtype(dtype)
        weights = self.weights
        if self.precision in _precision.REDUCED_PRECISIONS:
            weights = _precision.dequantize_weights(weights, self.scales)
        return Dense(weights.astype(dtype), self.biases.astype(dtype), self.activation,
                     alpha=self.alpha)

    def quantize(self, precision):
        """The same layer with weights stored in ``precision`` (see ``Network.quantize``)."""
        precision = _precision.as_precision(precision)
        if precision in _precision.FLOAT_PRECISIONS:
            return self.astype(precision)
        float_layer = self if self.scales is None else self.astype(np.float32)
        weights, scales = _precision.quantize_weights(float_layer.weights, precision)
        return Dense(weights, self.biases.astype(np.float32), self.activation,
                     alpha=self.alpha, scales=scales, precision=precision)

    def __repr__(self):
        alpha = f", alpha={self.alpha}" if self.activation in DEFAULT_ALPHAS else ""
        precision = ("" if self.precision in _precision.FLOAT_PRECISIONS
                     else f", precision={self.precision!r}")
        return (f"Dense(n_in={self.n_in}, n_out={self.n_out}, "
                f"activation={self.activation!r}{alpha}, dtype={self.dtype}{precision})")


def _layer_norm_from_state(weight, bias, eps, activation, alpha):
    return LayerNorm(weight, bias, eps, activation, alpha=alpha)


class LayerNorm(_ImmutableLayer):
    """Layer normalisation: ``activation((x - mean) / sqrt(var + eps) * weight + bias)``.

    The mean and the (biased) variance are taken over each sample's n features, and summed
    in float64 in both dtypes. The layer maps n features to n (``n_in == n_out == n``).

    Parameters
    ----------
    weight : array_like, shape (n,)
        Per-feature scale after normalising (PyTorch's ``weight``, Keras's ``gamma``).
    bias : array_like, shape (n,), optional
        Per-feature shift (default zeros).
    eps : float, default 1e-5
        Added to the variance (>= 0; PyTorch's default).
    activation : str, default "linear"
        A name from ``nnexposed.ACTIVATIONS``, applied after the normalisation.
    alpha : float, optional
        The activation's parameter, as for ``Dense``.

    Notes
    -----
    The arrays are copied and stored read-only, in float32 (float16/float32 weight) or
    float64 (otherwise). NaN and inf propagate as in ``reference.forward_numpy``: one NaN or
    inf makes the sample's outputs NaN.
    """

    __slots__ = ("weight", "bias", "eps", "activation", "alpha")
    weight: FloatArray
    bias: FloatArray
    eps: float
    activation: str
    alpha: float

    def __init__(self, weight: npt.ArrayLike, bias: npt.ArrayLike | None = None,
                 eps: float = 1e-5, activation: str = "linear", *,
                 alpha: float | _Default = DEFAULT) -> None:
        w = as_real_array(weight, "weight")
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"expected a LayerNorm weight of shape (n,) with n >= 1, got "
                             f"shape {w.shape}")
        dtype = float_dtype_for(w.dtype)
        b = np.zeros(w.shape, dtype) if bias is None else as_real_array(bias, "bias")
        if b.shape != w.shape:
            raise ValueError(f"expected a LayerNorm bias of shape {w.shape}, got shape "
                             f"{b.shape}")
        eps = float(eps)
        if not (eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"expected eps >= 0 and finite, got {eps}")
        activation_code(activation)
        set_attr = object.__setattr__
        set_attr(self, "weight", _read_only_copy(as_c_array(w, dtype)))
        set_attr(self, "bias", _read_only_copy(as_c_array(b, dtype)))
        set_attr(self, "eps", eps)
        set_attr(self, "activation", activation)
        set_attr(self, "alpha", resolve_alpha(alpha, activation))

    def __reduce__(self):
        return _layer_norm_from_state, (self.weight, self.bias, self.eps, self.activation,
                                        self.alpha)

    @property
    def n_in(self):
        return self.weight.shape[0]

    n_out = n_in

    @property
    def n_params(self):
        return self.weight.size + self.bias.size

    @property
    def dtype(self):
        return self.weight.dtype

    @property
    def precision(self):
        """"float32" or "float64": LayerNorm layers have no reduced precision."""
        return str(self.dtype)

    @property
    def nbytes(self):
        """Bytes of weight and bias."""
        return self.weight.nbytes + self.bias.nbytes

    def astype(self, dtype):
        """The same layer with float32 or float64 arrays."""
        dtype = as_compute_dtype(dtype)
        return LayerNorm(self.weight.astype(dtype), self.bias.astype(dtype), self.eps,
                         self.activation, alpha=self.alpha)

    def quantize(self, precision):
        """The same layer in "float32" or "float64"; reduced precisions raise ValueError."""
        precision = _precision.as_precision(precision)
        if precision in _precision.FLOAT_PRECISIONS:
            return self.astype(precision)
        raise ValueError(f"LayerNorm layers cannot be quantized to {precision}; only networks "
                         f"of Dense layers can")

    def __repr__(self):
        alpha = f", alpha={self.alpha}" if self.activation in DEFAULT_ALPHAS else ""
        return (f"LayerNorm(n={self.n_in}, eps={self.eps}, activation={self.activation!r}"
                f"{alpha}, dtype={self.dtype})")


LAYER_TYPES = (Dense, LayerNorm)


def _value_columns(layer, output):
    """Output range, fraction of zeros and dead units of one layer's output (samples, n_out)."""
    output = output.reshape(-1, layer.n_out)
    if output.shape[0] == 0:
        return ["-", "-", "-"]
    value_range = f"{output.min():.3g} .. {output.max():.3g}"
    if layer.activation != "relu":
        return [value_range, "-", "-"]
    zero = output == 0
    dead = int(zero.all(axis=0).sum())
    return [value_range, f"{zero.mean():.1%}", f"{dead}/{layer.n_out}"]


class LayerValues(NamedTuple):
    """One layer's values from ``Network.trace``: both (batch, n_out), or (n_out,) for one
    sample."""

    pre_activation: np.ndarray
    """``x @ weights.T + biases``, before the activation."""
    output: np.ndarray
    """``activation(pre_activation)``, the next layer's input."""


class Network:
    """Dense and LayerNorm layers applied in order, run by compiled code: ``network(x)``.

    Parameters
    ----------
    layers : iterable of Dense or LayerNorm
        At least one; each layer's n_in must equal the previous layer's n_out. All layers
        take one dtype: float64 if any layer is float64, float32 otherwise.

    Attributes
    ----------
    layers : tuple of Dense or LayerNorm
        The layers, in the network's dtype.
    sizes : tuple of int
        Inputs, then each layer's outputs.
    n_in, n_out, n_params : int
        Inputs, outputs, weights and biases of the whole network.
    dtype : numpy.dtype
        float32 or float64: what the forward pass computes in and returns.

    See Also
    --------
    forward : the forward pass, as ``network(x)``.

    Examples
    --------
    >>> import nnexposed
    >>> net = nnexposed.Network.from_sizes([3, 5, 2], seed=0)
    >>> net.sizes, net.n_params, net.dtype
    ((3, 5, 2), 32, dtype('float32'))
    >>> net([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]]).shape
    (2, 2)
    """

    __slots__ = ("_layers", "_compiled")

    def __init__(self, layers: Iterable[Dense | LayerNorm]) -> None:
        if isinstance(layers, LAYER_TYPES):
            raise TypeError("Network takes a sequence of layers; wrap one in a list")
        layers = tuple(layers)
        if not layers:
            raise ValueError("a network needs at least one layer, got none")
        for k, layer in enumerate(layers):
            if not isinstance(layer, LAYER_TYPES):
                raise TypeError(f"layers[{k}] must be a nnexposed.Dense or LayerNorm, "
                                f"got {type(layer).__name__}")
        for k in range(1, len(layers)):
            if layers[k].n_in != layers[k - 1].n_out:
                raise ValueError(f"layer {k} expects {layers[k].n_in} inputs but layer {k - 1} "
                                 f"gives {layers[k - 1].n_out} outputs")
        precisions = {layer.precision for layer in layers}
        reduced = precisions - set(_precision.FLOAT_PRECISIONS)
        if reduced and any(isinstance(layer, LayerNorm) for layer in layers):
            raise ValueError(f"{', '.join(sorted(reduced))} networks hold Dense layers only, "
                             f"not LayerNorm layers; keep networks with LayerNorm layers in "
                             f"float32 or float64")
        if reduced and len(precisions) > 1:
            raise ValueError(f"all layers of a {', '.join(sorted(reduced))} network must share "
                             f"its precision, got {', '.join(layer.precision for layer in layers)}"
                             f"; quantize the network as a whole with Network.quantize")
        dtype = np.result_type(*(layer.dtype for layer in layers))
        layers = tuple(layer if layer.dtype == dtype else layer.astype(dtype)
                       for layer in layers)
        self._layers = layers
        norms = [layer for layer in layers if isinstance(layer, LayerNorm)]
        if reduced:
            from nnexposed import _quantized
            # the same forward(x, out, threads) as kernels.CompiledNetwork
            self._compiled: Any = _quantized.QuantizedNetwork(layers)
            return
        self._compiled = kernels.CompiledNetwork(
            [layer.weight if isinstance(layer, LayerNorm) else layer.weights
             for layer in layers],
            [layer.bias if isinstance(layer, LayerNorm) else layer.biases for layer in layers],
            [activation_code(layer.activation) for layer in layers],
            [layer.alpha for layer in layers],
            kinds=[int(isinstance(layer, LayerNorm)) for layer in layers] if norms else None,
            eps=[layer.eps if isinstance(layer, LayerNorm) else 0.0 for layer in layers],
        )

    @classmethod
    def from_sizes(cls, sizes: Sequence[int], activation: str = "relu",
                   output_activation: str = "linear", *, dtype: npt.DTypeLike = "float32",
                   seed: int | None = None) -> Network:
        """A randomly initialised network, e.g. ``sizes=[3, 5, 5, 5, 2]``.

        Weights are He normal for the ReLU family (relu, leaky_relu, gelu, gelu_tanh, silu,
        elu) and Glorot uniform otherwise; biases are zero.

        Parameters
        ----------
        sizes : sequence of int, length >= 2
            Inputs, then each layer's outputs; all positive.
        activation : str, default "relu"
            The activation of the hidden layers (a name from ``nnexposed.ACTIVATIONS``).
        output_activation : str, default "linear"
            The activation of the last layer.
        dtype : {"float32", "float64"}, default "float32"
            The network's dtype.
        seed : int, optional
            Seed of ``numpy.random.default_rng``: the same seed gives the same network.

        Returns
        -------
        Network

        Examples
        --------
        >>> import nnexposed
        >>> nnexposed.Network.from_sizes([784, 256, 10], "tanh", "softmax", seed=0)
        Network(sizes=(784, 256, 10), activations=('tanh', 'softmax'), dtype=float32)
        """
        sizes = [as_positive_int(size, f"sizes[{k}]") for k, size in enumerate(sizes)]
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least two entries (inputs and outputs), "
                             f"got {sizes}")
        dtype = as_compute_dtype(dtype)
        activation_code(activation)
        activation_code(output_activation)
        rng = np.random.default_rng(seed)
        layers = []
        for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layer_activation = output_activation if k == len(sizes) - 2 else activation
            if layer_activation in HE_INIT_ACTIVATIONS:
                weights = rng.normal(0.0, math.sqrt(2.0 / n_in), (n_out, n_in))
            else:
                limit = math.sqrt(6.0 / (n_in + n_out))
                weights = rng.uniform(-limit, limit, (n_out, n_in))
            layers.append(Dense(weights.astype(dtype), np.zeros(n_out, dtype), layer_activation))
        return cls(layers)

    @classmethod
    def from_sklearn(cls, estimator: Any) -> Network:
        """A fitted scikit-learn MLP, or a Pipeline of scalers ending with one, as a Network.

        Needs ``pip install "nnexposed[sklearn]"``.

        Parameters
        ----------
        estimator : MLPClassifier, MLPRegressor or Pipeline
            A fitted ``MLPClassifier`` / ``MLPRegressor``, or a Pipeline of scalers ending
            with one.

        Returns
        -------
        Network
            Its output equals ``predict_proba`` / ``predict`` (as (batch, n_outputs)), in
            the estimator's dtype.

        Raises
        ------
        TypeError
            For an estimator that is not one of these.
        ValueError
            For an estimator or scaler not fitted yet, or an unsupported activation or
            Pipeline step.
        """
        from nnexposed.importers.sklearn import from_sklearn
        return from_sklearn(estimator)

    @classmethod
    def from_torch(cls, module: Any) -> Network:
        """A PyTorch model as a Network.

        Read with eval semantics (BatchNorm's running statistics, Dropout ignored). Needs
        ``pip install "nnexposed[torch]"``.

        Parameters
        ----------
        module : torch.nn.Module, TorchScript module or torch.export program
            Any ``nn.Module`` whose forward is a chain of supported layers, a TorchScript
            module or a ``torch.export`` program.

        Returns
        -------
        Network

        Raises
        ------
        TypeError
            For a module that is none of these (a Keras model, say).
        ValueError
            For unsupported layers.
        """
        from nnexposed._quantized_import import torch_without_dynamic_linears, with_int8_layers
        from nnexposed.importers.torch import from_torch
        module, int8_layers = torch_without_dynamic_linears(module)
        return with_int8_layers(from_torch(module), int8_layers)

    @classmethod
    def from_onnx(cls, model, *, output=None):
        """An ONNX MLP (path, bytes or ``onnx.ModelProto``) as a Network.

        Needs ``pip install "nnexposed[onnx]"``.

        Parameters
        ----------
        model : str, os.PathLike, bytes or onnx.ModelProto
            The ONNX model.
        output : str, optional
            The graph output to compute when there are several.

        Returns
        -------
        Network

        Raises
        ------
        TypeError
            For a model that is not a path, bytes or an ``onnx.ModelProto``.
        ValueError
            For an unreadable model, unsupported operators, several outputs and no
            ``output``, or an ``output`` not in the graph.
        """
        from nnexposed._quantized_import import onnx_without_integer_matmuls, with_int8_layers
        from nnexposed.importers.onnx import from_onnx
        model, int8_layers = onnx_without_integer_matmuls(model)
        return with_int8_layers(from_onnx(model, output=output), int8_layers)

    @classmethod
    def from_keras(cls, model: Any) -> Network:
        """A Keras 3 model (Sequential or a functional chain) as a Network.

        Needs ``pip install "nnexposed[keras]"``.

        Parameters
        ----------
        model : keras.Model
            A built Sequential or functional model with one input and one output.

        Returns
        -------
        Network

        Raises
        ------
        TypeError
            For a model that is not a Keras Model.
        ValueError
            For unsupported layers, or a model not built yet or not a chain of layers.
        """
        from nnexposed.importers.keras import from_keras
        return from_keras(model)

    @classmethod
    def from_state_dict(cls, state_dict: Any, activation: str = "relu",
                        output_activation: str = "linear") -> Network:
        """The Linear layers of a PyTorch state dict as a Network.

        Parameters
        ----------
        state_dict : mapping or path
            A mapping of names to tensors, or a ``.pt`` / ``.pth`` / ``.safetensors`` path.
        activation : str, default "relu"
            The activation between the Linear layers.
        output_activation : str, default "linear"
            The activation after the last one.

        Returns
        -------
        Network

        Raises
        ------
        TypeError
            For a state_dict that is neither a mapping nor a path.
        ValueError
            For an empty state dict, or entries that are not Linear layers' weights and
            biases that chain.
        """
        from nnexposed.importers.state_dict import from_state_dict
        return from_state_dict(state_dict, activation, output_activation)

    def __reduce__(self):
        return Network, (self._layers,)

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers)

    def __getitem__(self, index):
        """``net[i]``: layer i (negative counts from the end); ``net[a:b]``: a Network of those
        layers (which must still chain), as ``nn.Sequential`` slices. ``net[:-1](x)`` is the
        penultimate layer's output, at full compiled speed."""
        if isinstance(index, slice):
            layers = self._layers[index]
            if not layers:
                raise IndexError(f"slice {index} of a {len(self)}-layer network has no layers")
            return Network(layers)
        try:
            return self._layers[index]
        except IndexError:
            raise IndexError(f"layer index {index} out of range for a network of "
                             f"{len(self)} layers") from None
        except TypeError:
            raise TypeError(f"network indices must be integers or slices, got "
                            f"{type(index).__name__}") from None

    @property
    def layers(self) -> tuple[Dense | LayerNorm, ...]:
        """The layers, in the network's dtype."""
        return self._layers

    @property
    def sizes(self) -> tuple[int, ...]:
        """Inputs, then each layer's outputs."""
        return (self._layers[0].n_in,) + tuple(layer.n_out for layer in self._layers)

    @property
    def n_in(self) -> int:
        """Inputs of the first layer."""
        return self._layers[0].n_in

    @property
    def n_out(self) -> int:
        """Outputs of the last layer."""
        return self._layers[-1].n_out

    @property
    def n_params(self) -> int:
        """Weights and biases of all layers."""
        return sum(layer.n_params for layer in self._layers)

    @property
    def dtype(self) -> np.dtype:
        """float32 or float64."""
        return self._layers[0].dtype

    @property
    def precision(self):
        """How the weights are stored: "float32", "float64", "int8", "bfloat16" or "float16"."""
        return self._layers[0].precision

    @property
    def nbytes(self):
        """Bytes of the layers' weights, biases and (int8) scales, and of the copies of them
        that the reduced-precision kernels keep in their own layouts (int8 weights padded to
        a multiple of 4 inputs and their row sums; weight panels where the CPU has AVX-512
        VNNI or BF16)."""
        return (sum(layer.nbytes for layer in self._layers)
                + getattr(self._compiled, "copies_nbytes", 0))

    def astype(self, dtype):
        """The same network in float32 or float64 (reduced precisions: dequantized).

        Parameters
        ----------
        dtype : {"float32", "float64"} or numpy.dtype
            The new network's dtype.

        Returns
        -------
        Network

        Raises
        ------
        TypeError
            For a dtype other than float32 or float64.
        """
        return Network([layer.astype(dtype) for layer in self._layers])

    def quantize(self, precision: str) -> Network:
        """A new network with its weights stored in ``precision``.

        Inputs and outputs stay float32. Biases stay float32. A reduced-precision network is
        requantized from its dequantized weights. See ``docs/quantization.md`` for the error
        against float32.

        Parameters
        ----------
        precision : {"int8", "bfloat16", "float16", "float32", "float64"}
            "int8" (symmetric per output neuron: int8 weights and a float32 scale each;
            inputs quantized per sample to 8 bits when the network runs, int32 sums),
            "bfloat16" (needs ``pip install "nnexposed[bfloat16]"``) or "float16" (float32
            sums); "float32"/"float64" is ``astype``.

        Returns
        -------
        Network

        Raises
        ------
        TypeError
            For a precision that is not a str.
        ValueError
            For an unknown precision, or a reduced precision for a network with LayerNorm
            layers.
        """
        return Network([layer.quantize(precision) for layer in self._layers])

    def forward(self, x: npt.ArrayLike, *, out: FloatArray | None = None,
                threads: int | None = None) -> FloatArray:
        """The forward pass, in one call into compiled code; also ``network(x)``.

        Same as ``nnexposed.forward(network, x, out=out, threads=threads)``, which describes
        the parameters in full.

        Parameters
        ----------
        x : array_like, shape (n_in,) or (batch, n_in)
            One sample or a batch of real numbers.
        out : ndarray, shape (n_out,) or (batch, n_out), optional
            Where to write the result: writeable, C-contiguous, of the result's shape and
            dtype.
        threads : int, optional
            At most this many threads (default ``get_num_threads()``).

        Returns
        -------
        ndarray, shape (n_out,) or (batch, n_out)
            The last layer's output (``out`` when given).

        Raises
        ------
        ValueError, TypeError
            For x or out of another shape, non-real dtypes, a bad ``threads``.
        """
        if threads is None:
            return self._compiled.forward(x, out)
        # More than MAX_THREADS means "as many as allowed" (and must not overflow a C int).
        threads = clamp_threads(threads)
        return self._compiled.forward(x, out, threads)

    __call__ = forward

    def trace(self, x, *, threads=None):
        """Every layer's values, from one forward pass in compiled code.

        Parameters
        ----------
        x : array_like, shape (n_in,) or (batch, n_in)
            Input samples, cast to ``self.dtype``.
        threads : int, optional
            At most this many threads (default ``get_num_threads()``); small jobs use one.

        Returns
        -------
        tuple of LayerValues
            One ``(pre_activation, output)`` pair per layer, each of shape (batch, n_out) of
            that layer, or (n_out,) for x of shape (n_in,); the last output equals
            ``self(x)``. Memory: 2 * sum of the layers' n_out values per sample (both arrays
            of every layer), plus the forward pass's own workspace.
        """
        if self.precision in _precision.REDUCED_PRECISIONS:
            return self._reduced_trace(x, threads)
        if threads is None:
            pairs = self._compiled.trace(x)
        else:
            pairs = self._compiled.trace(x, clamp_threads(threads))
        # tuple.__new__ skips the named tuple's Python-level __new__: a third of the cost.
        return tuple([tuple.__new__(LayerValues, pair) for pair in pairs])

    def _reduced_trace(self, x, threads):
        """trace of a reduced-precision network, layer by layer through its kernels."""
        values = []
        for layer in self._layers:
            affine = Network([Dense(layer.weights, layer.biases, "linear", scales=layer.scales,
                                    precision=layer.precision)])
            pre = affine.forward(x, threads=threads)
            alpha = {"alpha": layer.alpha} if layer.activation in DEFAULT_ALPHAS else {}
            x = getattr(_activations, layer.activation)(pre, **alpha)
            values.append(LayerValues(pre, x))
        return tuple(values)

    def plot(self, x=None, *, ax=None):
        """A matplotlib Figure of the network; see ``nnexposed.plot.plot_network``.

        Needs ``pip install "nnexposed[plot]"``.

        Parameters
        ----------
        x : array_like, shape (n_in,), optional
            One sample whose values colour the nodes.
        ax : matplotlib.axes.Axes, optional
            Axes to draw in.

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        ImportError
            Without matplotlib.
        ValueError
            For x of another shape.
        """
        from nnexposed.plot import plot_network
        return plot_network(self, x, ax=ax)

    def summary(self, x: npt.ArrayLike | None = None) -> str:
        """A text table: one row per layer (shape, activation, parameters), then the total.

        Parameters
        ----------
        x : array_like, shape (n_in,) or (batch, n_in), optional
            Inputs to run: the table then also shows each layer's output range and, for ReLU
            layers, the fraction of outputs that are zero and the units that are zero on every
            sample (dead units).
        """
        values = None
        if x is not None:
            values = [_value_columns(layer, layer_values.output)
                      for layer, layer_values in zip(self._layers, self.trace(x))]
        return summary_table(self.sizes, [layer.activation for layer in self._layers],
                             self.dtype, values, [_kind(layer) for layer in self._layers],
                             precision=self.precision, nbytes=self.nbytes)

    def __repr__(self):
        activations = tuple(layer.activation for layer in self._layers)
        precision = ("" if self.precision in _precision.FLOAT_PRECISIONS
                     else f", precision={self.precision!r}")
        return (f"Network(sizes={self.sizes}, activations={activations}, "
                f"dtype={self.dtype}{precision})")


def _kind(layer: Dense | LayerNorm) -> str:
    return "layer_norm" if isinstance(layer, LayerNorm) else "dense"


def summary_table(sizes: Sequence[int], activations: Sequence[str], dtype: npt.DTypeLike,
                  values: Sequence[Sequence[str]] | None = None,
                  kinds: Sequence[str] | None = None, *, precision: str | None = None,
                  nbytes: int | None = None) -> str:
    """The table of ``Network.summary()`` from the layer sizes alone, allocating nothing.

    Parameters
    ----------
    sizes : sequence of int, length n_layers + 1
        Inputs, then each layer's outputs.
    activations : sequence of str, length n_layers
        Each layer's activation name.
    dtype : str or numpy.dtype
        The network's dtype (for the size in bytes).
    values : sequence of (str, str, str), length n_layers, optional
        Each layer's output range, fraction of zeros and dead units, as columns.
    kinds : sequence of str, length n_layers, optional
        Each layer's kind, "dense" (the default) or "layer_norm".
    precision : str, optional
        How the weights are stored, when not in ``dtype`` ("int8", ...).
    nbytes : int, optional
        The bytes of weights, biases and scales, when not ``dtype``'s size of each parameter.

    Returns
    -------
    str
        One row per layer (shape, activation, parameters), then the total.
    """
    sizes = tuple(int(size) for size in sizes)
    dtype = np.dtype(dtype)
    kinds = ["dense"] * (len(sizes) - 1) if kinds is None else list(kinds)
    params = [2 * n_out if kind == "layer_norm" else (n_in + 1) * n_out
              for n_in, n_out, kind in zip(sizes, sizes[1:], kinds)]
    header = ["Layer", "Shape (in -> out)", "Activation", "Params"]
    rows = [[f"{kind}_{k}", f"{n_in} -> {n_out}", activation, f"{n:,}"]
            for k, (n_in, n_out, activation, n, kind) in enumerate(
                zip(sizes, sizes[1:], activations, params, kinds))]
    if values is not None:
        header += ["Output range", "Zero", "Dead units"]
        for row, cells in zip(rows, values):
            row += cells
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]

    def line(row):
        # Left-aligned text, right-aligned numbers (parameters, zeros, dead units).
        return "   ".join(cell.rjust(width) if c == 3 or c >= 5 else cell.ljust(width)
                          for c, (cell, width) in enumerate(zip(row, widths))).rstrip()

    rule = "=" * len(line(header))
    total = sum(params)
    return "\n".join([
        f"Network {sizes}",
        rule, line(header), rule.replace("=", "-"),
        *(line(row) for row in rows),
        rule,
        f"Total params: {total:,} ({precision or dtype}, "
        f"{total * dtype.itemsize if nbytes is None else nbytes:,} bytes)",
    ])
