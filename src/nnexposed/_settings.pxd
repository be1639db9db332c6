# The storage of the runtime settings and path counters, shared by every kernel build
# (nnexposed._settings; the Python API is nnexposed._config).

cdef extern from "_kernels/thread_policy.h":
    enum: NNX_DELAY_UNTIL_DONE
    double NNX_BLOCK_MACS_PER_NS
    double NNX_ROW_MACS_PER_NS
    ctypedef struct nnx_counter:
        long long value
    ctypedef struct nnx_parallel_watch:
        long long elapsed_ns
        long long caller_ns
        double caller_work
        double total_work
        int regions
    ctypedef struct nnx_thread_policy:
        pass
    ctypedef struct nnx_thread_policy_view:
        long long backing_off_ns
        long long backoff_forwards_left
        long long last_backoff_ns
        long long parallel_forwards
        long long backoffs_started
        long long debt_ns
        long long backed_off_forwards
        double last_caller_share
    long long nnx_now_ns() noexcept nogil
    long long nnx_claim(nnx_counter* counter) noexcept nogil
    void nnx_add_done(nnx_counter* counter, long long n) noexcept nogil
    void nnx_wait_done(nnx_counter* counter, long long target) noexcept nogil
    void nnx_pause() noexcept nogil
    int nnx_caller_clock(double expected_ns) noexcept nogil
    long long nnx_caller_now_ns(int cpu_clock) noexcept nogil
    void nnx_reset_thread_policy(nnx_thread_policy* policy) noexcept nogil
    bint nnx_backing_off(nnx_thread_policy* policy) noexcept nogil
    int nnx_allow_backoff(nnx_thread_policy* policy, int allowed) noexcept nogil
    long long nnx_observe_parallel(nnx_thread_policy* policy, long long started,
                                   long long ended, long long elapsed,
                                   long long serial) noexcept nogil
    void nnx_judge_forward(nnx_thread_policy* policy, long long started,
                           const nnx_parallel_watch* watch) noexcept nogil
    nnx_thread_policy_view nnx_view_thread_policy(nnx_thread_policy* policy) noexcept nogil
    void nnx_set_delay(nnx_thread_policy* policy, int member, long long ns) noexcept nogil
    void nnx_delay_if_asked(nnx_thread_policy* policy, int member, int team,
                            nnx_counter* done, long long total) noexcept nogil

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
    void nnx_cap_default_threads(nnx_shared_state* state, int n) noexcept nogil
    int nnx_default_threads(nnx_shared_state* state) noexcept nogil
    int nnx_threads_for_call(int threads, const long long* settings,
                             nnx_shared_state* state) noexcept nogil
    int nnx_take_threads(nnx_shared_state* state, int wanted, int budget) noexcept nogil
    void nnx_give_back_threads(nnx_shared_state* state, int taken) noexcept nogil
    int nnx_threads_in_use(nnx_shared_state* state) noexcept nogil
    nnx_thread_policy* nnx_thread_policy_of(nnx_shared_state* state) noexcept nogil


cdef nnx_shared_state* shared_state() noexcept nogil
cdef void read_settings(long long* values) noexcept nogil
