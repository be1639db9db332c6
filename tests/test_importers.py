"""Importers against the real libraries: scikit-learn, PyTorch, ONNX (+ ONNX Runtime).

Each group is skipped, with the reason, when its optional library is not installed.
"""

import io
import sys
import warnings

import numpy as np
import pytest

import nnexposed
from nnexposed import Network
from tests.helpers import DTYPES, assert_close

# PyTorch and ONNX Runtime sum in other orders than the kernels: float32 results agree to a
# few ulps of the largest intermediate values, float64 ones far tighter.
LIBRARY_TOLERANCES = {np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
                      np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-10}}


def assert_matches_library(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype), actual.dtype
    np.testing.assert_allclose(actual, expected, **LIBRARY_TOLERANCES[np.dtype(dtype)])


# --------------------------------------------------------------------------------------------
# Missing optional libraries
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, module, extra", [
    ("from_sklearn", "sklearn", "sklearn"), ("from_torch", "torch", "torch"),
    ("from_onnx", "onnx", "onnx"),
])
def test_missing_library_names_the_extra(monkeypatch, method, module, extra):
    monkeypatch.setitem(sys.modules, module, None)        # makes `import module` fail
    with pytest.raises(ImportError, match=rf'pip install "nnexposed\[{extra}\]"'):
        getattr(Network, method)(object())


# --------------------------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------------------------

SKLEARN_HIDDEN = ["identity", "logistic", "tanh", "relu"]


def sklearn_data(kind, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((120, 5)).astype(dtype)
    if kind == "binary":
        y = (x[:, 0] + x[:, 1] ** 2 > 1).astype(int)
    elif kind == "multiclass":
        y = np.digitize(x[:, 0] + x[:, 2], [-1, 0, 1])
    elif kind == "multilabel":
        y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 3] > 0, x[:, 4] > 0.5], axis=1).astype(int)
    elif kind == "regression":
        y = x[:, 0] * 2 - x[:, 1] ** 2
    else:                                                    # multi-output regression
        y = np.stack([x[:, 0] * 2 - x[:, 1], np.sin(x[:, 2])], axis=1)
    return x, y


