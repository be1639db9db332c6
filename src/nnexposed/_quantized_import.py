"""Dynamically quantized models to int8 networks with the same weights.

ONNX Runtime's ``quantize_dynamic`` writes each layer as ``DynamicQuantizeLinear`` (the input
to uint8) + ``MatMulInteger`` with int8 weights + ``Cast`` + ``Mul`` by the two scales;
PyTorch's ``quantize_dynamic`` swaps ``nn.Linear`` for ``nn.quantized.dynamic.Linear``. Both
quantize the inputs per call, as nnexposed's int8 layers do, and keep symmetric int8 weights
(zero point 0) with a scale per tensor or per output channel: exactly what an int8 ``Dense``
holds. The importers see a float model in which each such layer is a plain MatMul / Linear
of the dequantized weights (``q * scale``, in float32); the layers of the network they build
are then matched to the int8 weights they came from by those values, and rebuilt as int8
layers with the original ``q`` and scales.
"""

from __future__ import annotations

import copy
import os
import sys
from typing import Any

import numpy as np

from nnexposed.network import Dense, LayerNorm, Network


class Int8Weights:
    """One quantized layer of the source model: q (n_out, n_in) int8, scales (n_out,)."""

    def __init__(self, q: np.ndarray, scales: np.ndarray, where: str) -> None:
        self.q = np.ascontiguousarray(q, dtype=np.int8)
        self.scales = np.ascontiguousarray(
            np.broadcast_to(np.asarray(scales, np.float32).reshape(-1), (self.q.shape[0],)))
        self.where = where

    def dequantized(self) -> np.ndarray:
        """The float32 weights the importer sees: q * scale per output neuron."""
        return self.q.astype(np.float32) * self.scales[:, None]


def with_int8_layers(network: Network, sources: list[Int8Weights]) -> Network:
    """``network`` with every layer that came from one of ``sources`` rebuilt from its int8
    weights; the other layers (float in the source model) quantized per output neuron."""
    if not sources:
        return network
    remaining = list(sources)
    layers = []
    for layer in network.layers:
        if isinstance(layer, LayerNorm):
            raise ValueError("int8 networks hold Dense layers only; this dynamically quantized "
                             "model has layer normalisation, which nnexposed cannot keep in "
                             "an int8 network: import the float model instead")
        match = next((s for s in remaining if s.q.shape == layer.weights.shape
                      and np.array_equal(s.dequantized(), layer.weights)), None)
        if match is None:
            layers.append(layer.quantize("int8"))
            continue
        remaining.remove(match)
        layers.append(Dense(match.q, layer.biases.astype(np.float32), layer.activation,
                            alpha=layer.alpha, scales=match.scales))
    if remaining:
        raise ValueError(f"the int8 weights of {remaining[0].where} were combined with other "
                         f"layers by the import (folded normalisation or consecutive linear "
                         f"layers), so they cannot be kept as int8; import the float model "
                         f"and call Network.quantize('int8')")
    return Network(layers)


def _zero_points_are_zero(zero_points: np.ndarray, where: str) -> None:
    if np.any(zero_points != 0):
        raise ValueError(f"{where}: int8 weights with a zero point other than 0 (asymmetric) "
                         f"cannot be kept as nnexposed's symmetric int8 weights; import the "
                         f"float model and call Network.quantize('int8')")


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


