"""PyTorch: any ``nn.Module`` whose forward is a chain of supported layers, TorchScript
modules (scripted or traced) and ``torch.export`` programs.

An ``nn.Sequential`` is walked module by module (the fast route); any other module is traced
with ``torch.fx`` and its graph read node by node, modules and their functional forms alike.
TorchScript modules are frozen (which inlines their parameters) and their graph is read the
same way, as is the graph of an ``ExportedProgram``. Every route reads a module as in eval
mode: BatchNorm uses its running statistics and Dropout is the identity, whatever the mode.
"""

from __future__ import annotations

import inspect
import operator
import warnings
from collections.abc import Callable, Iterable
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
from nnexposed.network import Network

TORCH_MODULES = ("Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax(dim=-1), GELU, SiLU, ELU, "
                 "Softplus, BatchNorm1d, LayerNorm, Identity, Dropout, Flatten, nested "
                 "modules, and their functional forms")


class _Chain:
    """Marks the argument of a graph node that is the tensor flowing along the chain."""

    def __repr__(self) -> str:
        return "<chain>"


CHAIN = _Chain()


def is_keras(model: Any) -> bool:
    """Whether ``model`` is a Keras object (a Keras 3 model is an nn.Module under the torch
    backend)."""
    return any(cls.__module__.split(".")[0] in ("keras", "tf_keras")
               for cls in type(model).__mro__)


def from_torch(module: Any) -> Network:
    """The Network of a PyTorch model: an ``nn.Module`` (an ``nn.Sequential``, or any module
    whose forward is a chain of supported layers), a TorchScript module or a
    ``torch.export.ExportedProgram``.

    float64 parameters give a float64 network, any other floating type float32. The module
    is read with eval semantics whatever its mode: BatchNorm uses its running statistics
    (folded into the adjacent Linear layer), Dropout is the identity. Anything that is not
    a chain of supported layers raises ValueError naming it.
    """
    if is_keras(module):
        raise TypeError(f"{type(module).__name__} is a Keras model; import it with "
                        f"nnexposed.Network.from_keras")
    torch = require("torch", "torch", "Network.from_torch")
    name = f"the {type(module).__name__}"
    if isinstance(module, torch.export.ExportedProgram):
        steps = _graph_module_steps(torch, module.module(), "the exported program")
    elif isinstance(module, torch.jit.ScriptModule):
        steps = _script_steps(torch, module)
    elif isinstance(module, torch.nn.Module):
        steps = _module_steps(torch, module, "")
    else:
        raise TypeError(f"from_torch expects a torch.nn.Module, a TorchScript module or a "
                        f"torch.export.ExportedProgram, got {type(module).__name__}")
    return network_from_steps(steps, name)


def tensor_array(torch: Any, tensor: Any) -> np.ndarray:
    """A tensor's values as a new float32 (float64 for float64 tensors) ndarray."""
    tensor = tensor.detach().cpu()
    if tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    return tensor.numpy().copy()


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def _module_steps(torch: Any, module: Any, path: str) -> list[Step]:
    """The steps of one module: a Sequential's children, a supported layer, or the traced
    forward of any other module."""
    nn = torch.nn
    kind = type(module)
    where = f"{path} ({kind.__name__})" if path else kind.__name__
    if kind is nn.Sequential:
        steps: list[Step] = []
        for name, child in module.named_children():
            steps += _module_steps(torch, child, f"{path}.{name}" if path else name)
        return steps
    handler = _MODULE_HANDLERS.get(kind.__name__)
    if handler is not None and kind.__module__.startswith("torch.nn"):
        return handler(torch, module, where)
    if kind.__module__.startswith("torch.") or not isinstance(module, nn.Module):
        raise ValueError(f"unsupported PyTorch module {where}; supported: {TORCH_MODULES}")
    try:
        graph_module = torch.fx.symbolic_trace(module)
    except Exception as error:              # fx raises TraceError, TypeError, RuntimeError...
        raise ValueError(f"{where}: torch.fx cannot trace its forward "
                         f"({type(error).__name__}: {error}); only forwards that are a chain "
                         f"of supported layers can be imported") from None
    return _graph_module_steps(torch, graph_module, where)


