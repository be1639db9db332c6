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

cdef extern from "_kernels/atomics.h":
    int nnx_load_acquire_int(const int* p) noexcept nogil
    void nnx_store_release_int(int* p, int value) noexcept nogil

cdef sgemm_t blas_sgemm = NULL
cdef dgemm_t blas_dgemm = NULL
cdef int blas_looked_up = 0


cdef void look_up_blas():
    """Fetch sgemm/dgemm from scipy.linalg.cython_blas once, on the first batch that needs it."""
    global blas_sgemm, blas_dgemm
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
    # Published last: a thread that sees the flag set (the import above lets others run) sees
    # the pointers.
    nnx_store_release_int(&blas_looked_up, 1)


cdef inline bint blas_found():
    """Whether SciPy's sgemm and dgemm were found (looked up on the first call)."""
    if not nnx_load_acquire_int(&blas_looked_up):
        look_up_blas()
    return blas_sgemm != NULL


def blas_available():
    """True when SciPy's BLAS was found and the settings (``blas``) do not switch it off."""
    cdef long long settings[NNX_N_SETTINGS]
    read_settings(settings)
    return settings[NNX_BLAS] != NNX_NEVER and blas_found()


cdef inline void blas_gemm(char transa, char transb, int m, int n, int k, const floating* a,
                           int lda, const floating* b, int ldb, floating beta,
                           floating* c, int ldc) noexcept nogil:
    """c = op(a) @ op(b) + beta * c on column-major matrices (op: "N" as is, "T" transposed),
    m x n = (m x k) @ (k x n): SciPy's sgemm or dgemm."""
    cdef floating one = 1
    if floating is float:
        blas_sgemm(&transa, &transb, &m, &n, &k, &one, <float*>a, &lda, <float*>b, &ldb, &beta,
                   c, &ldc)
    else:
        blas_dgemm(&transa, &transb, &m, &n, &k, &one, <double*>a, &lda, <double*>b, &ldb,
                   &beta, c, &ldc)
