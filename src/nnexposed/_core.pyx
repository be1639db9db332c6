# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled kernels of nnexposed: fused dense layers and activations, float32 and float64.

The ``cdef ... noexcept nogil`` kernels trust their arguments. The two Python-facing entry
points, ``CompiledNetwork.forward`` and ``activate_inplace``, check every array once (fast C
checks for the common case, the helpers in ``_validation`` for everything else) and then
release the GIL for the arithmetic.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp, expf, fabs, fabsf, tanh, tanhf
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cimport numpy as cnp

import numpy as np

from nnexposed._validation import as_network_input, check_out

cnp.import_array()

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int nnx_openmp_enabled(void) { return 1; }
    static int nnx_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int nnx_openmp_enabled(void) { return 0; }
    static int nnx_max_threads(void) { return 1; }
    #endif
    """
    int nnx_openmp_enabled() noexcept nogil
    int nnx_max_threads() noexcept nogil

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

ACTIVATION_NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")

# Below this many multiply-adds per call, starting threads costs more than it saves.
cdef Py_ssize_t PARALLEL_MIN_MACS = 1 << 18


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(nnx_openmp_enabled())


def default_threads():
    """Threads OpenMP would use by default (honours OMP_NUM_THREADS); 1 without OpenMP."""
    return nnx_max_threads()


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


cdef void dense_row(const floating* x, const floating* weights, const floating* biases,
                    floating* y, Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """y = weights @ x + biases for one sample; x: (n_in,), weights: (n_out, n_in)."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    cdef floating s0, s1, s2, s3
    for j in range(n_out):
        row = weights + j * n_in
        s0 = 0
        s1 = 0
        s2 = 0
        s3 = 0
        i = 0
        while i + 4 <= n_in:
            s0 += row[i] * x[i]
            s1 += row[i + 1] * x[i + 1]
            s2 += row[i + 2] * x[i + 2]
            s3 += row[i + 3] * x[i + 3]
            i += 4
        while i < n_in:
            s0 += row[i] * x[i]
            i += 1
        y[j] = ((s0 + s1) + (s2 + s3)) + biases[j]