def _linear(torch: Any, module: Any, where: str) -> list[Step]:
    biases = None if module.bias is None else tensor_array(torch, module.bias)
    return [Linear(tensor_array(torch, module.weight), biases)]


def _batch_norm(torch: Any, module: Any, where: str) -> list[Step]:
    if module.running_mean is None:
        raise ValueError(f"{where}: BatchNorm without running statistics "
                         f"(track_running_stats=False) normalises with each batch's own "
                         f"statistics, which is not a function of one sample")
    weight = None if module.weight is None else tensor_array(torch, module.weight)
    bias = None if module.bias is None else tensor_array(torch, module.bias)
    return [Affine.batch_norm(tensor_array(torch, module.running_mean),
                              tensor_array(torch, module.running_var), weight, bias,
                              module.eps, where)]


def _layer_norm(torch: Any, module: Any, where: str) -> list[Step]:
    shape = tuple(module.normalized_shape)
    return _op_steps(torch, "layer_norm", {
        "normalized_shape": shape, "eps": module.eps,
        "weight": module.weight, "bias": getattr(module, "bias", None)}, where)


def _module_op(op: str, **attributes: str) -> Callable[[Any, Any, str], list[Step]]:
    """A handler reading ``attributes`` (argument name -> module attribute) into ``op``."""
    def handler(torch: Any, module: Any, where: str) -> list[Step]:
        arguments = {name: getattr(module, attribute) for name, attribute in attributes.items()}
        return _op_steps(torch, op, arguments, where)
    return handler


_MODULE_HANDLERS: dict[str, Callable[[Any, Any, str], list[Step]]] = {
    "Linear": _linear,
    "BatchNorm1d": _batch_norm,
    "LayerNorm": _layer_norm,
    "Identity": _module_op("identity"),
    "Dropout": _module_op("dropout"),
    "Flatten": _module_op("flatten", start_dim="start_dim", end_dim="end_dim"),
    "Softmax": _module_op("softmax", dim="dim"),
    "GELU": _module_op("gelu", approximate="approximate"),
    "Softplus": _module_op("softplus", beta="beta", threshold="threshold"),
    "LeakyReLU": _module_op("leaky_relu", negative_slope="negative_slope"),
    "ELU": _module_op("elu", alpha="alpha"),
    "ReLU": _module_op("relu"),
    "Sigmoid": _module_op("sigmoid"),
    "Tanh": _module_op("tanh"),
    "SiLU": _module_op("silu"),
}


# --------------------------------------------------------------------------------------------
# Operators (functional forms, Tensor methods, ATen operators of TorchScript and torch.export)
# --------------------------------------------------------------------------------------------

# The parameters of the operators that are builtins or Tensor methods, whose signatures
# Python cannot inspect: (name, default) in order; None where required.
_BUILTIN_PARAMETERS: dict[str, tuple[tuple[str, Any], ...]] = {
    "relu": (("input", None),), "sigmoid": (("input", None),), "tanh": (("input", None),),
    "softmax": (("input", None), ("dim", None), ("dtype", None)),
    "flatten": (("input", None), ("start_dim", 0), ("end_dim", -1)),
    "linear": (("input", None), ("weight", None), ("bias", None)),
    "gelu": (("input", None), ("approximate", "none")),
    "softplus": (("input", None), ("beta", 1), ("threshold", 20)),
    "leaky_relu": (("input", None), ("negative_slope", 0.01)),
    "elu": (("input", None), ("alpha", 1.0)),
    "silu": (("input", None),),
    "dropout": (("input", None), ("p", 0.5), ("training", False)),
    "add": (("input", None), ("other", None), ("alpha", 1)),
    "sub": (("input", None), ("other", None), ("alpha", 1)),
    "mul": (("input", None), ("other", None)),
    "div": (("input", None), ("other", None)),
    "truediv": (("input", None), ("other", None)),
    "contiguous": (("input", None),),
}
# Names of the same parameter in ATen schemas and torch.nn.functional.
_PARAMETER_NAMES = {"self": "input", "train": "training"}
_OPERATOR_NAMES = {operator.add: "add", operator.sub: "sub", operator.mul: "mul",
                   operator.truediv: "div", operator.getitem: "getitem"}


