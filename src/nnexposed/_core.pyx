# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled kernels of nnexposed: fused dense layers and activations, float32 and float64.

The ``cdef ... noexcept nogil`` kernels trust their arguments. The two Python-facing entry
points, ``CompiledNetwork.forward`` and ``activate_inplace``, check every array once (fast C
checks for the common case, the helpers in ``_validation`` for everything else) and then
release the GIL for the arithmetic.
"""

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

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int nnx_openmp_enabled(void) { return 1; }
    static int nnx_max_threads(void) { return omp_get_max_threads(); }
    static int nnx_team_size(void) { return omp_get_num_threads(); }
    static void nnx_barrier(void) {
        #pragma omp barrier
    }
    #else
    static int nnx_openmp_enabled(void) { return 0; }
    static int nnx_max_threads(void) { return 1; }
    static int nnx_team_size(void) { return 1; }
    static void nnx_barrier(void) { }
    #endif
    """
    int nnx_openmp_enabled() noexcept nogil
    int nnx_max_threads() noexcept nogil
    # Inside a parallel region: its number of threads, and a barrier for all of them.
    int nnx_team_size() noexcept nogil
    void nnx_barrier() noexcept nogil

# CPU features for the runtime choice of kernels (nnexposed._dispatch): can this CPU and OS run
# the code of the AVX2 (AVX2+FMA+F16C) or AVX-512 (F+CD+BW+DQ+VL) builds? 0 on non-x86.
cdef extern from *:
    """
    #if defined(_MSC_VER) && !defined(__clang__) && (defined(_M_X64) || defined(_M_IX86))
    #include <intrin.h>
    static unsigned long long nnx_xcr0(int leaf1_ecx) {
        return (leaf1_ecx & (1 << 27)) ? _xgetbv(0) : 0;    /* OSXSAVE, then XCR0 */
    }
    static int nnx_cpu_avx2(void) {
        int r[4];
        __cpuid(r, 0);
        if (r[0] < 7) return 0;
        __cpuid(r, 1);
        int ecx1 = r[2];
        if ((nnx_xcr0(ecx1) & 0x6) != 0x6) return 0;         /* OS saves XMM and YMM state */
        if (!(ecx1 & (1 << 12)) || !(ecx1 & (1 << 28)) || !(ecx1 & (1 << 29))) return 0;
        __cpuidex(r, 7, 0);                                  /* FMA, AVX, F16C above; AVX2 */
        return (r[1] & (1 << 5)) != 0;
    }
    static int nnx_cpu_avx512(void) {
        int r[4];
        if (!nnx_cpu_avx2()) return 0;
        __cpuid(r, 1);
        if ((nnx_xcr0(r[2]) & 0xe6) != 0xe6) return 0;       /* and opmask, ZMM state */
        __cpuidex(r, 7, 0);                                  /* F, DQ, CD, BW, VL */
        unsigned int need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
        return ((unsigned int)r[1] & need) == need;
    }
    #elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    #include <cpuid.h>
    static int nnx_cpu_avx2(void) {
        unsigned int a, b, c, d;
        __builtin_cpu_init();                  /* the builtins check the OS saves the state */
        if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
        if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
        return (c & (1u << 29)) != 0;          /* F16C, not named by every compiler's builtin */
    }
    #if defined(__APPLE__)
    #include <sys/sysctl.h>
    static int nnx_sysctl_flag(const char* name) {
        int value = 0;
        size_t size = sizeof(value);
        return sysctlbyname(name, &value, &size, NULL, 0) == 0 && value != 0;
    }
    static int nnx_cpu_avx512(void) {     /* macOS enables the AVX-512 state on first use */
        return nnx_cpu_avx2() && nnx_sysctl_flag("hw.optional.avx512f")
            && nnx_sysctl_flag("hw.optional.avx512cd") && nnx_sysctl_flag("hw.optional.avx512bw")
            && nnx_sysctl_flag("hw.optional.avx512dq") && nnx_sysctl_flag("hw.optional.avx512vl");
    }
    #else
    static int nnx_cpu_avx512(void) {
        return nnx_cpu_avx2() && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    }
    #endif
    #else
    static int nnx_cpu_avx2(void) { return 0; }
    static int nnx_cpu_avx512(void) { return 0; }
    #endif
    """
    int nnx_cpu_avx2() noexcept nogil
    int nnx_cpu_avx512() noexcept nogil

