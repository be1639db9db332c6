# Threads: OpenMP, and whether the threads are likely awake for a one-sample forward to share
# its layers among them. Included by core.pxi.

cdef extern from "_kernels/openmp.h":
    int nnx_openmp_enabled() noexcept nogil
    # Inside a parallel region: its number of threads, and a barrier for all of them.
    int nnx_team_size() noexcept nogil
    void nnx_barrier() noexcept nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(nnx_openmp_enabled())


def cap_default_threads(int n):
    """Let the default (no set_num_threads, no threads=) use at most n threads (n >= 1), in
    every build and nnexposed._quantized (the cap is the process's, _settings.h)."""
    nnx_cap_default_threads(settings_state, n)


def default_threads():
    """Threads a forward pass uses by default: OpenMP's default (OMP_NUM_THREADS, else the
    CPUs of the affinity mask) capped by cap_default_threads; 1 without OpenMP."""
    return nnx_default_threads(settings_state)


# A one-sample forward that may share its layers' neurons among threads does so only while the
# threads are likely awake: OpenMP's idle threads spin for a few hundred microseconds
# (GOMP_SPINCOUNT, set in __init__), and waking sleeping ones costs more (20-40 us here:
# tools/one_sample_gaps.py) than sharing saves. Calls that follow one another closely, as in a
# loop, share; isolated calls run on one thread.
cdef enum:
    SPLIT_AWAKE_NS = 100_000


cdef inline bint threads_awake(nnx_shared_state* state) noexcept nogil:
    """Whether the last one-sample forward that could share its layers ended just now."""
    return nnx_now_ns() - nnx_last_shared_end(state) < SPLIT_AWAKE_NS


def threads_in_use():
    """Threads that the forward passes running now took from the process's budget."""
    return nnx_threads_in_use(settings_state)


def _take_threads(int wanted, int budget):
    """Test entry: take up to ``wanted`` threads from the budget as a forward pass does
    (nnx_take_threads); returns how many were taken."""
    return nnx_take_threads(settings_state, wanted, budget)


def _give_back_threads(int taken):
    """Test entry: give back what _take_threads took."""
    nnx_give_back_threads(settings_state, taken)
