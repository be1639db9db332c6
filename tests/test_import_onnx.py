"""ONNX importer: graphs from torch.onnx.export (both exporters) and skl2onnx, and hand-made
graphs, against PyTorch, scikit-learn and ONNX Runtime."""

import io
import sys
import warnings

import numpy as np
import pytest

import nnexposed
from nnexposed import Network
from tests.helpers import DTYPES
from tests.import_helpers import (
    LIBRARY_TOLERANCES,
    assert_matches_library,
    fit_quietly,
    random_sequential,
    sklearn_data,
    torch_activations,
    torch_output,
)


def export_legacy(torch, model, n_in, dtype, opset=None):
    """The ONNX bytes of ``model`` from PyTorch's TorchScript exporter, batch axis dynamic."""
    buffer = io.BytesIO()
    example = torch.zeros((2, n_in), dtype=torch.float64 if dtype == np.float64 else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}})
    return buffer.getvalue()


def onnxruntime_output(model_bytes, x, output=None):
    """ONNX Runtime's result, or None where it has no kernel (e.g. float64 Elu)."""
    ort = sys.modules["onnxruntime"]
    try:
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    except ort.capi.onnxruntime_pybind11_state.NotImplemented:
        assert x.dtype == np.float64, "ONNX Runtime runs every float32 graph used here"
        return None
    names = None if output is None else [output]
    return session.run(names, {session.get_inputs()[0].name: x})[0]


def check_onnx(model_bytes, model, x, dtype):
    """The network imported from the ONNX bytes against PyTorch and ONNX Runtime.

    In float64 both agree only to float32 precision: ONNX stores attributes such as Elu's
    alpha as float32, and ONNX Runtime computes some float64 operators (Gelu's tanh
    approximation) with float32 constants. The float64 arithmetic itself is checked
    exactly against ``from_torch`` by the caller.
    """
    network = Network.from_onnx(model_bytes)
    assert network.dtype == dtype
    result = network(x)
    tolerance = LIBRARY_TOLERANCES[np.dtype(np.float32)]
    np.testing.assert_allclose(result, torch_output(model, x), **tolerance)
    expected = onnxruntime_output(model_bytes, x)
    if expected is not None:
        np.testing.assert_allclose(result, expected, **tolerance)
    return network


def assert_same_layers(imported, expected, exact=True):
    """Same activations and arrays (exact=False: to float32 rounding, where folding scalers
    rounds differently); alphas equal up to ONNX's float32 attributes."""
    assert imported.sizes == expected.sizes and imported.dtype == expected.dtype
    compare = np.testing.assert_array_equal if exact else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6))
    for a, b in zip(imported.layers, expected.layers, strict=True):
        assert a.activation == b.activation
        if a.activation in ("leaky_relu", "elu"):
            assert a.alpha == float(np.float32(b.alpha))
        compare(a.weights, b.weights)
        compare(a.biases, b.biases)