ACTIVATION_NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
                    "gelu", "gelu_tanh", "silu", "elu", "softplus")

# Below this many multiply-adds per call (about 100 microseconds of work on one core),
# waking threads costs more than it saves.
cdef Py_ssize_t PARALLEL_MIN_MACS = 1 << 22
# Threads for forward passes; 0 means OpenMP's default (OMP_NUM_THREADS, else all cores).
cdef int thread_setting = 0
# Upper bound on threads per call: asking OpenMP for tens of thousands kills the process.
cdef enum:
    THREAD_LIMIT = 256
MAX_THREADS = THREAD_LIMIT

# GNU OpenMP hangs in a fork()ed child of a process that ran a parallel region, so such a
# child runs single-threaded.
cdef bint openmp_started = False
cdef bint openmp_unusable = False


def _after_fork_in_child():
    global openmp_unusable
    openmp_unusable = openmp_unusable or openmp_started


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# BLAS matrix products, borrowed from SciPy's cython_blas when SciPy is installed.
ctypedef void (*sgemm_t)(char* transa, char* transb, int* m, int* n, int* k, float* alpha,
                         float* a, int* lda, float* b, int* ldb, float* beta, float* c,
                         int* ldc) noexcept nogil
ctypedef void (*dgemm_t)(char* transa, char* transb, int* m, int* n, int* k, double* alpha,
                         double* a, int* lda, double* b, int* ldb, double* beta, double* c,
                         int* ldc) noexcept nogil
cdef sgemm_t blas_sgemm = NULL
cdef dgemm_t blas_dgemm = NULL
cdef bint blas_looked_up = False
cdef enum:
    BLAS_NEVER = 0
    BLAS_AUTO = 1     # only where the own kernels are slower: builds without AVX2
    BLAS_ALWAYS = 2   # for every layer wide enough (tests use it to reach this path)
cdef int blas_mode = BLAS_AUTO


cdef void look_up_blas():
    """Fetch sgemm/dgemm from scipy.linalg.cython_blas once, on the first batch that needs it."""
    global blas_sgemm, blas_dgemm, blas_looked_up
    try:
        from scipy.linalg import cython_blas
        capsules = cython_blas.__pyx_capi__
        blas_sgemm = <sgemm_t>PyCapsule_GetPointer(
            capsules["sgemm"], PyCapsule_GetName(capsules["sgemm"]))
        blas_dgemm = <dgemm_t>PyCapsule_GetPointer(
            capsules["dgemm"], PyCapsule_GetName(capsules["dgemm"]))
    except Exception:   # no SciPy, or one without these: the own kernels do all the work
        blas_sgemm = NULL
        blas_dgemm = NULL
    # Set last: a thread that sees it set (the import above lets others run) sees the pointers.
    blas_looked_up = True


def blas_available():
    """True when SciPy's BLAS was found and is not switched off."""
    if not blas_looked_up:
        look_up_blas()
    return blas_mode != BLAS_NEVER and blas_sgemm != NULL


def allow_blas(allowed):
    """BLAS for wide layers: None (the default) where it beats the own kernels, True for
    every wide layer, False never. Returns the previous setting."""
    global blas_mode
    previous = (False, None, True)[blas_mode]
    blas_mode = BLAS_AUTO if allowed is None else (BLAS_ALWAYS if allowed else BLAS_NEVER)
    return previous


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(nnx_openmp_enabled())


# Cap on the default threads: the CPUs this process may use (nnexposed._cpu_limits, set at
# import), which OpenMP's default ignores when a cgroup quota limits them.
cdef int default_cap = THREAD_LIMIT


cdef inline int default_thread_count() noexcept nogil:
    return min(nnx_max_threads(), default_cap)


def cap_default_threads(int n):
    """Let the default (no set_num_threads, no threads=) use at most n threads (n >= 1)."""
    global default_cap
    default_cap = min(max(n, 1), THREAD_LIMIT)


def default_threads():
    """Threads a forward pass uses by default: OpenMP's default (OMP_NUM_THREADS, else the
    CPUs of the affinity mask) capped by cap_default_threads; 1 without OpenMP."""
    return default_thread_count()


