"""Each import route against its source library: the largest difference between the imported
network's output and the library's own, on 1,000 random samples, per dtype.

    python tools/importer_errors.py          # needs the sklearn, torch, onnx, keras and
                                              # safetensors extras; KERAS_BACKEND=torch is set
Prints a Markdown table: route, dtype, max |difference|, max |output| (for scale).
"""

import io
import os
import tempfile
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402

from nnexposed import Network  # noqa: E402

N_IN = 8
RNG = np.random.default_rng(0)
X64 = RNG.standard_normal((1000, N_IN)) * 2 + RNG.standard_normal(N_IN)


def row(route, dtype, network, expected):
    actual = network(X64.astype(dtype))
    expected = np.asarray(expected, np.float64).reshape(actual.shape)
    error = np.abs(actual.astype(np.float64) - expected).max()
    print(f"| {route} | {np.dtype(dtype).name} | {error:.2e} | {np.abs(expected).max():.2g} |")


def sklearn_routes():
    from sklearn import preprocessing
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    y_class = np.digitize(X64[:, 0] + X64[:, 1] ** 2, [0, 2, 4])
    y_reg = X64[:, 0] * 2 - X64[:, 1] ** 2
    for dtype in (np.float32, np.float64):
        x = X64.astype(dtype)
        mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=200, random_state=0)
        mlp.fit(x, y_class)
        row("sklearn MLPClassifier", dtype, Network.from_sklearn(mlp), mlp.predict_proba(x))
        reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", max_iter=200,
                           random_state=0).fit(x, y_reg)
        row("sklearn MLPRegressor", dtype, Network.from_sklearn(reg), reg.predict(x))
        pipe = make_pipeline(preprocessing.StandardScaler(), preprocessing.MinMaxScaler(),
                             preprocessing.MaxAbsScaler(), preprocessing.RobustScaler(),
                             MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=200,
                                           random_state=0))
        pipe.fit(x, y_class)
        row("sklearn Pipeline(4 scalers, MLP)", dtype, Network.from_sklearn(pipe),
            pipe.predict_proba(x))


def torch_model(torch, dtype):
    nn, F = torch.nn, torch.nn.functional

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(N_IN, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                     nn.Linear(32, 32), nn.LayerNorm(32))
            self.head = nn.Linear(32, 4)
            with torch.no_grad():
                self.net[1].running_mean.uniform_(-1, 1)
                self.net[1].running_var.uniform_(0.5, 2)
                self.net[1].weight.uniform_(0.5, 2)

        def forward(self, x):
            return F.softmax(self.head(F.gelu(self.net(x))), dim=-1)

    return Model().to(dtype).eval()


def torch_routes():
    import torch
    nn = torch.nn
    for dtype, torch_dtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
        x = torch.from_numpy(X64.astype(dtype))
        torch.manual_seed(1)
        sequential = nn.Sequential(nn.Linear(N_IN, 64), nn.Tanh(), nn.Linear(64, 64),
                                   nn.SiLU(), nn.Linear(64, 3)).to(torch_dtype).eval()
        with torch.no_grad():
            want = sequential(x).numpy()
        row("torch nn.Sequential", dtype, Network.from_torch(sequential), want)
        model = torch_model(torch, torch_dtype)
        with torch.no_grad():
            want = model(x).numpy()
        example = torch.zeros((2, N_IN), dtype=torch_dtype)
        for route, source in [("torch any module (fx): BatchNorm, LayerNorm, F.gelu", model),
                              ("torch.jit.script", torch.jit.script(model)),
                              ("torch.jit.trace", torch.jit.trace(model, example)),
                              ("torch.export", torch.export.export(model, (example,)))]:
            row(route, dtype, Network.from_torch(source), want)
        mlp = nn.Sequential(nn.Linear(N_IN, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                            nn.Linear(16, 3)).to(torch_dtype)
        with torch.no_grad():
            want = mlp(x).numpy()
        row("state dict (in memory)", dtype,
            Network.from_state_dict(mlp.state_dict(), activation="tanh"), want)
        with tempfile.TemporaryDirectory() as folder:
            from safetensors.torch import save_file
            torch.save(mlp.state_dict(), os.path.join(folder, "m.pt"))
            save_file(mlp.state_dict(), os.path.join(folder, "m.safetensors"))
            for name in ("m.pt", "m.safetensors"):
                row(f"state dict, {name[1:]} file", dtype,
                    Network.from_state_dict(os.path.join(folder, name), activation="tanh"),
                    want)


def onnx_routes():
    import onnxruntime
    import skl2onnx
    import torch
    from sklearn import preprocessing
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    for dtype, torch_dtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
        model = torch_model(torch, torch_dtype)
        buffer = io.BytesIO()
        torch.onnx.export(model, (torch.zeros((2, N_IN), dtype=torch_dtype),), buffer,
                          dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "b"}},
                          opset_version=17)
        try:
            session = onnxruntime.InferenceSession(buffer.getvalue(),
                                                   providers=["CPUExecutionProvider"])
            want, peer = session.run(None, {"x": X64.astype(dtype)})[0], "ONNX Runtime"
        except onnxruntime.capi.onnxruntime_pybind11_state.NotImplemented:
            with torch.no_grad():                   # ONNX Runtime has no float64 Erf
                want, peer = model(torch.from_numpy(X64.astype(dtype))).numpy(), "PyTorch"
        row(f"ONNX (torch.onnx.export, legacy) vs {peer}", dtype,
            Network.from_onnx(buffer.getvalue()), want)
    x = X64.astype(np.float32)
    y = np.digitize(X64[:, 0] + X64[:, 1] ** 2, [0, 2, 4])
    pipe = make_pipeline(preprocessing.StandardScaler(), preprocessing.MinMaxScaler(),
                         MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=200,
                                       random_state=0)).fit(x, y)
    onnx_model = skl2onnx.to_onnx(pipe, x[:1])                    # ZipMap, label branch
    row("ONNX (skl2onnx default) of Pipeline(scalers, MLP) vs predict_proba", np.float32,
        Network.from_onnx(onnx_model), pipe.predict_proba(x))


def keras_routes():
    import keras
    layers = keras.layers
    for dtype in ("float32", "float64"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((N_IN,), dtype=dtype), layers.Dense(32, activation="relu", dtype=dtype),
            layers.BatchNormalization(dtype=dtype), layers.Dense(32, dtype=dtype),
            layers.LayerNormalization(dtype=dtype), layers.Activation("gelu", dtype=dtype),
            layers.Dense(3, activation="softmax", dtype=dtype)])
        want = keras.ops.convert_to_numpy(model(X64.astype(dtype), training=False))
        row("Keras 3 (torch backend): BatchNormalization, LayerNormalization", np.dtype(dtype),
            Network.from_keras(model), want)


if __name__ == "__main__":
    print("| route | dtype | max abs difference | max abs output |")
    print("|---|---|---|---|")
    for routes in (sklearn_routes, torch_routes, onnx_routes, keras_routes):
        routes()