cdef void dense_tile(const floating* x, const floating* weights, const floating* biases,
                     floating* y, Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """One layer on a tile of TILE samples stored feature-major.

    x: (n_in, TILE), weights: (n_out, n_in), y: (n_out, TILE).
    """
    cdef Py_ssize_t i, j, t
    cdef floating w
    cdef floating acc[TILE]
    cdef const floating* row
    cdef const floating* xi
    for j in range(n_out):
        row = weights + j * n_in
        for t in range(TILE):
            acc[t] = 0
        for i in range(n_in):
            w = row[i]
            xi = x + i * TILE
            for t in range(TILE):
                acc[t] += w * xi[t]
        for t in range(TILE):
            y[j * TILE + t] = acc[t] + biases[j]


cdef inline void layer_activate(const LayerPlan* layer, floating* values,
                                Py_ssize_t n_samples) noexcept nogil:
    """Activation of one layer over ``n_samples`` outputs stored feature-major."""
    cdef Py_ssize_t t
    if layer.activation == ACT_SOFTMAX:
        for t in range(n_samples):
            softmax_strided(values + t, layer.n_out, n_samples)
    elif layer.activation != ACT_LINEAR:
        activate(values, layer.n_out * n_samples, layer.activation, <floating>layer.alpha)


cdef void network_row(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                      floating* out, floating* work, Py_ssize_t max_width) noexcept nogil:
    """All layers on one sample; work holds 2 * max_width values."""
    cdef Py_ssize_t k
    cdef const floating* src = x
    cdef floating* dst
    for k in range(n_layers):
        dst = out if k == n_layers - 1 else work + (k % 2) * max_width
        dense_row(src, <const floating*>layers[k].weights, <const floating*>layers[k].biases,
                  dst, layers[k].n_in, layers[k].n_out)
        layer_activate(&layers[k], dst, 1)
        src = dst


cdef void network_tile(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                       floating* out, Py_ssize_t n_rows, floating* work,
                       Py_ssize_t max_width) noexcept nogil:
    """All layers on up to TILE samples (rows of x), depth-first while the tile is in cache.

    work holds 2 * max_width * TILE values; rows past n_rows are zero padding.
    """
    cdef Py_ssize_t i, j, k, t
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef floating* src = work
    cdef floating* dst = work + max_width * TILE
    cdef floating* swap
    for t in range(n_rows):
        for i in range(n_in):
            src[i * TILE + t] = x[t * n_in + i]
    for t in range(n_rows, TILE):
        for i in range(n_in):
            src[i * TILE + t] = 0
    for k in range(n_layers):
        dense_tile(src, <const floating*>layers[k].weights, <const floating*>layers[k].biases,
                   dst, layers[k].n_in, layers[k].n_out)
        layer_activate(&layers[k], dst, TILE)
        swap = src
        src = dst
        dst = swap
    for t in range(n_rows):
        for j in range(n_out):
            out[t * n_out + j] = src[j * TILE + t]


cdef int network_forward(const LayerPlan* layers, Py_ssize_t n_layers, Py_ssize_t max_width,
                         const floating* x, floating* out, Py_ssize_t batch,
                         int n_threads) noexcept nogil:
    """Forward ``batch`` samples (rows of x) through all layers. Returns -1 if out of memory."""
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef Py_ssize_t s, tile, n_tiles, first, rows, tile_size
    cdef floating stack_work[2 * STACK_WIDTH]
    cdef floating* work
    if batch < MIN_TILED_BATCH:
        if max_width <= STACK_WIDTH:
            work = stack_work
        else:
            work = <floating*>malloc(2 * max_width * sizeof(floating))
            if work == NULL:
                return -1
        for s in range(batch):
            network_row(layers, n_layers, x + s * n_in, out + s * n_out, work, max_width)
        if work != stack_work:
            free(work)
        return 0

    n_tiles = (batch + TILE - 1) // TILE
    if n_threads > n_tiles:
        n_threads = <int>n_tiles
    if n_threads < 1:
        n_threads = 1
    tile_size = 2 * max_width * TILE
    work = <floating*>malloc(n_threads * tile_size * sizeof(floating))
    if work == NULL:
        return -1
    if n_threads == 1:
        for tile in range(n_tiles):
            first = tile * TILE
            rows = min(TILE, batch - first)
            network_tile(layers, n_layers, x + first * n_in, out + first * n_out, rows,
                         work, max_width)
    else:
        for tile in prange(n_tiles, num_threads=n_threads, schedule="static"):
            first = tile * TILE
            rows = min(TILE, batch - first)
            network_tile(layers, n_layers, x + first * n_in, out + first * n_out, rows,
                         work + threadid() * tile_size, max_width)
    free(work)
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


cdef class CompiledNetwork:
    """The layers of a network as the kernels see them.

    Built by ``nnexposed.Network`` from validated arrays of one dtype; the arrays are kept
    alive here and never written to.
    """
    cdef LayerPlan* layers
    cdef Py_ssize_t n_layers
    cdef Py_ssize_t max_width
    cdef Py_ssize_t macs_per_sample
    cdef int typenum
    cdef readonly Py_ssize_t n_in
    cdef readonly Py_ssize_t n_out
    cdef readonly object dtype
    cdef tuple arrays

    def __cinit__(self, weights, biases, activations, alphas):
        """weights[k]: (n_out, n_in) and biases[k]: (n_out,), C-contiguous float32 or float64
        (all the same dtype); activations[k]: index into ACTIVATION_NAMES; alphas[k]: float."""
        cdef Py_ssize_t k, n_layers = len(weights)
        cdef cnp.ndarray w, b
        if n_layers == 0:
            raise ValueError("a network needs at least one layer")
        if not (len(biases) == len(activations) == len(alphas) == n_layers):
            raise ValueError("weights, biases, activations and alphas differ in length")
        self.dtype = np.dtype(np.asarray(weights[0]).dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"expected float32 or float64 weights, got {self.dtype}")
        self.typenum = self.dtype.num
        self.arrays = tuple(weights) + tuple(biases)
        self.layers = <LayerPlan*>malloc(n_layers * sizeof(LayerPlan))
        if self.layers == NULL:
            raise MemoryError()
        self.n_layers = n_layers
        self.max_width = 0
        self.macs_per_sample = 0
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
            self.max_width = max(self.max_width, w.shape[0], w.shape[1])
            self.macs_per_sample += w.shape[0] * w.shape[1]
        self.n_in = self.layers[0].n_in
        self.n_out = self.layers[n_layers - 1].n_out

    def __dealloc__(self):
        free(self.layers)

    def forward(self, x, out=None, int threads=0):
        """Run all layers on x: (n_in,) -> (n_out,) or (batch, n_in) -> (batch, n_out).

        ``threads`` <= 0 uses the OpenMP default; small batches always run on one thread.
        """
        cdef cnp.ndarray xa, oa
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
            threads = nnx_max_threads()
        if batch * self.macs_per_sample < PARALLEL_MIN_MACS:
            threads = 1
        with nogil:
            if self.typenum == cnp.NPY_FLOAT32:
                status = network_forward(self.layers, self.n_layers, self.max_width,
                                         <const float*>cnp.PyArray_DATA(xa),
                                         <float*>cnp.PyArray_DATA(oa), batch, threads)
            else:
                status = network_forward(self.layers, self.n_layers, self.max_width,
                                         <const double*>cnp.PyArray_DATA(xa),
                                         <double*>cnp.PyArray_DATA(oa), batch, threads)
        if status != 0:
            raise MemoryError("no memory for the forward pass workspace")
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