@pytest.mark.parametrize("seed", range(24))
def test_onnx_exported_from_random_torch_models(seed):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model, n_in = random_sequential(torch, 1000 + seed)
    dtype = DTYPES[seed % 2]
    model = model.to(torch.float64 if dtype == np.float64 else torch.float32)
    x = (np.random.default_rng(seed).standard_normal((13, n_in)) * 3).astype(dtype)
    network = check_onnx(export_legacy(torch, model, n_in, dtype), model, x, dtype)
    assert_same_layers(network, Network.from_torch(model))


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("seed", range(3))
def test_onnx_older_opsets(seed, opset):
    """Below opset 20 PyTorch writes GELU as Div, Erf, Add, Mul (or Pow, Tanh for the tanh
    approximation) and SiLU as Sigmoid, Mul: the importer recognises the subgraphs."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model, n_in = random_sequential(torch, 2000 + seed)
    x = (np.random.default_rng(seed).standard_normal((5, n_in)) * 3).astype(np.float32)
    network = check_onnx(export_legacy(torch, model, n_in, np.float32, opset=opset), model, x,
                         np.float32)
    assert_same_layers(network, Network.from_torch(model))


@pytest.mark.parametrize("approximate, name", [("none", "gelu"), ("tanh", "gelu_tanh")])
def test_onnx_decomposed_gelu(approximate, name):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(approximate),
                                torch.nn.GELU(approximate), torch.nn.Linear(4, 2)).eval()
    network = Network.from_onnx(export_legacy(torch, model, 3, np.float32, opset=17))
    assert [layer.activation for layer in network.layers] == [name, name, "linear"]
    x = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32) * 3
    assert_matches_library(network(x), torch_output(model, x), np.float32)


def test_onnx_dynamo_exporter_every_activation(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnxscript", reason="onnxscript (the dynamo exporter) is not installed")
    nn = torch.nn
    torch.manual_seed(3)
    makers = torch_activations(nn)
    layers = []
    for name in makers:
        layers += [nn.Linear(5, 5, bias=name != "tanh"), makers[name]()]
    model = nn.Sequential(*layers, nn.Linear(5, 2)).eval()
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 5),), path, dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    x = (np.random.default_rng(0).standard_normal((11, 5)) * 3).astype(np.float32)
    network = check_onnx(path.read_bytes(), model, x, np.float32)
    assert_same_layers(network, Network.from_torch(model))
    assert_matches_library(Network.from_onnx(path)(x), network(x), np.float32)
    assert_matches_library(Network.from_onnx(str(path))(x), network(x), np.float32)


# Hand-made graphs: Gemm options, MatMul + Add, Constant nodes, and what is refused.


def onnx_graph(nodes, initializers, inputs=("x",), outputs=("y",), n_in=3, opset=13,
               dtype=np.float32):
    """An ONNX model of ``nodes`` (specs from ``node``) and float ``initializers``."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    element = onnx.TensorProto.DOUBLE if dtype == np.float64 else onnx.TensorProto.FLOAT

    def make(spec):
        op, node_inputs, node_outputs, attributes = spec
        attributes = {key: numpy_helper.from_array(value) if isinstance(value, np.ndarray)
                      else value for key, value in attributes.items()}
        return helper.make_node(op, node_inputs, node_outputs, **attributes)

    graph = helper.make_graph(
        [make(spec) for spec in nodes], "mlp",
        [helper.make_tensor_value_info(name, element, ["b", n_in]) for name in inputs],
        [helper.make_tensor_value_info(name, element, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(value, dtype), name)
         for name, value in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid("ai.onnx.ml", 3)])


def node(op, inputs, outputs, **attributes):
    """A node's spec, made into an ONNX node by onnx_graph (collecting needs no onnx);
    ndarray attributes become tensors, and an op "ml.X" is X of the ai.onnx.ml domain."""
    if op.startswith("ml."):
        attributes["domain"] = "ai.onnx.ml"
        op = op[3:]
    return op, list(inputs), list(outputs), attributes


def test_onnx_gemm_attributes_and_matmul_add(rng):
    w1 = rng.standard_normal((3, 4))                      # (n_in, n_out) for transB=0
    c1 = rng.standard_normal((1, 4))
    w2 = rng.standard_normal((2, 4))                      # (n_out, n_in) for transB=1
    w3 = rng.standard_normal((2, 3))
    b3 = rng.standard_normal(3)
    model = onnx_graph([
        node("Gemm", ["x", "w1", "c1"], ["h1"], alpha=0.5, beta=2.0),
        node("LeakyRelu", ["h1"], ["a1"], alpha=0.3),
        node("Gemm", ["a1", "w2"], ["h2"], transB=1),
        node("Elu", ["h2"], ["a2"], alpha=0.7),
        node("MatMul", ["a2", "w3"], ["h3"]),
        node("Constant", [], ["b3"], value=b3.astype(np.float32)),
        node("Add", ["b3", "h3"], ["h4"]),
        node("Identity", ["h4"], ["h5"]),
        node("Softmax", ["h5"], ["y"], axis=1),
    ], {"w1": w1, "c1": c1, "w2": w2, "w3": w3})
    network = Network.from_onnx(model)
    assert [layer.activation for layer in network.layers] == ["leaky_relu", "elu", "softmax"]
    assert network.layers[0].alpha == pytest.approx(0.3)
    assert network.layers[1].alpha == pytest.approx(0.7)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    h = nnexposed.leaky_relu(0.5 * x @ w1 + 2.0 * c1, 0.3)
    h = nnexposed.elu(h @ w2.T, 0.7)
    expected = nnexposed.softmax(h @ w3 + b3)
    assert_matches_library(network(x), expected.astype(np.float32), np.float32)
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    assert_matches_library(network(x), onnxruntime_output(model.SerializeToString(), x),
                           np.float32)


