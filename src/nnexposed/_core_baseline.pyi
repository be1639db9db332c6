"""Type stub for the kernel builds: _kernels/core.pxi compiled as _core_baseline, _core_avx2 and
_core_avx512."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

ACTIVATION_NAMES: tuple[str, ...]

def openmp_enabled() -> bool: ...
def default_threads() -> int: ...
def blas_available() -> bool: ...
def tile_shape() -> dict[str, Any]: ...

class CompiledNetwork:
    n_in: int
    n_out: int
    dtype: np.dtype
    def __init__(
        self,
        weights: Sequence[npt.NDArray[np.floating]],
        biases: Sequence[npt.NDArray[np.floating]],
        activations: Sequence[int],
        alphas: Sequence[float],
        keep_panels: bool = True,
    ) -> None: ...
    def forward(
        self, x: npt.ArrayLike, out: npt.NDArray[np.floating] | None = None, threads: int = 0
    ) -> npt.NDArray[np.floating]: ...
    def trace(
        self, x: npt.ArrayLike, threads: int = 0
    ) -> list[tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]]: ...

def activate_inplace(
    values: npt.NDArray[np.floating], activation: int, alpha: float = 0.01
) -> npt.NDArray[np.floating]: ...
