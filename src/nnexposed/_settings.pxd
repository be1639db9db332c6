# The storage of the runtime settings and path counters, shared by every kernel build
# (nnexposed._settings; the Python API is nnexposed._config).

cdef extern from "_kernels/settings.h":
    enum: NNX_MAX_THREADS
    enum:
        NNX_THREADS
        NNX_BLAS
        NNX_SHARED_PANELS
        NNX_PARALLEL_MIN_MACS
        NNX_ROW_SPLIT_MIN_MACS
        NNX_SHARE_MIN_MACS
        NNX_BLAS_MIN_WEIGHTS
        NNX_BLAS_MIN_BATCH
        NNX_PANEL_MAX_WEIGHTS
        NNX_N_SETTINGS
    enum:
        NNX_NEVER
        NNX_AUTO
        NNX_ALWAYS
    enum:
        NNX_COUNT_ONE_SAMPLE
        NNX_COUNT_ROW_SPLIT
        NNX_COUNT_SHARED_PANELS
        NNX_COUNT_TILES
        NNX_COUNT_BLAS
        NNX_COUNT_PARALLEL_REGIONS
        NNX_N_COUNTERS
    ctypedef struct nnx_settings:
        long long values[NNX_N_SETTINGS]
        unsigned int overridden
    ctypedef struct nnx_shared_state:
        pass
    void nnx_count(nnx_shared_state* state, int counter) noexcept nogil
    long long nnx_last_shared_end(nnx_shared_state* state) noexcept nogil
    void nnx_set_last_shared_end(nnx_shared_state* state, long long ns) noexcept nogil
    int nnx_openmp_unusable(nnx_shared_state* state) noexcept nogil
    void nnx_note_openmp_started(nnx_shared_state* state) noexcept nogil
    int nnx_take_threads(nnx_shared_state* state, int wanted, int budget) noexcept nogil
    void nnx_give_back_threads(nnx_shared_state* state, int taken) noexcept nogil
    int nnx_threads_in_use(nnx_shared_state* state) noexcept nogil

cdef nnx_shared_state* shared_state() noexcept nogil
cdef void read_settings(long long* values) noexcept nogil
