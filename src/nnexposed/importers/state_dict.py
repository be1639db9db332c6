"""State dicts: the ``*.weight`` / ``*.bias`` entries of Linear layers, in a mapping, a
``.pt`` / ``.pth`` file (read with ``torch.load(weights_only=True)``) or a ``.safetensors``
file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from nnexposed.activations import activation_code
from nnexposed.importers.steps import Activation, Linear, Step, network_from_steps, require
from nnexposed.network import Network

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)


def from_state_dict(state_dict: Any, activation: str = "relu",
                    output_activation: str = "linear") -> Network:
    """The Network whose Linear layers are the ``*.weight`` / ``*.bias`` entries of a state
    dict, in order, with ``activation`` after each layer but the last and
    ``output_activation`` after the last.

    state_dict: a mapping of names to tensors or arrays (weights (n_out, n_in), biases
    (n_out,)), or the path of a ``.pt`` / ``.pth`` file (loaded with
    ``torch.load(path, weights_only=True)``, which never runs code from the file) or of a
    ``.safetensors`` file (read with the ``safetensors`` package). Entries of other layers
    (BatchNorm statistics, say) are a ValueError: build the module and use
    ``Network.from_torch`` for those.
    """
    activation_code(activation)
    activation_code(output_activation)
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = _read_file(os.fspath(state_dict))
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"from_state_dict expects a mapping of names to tensors or a path, "
                        f"got {type(state_dict).__name__}")
    layers = _linear_layers(state_dict)
    steps: list[Step] = []
    for k, (weights, biases) in enumerate(layers):
        steps.append(Linear(weights, biases))
        steps.append(Activation(output_activation if k == len(layers) - 1 else activation))
    return network_from_steps(steps, "the state dict")


def _read_file(path: str) -> Any:
    lowered = path.lower()
    if lowered.endswith(SAFETENSORS_SUFFIXES):
        require("safetensors", "safetensors", "Network.from_state_dict")
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        with open(path, "rb"):                    # missing or unreadable: the OSError as it is
            pass
        try:
            return load_file(path)
        except (SafetensorError, ValueError, OSError) as error:
            raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    if lowered.endswith(TORCH_SUFFIXES):
        torch = require("torch", "torch", "Network.from_state_dict")
        with open(path, "rb"):
            pass
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:                # pickle, zip and torch errors alike
            raise ValueError(f"{path}: not a state dict that torch.load(weights_only=True) "
                             f"reads ({type(error).__name__}: {error})") from None
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict")
        return loaded
    raise ValueError(f"{path}: expected a .pt, .pth or .safetensors file")


def _as_array(value: Any, key: str) -> np.ndarray:
    if hasattr(value, "detach"):                  # a torch tensor
        from nnexposed.importers.torch import tensor_array
        return tensor_array(require("torch", "torch", "Network.from_state_dict"), value)
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise ValueError(f"state dict entry {key!r}: expected floating-point values, got "
                         f"dtype {array.dtype}")
    return array


def _linear_layers(state_dict: Mapping[str, Any]) -> list[tuple[np.ndarray, Any]]:
    """[(weights, biases or None)] of the Linear layers, in the state dict's order."""
    layers: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ValueError(f"state dict keys must be names, got {key!r}")
        prefix, _, kind = key.rpartition(".")
        if kind not in ("weight", "bias"):
            raise ValueError(f"state dict entry {key!r} is not a Linear layer's weight or bias "
                             f"(a normalisation layer's statistics?); for models with other "
                             f"layers, build the module and use Network.from_torch")
        layers.setdefault(prefix, {})[kind] = _as_array(value, key)
    if not layers:
        raise ValueError("the state dict has no entries")
    result = []
    for prefix, entries in layers.items():
        name = f"{prefix}.weight" if prefix else "weight"
        weights = entries.get("weight")
        if weights is None:
            raise ValueError(f"state dict: {prefix}.bias has no {name}")
        if weights.ndim != 2:
            raise ValueError(f"state dict entry {name!r} has shape {weights.shape}, not "
                             f"(n_out, n_in) as a Linear layer's weight (a normalisation "
                             f"layer's?); for models with other layers, build the module "
                             f"and use Network.from_torch")
        result.append((weights, entries.get("bias")))
    return result
