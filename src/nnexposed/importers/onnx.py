"""ONNX: chains of Gemm / MatMul(+Add) layers, activations (also written as element-wise
subgraphs), BatchNormalization, LayerNormalization, constant element-wise scalers and the
``ai.onnx.ml`` Scaler, as torch.onnx.export and skl2onnx write them (skl2onnx's label and
ZipMap branches are pruned when the output computed is the probabilities)."""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np

from nnexposed._validation import float_dtype_for
from nnexposed.importers.steps import (
    Activation,
    Affine,
    Linear,
    Norm,
    network_from_steps,
    require,
)
from nnexposed.network import Network

ONNX_ACTIVATIONS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid",
                    "Tanh": "tanh", "Softmax": "softmax", "Elu": "elu", "Softplus": "softplus",
                    "Gelu": "gelu"}
ONNX_IDENTITIES = ("Identity", "Dropout", "Flatten", "Cast", "Reshape")
ONNX_NORMALISATIONS = ("BatchNormalization", "LayerNormalization", "Scaler")
ONNX_ARITHMETIC = ("Add", "Sub", "Mul", "Div")
ONNX_OPERATORS = ", ".join(["Gemm", "MatMul"] + list(ONNX_ARITHMETIC) + list(ONNX_ACTIVATIONS)
                           + list(ONNX_NORMALISATIONS) + list(ONNX_IDENTITIES))
# ONNX TensorProto codes of the floating types that Cast may convert the features to.
ONNX_FLOAT_TYPES = {1, 10, 11, 16}


def _erf(z):
    return np.frompyfunc(math.erf, 1, 1)(z).astype(np.float64)


# The element-wise operators that exporters decompose activations into (e.g. GELU below
# opset 20), evaluated in float64 with scalar constants.
ONNX_ELEMENTWISE = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
    "Pow": np.power, "Neg": np.negative, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt,
    "Erf": _erf, "Tanh": np.tanh, "Sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "Softplus": lambda z: np.logaddexp(0, z),
}
# A decomposed subgraph is taken for one of these activations when it agrees with it to
# DECOMPOSED_RTOL at every probe point (gelu and gelu_tanh differ by up to 5e-4 there).
DECOMPOSED_ACTIVATIONS = ("gelu", "gelu_tanh", "silu", "softplus", "sigmoid", "tanh")
DECOMPOSED_PROBES = np.linspace(-10.0, 10.0, 4001)
DECOMPOSED_RTOL = 1e-6
DECOMPOSED_MAX_NODES = 32


@functools.cache
def _decomposed_targets():
    """Each of DECOMPOSED_ACTIVATIONS at DECOMPOSED_PROBES, in float64."""
    from nnexposed.reference import NUMPY_ACTIVATIONS
    return {name: NUMPY_ACTIVATIONS[name](DECOMPOSED_PROBES, 1.0)
            for name in DECOMPOSED_ACTIVATIONS}


def _onnx_model(onnx, model):
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        loader, what = onnx.load_from_string, "the bytes given"
    elif isinstance(model, (str, os.PathLike)):
        loader, what = onnx.load, os.fspath(model)
        with open(model, "rb"):           # missing or unreadable: the OSError as it is
            pass
    else:
        raise TypeError(f"from_onnx expects a path, bytes or an onnx.ModelProto, "
                        f"got {type(model).__name__}")
    try:
        return loader(model)
    except Exception as error:            # protobuf's DecodeError and friends
        raise ValueError(f"{what}: not a readable ONNX model ({type(error).__name__}: "
                         f"{error})") from None


def _onnx_constants(graph, numpy_helper, helper):
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            attribute = node.attribute[0]
            value = helper.get_attribute_value(attribute)
            constants[node.output[0]] = (numpy_helper.to_array(value)
                                         if attribute.name == "value" else np.asarray(value))
        elif node.op_type == "Identity" and node.input[0] in constants:
            # The legacy exporter writes a parameter equal to another one as Identity of it.
            constants[node.output[0]] = constants[node.input[0]]
    return constants