def _bind(name: str, parameters: Iterable[tuple[str, Any]], args: tuple[Any, ...],
          kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = list(parameters)
    if len(args) > len(parameters):
        raise ValueError(f"{where}: {name} takes {len(parameters)} arguments, got {len(args)}")
    bound = {parameter: default for parameter, default in parameters}
    bound.update(zip((parameter for parameter, _ in parameters), args, strict=False))
    bound.update(kwargs)
    return {_PARAMETER_NAMES.get(key, key): value for key, value in bound.items()}


def _function_arguments(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                        where: str) -> tuple[str, dict[str, Any]]:
    """(operator name, arguments by parameter name) of a call of ``function``."""
    schema = getattr(function, "_schema", None)
    if schema is not None:                                  # an ATen OpOverload
        name = schema.name.split("::")[-1]
        parameters = [(a.name, a.default_value if a.has_default_value() else None)
                      for a in schema.arguments]
        return _canonical(name), _bind(name, parameters, args, kwargs, where)
    if function in _OPERATOR_NAMES:
        name = _OPERATOR_NAMES[function]
        return name, _bind(name, _BUILTIN_PARAMETERS.get(name, (("input", None), ("other", None))),
                           args, kwargs, where)
    name = getattr(function, "__name__", repr(function))
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):                         # builtins such as torch.relu
        if name not in _BUILTIN_PARAMETERS:
            raise ValueError(f"{where}: unsupported PyTorch function {name}; supported: "
                             f"{TORCH_MODULES}") from None
        return _canonical(name), _bind(name, _BUILTIN_PARAMETERS[name], args, kwargs, where)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise ValueError(f"{where}: {name}: {error}") from None
    bound.apply_defaults()
    return _canonical(name), {_PARAMETER_NAMES.get(key, key): value
                              for key, value in bound.arguments.items()}


def _canonical(name: str) -> str:
    """relu_ (in place) -> relu, _softmax -> softmax."""
    return {"_softmax": "softmax", "feature_dropout": "dropout", "alpha_dropout": "dropout",
            "true_divide": "div", "_native_batch_norm_legit_no_training": "native_batch_norm",
            }.get(name.rstrip("_"), name.rstrip("_"))


def _scalar(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def _op_steps(torch: Any, op: str, a: dict[str, Any], where: str) -> list[Step]:
    """The steps of operator ``op`` with arguments ``a`` (the chained tensor is CHAIN)."""
    def array(value: Any) -> np.ndarray | None:
        if value is None:
            return None
        return tensor_array(torch, value) if isinstance(value, torch.Tensor) else np.asarray(
            value, np.float64)

    if op in ("identity", "dropout", "contiguous", "clone", "detach"):
        return []                                 # Dropout is the identity at inference
    if op in ("relu", "sigmoid", "tanh", "silu"):
        return [Activation(op)]
    if op == "linear":
        return [Linear(array(a["weight"]), array(a.get("bias")))]
    if op == "leaky_relu":
        return [Activation("leaky_relu", _scalar(a.get("negative_slope", 0.01)))]
    if op == "elu":
        if _scalar(a.get("scale", 1)) != 1 or _scalar(a.get("input_scale", 1)) != 1:
            raise ValueError(f"{where}: only ELU with scale=1 and input_scale=1 is supported")
        return [Activation("elu", _scalar(a.get("alpha", 1.0)))]
    if op == "gelu":
        approximate = a.get("approximate", "none")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"{where}: unknown approximate={approximate!r}")
        return [Activation("gelu" if approximate == "none" else "gelu_tanh")]
    if op == "softplus":
        # PyTorch returns x itself above the threshold, within 2e-9 of softplus from 20 on.
        beta, threshold = _scalar(a.get("beta", 1)), _scalar(a.get("threshold", 20))
        if beta != 1 or threshold < 20:
            raise ValueError(f"{where}: only Softplus with beta=1 and threshold >= 20 is "
                             f"supported, got beta={a.get('beta')}, threshold={a.get('threshold')}")
        return [Activation("softplus")]
    if op == "softmax":
        if a.get("dim") not in (-1, 1):
            raise ValueError(f"{where}: only Softmax over the features (dim=-1) is supported, "
                             f"got dim={a.get('dim')}")
        return [Activation("softmax")]
    if op == "flatten":
        start, end = a.get("start_dim", 0), a.get("end_dim", -1)
        if start not in (1, -1) or end != -1:
            raise ValueError(f"{where}: only Flatten(start_dim=1, end_dim=-1) is supported, "
                             f"got start_dim={start}, end_dim={end}")
        return []
    if op in ("batch_norm", "native_batch_norm"):
        if a.get("running_mean") is None or a.get("running_var") is None:
            raise ValueError(f"{where}: BatchNorm without running statistics normalises with "
                             f"each batch's own statistics, which is not a function of one "
                             f"sample")
        return [Affine.batch_norm(array(a["running_mean"]), array(a["running_var"]),
                                  array(a.get("weight")), array(a.get("bias")),
                                  _scalar(a.get("eps", 1e-5)), where)]
    if op in ("layer_norm", "native_layer_norm"):
        shape = tuple(a["normalized_shape"])
        if len(shape) != 1:
            raise ValueError(f"{where}: only LayerNorm over the last axis (normalized_shape "
                             f"of one size) is supported, got normalized_shape={list(shape)}")
        return [Norm(array(a.get("weight")), array(a.get("bias")), _scalar(a.get("eps", 1e-5)),
                     width=int(shape[0]), source=where)]
    if op in ("add", "sub", "mul", "div"):
        return [_elementwise_affine(op, a, array, where)]
    raise ValueError(f"{where}: unsupported PyTorch operator {op}; supported: {TORCH_MODULES}")


