"""The implementations measured by bench/run.py, each built from one nnexposed.Network.

Every builder takes (network, x) and returns a ``Prepared``: ``call(*args)`` is the timed
forward pass (everything it needs — a torch tensor, an ONNX Runtime session, a JIT-compiled
function — is prepared beforehand, outside the timing), run inside ``context()``; ``info`` holds
the settings worth recording (threads, versions). A builder raises ``Unavailable`` when its
package is not installed or the case does not apply (the parallel numba variant at batch 1).

The peers run the same weights as the nnexposed network: ReLU hidden layers, linear output.
"""

import contextlib
import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

import nnexposed
from nnexposed.reference import forward_numpy

# Column order of the results; nnexposed first, NumPy (the ratio base) second.
IMPLEMENTATIONS = ["nnexposed", "numpy", "torch", "onnxruntime", "numba", "numba-parallel",
                   "onnxruntime-int8", "torch-int8", "torch-bf16", "openvino-bf16",
                   "nnexposed-float32"]
LABELS = {
    "nnexposed": "nnexposed",
    "numpy": "NumPy",
    "torch": "PyTorch eager",
    "onnxruntime": "ONNX Runtime",
    "numba": "numba",
    "numba-parallel": "numba prange",
    "onnxruntime-int8": "ORT int8",
    "torch-int8": "torch int8",
    "torch-bf16": "torch bf16",
    "openvino-bf16": "OpenVINO bf16",
    "nnexposed-float32": "nnexposed fp32",
}
# The peers of a reduced-precision nnexposed network (not NumPy: its reference emulation of
# int8 sums in int64 without BLAS, minutes on the big cases).
# ORT int8: onnxruntime.quantization.quantize_dynamic(QInt8) of the float model (MatMulInteger
# with DynamicQuantizeLinear); torch int8: torch.ao.quantization.quantize_dynamic(qint8);
# torch bf16: the float model and input .to(torch.bfloat16); OpenVINO bf16: the float ONNX
# model compiled for CPU with INFERENCE_PRECISION_HINT bf16 (optional: pip install openvino).
PRECISION_IMPLEMENTATIONS = {
    "float32": IMPLEMENTATIONS[:6],
    "float64": IMPLEMENTATIONS[:6],
    "int8": ["nnexposed", "onnxruntime-int8", "torch-int8", "nnexposed-float32"],
    "bfloat16": ["nnexposed", "torch-bf16", "openvino-bf16", "nnexposed-float32"],
    "float16": ["nnexposed", "nnexposed-float32"],
}


class Unavailable(Exception):
    """The implementation cannot be measured here (missing package, case not applicable)."""


@dataclasses.dataclass
class Prepared:
    call: Callable
    args: tuple
    info: dict
    context: Callable[[], Any] = contextlib.nullcontext


def cpu_count():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _relu_linear(network):
    """Each layer's (weights, biases, relu?) — the peers implement only ReLU/linear layers.
    Reduced-precision networks give their weights dequantized to float32."""
    layers = []
    if network.precision not in ("float32", "float64"):
        network = network.astype("float32")
    for k, layer in enumerate(network.layers):
        if layer.activation not in ("relu", "linear"):
            raise Unavailable(f"layer {k} uses {layer.activation!r}; the peers implement "
                              f"relu and linear only")
        layers.append((layer.weights, layer.biases, layer.activation == "relu"))
    return layers


def _as_2d(x):
    return x.reshape(1, -1) if x.ndim == 1 else x


# --------------------------------------------------------------------------------------------
# nnexposed and NumPy
# --------------------------------------------------------------------------------------------


def build_nnexposed(network, x):
    get_threads = getattr(nnexposed, "get_num_threads", None)
    info = {"threads": get_threads() if get_threads is not None else None}
    return Prepared(nnexposed.forward, (network, x), info)


