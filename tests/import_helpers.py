"""Helpers shared by the importer tests (tests/test_import_*.py): data, models made with the
source libraries, and the tolerance of a comparison with a library's own output."""

import sys
import warnings

import numpy as np

# PyTorch and ONNX Runtime sum in other orders than the kernels: float32 results agree to a
# few ulps of the largest intermediate values, float64 ones far tighter.
LIBRARY_TOLERANCES = {np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
                      np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-10}}


def assert_matches_library(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype), actual.dtype
    np.testing.assert_allclose(actual, expected, **LIBRARY_TOLERANCES[np.dtype(dtype)])


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