class _OnnxGraph:
    """The chain of layers from an ONNX graph's input to one of its outputs."""

    def __init__(self, proto, output):
        from onnx import helper, numpy_helper
        graph = proto.graph
        self.constants = _onnx_constants(graph, numpy_helper, helper)
        self.attributes = helper.get_attribute_value
        inputs = [i.name for i in graph.input if i.name not in self.constants]
        outputs = [o.name for o in graph.output]
        if len(inputs) != 1:
            raise ValueError(f"expected an ONNX graph with one input, got inputs {inputs}")
        producers = {name: node for node in graph.node for name in node.output}
        zipmaps = {node.output[0]: node.input[0] for node in graph.node
                   if node.op_type == "ZipMap"}
        if output is None:
            # skl2onnx's classifiers have outputs label and probabilities, the latter as a
            # tensor ('probabilities', with zipmap=False) or a ZipMap of it (by default).
            candidates = ["probabilities"] if "probabilities" in outputs else [
                name for name in outputs if name in zipmaps]
            if len(outputs) == 1:
                candidates = outputs
            if len(candidates) != 1:
                raise ValueError(f"the ONNX graph has outputs {outputs}; choose one with "
                                 f"output=")
            output = candidates[0]
        elif output not in outputs:
            raise ValueError(f"no output {output!r} in the ONNX graph; its outputs are "
                             f"{outputs}")
        # The probabilities, without the ZipMap that turns them into a list of dicts.
        output = zipmaps.get(output, output)
        self.input, self.output = inputs[0], output
        # Only the nodes that the output depends on: branches feeding other outputs (the
        # label's ArgMax and Casts, ZipMap) are pruned.
        needed, stack = set(), [output]
        while stack:
            producer = producers.get(stack.pop())
            if producer is not None and id(producer) not in needed:
                needed.add(id(producer))
                stack.extend(producer.input)
        self.consumers = {}
        for node in graph.node:
            if node.op_type == "Constant" or id(node) not in needed:
                continue
            for name in dict.fromkeys(node.input):
                if name and name not in self.constants:
                    self.consumers.setdefault(name, []).append(node)

    def attribute(self, node, name, default):
        for attribute in node.attribute:
            if attribute.name == name:
                value = self.attributes(attribute)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def constant(self, node, index):
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            return None
        if name not in self.constants:
            raise ValueError(f"ONNX {node.op_type} node {node.name!r}: input {name!r} must be "
                             f"a constant (initializer)")
        return self.constants[name]

    def steps(self):
        steps, current, seen = [], self.input, set()
        while current != self.output:
            if current in seen:
                raise ValueError(f"the ONNX graph has a cycle through {current!r}")
            seen.add(current)
            step, current = self._match(current, self.consumers.get(current, []), steps)
            if step is not None:
                steps.append(step)
        return steps

    def _match(self, current, users, steps):
        if len(users) == 1:
            node = users[0]
            if node.op_type in ("Gemm", "MatMul") + ONNX_IDENTITIES + ONNX_NORMALISATIONS \
                    or node.op_type in ONNX_ACTIVATIONS:
                return self._match_node(current, node, steps)
        elif len(users) > 1:
            match = self._match_group(current, users, steps)
            if match is not None:
                return match
        if users and all(node.op_type in ONNX_ELEMENTWISE for node in users):
            match = self._decomposed_activation(current)
            if match is not None:
                return match
        if len(users) == 1 and users[0].op_type in ONNX_ARITHMETIC:
            affine = self._arithmetic(current, users[0])
            if affine is not None:
                return affine, users[0].output[0]
        found = ", ".join(node.op_type for node in users) or "nothing"
        raise ValueError(f"tensor {current!r} feeds {found}: unsupported ONNX operators; "
                         f"expected a chain of layers from the input to the output "
                         f"({ONNX_OPERATORS} or an element-wise form of a supported "
                         f"activation)")

    def _arithmetic(self, current, node):
        """The Affine step of x + c, c + x, x - c, c - x, x * c, c * x or x / c with a
        constant scalar or per-feature c; None for anything else."""
        if len(node.input) != 2 or list(node.input).count(current) != 1:
            return None
        first = node.input[0] == current
        constant = self.constants.get(node.input[1] if first else node.input[0])
        if constant is None or any(size != 1 for size in constant.shape[:-1]):
            return None
        constant = constant.reshape(-1).astype(np.float64)
        where = f"ONNX {node.op_type} node {node.name!r}"
        if node.op_type == "Add":
            return Affine(1.0, constant, where)
        if node.op_type == "Sub":
            return Affine(1.0, -constant, where) if first else Affine(-1.0, constant, where)
        if node.op_type == "Mul":
            return Affine(constant, 0.0, where)
        return Affine(1.0 / constant, 0.0, where) if first else None

    def _match_node(self, current, node, steps):
        op = node.op_type
        if node.input[0] != current:
            raise ValueError(f"ONNX {op} node {node.name!r} takes {current!r} as a weight "
                             f"operand; only x @ W layers are supported")
        if op == "Gemm":
            return self._gemm(node), node.output[0]
        if op == "MatMul":
            weights = self.constant(node, 1)
            if weights.ndim != 2:
                raise ValueError(f"ONNX MatMul node {node.name!r}: expected 2-D weights, got "
                                 f"shape {weights.shape}")
            return Linear(weights.T), node.output[0]
        if op in ONNX_NORMALISATIONS:
            return self._normalisation(node), node.output[0]
        if op in ONNX_IDENTITIES:
            self._check_identity(node, steps)
            return None, node.output[0]
        return self._activation(node), node.output[0]

    def _check_identity(self, node, steps):
        """Raise unless this Flatten, Cast or Reshape leaves (batch, features) unchanged."""
        op = node.op_type
        if op == "Flatten" and self.attribute(node, "axis", 1) != 1:
            raise ValueError(f"ONNX Flatten node {node.name!r}: only axis=1 is supported")
        if op == "Cast" and self.attribute(node, "to", 1) not in ONNX_FLOAT_TYPES:
            raise ValueError(f"ONNX Cast node {node.name!r}: only casts to a floating type "
                             f"are supported, got type code {self.attribute(node, 'to', 1)}")
        if op == "Reshape":
            shape = self.constant(node, 1).reshape(-1).tolist()
            width = self._width(node, steps)
            if len(shape) != 2 or shape[0] not in (-1, 0) or shape[1] not in (-1, width):
                raise ValueError(f"ONNX Reshape node {node.name!r}: only reshapes to "
                                 f"(batch, {width}) are supported, got shape {shape}")

    def _width(self, node, steps):
        linears = [step for step in steps if isinstance(step, Linear)]
        if not linears:
            raise ValueError(f"ONNX {node.op_type} node {node.name!r} comes before any Gemm "
                             f"or MatMul, so the number of features is unknown")
        return linears[-1].weights.shape[0]

    def _gemm(self, node):
        if self.attribute(node, "transA", 0):
            raise ValueError(f"ONNX Gemm node {node.name!r}: transA=1 is not supported")
        weights = self.constant(node, 1)
        if weights is None or weights.ndim != 2:
            raise ValueError(f"ONNX Gemm node {node.name!r}: expected 2-D weights")
        if not self.attribute(node, "transB", 0):
            weights = weights.T                       # now (n_out, n_in)
        weights = self.attribute(node, "alpha", 1.0) * weights.astype(
            float_dtype_for(weights.dtype))
        biases = self._bias(node, self.constant(node, 2), weights.shape[0],
                            self.attribute(node, "beta", 1.0))
        return Linear(weights, biases)

    def _bias(self, node, value, n_out, scale):
        if value is None:
            return None
        value = np.asarray(value)
        while value.ndim > 1 and value.shape[0] == 1:
            value = value[0]
        try:
            value = np.broadcast_to(value, (n_out,))
        except ValueError:
            raise ValueError(f"ONNX {node.op_type} node {node.name!r}: bias of shape "
                             f"{value.shape} does not fit {n_out} outputs") from None
        return scale * value.astype(float_dtype_for(value.dtype))

    def _normalisation(self, node):
        op, where = node.op_type, f"ONNX {node.op_type} node {node.name!r}"
        if op == "Scaler":                          # ai.onnx.ml: (x - offset) * scale
            scale = np.asarray(self.attribute(node, "scale", [1.0]), np.float64)
            offset = np.asarray(self.attribute(node, "offset", [0.0]), np.float64)
            return Affine(scale, -offset * scale, where)
        if op == "BatchNormalization":
            if self.attribute(node, "training_mode", 0):
                raise ValueError(f"{where}: training_mode=1 normalises with each batch's own "
                                 f"statistics; only inference graphs are supported")
            scale, bias, mean, var = (self.constant(node, k) for k in range(1, 5))
            return Affine.batch_norm(mean, var, scale, bias,
                                     self.attribute(node, "epsilon", 1e-5), where)
        if self.attribute(node, "axis", -1) not in (-1, 1):     # LayerNormalization
            raise ValueError(f"{where}: only axis=-1 (the features) is supported, got "
                             f"axis={self.attribute(node, 'axis', -1)}")
        scale = self.constant(node, 1)
        return Norm(scale, self.constant(node, 2), self.attribute(node, "epsilon", 1e-5),
                    source=where)

    def _activation(self, node):
        op = node.op_type
        if op == "Softmax" and self.attribute(node, "axis", -1) not in (-1, 1):
            raise ValueError(f"ONNX Softmax node {node.name!r}: only axis=-1 is supported")
        if op == "Gelu":
            approximate = self.attribute(node, "approximate", "none")
            return Activation("gelu" if approximate == "none" else "gelu_tanh")
        if op == "LeakyRelu":
            return Activation("leaky_relu", self.attribute(node, "alpha", 0.01))
        if op == "Elu":
            return Activation("elu", self.attribute(node, "alpha", 1.0))
        return Activation(ONNX_ACTIVATIONS[op])

    def _match_group(self, current, users, steps):
        """Where(x > 20, x, Softplus(x)), PyTorch's softplus, and Concat(1 - p, p),
        skl2onnx's binary classifier output; None for anything else."""
        ops = {node.op_type: node for node in users}
        softplus, greater, where = ops.get("Softplus"), ops.get("Greater"), ops.get("Where")
        if len(users) == 3 and softplus and greater and where and greater.input[0] == current:
            threshold = self.constants.get(greater.input[1])
            if (list(where.input) == [greater.output[0], current, softplus.output[0]]
                    and self.consumers.get(greater.output[0]) == [where]
                    and self.consumers.get(softplus.output[0]) == [where]
                    and threshold is not None and threshold.size == 1
                    and float(threshold.reshape(-1)[0]) >= 20):
                return Activation("softplus"), where.output[0]
        sub, concat = ops.get("Sub"), ops.get("Concat")
        if len(users) == 2 and sub and concat and list(sub.input)[1:] == [current] \
                and list(concat.input) == [sub.output[0], current] \
                and self.attribute(concat, "axis", 1) in (1, -1) \
                and self.consumers.get(sub.output[0]) == [concat] \
                and np.all(self.constants.get(sub.input[0], np.zeros(1)) == 1) \
                and self._width(sub, steps) == 1:
            dtype = [step for step in steps if isinstance(step, Linear)][-1].weights.dtype
            return (Linear(np.array([[-1], [1]], dtype), np.array([1, 0], dtype)),
                    concat.output[0])
        return None

    def _decomposed_activation(self, start):
        """(Activation, output) for the smallest element-wise subgraph from ``start`` that
        computes a supported activation, such as GELU written with Erf, or None.

        The subgraph grows one node at a time (element-wise operators with scalar constants);
        whenever a single tensor leaves it, it is evaluated in float64 at
        DECOMPOSED_PROBES and compared with each of DECOMPOSED_ACTIVATIONS.
        """
        region, known, values = [], [start], {start: DECOMPOSED_PROBES}
        while len(region) < DECOMPOSED_MAX_NODES:
            node = next((n for t in known for n in self.consumers.get(t, [])
                         if not any(n is r for r in region) and self._computable(n, values)),
                        None)
            if node is None:
                return None
            region.append(node)
            args = [values[name] if name in values else
                    float(self.constants[name].reshape(-1)[0]) for name in node.input]
            with np.errstate(all="ignore"):
                values[node.output[0]] = ONNX_ELEMENTWISE[node.op_type](*args)
            known.append(node.output[0])
            leaving = [t for t in known if t == self.output or any(
                not any(n is r for r in region) for n in self.consumers.get(t, []))]
            if len(leaving) == 1 and leaving[0] != start:
                result = values[leaving[0]]
                for name, expected in _decomposed_targets().items():
                    if np.allclose(result, expected, rtol=DECOMPOSED_RTOL,
                                   atol=DECOMPOSED_RTOL):
                        return Activation(name), leaving[0]
        return None

    def _computable(self, node, values):
        """An element-wise node whose inputs are all computed or scalar constants."""
        return (node.op_type in ONNX_ELEMENTWISE and len(node.output) == 1 and all(
            name in values or (name in self.constants and self.constants[name].size == 1)
            for name in node.input))