def fit_quietly(estimator, x, y):
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", SKLEARN_HIDDEN)
@pytest.mark.parametrize("kind, n_outputs, output_activation", [
    ("binary", 2, "sigmoid"), ("multiclass", 4, "softmax"), ("multilabel", 3, "sigmoid"),
])
def test_sklearn_classifier(dtype, activation, kind, n_outputs, output_activation):
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    x, y = sklearn_data(kind, dtype)
    classifier = fit_quietly(neural_network.MLPClassifier(
        hidden_layer_sizes=(7, 6), activation=activation, max_iter=60, random_state=0), x, y)
    network = Network.from_sklearn(classifier)
    assert network.dtype == dtype
    activations = [layer.activation for layer in network.layers]
    assert activations[:3] == [{"identity": "linear", "logistic": "sigmoid"}.get(
        activation, activation)] * 2 + [output_activation]
    if kind == "binary":
        assert network.sizes == (5, 7, 6, 1, 2) and activations[3] == "linear"
    result = network(x)
    assert result.shape == (len(x), n_outputs)
    assert_close(result, classifier.predict_proba(x).astype(dtype), dtype)
    assert_close(network(x[0]), result[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", SKLEARN_HIDDEN)
@pytest.mark.parametrize("kind", ["regression", "multi-output"])
def test_sklearn_regressor(dtype, activation, kind):
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    x, y = sklearn_data(kind, dtype)
    regressor = fit_quietly(neural_network.MLPRegressor(
        hidden_layer_sizes=(8,), activation=activation, max_iter=60, random_state=1), x, y)
    network = Network.from_sklearn(regressor)
    assert network.layers[-1].activation == "linear"
    expected = regressor.predict(x).reshape(len(x), -1)
    assert_close(network(x), expected.astype(dtype), dtype)


def test_sklearn_errors():
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    with pytest.raises(ValueError, match="not fitted yet"):
        Network.from_sklearn(neural_network.MLPClassifier())
    x, y = sklearn_data("regression", np.float64)
    poisson = fit_quietly(neural_network.MLPRegressor(loss="poisson", max_iter=5), x, y ** 2)
    with pytest.raises(ValueError, match="unsupported scikit-learn activation 'exp'"):
        Network.from_sklearn(poisson)
    linear_model = pytest.importorskip("sklearn.linear_model")
    with pytest.raises(TypeError, match="MLPClassifier or MLPRegressor, got LinearRegression"):
        Network.from_sklearn(linear_model.LinearRegression())


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


def torch_activations(nn):
    """One instance of every supported activation-like module, by a short name."""
    return {
        "relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "sigmoid": lambda: nn.Sigmoid(), "tanh": lambda: nn.Tanh(),
        "softmax": lambda: nn.Softmax(dim=-1), "softmax1": lambda: nn.Softmax(dim=1),
        "gelu": lambda: nn.GELU(), "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "silu": lambda: nn.SiLU(), "elu": lambda: nn.ELU(), "elu_alpha": lambda: nn.ELU(0.4),
        "softplus": lambda: nn.Softplus(), "identity": lambda: nn.Identity(),
        "dropout": lambda: nn.Dropout(0.3), "flatten": lambda: nn.Flatten(),
    }


def random_sequential(torch, seed, with_gelu=True):
    """A random nn.Sequential of supported modules: at least one Linear, sometimes nested,
    sometimes Linear layers back to back, activations back to back or first."""
    nn = torch.nn
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    makers = torch_activations(nn)
    names = [name for name in makers if with_gelu or not name.startswith("gelu")]
    width = n_in = int(rng.integers(1, 7))
    modules = []
    n_linear = 0
    for _ in range(int(rng.integers(2, 9))):
        if rng.random() < 0.45:
            n_out = int(rng.integers(1, 9))
            modules.append(nn.Linear(width, n_out, bias=bool(rng.random() < 0.75)))
            width, n_linear = n_out, n_linear + 1
        else:
            modules.append(makers[names[int(rng.integers(len(names)))]]())
    if n_linear == 0:
        modules.insert(int(rng.integers(len(modules) + 1)), nn.Linear(width, 3))
    if len(modules) > 2 and rng.random() < 0.5:          # nest a slice, maybe twice
        start = int(rng.integers(len(modules) - 1))
        stop = int(rng.integers(start + 1, len(modules) + 1))
        inner = nn.Sequential(*modules[start:stop])
        if rng.random() < 0.5:
            inner = nn.Sequential(nn.Identity(), inner)
        modules[start:stop] = [inner]
    return nn.Sequential(*modules).eval(), n_in


def torch_output(model, x):
    torch = sys.modules["torch"]
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("seed", range(40))
def test_torch_random_sequentials(seed):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    model, n_in = random_sequential(torch, seed)
    x = np.random.default_rng(seed).standard_normal((17, n_in)) * 3
    for dtype in DTYPES:
        model = model.to(torch.float64 if dtype == np.float64 else torch.float32)
        network = Network.from_torch(model)
        assert network.dtype == dtype and network.n_in == n_in
        xd = x.astype(dtype)
        assert_matches_library(network(xd), torch_output(model, xd), dtype)


def test_torch_every_module_and_the_identity_layers():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn
    torch.manual_seed(0)
    makers = torch_activations(nn)
    model = nn.Sequential(
        nn.Tanh(),                                           # activation first
        nn.Linear(4, 6), nn.Linear(6, 6, bias=False),        # Linear, Linear
        nn.Sequential(nn.ReLU(), nn.Sequential(nn.Dropout(), nn.Sigmoid())),  # act, act
        *[makers[name]() for name in makers if name != "softmax1"],
        nn.Linear(6, 3), nn.Softmax(dim=-1),
    ).eval()
    network = Network.from_torch(model)
    activations = [layer.activation for layer in network.layers]
    assert activations == ["tanh", "linear", "relu", "sigmoid", "relu", "leaky_relu",
                           "sigmoid", "tanh", "softmax", "gelu", "gelu_tanh", "silu", "elu",
                           "elu", "softplus", "softmax"]
    np.testing.assert_array_equal(network.layers[0].weights, np.eye(4))
    np.testing.assert_array_equal(network.layers[3].biases, np.zeros(6))
    assert network.layers[5].alpha == pytest.approx(0.2)
    assert [layer.alpha for layer in network.layers[12:14]] == [1.0, pytest.approx(0.4)]
    x = np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32) * 3
    assert_matches_library(network(x), torch_output(model, x), np.float32)


def test_torch_training_mode_dropout_is_ignored_and_single_module_works():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.9)).train()
    network = Network.from_torch(model)
    assert network.sizes == (3, 4)
    np.testing.assert_array_equal(network.layers[0].weights, model[0].weight.detach().numpy())
    single = Network.from_torch(nn.Linear(2, 5, bias=False))
    assert single.sizes == (2, 5) and single.layers[0].activation == "linear"


