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
cap_default_threads = _build.cap_default_threads
blas_available = _build.blas_available
allow_backoff = _build.allow_backoff
thread_policy = _build.thread_policy
reset_thread_policy = _build.reset_thread_policy
threads_in_use = _build.threads_in_use

__all__ = [
    "ACTIVATION_NAMES",
    "ISA",
    "CompiledNetwork",
    "activate_inplace",
    "allow_backoff",
    "blas_available",
    "cap_default_threads",
    "default_threads",
    "openmp_enabled",
    "reset_thread_policy",
    "thread_policy",
    "threads_in_use",
]
