"""The compiled kernels this CPU runs: the build ``nnexposed._dispatch`` chose at import.

The rest of the package calls the kernels through this module only, so that one name stands
for "the kernels in use" whichever instruction set they were compiled for (``ISA``).
"""

from typing import TYPE_CHECKING

from nnexposed import _dispatch

if TYPE_CHECKING:
    from nnexposed import _core_baseline as _build
else:
    _build = _dispatch.build

ISA = _dispatch.ISA
ACTIVATION_NAMES = _build.ACTIVATION_NAMES
CompiledNetwork = _build.CompiledNetwork
activate_inplace = _build.activate_inplace
openmp_enabled = _build.openmp_enabled
default_threads = _build.default_threads
blas_available = _build.blas_available

__all__ = [
    "ACTIVATION_NAMES",
    "ISA",
    "CompiledNetwork",
    "activate_inplace",
    "blas_available",
    "default_threads",
    "openmp_enabled",
]
