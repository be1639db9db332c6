# BLAS: SciPy's sgemm/dgemm, looked up once, and which layers they compute. Included by
# core.pxi.

# BLAS matrix products, borrowed from SciPy's cython_blas when SciPy is installed.
cdef extern from "_kernels/blas.h":
    ctypedef void (*sgemm_t "nnx_sgemm_t")(char* transa, char* transb, int* m, int* n, int* k,
                                           float* alpha, float* a, int* lda, float* b,
                                           int* ldb, float* beta, float* c,
                                           int* ldc) noexcept nogil
    ctypedef void (*dgemm_t "nnx_dgemm_t")(char* transa, char* transb, int* m, int* n, int* k,
                                           double* alpha, double* a, int* lda, double* b,
                                           int* ldb, double* beta, double* c,
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


cdef inline bint use_blas(const LayerPlan* layer, Py_ssize_t cols) noexcept nogil:
    """Whether BLAS computes this layer for blocks of ``cols`` samples (sgemm and dgemm are
    looked up together, so one pointer tells for both)."""
    if blas_mode == BLAS_NEVER or blas_sgemm == NULL:
        return False
    if blas_mode == BLAS_AUTO and NNX_OWN_KERNELS_BEAT_BLAS:
        return False
    return (cols >= BLAS_MIN_COLS and layer.n_in * layer.n_out >= BLAS_MIN_WEIGHTS
            and layer.n_in <= INT_MAX and layer.n_out <= INT_MAX)
