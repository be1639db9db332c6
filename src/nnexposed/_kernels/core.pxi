# The body of every kernel build (_core_baseline.pyx, _core_avx2.pyx, _core_avx512.pyx): the
# same source compiled once per instruction set, nnexposed._dispatch importing the best one.
#
# The ``cdef ... noexcept nogil`` kernels trust their arguments. The two Python-facing entry
# points, ``CompiledNetwork.forward`` and ``activate_inplace``, check every array once (fast C
# checks for the common case, the helpers in ``_validation`` for everything else) and then
# release the GIL for the arithmetic.

from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.limits cimport INT_MAX
from libc.math cimport exp, expf, fabs, fabsf, tanh, tanhf
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc

cimport numpy as cnp

import os
from time import perf_counter_ns

import numpy as np

from nnexposed._validation import as_network_input, check_out

cnp.import_array()

ACTIVATION_NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
                    "gelu", "gelu_tanh", "silu", "elu", "softplus")


include "declarations.pxi"
include "threads.pxi"
include "blas.pxi"
include "activations.pxi"
include "dense.pxi"
include "forward.pxi"
include "trace.pxi"
include "compiled_network.pxi"