def get_num_threads():
    """Threads a forward pass may use: the last set_num_threads, else default_threads()."""
    return thread_setting if thread_setting > 0 else default_thread_count()


def set_num_threads(int n):
    """Let forward passes use up to n threads, at most MAX_THREADS (n <= 0: OpenMP's default)."""
    global thread_setting
    thread_setting = min(max(n, 0), THREAD_LIMIT)


# A one-sample forward that may share its layers' neurons among threads (CompiledNetwork
# .split_rows) does so only while the threads are likely awake: OpenMP's idle threads spin
# for a few hundred microseconds (GOMP_SPINCOUNT, set in __init__), and waking sleeping ones
# costs more (20-40 us here: tools/one_sample_gaps.py) than sharing saves. Calls that follow
# one another closely, as in a loop, share; isolated calls run on one thread.
cdef long long SPLIT_AWAKE_NS = 100_000
cdef long long last_split_forward_end = -(1LL << 62)
cdef enum:
    SPLIT_NEVER = 0
    SPLIT_AUTO = 1
    SPLIT_ALWAYS = 2    # tests use it to reach the shared path
cdef int split_mode = SPLIT_AUTO


cdef bint threads_awake():
    """Whether a one-sample forward should share its rows among threads now."""
    if split_mode != SPLIT_AUTO:
        return split_mode == SPLIT_ALWAYS
    return perf_counter_ns() - last_split_forward_end < SPLIT_AWAKE_NS


def allow_row_split(allowed):
    """One-sample forwards of mid-sized networks sharing each layer's neurons among threads:
    None (the default) when they follow another closely, True always, False never.
    Returns the previous setting."""
    global split_mode
    previous = (False, None, True)[split_mode]
    split_mode = SPLIT_AUTO if allowed is None else (SPLIT_ALWAYS if allowed else SPLIT_NEVER)
    return previous


def cpu_supports(isa):
    """True when this CPU and OS can run the kernels built for ``isa``: "baseline", "avx2"
    (AVX2, FMA, F16C) or "avx512" (AVX-512 F, CD, BW, DQ, VL)."""
    if isa == "baseline":
        return True
    if isa == "avx2":
        return bool(nnx_cpu_avx2())
    if isa == "avx512":
        return bool(nnx_cpu_avx512())
    raise ValueError(f"unknown ISA {isa!r}: expected 'baseline', 'avx2' or 'avx512'")


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

include "_activations.pxi"


include "_dense.pxi"


cdef inline void layer_activate(const LayerPlan* layer, floating* values,
                                Py_ssize_t n_samples) noexcept nogil:
    """Activation of one layer over ``n_samples`` outputs stored feature-major."""
    cdef Py_ssize_t t
    if layer.activation == ACT_SOFTMAX:
        for t in range(n_samples):
            softmax_strided(values + t, layer.n_out, n_samples)
    elif layer.activation != ACT_LINEAR:
        activate(values, layer.n_out * n_samples, layer.activation, <floating>layer.alpha)


cdef inline bint use_blas(const LayerPlan* layer, Py_ssize_t cols) noexcept nogil:
    """Whether BLAS computes this layer for blocks of ``cols`` samples (sgemm and dgemm are
    looked up together, so one pointer tells for both)."""
    if blas_mode == BLAS_NEVER or blas_sgemm == NULL:
        return False
    if blas_mode == BLAS_AUTO and NNX_OWN_KERNELS_BEAT_BLAS:
        return False
    return (cols >= BLAS_MIN_COLS and layer.n_in * layer.n_out >= BLAS_MIN_WEIGHTS
            and layer.n_in <= INT_MAX and layer.n_out <= INT_MAX)


