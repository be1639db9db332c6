# Threads: OpenMP, the thread count of a forward pass, and when one-sample forwards share
# their layers among threads. Included by core.pxi.

cdef extern from "_kernels/openmp.h":
    int nnx_openmp_enabled() noexcept nogil
    int nnx_max_threads() noexcept nogil
    # Inside a parallel region: its number of threads, and a barrier for all of them.
    int nnx_team_size() noexcept nogil
    void nnx_barrier() noexcept nogil

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


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(nnx_openmp_enabled())


def default_threads():
    """Threads OpenMP would use by default (honours OMP_NUM_THREADS); 1 without OpenMP."""
    return nnx_max_threads()


def get_num_threads():
    """Threads a forward pass may use: the last set_num_threads, else OpenMP's default."""
    return thread_setting if thread_setting > 0 else min(nnx_max_threads(), THREAD_LIMIT)


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
