"""State dicts: mappings of tensors or arrays, .pt / .pth files and .safetensors files,
against the PyTorch module they came from."""

import sys

import numpy as np
import pytest

from nnexposed import Network
from tests.helpers import DTYPES
from tests.import_helpers import assert_matches_library, torch_output


def mlp(torch, dtype, output=None):
    nn = torch.nn
    torch.manual_seed(0)
    layers = [nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8, bias=False), nn.Tanh(),
              nn.Linear(8, 3)] + ([output] if output is not None else [])
    return nn.Sequential(*layers).eval().to(torch.float64 if dtype == np.float64 else
                                            torch.float32)


@pytest.mark.parametrize("source", ["tensors", "arrays", "pt", "safetensors"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_routes(source, dtype, tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    model = mlp(torch, dtype, torch.nn.Softmax(dim=-1))
    state_dict = model.state_dict()
    if source == "arrays":
        state_dict = {key: value.numpy() for key, value in state_dict.items()}
    elif source == "pt":
        state_dict = tmp_path / "model.pt"
        torch.save(model.state_dict(), state_dict)
    elif source == "safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch",
                                                reason="safetensors is not installed")
        state_dict = str(tmp_path / "model.safetensors")
        safetensors_torch.save_file(model.state_dict(), state_dict)
    network = Network.from_state_dict(state_dict, activation="tanh", output_activation="softmax")
    assert network.sizes == (4, 8, 8, 3) and network.dtype == dtype
    assert [layer.activation for layer in network.layers] == ["tanh", "tanh", "softmax"]
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(dtype)
    assert_matches_library(network(x), torch_output(model, x), dtype)


def test_state_dict_defaults_are_relu_and_linear():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    network = Network.from_state_dict(model.state_dict())
    x = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)
    assert_matches_library(network(x), torch_output(model, x), np.float32)


def test_state_dict_errors(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn
    with_norm = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="'1.running_mean' is not a Linear layer's weight"):
        Network.from_state_dict(with_norm.state_dict())
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(4,\), not \(n_out, n_in\)"):
        Network.from_state_dict({"0.weight": np.ones(4), "0.bias": np.ones(4)})
    with pytest.raises(ValueError, match="0.bias has no 0.weight"):
        Network.from_state_dict({"0.bias": np.ones(4)})
    with pytest.raises(ValueError, match="expects 5 inputs but gets 4"):
        Network.from_state_dict({"a.weight": np.ones((4, 3)), "b.weight": np.ones((2, 5))})
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        Network.from_state_dict({"a.weight": np.ones((4, 3))}, activation="tanhh")
    with pytest.raises(ValueError, match="expected floating-point values, got dtype int64"):
        Network.from_state_dict({"a.weight": np.ones((4, 3), np.int64)})
    with pytest.raises(TypeError, match="a mapping of names to tensors or a path, got list"):
        Network.from_state_dict([np.ones((4, 3))])
    with pytest.raises(ValueError, match=r"expected a \.pt, \.pth or \.safetensors file"):
        Network.from_state_dict(tmp_path / "model.npz")
    with pytest.raises(FileNotFoundError):
        Network.from_state_dict(tmp_path / "absent.pt")
    # A pickled module (not weights only) is refused unread; so is a tensor.
    torch.save(with_norm, tmp_path / "module.pt")
    with pytest.raises(ValueError, match="module.pt: not a state dict that "
                                         r"torch.load\(weights_only=True\) reads"):
        Network.from_state_dict(tmp_path / "module.pt")
    torch.save(torch.ones(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match="tensor.pth holds a Tensor, not a state dict"):
        Network.from_state_dict(tmp_path / "tensor.pth")


def test_safetensors_without_torch(monkeypatch, tmp_path):
    """.safetensors files are read with NumPy: PyTorch is not needed."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy",
                                            reason="safetensors is not installed")
    monkeypatch.setitem(sys.modules, "torch", None)
    rng = np.random.default_rng(3)
    arrays = {"fc1.weight": rng.standard_normal((5, 3)), "fc1.bias": rng.standard_normal(5),
              "fc2.weight": rng.standard_normal((2, 5))}
    safetensors_numpy.save_file(arrays, str(tmp_path / "model.safetensors"))
    network = Network.from_state_dict(tmp_path / "model.safetensors", activation="sigmoid")
    x = rng.standard_normal((4, 3))
    hidden = 1 / (1 + np.exp(-(x @ arrays["fc1.weight"].T + arrays["fc1.bias"])))
    np.testing.assert_allclose(network(x), hidden @ arrays["fc2.weight"].T, rtol=1e-12)
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match="bad.safetensors: not a readable safetensors"):
        Network.from_state_dict(tmp_path / "bad.safetensors")


def test_state_dict_missing_libraries_name_the_extra(monkeypatch, tmp_path):
    for module, suffix, extra in [("safetensors", ".safetensors", "safetensors"),
                                  ("torch", ".pt", "torch")]:
        monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(ImportError, match=rf'pip install "nnexposed\[{extra}\]"'):
            Network.from_state_dict(tmp_path / f"model{suffix}")
