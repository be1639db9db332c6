"""PyTorch importer: Sequentials, any module (torch.fx), functional forms, TorchScript and
torch.export programs, BatchNorm and LayerNorm, against the module's own output."""

import numpy as np
import pytest

from nnexposed import Network
from tests.helpers import DTYPES
from tests.import_helpers import (
    assert_matches_library,
    random_sequential,
    torch_activations,
    torch_output,
)

# TorchScript is deprecated, and still what many models are saved as.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")


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
    with pytest.raises(TypeError, match="a TorchScript module or a torch.export.ExportedProgram, "
                                        "got list"):
        Network.from_torch([1])


# --------------------------------------------------------------------------------------------
# Any module: torch.fx, functional forms, TorchScript, torch.export
# --------------------------------------------------------------------------------------------


def functional_modules(torch):
    """nn.Module subclasses written the usual ways, each with its expected activations."""
    nn, F = torch.nn, torch.nn.functional

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, x):
            return self.net(x)

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(5, 6)] + [nn.Linear(6, 6) for _ in range(11)]
                                        + [nn.Linear(6, 4)])

        def forward(self, x):
            h = self.layers
            x = F.relu(h[0](x))
            x = torch.relu(h[1](x))
            x = h[2](x).relu()
            x = torch.tanh(h[3](x))
            x = torch.sigmoid(h[4](x))
            x = F.gelu(h[5](x), approximate="tanh")
            x = F.silu(h[6](torch.flatten(x, 1)))
            x = F.elu(h[7](x), alpha=0.5)
            x = F.leaky_relu(h[8](x), 0.1)
            x = F.softplus(F.dropout(h[9](x), 0.5, self.training))
            x = 2.0 * h[10](x) + 1.0
            x = F.gelu(h[11](x)) / 4 - 0.5
            return F.softmax(h[12](x), dim=-1)

    class Outer(nn.Module):                      # a custom module inside a Sequential
        def __init__(self):
            super().__init__()
            self.seq = nn.Sequential(nn.Linear(5, 7), Wrapper2(), nn.Tanh())

        def forward(self, x):
            return self.seq(x)

    class Wrapper2(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(7, 5)
            self.weight = nn.Parameter(torch.randn(2, 5))

        def forward(self, x):
            return F.linear(torch.sigmoid(self.linear(x)), self.weight)

    return {
        "wrapper": (Wrapper, ["relu", "linear"]),
        "functional": (Functional, ["relu", "relu", "relu", "tanh", "sigmoid", "gelu_tanh",
                                    "silu", "elu", "leaky_relu", "softplus", "linear", "gelu",
                                    "softmax"]),
        "nested": (Outer, ["linear", "sigmoid", "tanh"]),
    }


@pytest.mark.parametrize("route", ["module", "script", "trace", "export"])
@pytest.mark.parametrize("name", ["wrapper", "functional", "nested"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_any_module_every_route(name, route, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    torch.manual_seed(0)
    make, activations = functional_modules(torch)[name]
    model = make().eval().to(torch.float64 if dtype == np.float64 else torch.float32)
    example = torch.zeros((2, 5), dtype=model_dtype(torch, model))
    source = {"module": lambda: model,
              "script": lambda: torch.jit.script(model),
              "trace": lambda: torch.jit.trace(model, example),
              "export": lambda: torch.export.export(model, (example,))}[route]()
    network = Network.from_torch(source)
    assert network.dtype == dtype
    assert [layer.activation for layer in network.layers] == activations
    x = np.random.default_rng(1).standard_normal((9, 5)).astype(dtype) * 2
    assert_matches_library(network(x), torch_output(model, x), dtype)
    assert_matches_library(network(x[0]), torch_output(model, x[:1])[0], dtype)


def model_dtype(torch, model):
    return next(model.parameters()).dtype


@pytest.mark.parametrize("seed", range(6))
def test_torch_script_and_trace_of_random_sequentials(seed):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    model, n_in = random_sequential(torch, 3000 + seed)
    expected = Network.from_torch(model)
    x = np.random.default_rng(seed).standard_normal((7, n_in)).astype(np.float32) * 3
    for compiled in (torch.jit.script(model), torch.jit.trace(model, torch.zeros(2, n_in))):
        network = Network.from_torch(compiled)
        assert [layer.activation for layer in network.layers] == [
            layer.activation for layer in expected.layers]
        assert_matches_library(network(x), torch_output(model, x), np.float32)


def random_batch_norm(torch, width, dtype, seed):
    """A BatchNorm1d with random running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    norm = torch.nn.BatchNorm1d(width, eps=1e-3)
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(width, generator=generator) * 2)
        norm.running_var.copy_(torch.rand(width, generator=generator) * 3 + 0.1)
        norm.weight.copy_(torch.randn(width, generator=generator))
        norm.bias.copy_(torch.randn(width, generator=generator))
    return norm.to(dtype)


# Where BatchNorm sits, and the layers it becomes.
BATCH_NORM_PLACEMENTS = {
    "after Linear": (lambda nn, bn: [nn.Linear(4, 6), bn(6), nn.ReLU(), nn.Linear(6, 3)],
                     [(4, 6, "relu"), (6, 3, "linear")]),
    "before Linear": (lambda nn, bn: [bn(4), nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)],
                      [(4, 6, "tanh"), (6, 3, "linear")]),
    "after an activation": (lambda nn, bn: [nn.Linear(4, 6), nn.ReLU(), bn(6), nn.Linear(6, 3)],
                            [(4, 6, "relu"), (6, 3, "linear")]),
    "last": (lambda nn, bn: [nn.Linear(4, 6), nn.ReLU(), bn(6)],
             [(4, 6, "relu"), (6, 6, "linear")]),
    "before an activation": (lambda nn, bn: [bn(4), nn.Sigmoid(), nn.Linear(4, 3)],
                             [(4, 4, "sigmoid"), (4, 3, "linear")]),
    "twice": (lambda nn, bn: [nn.Linear(4, 6), nn.ELU(), bn(6), bn(6), nn.Linear(6, 3), bn(3)],
              [(4, 6, "elu"), (6, 3, "linear")]),
}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("placement", list(BATCH_NORM_PLACEMENTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_batch_norm_is_folded(placement, dtype, mode):
    """BatchNorm folds into the Linear before it, else the one after it (through nothing
    else), else becomes a diagonal layer; modules in train mode import with eval
    semantics (running statistics), and keep their mode."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(0)
    seeds = iter(range(100))
    make, expected_layers = BATCH_NORM_PLACEMENTS[placement]
    model = nn.Sequential(*make(nn, lambda width: random_batch_norm(
        torch, width, torch_dtype, next(seeds)))).to(torch_dtype)
    model.train(mode == "train")
    network = Network.from_torch(model)
    assert model.training == (mode == "train")
    assert [(layer.n_in, layer.n_out, layer.activation)
            for layer in network.layers] == expected_layers
    x = np.random.default_rng(2).standard_normal((11, 4)).astype(dtype) * 2
    assert_matches_library(network(x), torch_output(model.eval(), x), dtype)
    for route in ("script", "trace"):
        compiled = (torch.jit.script(model) if route == "script"
                    else torch.jit.trace(model, torch.zeros((2, 4), dtype=torch_dtype)))
        assert_matches_library(Network.from_torch(compiled)(x), torch_output(model, x), dtype)


@pytest.mark.parametrize("make, message", [
    ("branch", "not a chain of layers"),
    ("two_inputs", "must take one tensor"),
    ("control_flow", "torch.fx cannot trace its forward"),
    ("batch_statistics", "track_running_stats=False"),
    ("divided", "a constant divided by the features"),
    ("conv", r"unsupported PyTorch module Model\.conv \(Conv1d\)"),
])
def test_torch_modules_that_are_not_chains(make, message):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3)
            self.conv = nn.Conv1d(1, 1, 1)
            self.norm = nn.BatchNorm1d(3, track_running_stats=False)

        def forward(self, x, y=None):
            if make == "branch":
                return x + self.linear(x)
            if make == "two_inputs":
                return self.linear(x) + y
            if make == "control_flow":
                return self.linear(x) if x.sum() > 0 else x
            if make == "batch_statistics":
                return self.norm(self.linear(x))
            if make == "divided":
                return 1.0 / self.linear(x)
            return self.conv(x)

    with pytest.raises(ValueError, match=message):
        Network.from_torch(Model())


def random_layer_norm(torch, width, dtype, seed, **options):
    generator = torch.Generator().manual_seed(seed)
    norm = torch.nn.LayerNorm(width, **options)
    with torch.no_grad():
        if norm.weight is not None:
            norm.weight.copy_(torch.randn(width, generator=generator))
        if norm.bias is not None:
            norm.bias.copy_(torch.randn(width, generator=generator))
    return norm.to(dtype)


@pytest.mark.parametrize("route", ["module", "script", "trace", "export"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_layer_norm_every_route(route, dtype):
    """LayerNorm modules (with and without affine parameters, any eps) and F.layer_norm,
    next to BatchNorm and scalings, become LayerNorm layers with the following activation."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn, F = torch.nn, torch.nn.functional
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.first = random_layer_norm(torch, 5, torch_dtype, 1, eps=1e-3)
            self.linear1 = nn.Linear(5, 8)
            self.norm1 = random_layer_norm(torch, 8, torch_dtype, 2)
            self.linear2 = nn.Linear(8, 8)
            self.norm2 = random_layer_norm(torch, 8, torch_dtype, 3, elementwise_affine=False)
            self.norm3 = random_layer_norm(torch, 8, torch_dtype, 4, bias=False)
            self.batch_norm = random_batch_norm(torch, 8, torch_dtype, 5)
            self.linear3 = nn.Linear(8, 3)
            self.weight = nn.Parameter(torch.randn(3))

        def forward(self, x):
            x = self.linear1(self.first(x))
            x = F.gelu(self.norm1(x))
            x = torch.relu(self.norm2(self.linear2(x)))
            x = self.batch_norm(self.norm3(x)) * 0.5
            return F.layer_norm(self.linear3(x), (3,), self.weight, None, 1e-2)

    model = Model().to(torch_dtype).eval()
    example = torch.zeros((2, 5), dtype=torch_dtype)
    source = {"module": lambda: model, "script": lambda: torch.jit.script(model),
              "trace": lambda: torch.jit.trace(model, example),
              "export": lambda: torch.export.export(model, (example,))}[route]()
    network = Network.from_torch(source)
    assert [(type(layer).__name__, layer.activation) for layer in network.layers] == [
        ("LayerNorm", "linear"), ("Dense", "linear"), ("LayerNorm", "gelu"),
        ("Dense", "linear"), ("LayerNorm", "relu"), ("LayerNorm", "linear"),
        ("Dense", "linear"), ("LayerNorm", "linear")]
    assert network.layers[0].eps == pytest.approx(1e-3)
    x = np.random.default_rng(3).standard_normal((40, 5)).astype(dtype) * 2
    assert_matches_library(network(x), torch_output(model, x), dtype)
    assert_matches_library(network(x[0]), torch_output(model, x[:1])[0], dtype)


def test_torch_layer_norm_over_two_axes_is_refused():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm((2, 3)))
    with pytest.raises(ValueError, match=r"normalized_shape=\[2, 3\]"):
        Network.from_torch(model)