def from_onnx(model: Any, *, output: str | None = None) -> Network:
    """The Network of an ONNX MLP: a path, the file's bytes or an ``onnx.ModelProto``.

    Supported graphs are chains of Gemm / MatMul(+Add) and element-wise activations (Relu,
    LeakyRelu, Sigmoid, Tanh, Softmax, Gelu, Elu, Softplus, and element-wise subgraphs that
    compute gelu, gelu_tanh, silu, softplus, sigmoid or tanh, such as x * Sigmoid(x) or GELU
    below opset 20), BatchNormalization (inference), LayerNormalization (last axis), Add,
    Sub, Mul and Div with constant scalars or per-feature vectors and the ``ai.onnx.ml``
    Scaler (folded into the adjacent layer), with Identity, Dropout, Flatten(axis=1), float
    Casts and Reshapes to (batch, features) passed through; anything else is a ValueError
    naming the operators. ``output``: the graph output to compute, needed when there are
    several (default: the only one, or skl2onnx's probabilities, as a tensor or through its
    ZipMap). Nodes that only feed other outputs are ignored.
    """
    onnx = require("onnx", "onnx", "Network.from_onnx")
    proto = _onnx_model(onnx, model)
    return network_from_steps(_OnnxGraph(proto, output).steps(), "the ONNX graph")