@pytest.mark.parametrize("nodes, initializers, kwargs, message", [
    ([node("Conv", ["x", "w"], ["y"])], {"w": np.ones((1, 1, 1))}, {},
     "tensor 'x' feeds Conv: unsupported ONNX operators"),
    # Element-wise, but neither an activation nor a scaler: x * x + 1, x * (a matrix), c / x.
    ([node("MatMul", ["x", "w"], ["h"]), node("Mul", ["h", "h"], ["s"]),
      node("Add", ["s", "one"], ["y"])], {"w": np.ones((3, 3)), "one": np.ones(1)}, {},
     "tensor 'h' feeds Mul: unsupported"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Mul", ["h", "c"], ["y"])],
     {"w": np.ones((3, 3)), "c": np.ones((3, 3))}, {}, "tensor 'h' feeds Mul: unsupported"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Div", ["c", "h"], ["y"])],
     {"w": np.ones((3, 3)), "c": np.ones(3)}, {}, "tensor 'h' feeds Div: unsupported"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Mul", ["h", "c"], ["y"])],
     {"w": np.ones((3, 3)), "c": np.ones(4)}, {}, "has 4 features where 3 are expected"),
    ([node("MatMul", ["x", "w"], ["h"]),
      node("BatchNormalization", ["h", "s", "b", "m", "v"], ["y"], training_mode=1)],
     {"w": np.ones((3, 3)), "s": np.ones(3), "b": np.ones(3), "m": np.ones(3), "v": np.ones(3)},
     {}, "training_mode=1"),
    ([node("MatMul", ["x", "w"], ["h"]),
      node("LayerNormalization", ["h", "s", "b"], ["y"], axis=0)],
     {"w": np.ones((3, 3)), "s": np.ones(3), "b": np.ones(3)}, {"opset": 17},
     "only axis=-1"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Cast", ["h"], ["y"], to=7)],
     {"w": np.ones((3, 3))}, {}, "only casts to a floating type"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Reshape", ["h", "s"], ["y"])],
     {"w": np.ones((3, 3)), "s": np.array([1, -1])}, {}, r"only reshapes to \(batch, 3\)"),
    ([node("Reshape", ["x", "s"], ["y"])], {"s": np.array([-1, 3])}, {},
     "comes before any Gemm or MatMul"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Relu", ["h"], ["r"]),
      node("Add", ["r", "h"], ["y"])],
     {"w": np.ones((3, 3))}, {}, "tensor 'h' feeds Relu, Add"),
    ([node("MatMul", ["w", "x"], ["y"])], {"w": np.ones((3, 3))}, {}, "as a weight operand"),
    ([node("MatMul", ["x", "x2"], ["y"])], {}, {"inputs": ("x", "x2")},
     r"one input, got inputs \['x', 'x2'\]"),
    ([node("MatMul", ["x", "w"], ["y"]), node("Relu", ["y"], ["z"])], {"w": np.ones((3, 3))},
     {"outputs": ("y", "z")}, r"has outputs \['y', 'z'\]; choose one with output="),
    ([node("Gemm", ["x", "w"], ["y"], transA=1)], {"w": np.ones((3, 3))}, {}, "transA=1"),
    ([node("Gemm", ["x", "w", "c"], ["y"])], {"w": np.ones((3, 2)), "c": np.ones(3)}, {},
     r"bias of shape \(3,\) does not fit 2 outputs"),
    ([node("Relu", ["x"], ["y"])], {}, {}, "no linear layer"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Softmax", ["h"], ["y"], axis=0)],
     {"w": np.ones((3, 3))}, {}, "only axis=-1"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Flatten", ["h"], ["y"], axis=0)],
     {"w": np.ones((3, 3))}, {}, "only axis=1"),
    ([node("MatMul", ["x", "w"], ["h"])], {"w": np.ones((3, 3))}, {}, "feeds nothing"),
])
def test_onnx_unsupported_graphs(nodes, initializers, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Network.from_onnx(onnx_graph(nodes, initializers, **kwargs))


def test_onnx_output_choice_and_decomposed_silu(rng):
    w = rng.standard_normal((3, 3))
    model = onnx_graph([
        node("MatMul", ["x", "w"], ["h"]), node("Sigmoid", ["h"], ["s"]),
        node("Mul", ["s", "h"], ["y"]), node("Neg", ["y"], ["z"]),
    ], {"w": w}, outputs=("y", "z"))
    network = Network.from_onnx(model, output="y")
    assert [layer.activation for layer in network.layers] == ["silu"]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert_matches_library(network(x), nnexposed.silu(x @ w.astype(np.float32)), np.float32)
    with pytest.raises(ValueError, match=r"no output 'q' in the ONNX graph; its outputs are"):
        Network.from_onnx(model, output="q")
    with pytest.raises(ValueError, match="tensor 'y' feeds Neg"):
        Network.from_onnx(model, output="z")


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression", "multi-output"])
def test_onnx_from_skl2onnx(kind):
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    x, y = sklearn_data(kind, np.float32)
    if kind in ("binary", "multiclass"):
        estimator = neural_network.MLPClassifier(hidden_layer_sizes=(6, 5), activation="tanh",
                                                 max_iter=60, random_state=0)
        options, expected = {"zipmap": False}, "predict_proba"
    else:
        estimator = neural_network.MLPRegressor(hidden_layer_sizes=(6,), max_iter=60,
                                                random_state=0)
        options, expected = None, "predict"
    fit_quietly(estimator, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = skl2onnx.to_onnx(estimator, x[:1], options=options)
    if kind == "multi-output":
        # skl2onnx ends this graph with Reshape(-1, 1): its output is (2 * batch, 1).
        assert onnxruntime_output(model.SerializeToString(), x).shape == (2 * len(x), 1)
        with pytest.raises(ValueError, match=r"only reshapes to \(batch, 2\).*\[-1, 1\]"):
            Network.from_onnx(model)
        return
    network = Network.from_onnx(model)
    assert_same_layers(network, Network.from_sklearn(estimator))
    want = getattr(estimator, expected)(x).reshape(len(x), -1)
    assert_matches_library(network(x), want.astype(np.float32), np.float32)
    output = "probabilities" if expected == "predict_proba" else None
    assert_matches_library(network(x), onnxruntime_output(model.SerializeToString(), x, output)
                           .reshape(len(x), -1), np.float32)


def test_onnx_bad_files(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed")
    with pytest.raises(FileNotFoundError):
        Network.from_onnx(tmp_path / "absent.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00\xff not protobuf \xff")
    with pytest.raises(ValueError, match="bad.onnx: not a readable ONNX model"):
        Network.from_onnx(tmp_path / "bad.onnx")
    with pytest.raises(TypeError, match="path, bytes or an onnx.ModelProto, got int"):
        Network.from_onnx(3)


# --------------------------------------------------------------------------------------------
# Normalisations and scalers: skl2onnx's default graphs, BatchNormalization, Scaler, Mul/Add
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_onnx_skl2onnx_default_conversion(kind, pipeline):
    """skl2onnx's default graph (ZipMap over the probabilities, a label branch) of a bare MLP
    and of Pipeline(scalers, MLP) imports with no options."""
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
    from sklearn import preprocessing
    from sklearn.pipeline import make_pipeline
    x, y = sklearn_data(kind, np.float32)
    x = x * np.float32(3) + np.float32(1)
    estimator = (neural_network.MLPRegressor if kind == "regression" else
                 neural_network.MLPClassifier)(hidden_layer_sizes=(6,), max_iter=60,
                                               random_state=0)
    if pipeline:
        estimator = make_pipeline(preprocessing.StandardScaler(), preprocessing.MinMaxScaler(),
                                  preprocessing.MaxAbsScaler(), preprocessing.RobustScaler(),
                                  estimator)
    fit_quietly(estimator, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = skl2onnx.to_onnx(estimator, x[:1])
    network = Network.from_onnx(model)
    predict = estimator.predict if kind == "regression" else estimator.predict_proba
    assert_matches_library(network(x), predict(x).reshape(len(x), -1).astype(np.float32),
                           np.float32)
    assert_same_layers(network, Network.from_sklearn(estimator), exact=False)
    if kind != "regression":
        same = Network.from_onnx(model, output="output_probability")
        np.testing.assert_array_equal(same(x), network(x))
        with pytest.raises(ValueError, match="feeds ArgMax: unsupported ONNX operators"):
            Network.from_onnx(model, output="output_label")


def export(torch, model, exporter, dtype, tmp_path, opset=None):
    """The ONNX bytes of ``model`` (4 inputs) from the legacy or the dynamo exporter."""
    if exporter == "legacy":
        return export_legacy(torch, model, 4, dtype, opset=opset)
    pytest.importorskip("onnxscript", reason="onnxscript is not installed")
    path = tmp_path / "model.onnx"
    example = torch.zeros((2, 4), dtype=torch.float64 if dtype == np.float64 else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), path, dynamo=True, verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path.read_bytes()


def torch_batch_norm_model(torch, dtype):
    """Linear, BatchNorm, ReLU, BatchNorm, Linear, BatchNorm: every folding."""
    nn = torch.nn
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.BatchNorm1d(6),
                          nn.Linear(6, 3), nn.Tanh(), nn.BatchNorm1d(3))
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(-2, 2)
                module.bias.uniform_(-1, 1)
    return model.eval().to(torch.float64 if dtype == np.float64 else torch.float32)


@pytest.mark.parametrize("exporter, dtype", [("legacy", np.float32), ("legacy", np.float64),
                                             ("dynamo", np.float32)])
def test_onnx_batch_normalization_from_torch(exporter, dtype, tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model = torch_batch_norm_model(torch, dtype)
    model_bytes = export(torch, model, exporter, dtype, tmp_path)
    x = (np.random.default_rng(0).standard_normal((9, 4)) * 2).astype(dtype)
    network = Network.from_onnx(model_bytes)
    assert [layer.activation for layer in network.layers] == ["relu", "tanh", "linear"]
    assert_matches_library(network(x), torch_output(model, x), dtype)
    expected = onnxruntime_output(model_bytes, x)
    if expected is not None:
        assert_matches_library(network(x), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_onnx_scaler_and_constant_arithmetic(rng, dtype):
    """The ai.onnx.ml Scaler, and Add, Sub, Mul, Div with constants on either side, before,
    between and after the layers."""
    w1, w2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    c3, c4, c2 = rng.standard_normal(3) + 2, rng.standard_normal((1, 4)), rng.standard_normal(2)
    offset, scale = [0.5, -1.0, 2.0], [2.0, 0.25, -1.5]
    model = onnx_graph([
        node("ml.Scaler", ["x"], ["s"], offset=offset, scale=scale),
        node("Div", ["s", "c3"], ["d"]),
        node("Sub", ["two", "d"], ["e"]),
        node("MatMul", ["e", "w1"], ["h"]),
        node("Mul", ["c4", "h"], ["m"]),
        node("Relu", ["m"], ["r"]),
        node("Add", ["r", "c4"], ["a"]),
        node("MatMul", ["a", "w2"], ["h2"]),
        node("Sigmoid", ["h2"], ["g"]),
        node("Sub", ["g", "c2"], ["y"]),
    ], {"w1": w1, "w2": w2, "c3": c3, "c4": c4, "c2": c2, "two": np.array(2.0)}, dtype=dtype)
    network = Network.from_onnx(model)
    assert [(layer.n_in, layer.n_out, layer.activation) for layer in network.layers] == [
        (3, 4, "relu"), (4, 2, "sigmoid"), (2, 2, "linear")]
    x = rng.standard_normal((6, 3)).astype(dtype)
    e = 2.0 - (x - offset) * scale / c3
    expected = 1 / (1 + np.exp(-((np.maximum(e @ w1 * c4, 0) + c4) @ w2))) - c2
    assert_matches_library(network(x), expected.astype(dtype), dtype)


@pytest.mark.parametrize("exporter, dtype", [("legacy", np.float32), ("legacy", np.float64),
                                             ("dynamo", np.float32)])
def test_onnx_layer_normalization_from_torch(exporter, dtype, tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    nn = torch.nn
    torch.manual_seed(6)
    model = nn.Sequential(nn.LayerNorm(4, eps=1e-3), nn.Linear(4, 6), nn.LayerNorm(6),
                          nn.ReLU(), nn.Linear(6, 3), nn.LayerNorm(3, bias=False))
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(-2, 2)
                if module.bias is not None:
                    module.bias.uniform_(-1, 1)
    model = model.eval().to(torch.float64 if dtype == np.float64 else torch.float32)
    model_bytes = export(torch, model, exporter, dtype, tmp_path, opset=17)
    network = Network.from_onnx(model_bytes)
    assert [(type(layer).__name__, layer.activation) for layer in network.layers] == [
        ("LayerNorm", "linear"), ("Dense", "linear"), ("LayerNorm", "relu"),
        ("Dense", "linear"), ("LayerNorm", "linear")]
    x = (np.random.default_rng(0).standard_normal((9, 4)) * 2).astype(dtype)
    assert_matches_library(network(x), torch_output(model, x), dtype)
    expected = onnxruntime_output(model_bytes, x)
    if expected is not None:
        assert_matches_library(network(x), expected, dtype)


def test_onnx_constants_through_identity(rng):
    """torch.onnx.export writes a parameter equal to another as Identity(initializer)."""
    w = rng.standard_normal((3, 3))
    model = onnx_graph([
        node("MatMul", ["x", "w"], ["h"]), node("Identity", ["zeros"], ["bias"]),
        node("LayerNormalization", ["h", "ones", "bias"], ["y"]),
    ], {"w": w, "zeros": np.zeros(3), "ones": np.ones(3)}, opset=17)
    network = Network.from_onnx(model)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    h = x @ w.astype(np.float32)
    expected = (h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + 1e-5)
    assert_matches_library(network(x), expected, np.float32)