def build_numpy(network, x):
    info = {}
    try:
        import threadpoolctl

        pools = [pool for pool in threadpoolctl.threadpool_info()
                 if pool.get("user_api") == "blas"]
        if pools:
            info = {"blas": pools[0].get("internal_api"), "blas_version": pools[0].get("version"),
                    "threads": pools[0].get("num_threads"),
                    "blas_architecture": pools[0].get("architecture")}
    except ImportError:
        pass
    return Prepared(forward_numpy, (network, x), info)


# --------------------------------------------------------------------------------------------
# PyTorch eager
# --------------------------------------------------------------------------------------------


def build_torch(network, x):
    try:
        import torch
    except ImportError:
        raise Unavailable("torch is not installed (pip install '.[bench]')") from None
    dtype = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}[x.dtype]
    modules = []
    for weights, biases, relu in _relu_linear(network):
        linear = torch.nn.Linear(weights.shape[1], weights.shape[0], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weights.copy()))
            linear.bias.copy_(torch.from_numpy(biases.copy()))
        modules.append(linear)
        if relu:
            modules.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*modules).eval()
    xt = torch.from_numpy(x)  # created once, outside the timed call (shares x's memory)
    info = {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "mode": "torch.inference_mode(), input tensor made beforehand"}
    return Prepared(model, (xt,), info, torch.inference_mode)


def torch_conversion_us(x, y, time_per_call, repeat):
    """µs of torch.from_numpy(x) and of result.numpy(): what a NumPy caller adds to the call."""
    import torch

    yt = torch.from_numpy(np.ascontiguousarray(y))
    return (1e6 * time_per_call(torch.from_numpy, x, repeat=repeat),
            1e6 * time_per_call(yt.numpy, repeat=repeat))


# --------------------------------------------------------------------------------------------
# ONNX Runtime (graph built directly with onnx.helper: Gemm + Relu)
# --------------------------------------------------------------------------------------------