def onnx_without_integer_matmuls(model: Any) -> tuple[Any, list[Int8Weights]]:
    """(model, int8 layers): ``model`` (a path, bytes or ModelProto) with each
    DynamicQuantizeLinear + MatMulInteger + Cast + Mul chain replaced by a float MatMul of
    the dequantized weights; the model itself, unread, when it has no MatMulInteger."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:  # the importer names the extra to install
        return model, []
    # Anything unreadable goes to the importer as it is, to be reported in its words.
    try:
        if isinstance(model, onnx.ModelProto):
            proto = model
        elif isinstance(model, bytes | bytearray):
            proto = onnx.load_from_string(bytes(model))
        elif isinstance(model, str | os.PathLike):
            proto = onnx.load(os.fspath(model))
        else:
            return model, []
    except Exception:
        return model, []
    graph = proto.graph
    if not any(node.op_type == "MatMulInteger" for node in graph.node):
        return model, []
    proto = copy.deepcopy(proto)
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def array(name: str, where: str) -> np.ndarray:
        if name not in initializers:
            raise ValueError(f"{where}: {name!r} is not a constant (initializer)")
        return numpy_helper.to_array(initializers[name])

    def only_consumer(name: str, op_type: str, where: str) -> Any:
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type:
            raise ValueError(f"{where}: expected {name!r} to feed one {op_type} node, as "
                             f"quantize_dynamic writes it, got "
                             f"{[user.op_type for user in users]}")
        return users[0]

    removed, replacements, sources = set(), {}, []
    for node in list(graph.node):
        if node.op_type != "MatMulInteger":
            continue
        where = f"ONNX MatMulInteger node {node.name or node.output[0]!r}"
        if len(node.input) != 4:
            raise ValueError(f"{where}: expected inputs (A, B, a_zero_point, b_zero_point)")
        a, b, _, b_zero = node.input
        quantizer = producers.get(a)
        if quantizer is None or quantizer.op_type != "DynamicQuantizeLinear":
            raise ValueError(f"{where}: its input {a!r} does not come from "
                             f"DynamicQuantizeLinear")
        q = array(b, where)
        if q.dtype != np.int8 or q.ndim != 2:
            raise ValueError(f"{where}: expected 2-D int8 weights, got {q.dtype} {q.shape}")
        _zero_points_are_zero(array(b_zero, where), where)
        cast = only_consumer(node.output[0], "Cast", where)
        rescale = only_consumer(cast.output[0], "Mul", where)
        product = producers.get(next(n for n in rescale.input if n != cast.output[0]))
        if product is None or product.op_type != "Mul" or quantizer.output[1] not in product.input:
            raise ValueError(f"{where}: its result is not scaled by the input's scale times "
                             f"the weights' scale")
        weight_scale = next(n for n in product.input if n != quantizer.output[1])
        source = Int8Weights(q.T, array(weight_scale, where), where)
        sources.append(source)
        dequantized = numpy_helper.from_array(np.ascontiguousarray(source.dequantized().T),
                                              f"{b}_dequantized")
        graph.initializer.append(dequantized)
        # The float MatMul takes the place of the final Mul, computing the same value.
        replacements[id(rescale)] = helper.make_node(
            "MatMul", [quantizer.input[0], dequantized.name], [rescale.output[0]],
            name=f"{node.name or b}_dequantized")
        removed |= {id(node), id(cast), id(product)}
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            used = {id(user) for output in node.output for user in consumers.get(output, [])}
            if used <= removed | set(replacements):
                removed.add(id(node))
    nodes = [replacements.get(id(node), node) for node in graph.node if id(node) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    return proto, sources


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


def torch_without_dynamic_linears(module: Any) -> tuple[Any, list[Int8Weights]]:
    """(module, int8 layers): a copy of ``module`` with each ``nn.quantized.dynamic.Linear``
    replaced by an ``nn.Linear`` of its dequantized weights; ``module`` itself when it has
    none (or is not an ``nn.Module``)."""
    torch = sys.modules.get("torch")     # a torch module means torch is imported already
    if torch is None:
        return module, []
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    if not isinstance(module, torch.nn.Module) or not any(
            isinstance(m, dynamic_linear) for m in module.modules()):
        return module, []
    module = copy.deepcopy(module)
    sources: list[Int8Weights] = []

    def replace(parent: Any, prefix: str) -> None:
        for name, child in parent.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, dynamic_linear):
                setattr(parent, name, _float_linear(torch, child, path, sources))
            else:
                replace(child, f"{path}.")

    replace(module, "")
    return module, sources


def _float_linear(torch: Any, layer: Any, path: str, sources: list[Int8Weights]) -> Any:
    where = f"quantized Linear {path!r}"
    weight = layer.weight()
    if weight.dtype != torch.qint8:
        raise ValueError(f"{where}: weights of type {weight.dtype}; int8 networks are imported "
                         f"from qint8 weights only")
    if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        scales = np.full(weight.shape[0], weight.q_scale(), np.float32)
        zero_points = np.array([weight.q_zero_point()])
    else:
        if weight.q_per_channel_axis() != 0:
            raise ValueError(f"{where}: per-channel scales along axis "
                             f"{weight.q_per_channel_axis()}, not the output axis 0")
        scales = weight.q_per_channel_scales().numpy().astype(np.float32)
        zero_points = weight.q_per_channel_zero_points().numpy()
    _zero_points_are_zero(zero_points, where)
    source = Int8Weights(weight.int_repr().numpy(), scales, where)
    sources.append(source)
    bias = layer.bias()
    linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(source.dequantized()))
        if bias is not None:
            linear.bias.copy_(bias.detach().float())
    return linear
