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
from libc.string cimport memcpy, memset
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc

cimport numpy as cnp

import numpy as np

from nnexposed._validation import as_network_input, check_out

from nnexposed._settings cimport (
    NNX_ALWAYS, NNX_AUTO, NNX_BLAS, NNX_BLAS_MIN_BATCH, NNX_BLAS_MIN_WEIGHTS,
    NNX_BLOCK_MACS_PER_NS, NNX_COUNT_BLAS, NNX_COUNT_ONE_SAMPLE, NNX_COUNT_PARALLEL_REGIONS,
    NNX_COUNT_ROW_SPLIT, NNX_COUNT_SHARED_PANELS, NNX_COUNT_TILES, NNX_DELAY_UNTIL_DONE,
    NNX_MAX_THREADS, NNX_NEVER, NNX_N_SETTINGS, NNX_PANEL_MAX_WEIGHTS, NNX_PARALLEL_MIN_MACS,
    NNX_ROW_MACS_PER_NS, NNX_ROW_SPLIT_MIN_MACS, NNX_SHARED_PANELS, NNX_SHARE_MIN_MACS,
    NNX_THREADS, nnx_add_done, nnx_allow_backoff, nnx_backing_off, nnx_caller_clock,
    nnx_caller_now_ns, nnx_cap_default_threads, nnx_claim, nnx_count, nnx_counter,
    nnx_default_threads, nnx_delay_if_asked,
    nnx_give_back_threads, nnx_judge_forward, nnx_last_shared_end, nnx_note_openmp_started,
    nnx_now_ns, nnx_observe_parallel, nnx_openmp_unusable, nnx_parallel_watch,
    nnx_reset_thread_policy, nnx_set_delay, nnx_set_last_shared_end, nnx_shared_state,
    nnx_take_threads, nnx_thread_policy, nnx_thread_policy_of, nnx_thread_policy_view,
    nnx_threads_for_call, nnx_threads_in_use, nnx_view_thread_policy, nnx_wait_done,
    read_settings, shared_state)

cnp.import_array()

# The settings and counters every build shares (nnexposed._settings owns them).
cdef nnx_shared_state* settings_state = shared_state()

ACTIVATION_NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
                    "gelu", "gelu_tanh", "silu", "elu", "softplus")


include "declarations.pxi"
include "threads.pxi"
include "thread_policy.pxi"
include "blas.pxi"
include "activations.pxi"
include "dense.pxi"
include "layer_norm.pxi"
include "plan.pxi"
include "forward.pxi"
include "trace.pxi"
include "compiled_network.pxi"
