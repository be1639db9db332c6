"""Compiled forward pass of reduced-precision networks (see _quantized.pyx)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

PRECISION_CODES: dict[str, int]
KERNEL_SETS: tuple[str, ...]

def supported_kernel_sets() -> tuple[str, ...]: ...
def default_kernel_set(isa: str) -> str: ...
def kernel_set() -> str: ...
def rounds_bfloat16_inputs() -> bool: ...
def use_kernel_set(name: str) -> str: ...

class QuantizedNetwork:
    n_in: int
    n_out: int
    dtype: np.dtype[Any]
    copies_nbytes: int
    @property
    def workspace_nbytes(self) -> int: ...
    def __init__(self, layers: Sequence[Any]) -> None: ...
    def forward(self, x: npt.ArrayLike, out: npt.NDArray[np.float32] | None = None,
                threads: int = 0) -> npt.NDArray[np.float32]: ...