def _elementwise_affine(op: str, a: dict[str, Any], array: Callable[[Any], Any],
                        where: str) -> Affine:
    """x + c, c + x, x - c, c - x, x * c, c * x and x / c with a constant c, as an Affine."""
    first, other = a["input"], a["other"]
    chain_first = first is CHAIN
    constant = np.asarray(array(other if chain_first else first))
    if chain_first == (other is CHAIN) or any(size != 1 for size in constant.shape[:-1]):
        raise ValueError(f"{where}: only {op} of the features and a constant scalar or "
                         f"per-feature vector is supported")
    constant = constant.reshape(-1)
    alpha = _scalar(a.get("alpha", 1))
    if op == "add":
        return Affine(1.0, constant * (alpha if chain_first else 1.0),
                      where) if chain_first else Affine(alpha, constant, where)
    if op == "sub":
        return Affine(1.0, -alpha * constant, where) if chain_first else Affine(
            -alpha, constant, where)
    if op == "mul":
        return Affine(constant, 0.0, where)
    if not chain_first:
        raise ValueError(f"{where}: a constant divided by the features is not a linear map")
    return Affine(1.0 / constant, 0.0, where)


# --------------------------------------------------------------------------------------------
# Graphs: torch.fx (traced modules, exported programs) and TorchScript
# --------------------------------------------------------------------------------------------


def _ancestors(output: Any, inputs_of: Callable[[Any], Iterable[Any]]) -> set[Any]:
    """The nodes that ``output`` depends on, itself included."""
    seen, stack = set(), [output]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(inputs_of(node))
    return seen