def test_torch_half_precision_gives_float32():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    model = torch.nn.Sequential(torch.nn.Linear(3, 2)).to(torch.bfloat16)
    assert Network.from_torch(model).dtype == np.float32


@pytest.mark.parametrize("make, message", [
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.ReLU6()), r"module 1 \(ReLU6\)"),
    (lambda nn: nn.Sequential(nn.Sequential(nn.Linear(3, 3), nn.Conv1d(1, 1, 1))),
     r"module 0\.1 \(Conv1d\)"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=0)), "dim=-1.*got dim=0"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Flatten(0)), "start_dim=0"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softplus(beta=2)), "beta=2"),
    (lambda nn: nn.Sequential(nn.Linear(3, 3), nn.Softplus(threshold=5)), "threshold=5"),
    (lambda nn: nn.Sequential(nn.ReLU(), nn.Tanh()), "no linear layer"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)), "expects 5 inputs but gets 4"),
    (lambda nn: nn.ModuleList([nn.Linear(3, 3)]), "ModuleList"),
])
def test_torch_unsupported(make, message):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    with pytest.raises(ValueError, match=message):
        Network.from_torch(make(torch.nn))
    with pytest.raises(TypeError, match="expects a torch.nn.Module, got list"):
        Network.from_torch([1])


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


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


def assert_same_layers(imported, expected):
    """Same activations and arrays; alphas equal up to ONNX's float32 attributes."""
    assert imported.sizes == expected.sizes and imported.dtype == expected.dtype
    for a, b in zip(imported.layers, expected.layers):
        assert a.activation == b.activation
        if a.activation in ("leaky_relu", "elu"):
            assert a.alpha == float(np.float32(b.alpha))
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.biases, b.biases)


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


def onnx_graph(nodes, initializers, inputs=("x",), outputs=("y",), n_in=3, opset=13):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["b", n_in])
         for name in inputs],
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(value, np.float32), name)
         for name, value in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def node(op, inputs, outputs, **attributes):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    return onnx.helper.make_node(op, inputs, outputs, **attributes)


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
        node("Constant", [], ["b3"], value=pytest.importorskip("onnx").numpy_helper.from_array(
            b3.astype(np.float32))),
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
    # Element-wise, but not an activation: x * x + 1, and x * (per-feature constants).
    ([node("MatMul", ["x", "w"], ["h"]), node("Mul", ["h", "h"], ["s"]),
      node("Add", ["s", "one"], ["y"])], {"w": np.ones((3, 3)), "one": np.ones(1)}, {},
     "tensor 'h' feeds Mul: unsupported"),
    ([node("MatMul", ["x", "w"], ["h"]), node("Mul", ["h", "c"], ["y"])],
     {"w": np.ones((3, 3)), "c": np.ones(3)}, {}, "tensor 'h' feeds Mul: unsupported"),
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
    ([node("Relu", ["x"], ["h"]), node("Add", ["h", "c"], ["y"])], {"c": np.ones(3)}, {},
     "only a bias added right after Gemm or MatMul"),
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