def onnx_model(network, matmul=False):
    """The network as an ONNX ModelProto: Gemm(x, W, b, transB=1) then Relu per hidden layer;
    with ``matmul``, MatMul(x, W.T) + Add(b) instead of Gemm (what ORT's quantize_dynamic turns
    into DynamicQuantizeLinear + MatMulInteger)."""
    from onnx import TensorProto, helper, numpy_helper

    elem = {np.dtype("float32"): TensorProto.FLOAT,
            np.dtype("float64"): TensorProto.DOUBLE}[network.dtype]
    nodes, initializers = [], []
    name = "x"
    for k, (weights, biases, relu) in enumerate(_relu_linear(network)):
        weights = np.ascontiguousarray(weights.T if matmul else weights)
        initializers += [numpy_helper.from_array(weights, f"W{k}"),
                         numpy_helper.from_array(np.ascontiguousarray(biases), f"b{k}")]
        if matmul:
            nodes += [helper.make_node("MatMul", [name, f"W{k}"], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", f"b{k}"], [f"z{k}"])]
        else:
            nodes.append(helper.make_node("Gemm", [name, f"W{k}", f"b{k}"], [f"z{k}"],
                                          transB=1))
        name = f"z{k}"
        if relu:
            nodes.append(helper.make_node("Relu", [name], [f"a{k}"]))
            name = f"a{k}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes, "nnexposed_mlp",
        [helper.make_tensor_value_info("x", elem, ["batch", network.n_in])],
        [helper.make_tensor_value_info("y", elem, ["batch", network.n_out])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="nnexposed-bench")
    model.ir_version = 8  # readable by every onnxruntime of the last years
    return model


def build_onnxruntime(network, x):
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        missing = exc.name or "onnx"
        raise Unavailable(f"{missing} is not installed (pip install '.[bench]')") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_count()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_model(network).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    info = {"version": ort.__version__, "onnx_version": onnx.__version__,
            "threads": options.intra_op_num_threads,
            "providers": session.get_providers(),
            "graph_optimization": str(options.graph_optimization_level).split(".")[-1]}
    return Prepared(session.run, (["y"], {"x": _as_2d(x)}), info)


def build_onnxruntime_int8(network, x):
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        missing = exc.name or "onnx"
        raise Unavailable(f"{missing} is not installed (pip install '.[bench]')") from None
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        plain, quantized = os.path.join(folder, "model.onnx"), os.path.join(folder, "int8.onnx")
        onnx.save(onnx_model(network, matmul=True), plain)
        quantize_dynamic(plain, quantized, weight_type=QuantType.QInt8)
        model_bytes = open(quantized, "rb").read()
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_count()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    info = {"version": ort.__version__, "threads": options.intra_op_num_threads,
            "mode": "quantize_dynamic(weight_type=QInt8): DynamicQuantizeLinear+MatMulInteger"}
    return Prepared(session.run, (["y"], {"x": _as_2d(x)}), info)


def _torch_reduced(network, x, mode):
    try:
        import torch
    except ImportError:
        raise Unavailable("torch is not installed (pip install '.[bench]')") from None
    float_model = build_torch(network.astype("float32"), x.astype(np.float32)).call
    xt = torch.from_numpy(_as_2d(x))
    if mode == "int8":
        model = torch.ao.quantization.quantize_dynamic(float_model, {torch.nn.Linear},
                                                       dtype=torch.qint8)
        description = "torch.ao.quantization.quantize_dynamic(qint8)"
    else:
        model, xt = float_model.to(torch.bfloat16), xt.to(torch.bfloat16)
        description = "model and input .to(torch.bfloat16)"
    info = {"version": torch.__version__, "threads": torch.get_num_threads(),
            "mode": f"{description}, torch.inference_mode(), input tensor made beforehand"}
    return Prepared(model, (xt,), info, torch.inference_mode)


def build_torch_int8(network, x):
    return _torch_reduced(network, x, "int8")


def build_torch_bf16(network, x):
    return _torch_reduced(network, x, "bf16")


def build_openvino_bf16(network, x):
    try:
        import openvino
    except ImportError:
        raise Unavailable("openvino is not installed (pip install openvino)") from None
    core = openvino.Core()
    model = core.read_model(onnx_model(network.astype("float32")).SerializeToString(), b"")
    x2 = np.ascontiguousarray(_as_2d(x), np.float32)
    model.reshape([x2.shape[0], network.n_in])   # static shapes, as a deployment would set
    config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": cpu_count(),
              "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def call(inputs):
        return request.infer({0: inputs})[output]

    info = {"version": openvino.__version__, "threads": cpu_count(),
            "precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "mode": "core.compile_model(onnx, 'CPU', INFERENCE_PRECISION_HINT=bf16, "
                    "LATENCY), static shape, one infer request made beforehand"}
    return Prepared(call, (x2,), info)


def build_nnexposed_float32(network, x):
    return build_nnexposed(network.astype("float32"), x)


# --------------------------------------------------------------------------------------------
# numba: plain loops, @njit(fastmath=False); a prange variant over tiles of samples
# --------------------------------------------------------------------------------------------
#
# The loops are written the way a numba user writes a fast one: weights transposed once to
# (n_in, n_out), outputs initialised to the biases, then for each input ``out[:] += w[i] * x[i]``
# with the output index innermost. That loop has no reduction, so LLVM vectorises it without
# fastmath (the dot-product order, ``for j: for i: s += w[j, i] * x[i]``, stays scalar and is
# 4-7x slower on N2-N4); each output still sums its terms in input order.

NUMBA_TILE = 64  # samples per prange iteration (buffers are allocated once per tile)
_numba_functions = None


def _numba():
    """The numba kernels, compiled lazily (importing numba is slow)."""
    global _numba_functions
    if _numba_functions is None:
        import numba

        @numba.njit(fastmath=False, cache=False)
        def sample(x, s, weights_t, biases, relus, a, b, out):
            n = x.shape[1]
            for i in range(n):
                a[i] = x[s, i]
            for k in range(len(weights_t)):
                w = weights_t[k]
                bias = biases[k]
                m = w.shape[1]
                for j in range(m):
                    b[j] = bias[j]
                for i in range(n):
                    xi = a[i]
                    for j in range(m):
                        b[j] += w[i, j] * xi
                if relus[k]:
                    for j in range(m):
                        if b[j] < 0:
                            b[j] = 0
                n = m
                a, b = b, a
            for j in range(n):
                out[s, j] = a[j]

        @numba.njit(fastmath=False, cache=False)
        def forward(x, weights_t, biases, relus, width):
            out = np.empty((x.shape[0], weights_t[len(weights_t) - 1].shape[1]), x.dtype)
            a = np.empty(width, x.dtype)
            b = np.empty(width, x.dtype)
            for s in range(x.shape[0]):
                sample(x, s, weights_t, biases, relus, a, b, out)
            return out

        @numba.njit(fastmath=False, cache=False, parallel=True)
        def forward_parallel(x, weights_t, biases, relus, width):
            batch = x.shape[0]
            out = np.empty((batch, weights_t[len(weights_t) - 1].shape[1]), x.dtype)
            for t in numba.prange((batch + NUMBA_TILE - 1) // NUMBA_TILE):
                a = np.empty(width, x.dtype)
                b = np.empty(width, x.dtype)
                for s in range(t * NUMBA_TILE, min(batch, (t + 1) * NUMBA_TILE)):
                    sample(x, s, weights_t, biases, relus, a, b, out)
            return out

        _numba_functions = numba, forward, forward_parallel
    return _numba_functions


def _build_numba(network, x, parallel):
    try:
        numba, forward, forward_parallel = _numba()
    except ImportError:
        raise Unavailable("numba is not installed (pip install '.[bench]')") from None
    if parallel and x.ndim == 1:
        raise Unavailable("batch 1: no parallel variant")
    layers = _relu_linear(network)
    weights_t = tuple(np.ascontiguousarray(w.T) for w, _, _ in layers)  # (n_in, n_out)
    biases = tuple(np.array(b) for _, b, _ in layers)
    relus = np.array([relu for _, _, relu in layers])
    width = max(network.sizes)
    func = forward_parallel if parallel else forward
    args = (_as_2d(x), weights_t, biases, relus, width)
    func(*args)  # JIT compilation, outside any timing
    info = {"version": numba.__version__,
            "threads": numba.get_num_threads() if parallel else 1,
            "flags": "njit(fastmath=False, cache=False"
                     + (", parallel=True)" if parallel else ")"),
            "loops": "weights transposed beforehand, output index innermost"}
    if parallel:
        info["threading_layer"] = numba.threading_layer()
        info["tile"] = NUMBA_TILE
    return Prepared(func, args, info)


def build_numba(network, x):
    return _build_numba(network, x, parallel=False)


def build_numba_parallel(network, x):
    return _build_numba(network, x, parallel=True)


BUILDERS = {
    "nnexposed": build_nnexposed,
    "numpy": build_numpy,
    "torch": build_torch,
    "onnxruntime": build_onnxruntime,
    "numba": build_numba,
    "numba-parallel": build_numba_parallel,
    "onnxruntime-int8": build_onnxruntime_int8,
    "torch-int8": build_torch_int8,
    "torch-bf16": build_torch_bf16,
    "openvino-bf16": build_openvino_bf16,
    "nnexposed-float32": build_nnexposed_float32,
}


def output_of(name, result):
    """The NumPy array of an implementation's result (ONNX Runtime returns a list)."""
    if name.startswith("onnxruntime"):
        result = result[0]
    elif name.startswith("torch"):
        result = result.float().numpy()
    return np.asarray(result)