def _graph_module_steps(torch: Any, graph_module: Any, where: str) -> list[Step]:
    """The steps of a torch.fx GraphModule whose graph is a chain from its input."""
    nodes = list(graph_module.graph.nodes)
    output = next(node for node in nodes if node.op == "output")
    result = output.args[0]
    if isinstance(result, (tuple, list)) and len(result) == 1:
        result = result[0]
    if not isinstance(result, torch.fx.Node):
        raise ValueError(f"{where}: its forward must return one tensor, got {result!r}")
    needed = _ancestors(result, lambda node: node.all_input_nodes)
    inputs = [node for node in nodes if node.op == "placeholder" and node in needed]
    if len(inputs) != 1:
        raise ValueError(f"{where}: its forward must take one tensor, got "
                         f"{[node.name for node in inputs]}")
    current, steps = inputs[0], []
    for node in nodes:
        if node not in needed or node.op in ("placeholder", "get_attr", "output"):
            continue
        at = f"{where}: {node.format_node()}" if node.op != "call_module" else (
            f"{where}.{node.target}" if where else node.target)
        chained = [n for n in node.all_input_nodes if n.op != "get_attr"]
        if chained != [current]:
            raise ValueError(f"{at}: the forward is not a chain of layers (this node takes "
                             f"{[n.name for n in chained]}, the chain is at {current.name!r})")

        args = tuple(_argument(torch, graph_module, argument, current) for argument in node.args)
        kwargs = {key: _argument(torch, graph_module, argument, current)
                  for key, argument in node.kwargs.items()}
        if node.op == "call_module":
            if args != (CHAIN,) or kwargs:
                raise ValueError(f"{at}: a module called with more than the features")
            steps += _module_steps(torch, graph_module.get_submodule(node.target), at)
        else:
            if node.op == "call_method":
                name = _canonical(node.target)
                arguments = _bind(name, _BUILTIN_PARAMETERS.get(name, (("input", None),)),
                                  args, kwargs, at)
            else:
                name, arguments = _function_arguments(node.target, args, kwargs, at)
            if name == "getitem":
                if arguments.get("other") != 0:
                    raise ValueError(f"{at}: only the first result of an operator is supported")
            elif arguments.get("input") is not CHAIN and name not in ("add", "sub", "mul", "div"):
                raise ValueError(f"{at}: the features must be its first argument")
            else:
                steps += _op_steps(torch, name, arguments, at)
        current = node
    return steps


def _argument(torch: Any, graph_module: Any, argument: Any, current: Any) -> Any:
    """A node's argument with the chained tensor as CHAIN and parameters as tensors."""
    if isinstance(argument, torch.fx.Node):
        if argument is current:
            return CHAIN
        value = graph_module
        for part in argument.target.split("."):                # a get_attr node
            value = getattr(value, part)
        return value
    if isinstance(argument, (tuple, list)):
        return type(argument)(_argument(torch, graph_module, item, current) for item in argument)
    return argument


def _script_steps(torch: Any, module: Any) -> list[Step]:
    """The steps of a TorchScript module (scripted or traced), frozen in eval mode."""
    where = f"the TorchScript module {getattr(module, 'original_name', type(module).__name__)}"
    training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():         # freeze is deprecated, and the way to read it
            warnings.simplefilter("ignore", DeprecationWarning)
            frozen = torch.jit.freeze(module)
    except Exception as error:
        raise ValueError(f"{where}: TorchScript cannot freeze it ({type(error).__name__}: "
                         f"{error})") from None
    finally:
        module.train(training)
    graph = frozen.graph
    inputs = list(graph.inputs())[1:]                      # the first one is self
    if len(inputs) != 1:
        raise ValueError(f"{where}: its forward must take one tensor, got {len(inputs)} inputs")
    outputs = list(graph.outputs())
    if len(outputs) != 1:
        raise ValueError(f"{where}: its forward must return one tensor")
    needed = _ancestors(outputs[0].node(), lambda n: (value.node() for value in n.inputs()))
    constants: dict[Any, Any] = {}
    current, steps = inputs[0], []
    for node in graph.nodes():
        if node not in needed:
            continue
        kind = node.kind()
        if kind == "prim::Constant":
            constants[node.output()] = node.output().toIValue()
            continue
        if kind == "prim::ListConstruct" and all(v in constants for v in node.inputs()):
            constants[node.output()] = [constants[v] for v in node.inputs()]
            continue
        at = f"{where}: {str(node).strip()}"
        if not kind.startswith("aten::") or node.outputsSize() != 1:
            raise ValueError(f"{at}: unsupported TorchScript operation {kind}")
        chained = [v for v in node.inputs() if v not in constants]
        if chained != [current]:
            raise ValueError(f"{at}: the forward is not a chain of layers")
        name = kind.split("::")[1]
        schema = torch._C.parse_schema(node.schema())
        parameters = [(argument.name, None) for argument in schema.arguments]
        args = tuple(CHAIN if v is current else constants[v] for v in node.inputs())
        arguments = _bind(name, parameters, args, {}, at)
        name = _canonical(name)
        if arguments.get("input") is not CHAIN and name not in ("add", "sub", "mul", "div"):
            raise ValueError(f"{at}: the features must be its first argument")
        steps += _op_steps(torch, name, arguments, at)
        current = node.output()
    if current is not outputs[0]:
        raise ValueError(f"{where}: its result is not computed from its input")
    return steps