cdef void dense_block(const LayerPlan* layer, const floating* x, floating* y,
                      Py_ssize_t cols, const char* ahead, Py_ssize_t ahead_bytes) noexcept nogil:
    """y = activation(W @ x + b) on a block of ``cols`` samples stored feature-major;
    fetches ``ahead_bytes`` from ``ahead`` into cache along the way (see dense_tile).

    x: (n_in, cols), y: (n_out, cols), cols a multiple of TILE.
    """
    cdef Py_ssize_t j, t, chunk
    cdef int m = <int>cols, n = <int>layer.n_out, k = <int>layer.n_in
    cdef floating one = 1, zero = 0
    cdef char no_transpose = b"N"
    cdef const floating* weights = <const floating*>layer.weights
    cdef const floating* biases = <const floating*>layer.biases
    if use_blas(layer, cols):
        # Row-major y (n_out, cols) is column-major y.T (cols, n_out) = x.T @ W.T, where
        # column-major x.T is row-major x and column-major W.T is row-major W.
        if floating is float:
            blas_sgemm(&no_transpose, &no_transpose, &m, &n, &k, &one, <float*>x, &m,
                       <float*>weights, &k, &zero, y, &m)
        else:
            blas_dgemm(&no_transpose, &no_transpose, &m, &n, &k, &one, <double*>x, &m,
                       <double*>weights, &k, &zero, y, &m)
        for j in range(layer.n_out):
            for t in range(cols):
                y[j * cols + t] += biases[j]
        layer_activate(layer, y, cols)
    else:
        for chunk in range(cols // TILE):
            dense_tile(x + chunk * TILE, weights, biases, y + chunk * TILE, layer.n_in,
                       layer.n_out, cols, layer.activation == ACT_RELU, ahead,
                       ahead_bytes if chunk == 0 else 0)
        if layer.activation != ACT_RELU:
            layer_activate(layer, y, cols)


cdef void network_block(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                        floating* out, Py_ssize_t n_rows, Py_ssize_t cols, floating* work,
                        Py_ssize_t max_width, const floating* next_x,
                        Py_ssize_t next_rows) noexcept nogil:
    """All layers on up to ``cols`` samples (rows of x), depth-first while they are in cache.

    work holds 2 * max_width * cols values; samples past n_rows are zero padding. The first
    layer fetches the ``next_rows`` rows at next_x (the next block's input) into cache while
    it computes, so that block need not wait for memory.
    """
    cdef Py_ssize_t i, j, k, t, first
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef floating* src = work
    cdef floating* dst = work + max_width * cols
    cdef floating* swap
    # Eight features at a time: the reads stay within a cache line per sample, the writes
    # within eight rows of the tile.
    for first in range(0, n_in - n_in % 8, 8):
        for t in range(n_rows):
            for i in range(first, first + 8):
                src[i * cols + t] = x[t * n_in + i]
    for i in range(n_in - n_in % 8, n_in):
        for t in range(n_rows):
            src[i * cols + t] = x[t * n_in + i]
    for i in range(n_in):
        for t in range(n_rows, cols):
            src[i * cols + t] = 0
    for k in range(n_layers):
        if k == 0:
            dense_block(&layers[k], src, dst, cols, <const char*>next_x,
                        next_rows * n_in * <Py_ssize_t>sizeof(floating))
        else:
            dense_block(&layers[k], src, dst, cols, NULL, 0)
        swap = src
        src = dst
        dst = swap
    for t in range(n_rows):
        for j in range(n_out):
            out[t * n_out + j] = src[j * cols + t]


cdef void dense_rows(const LayerPlan* layer, const floating* x, floating* y, Py_ssize_t first,
                     Py_ssize_t last) noexcept nogil:
    """y[first:last] = weights[first:last] @ x + biases[first:last] for one sample; from the
    layer's panels where they hold these neurons (first is then a multiple of OUT_BLOCK)."""
    cdef Py_ssize_t n_in = layer.n_in
    cdef Py_ssize_t panels_end = first
    cdef const floating* biases = <const floating*>layer.biases
    if layer.panels != NULL:
        panels_end = max(first, min(last, layer.n_out - layer.n_out % OUT_BLOCK))
        dense_panels(x, <const floating*>layer.panels, biases, y, n_in, first // OUT_BLOCK,
                     panels_end // OUT_BLOCK)
    if panels_end < last:
        dense_row(x, <const floating*>layer.weights + panels_end * n_in, biases + panels_end,
                  y + panels_end, n_in, last - panels_end)


cdef void network_row(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                      floating* out, floating* work, Py_ssize_t max_width,
                      int n_threads) noexcept nogil:
    """All layers on one sample; work holds 2 * max_width values.

    Layers of at least ROW_PARALLEL_MIN_MACS multiply-adds split their output neurons over
    ``n_threads`` threads, ROW_CHUNK rows at a time.
    """
    cdef Py_ssize_t k, chunk, n_chunks, first, count
    cdef const floating* src = x
    cdef floating* dst
    cdef const floating* weights
    cdef const floating* biases
    for k in range(n_layers):
        dst = out if k == n_layers - 1 else work + (k % 2) * max_width
        weights = <const floating*>layers[k].weights
        biases = <const floating*>layers[k].biases
        if n_threads > 1 and layers[k].n_in * layers[k].n_out >= ROW_PARALLEL_MIN_MACS:
            # Chunks of rows handed out as threads come free: a thread slowed by another
            # process (another library's spinning BLAS threads, say) delays nobody.
            n_chunks = (layers[k].n_out + ROW_CHUNK - 1) // ROW_CHUNK
            for chunk in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
                first = chunk * ROW_CHUNK
                count = min(<Py_ssize_t>ROW_CHUNK, layers[k].n_out - first)
                dense_row(src, weights + first * layers[k].n_in, biases + first,
                          dst + first, layers[k].n_in, count)
        else:
            dense_rows(&layers[k], src, dst, 0, layers[k].n_out)
        layer_activate(&layers[k], dst, 1)
        src = dst


cdef void network_row_split(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                            floating* out, floating* work, Py_ssize_t max_width,
                            int n_threads) noexcept nogil:
    """network_row with each layer's output neurons shared among ``n_threads`` threads, a
    run of whole panels to each; work holds 2 * max_width values.

    A thread takes the same neurons on every call, so its share of the weights stays in its
    own core's cache: a network too big for one core's L2 runs from two.
    """
    cdef int member, team
    cdef Py_ssize_t k, n_blocks, first, last
    cdef const floating* src
    cdef floating* dst
    with parallel(num_threads=n_threads):
        member = threadid()
        team = nnx_team_size()
        src = x
        for k in range(n_layers):
            dst = out if k == n_layers - 1 else work + (k % 2) * max_width
            n_blocks = (layers[k].n_out + OUT_BLOCK - 1) // OUT_BLOCK
            first = min(n_blocks * member // team * OUT_BLOCK, layers[k].n_out)
            last = min(n_blocks * (member + 1) // team * OUT_BLOCK, layers[k].n_out)
            if first < last:
                dense_rows(&layers[k], src, dst, first, last)
                if layers[k].activation != ACT_SOFTMAX:
                    activate(dst + first, last - first, layers[k].activation,
                             <floating>layers[k].alpha)
            # The next layer reads all of dst; after the last one, the end of the parallel
            # region waits for every thread.
            if k < n_layers - 1 or layers[k].activation == ACT_SOFTMAX:
                nnx_barrier()
            if layers[k].activation == ACT_SOFTMAX:
                if member == 0:
                    softmax_strided(dst, layers[k].n_out, 1)
                if k < n_layers - 1:
                    nnx_barrier()
            src = dst


cdef inline const floating* rows_from(const floating* x, Py_ssize_t first, Py_ssize_t batch,
                                      Py_ssize_t n_in) noexcept nogil:
    """The rows of x: (batch, n_in) from ``first`` on; NULL when first is past the end."""
    return x + first * n_in if first < batch else NULL


cdef int network_forward(const LayerPlan* layers, Py_ssize_t n_layers, Py_ssize_t max_width,
                         const floating* x, floating* out, Py_ssize_t batch, int n_threads,
                         bint split_rows) noexcept nogil:
    """Forward ``batch`` samples (rows of x) through all layers. Returns -1 if out of memory.

    Small batches run sample by sample (with split_rows, each layer's neurons shared among
    the threads); larger ones in blocks of samples, with BLAS for wide layers (BLAS then
    threads itself) and otherwise one block per OpenMP thread at a time.
    The workspace comes from PyMem_RawMalloc (callable without the GIL, seen by tracemalloc).
    """
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef Py_ssize_t s, k, block, n_blocks, first, rows, cols, block_size
    cdef bint blas = False
    cdef floating stack_work[2 * STACK_WIDTH]
    cdef floating* work
    if batch < MIN_TILED_BATCH:
        if max_width <= STACK_WIDTH:
            work = stack_work
        else:
            work = <floating*>PyMem_RawMalloc(2 * max_width * sizeof(floating))
            if work == NULL:
                return -1
        for s in range(batch):
            if split_rows and n_threads > 1:
                network_row_split(layers, n_layers, x + s * n_in, out + s * n_out, work,
                                  max_width, n_threads)
            else:
                network_row(layers, n_layers, x + s * n_in, out + s * n_out, work, max_width,
                            n_threads)
        if work != stack_work:
            PyMem_RawFree(work)
        return 0

    cols = min(BLAS_TILE, (batch + TILE - 1) // TILE * TILE)
    for k in range(n_layers):
        blas = blas or use_blas(&layers[k], cols)
    if not blas:
        cols = TILE
    n_blocks = (batch + cols - 1) // cols
    if blas:
        n_threads = 1   # BLAS runs its own threads
    n_threads = <int>max(1, min(n_threads, n_blocks))
    block_size = 2 * max_width * cols
    work = <floating*>PyMem_RawMalloc(n_threads * block_size * sizeof(floating))
    if work == NULL:
        return -1
    # Each block fetches the input of the block n_threads further on: the one this thread
    # probably takes next.
    if n_threads == 1:
        for block in range(n_blocks):
            first = block * cols
            rows = min(cols, batch - first)
            network_block(layers, n_layers, x + first * n_in, out + first * n_out, rows,
                          min(cols, (rows + TILE - 1) // TILE * TILE), work, max_width,
                          rows_from(x, first + cols, batch, n_in),
                          min(cols, max(0, batch - first - cols)))
    else:
        for block in prange(n_blocks, num_threads=n_threads, schedule="dynamic"):
            first = block * cols
            rows = min(cols, batch - first)
            network_block(layers, n_layers, x + first * n_in, out + first * n_out, rows,
                          cols, work + threadid() * block_size, max_width,
                          rows_from(x, first + n_threads * cols, batch, n_in),
                          min(cols, max(0, batch - first - n_threads * cols)))
    PyMem_RawFree(work)
    return 0


# ---------------------------------------------------------------------------------------------
# Python-facing entry points
# ---------------------------------------------------------------------------------------------

cdef inline bint is_behaved(object arr, int typenum):
    """A C-contiguous, aligned, native-order ndarray of the given type."""
    return (cnp.PyArray_Check(arr)
            and cnp.PyArray_TYPE(<cnp.ndarray>arr) == typenum
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>arr)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>arr))


cdef inline bint overlaps(cnp.ndarray a, cnp.ndarray b):
    cdef char* a0 = cnp.PyArray_BYTES(a)
    cdef char* b0 = cnp.PyArray_BYTES(b)
    cdef Py_ssize_t a_len = cnp.PyArray_NBYTES(a)
    cdef Py_ssize_t b_len = cnp.PyArray_NBYTES(b)
    return a_len > 0 and b_len > 0 and a0 < b0 + b_len and b0 < a0 + a_len


cdef cnp.ndarray panels_of(cnp.ndarray weights):
    """weights: (n_out, n_in) -> (n_out // OUT_BLOCK, n_in, OUT_BLOCK), panel p holding
    weights[p * OUT_BLOCK:(p + 1) * OUT_BLOCK].T; 64-byte aligned, for whole-line loads."""
    cdef Py_ssize_t n_panels = weights.shape[0] // OUT_BLOCK
    cdef Py_ssize_t n_in = weights.shape[1]
    cdef Py_ssize_t size = n_panels * n_in * OUT_BLOCK
    cdef Py_ssize_t itemsize = weights.itemsize
    buffer = np.empty(size + 64 // itemsize, weights.dtype)
    start = (-buffer.ctypes.data) % 64 // itemsize
    panels = buffer[start:start + size].reshape(n_panels, n_in, OUT_BLOCK)
    blocks = weights[:n_panels * OUT_BLOCK].reshape(n_panels, OUT_BLOCK, n_in)
    panels[...] = blocks.transpose(0, 2, 1)
    return panels


cdef class CompiledNetwork:
    """The layers of a network as the kernels see them.

    Built by ``nnexposed.Network`` from validated arrays of one dtype; the arrays are kept
    alive here and never written to.
    """
    cdef LayerPlan* layers
    cdef Py_ssize_t n_layers
    cdef Py_ssize_t max_width
    cdef Py_ssize_t macs_per_sample
    # One-sample forwards may share each layer's neurons among threads: all layers are
    # small, together big enough.
    cdef bint split_rows
    cdef int typenum
    cdef readonly Py_ssize_t n_in
    cdef readonly Py_ssize_t n_out
    cdef readonly object dtype
    cdef tuple arrays

    def __cinit__(self, weights, biases, activations, alphas, bint keep_panels=True):
        """weights[k]: (n_out, n_in) and biases[k]: (n_out,), C-contiguous float32 or float64
        (all the same dtype); activations[k]: index into ACTIVATION_NAMES; alphas[k]: float.
        keep_panels: also keep small layers' weights as panels (LayerPlan.panels) for faster
        one-sample forwards (worth it for a network used many times, not for a single call)."""
        cdef Py_ssize_t k, n_layers = len(weights)
        cdef cnp.ndarray w, b, layer_panels
        panels = []
        if n_layers == 0:
            raise ValueError("a network needs at least one layer")
        if not (len(biases) == len(activations) == len(alphas) == n_layers):
            raise ValueError("weights, biases, activations and alphas differ in length")
        self.dtype = np.dtype(np.asarray(weights[0]).dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"expected float32 or float64 weights, got {self.dtype}")
        self.typenum = self.dtype.num
        self.arrays = tuple(weights) + tuple(biases)
        self.layers = <LayerPlan*>PyMem_RawMalloc(n_layers * sizeof(LayerPlan))
        if self.layers == NULL:
            raise MemoryError()
        self.n_layers = n_layers
        self.max_width = 0
        self.macs_per_sample = 0
        self.split_rows = keep_panels
        for k in range(n_layers):
            # The kernels trust these invariants, so they are checked here, not assumed.
            w = weights[k]
            b = biases[k]
            if not (is_behaved(w, self.typenum) and is_behaved(b, self.typenum)
                    and w.ndim == 2 and b.ndim == 1 and b.shape[0] == w.shape[0]
                    and w.shape[0] > 0 and w.shape[1] > 0):
                raise ValueError(f"layer {k}: weights {np.shape(w)} / biases {np.shape(b)} are not "
                                 f"C-contiguous {self.dtype} arrays of shapes (n_out, n_in) "
                                 f"and (n_out,)")
            if k > 0 and w.shape[1] != self.layers[k - 1].n_out:
                raise ValueError(f"layer {k} expects {int(w.shape[1])} inputs but layer {k - 1} "
                                 f"gives {self.layers[k - 1].n_out}")
            if not 0 <= activations[k] < N_ACTIVATIONS:
                raise ValueError(f"layer {k}: unknown activation code {activations[k]}")
            self.layers[k].n_in = w.shape[1]
            self.layers[k].n_out = w.shape[0]
            self.layers[k].activation = activations[k]
            self.layers[k].alpha = alphas[k]
            self.layers[k].weights = cnp.PyArray_DATA(w)
            self.layers[k].biases = cnp.PyArray_DATA(b)
            self.layers[k].panels = NULL
            if w.shape[0] * w.shape[1] > PANEL_MAX_WEIGHTS:
                self.split_rows = False
            elif keep_panels and w.shape[0] >= OUT_BLOCK:
                layer_panels = panels_of(w)
                panels.append(layer_panels)
                self.layers[k].panels = cnp.PyArray_DATA(layer_panels)
            self.max_width = max(self.max_width, w.shape[0], w.shape[1])
            self.macs_per_sample += w.shape[0] * w.shape[1]
        self.arrays += tuple(panels)
        self.split_rows = self.split_rows and self.macs_per_sample >= SPLIT_PANELS_MIN_MACS
        self.n_in = self.layers[0].n_in
        self.n_out = self.layers[n_layers - 1].n_out

    def __dealloc__(self):
        PyMem_RawFree(self.layers)

    def forward(self, x, out=None, int threads=0):
        """Run all layers on x: (n_in,) -> (n_out,) or (batch, n_in) -> (batch, n_out).

        ``threads`` <= 0 uses get_num_threads(); small jobs always run on one thread.
        """
        global openmp_started, last_split_forward_end
        cdef cnp.ndarray xa, oa
        cdef bint may_split, split
        cdef cnp.npy_intp dims[2]
        cdef int ndim, status
        cdef Py_ssize_t batch
        if is_behaved(x, self.typenum):
            xa = <cnp.ndarray>x
        else:
            xa = as_network_input(x, self.dtype, self.n_in)
        ndim = cnp.PyArray_NDIM(xa)
        if not (1 <= ndim <= 2 and cnp.PyArray_DIM(xa, ndim - 1) == self.n_in):
            xa = as_network_input(xa, self.dtype, self.n_in)  # raises with the details
        batch = 1 if ndim == 1 else cnp.PyArray_DIM(xa, 0)
        dims[0] = batch
        dims[ndim - 1] = self.n_out
        if out is None:
            oa = <cnp.ndarray>cnp.PyArray_EMPTY(ndim, dims, self.typenum, 0)
        else:
            if not (is_behaved(out, self.typenum) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)
                    and cnp.PyArray_NDIM(<cnp.ndarray>out) == ndim
                    and cnp.PyArray_DIM(<cnp.ndarray>out, 0) == dims[0]
                    and cnp.PyArray_DIM(<cnp.ndarray>out, ndim - 1) == dims[ndim - 1]):
                check_out(out, tuple([dims[i] for i in range(ndim)]), self.dtype)
                raise ValueError("out is not a writeable, C-contiguous array of the result's "
                                 "shape and dtype")
            oa = <cnp.ndarray>out
            if overlaps(xa, oa):
                xa = xa.copy()
        if batch == 0:
            return oa
        if threads <= 0:
            threads = thread_setting if thread_setting > 0 else default_thread_count()
        threads = min(threads, THREAD_LIMIT)
        may_split = self.split_rows and batch < MIN_TILED_BATCH
        split = may_split and threads > 1 and threads_awake()
        if openmp_unusable or not split and batch * self.macs_per_sample < PARALLEL_MIN_MACS:
            threads = 1
            split = False
        elif threads > 1:
            openmp_started = True
        if batch >= BLAS_MIN_COLS and not blas_looked_up:
            look_up_blas()
        with nogil:
            if self.typenum == cnp.NPY_FLOAT32:
                status = network_forward(self.layers, self.n_layers, self.max_width,
                                         <const float*>cnp.PyArray_DATA(xa),
                                         <float*>cnp.PyArray_DATA(oa), batch, threads,
                                         split)
            else:
                status = network_forward(self.layers, self.n_layers, self.max_width,
                                         <const double*>cnp.PyArray_DATA(xa),
                                         <double*>cnp.PyArray_DATA(oa), batch, threads,
                                         split)
        if status != 0:
            raise MemoryError("no memory for the forward pass workspace")
        if may_split:
            last_split_forward_end = perf_counter_ns()
        return oa


def activate_inplace(cnp.ndarray values, int activation, double alpha=0.01):
    """Apply an activation in place; softmax runs over the last axis.

    values: a writeable, C-contiguous float32 or float64 array of any shape.
    """
    cdef Py_ssize_t n, width, row
    cdef int typenum = cnp.PyArray_TYPE(values)
    if not (typenum in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64) and is_behaved(values, typenum)
            and cnp.PyArray_ISWRITEABLE(values)):
        raise ValueError(f"expected a writeable, C-contiguous float32 or float64 array, "
                         f"got {values.dtype} with flags {values.flags!r}")
    if not 0 <= activation < N_ACTIVATIONS:
        raise ValueError(f"unknown activation code {activation}")
    n = cnp.PyArray_SIZE(values)
    if activation == ACT_SOFTMAX:
        if cnp.PyArray_NDIM(values) == 0:
            raise ValueError("softmax needs at least one axis, got a 0-d array")
        width = cnp.PyArray_DIM(values, cnp.PyArray_NDIM(values) - 1)
        if n == 0:
            return values
        with nogil:
            for row in range(n // width):
                if typenum == cnp.NPY_FLOAT32:
                    softmax_strided(<float*>cnp.PyArray_DATA(values) + row * width, width, 1)
                else:
                    softmax_strided(<double*>cnp.PyArray_DATA(values) + row * width, width, 1)
        return values
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            activate(<float*>cnp.PyArray_DATA(values), n, activation, <float>alpha)
        else:
            activate(<double*>cnp.PyArray_DATA(values), n, activation, alpha)
    return values
