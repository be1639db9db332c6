# The Python face of the back-off to one thread while other processes hold the cores
# (_kernels/thread_policy.h). Its state is the process's, shared with nnexposed._quantized.
# Included by core.pxi.

cdef nnx_thread_policy* policy = nnx_thread_policy_of(settings_state)


def _delay_thread(int member, long long ns):
    """Test hook: team member ``member`` (0 is the calling thread) of every parallel region
    (float and quantized networks) waits ``ns`` nanoseconds before each piece of work it
    would claim; ``ns`` = -1: until the other threads have finished every piece (so that it
    computes none). ``member`` = -1 delays nobody."""
    if ns < NNX_DELAY_UNTIL_DONE:
        raise ValueError(f"ns must be >= -1, got {ns}")
    nnx_set_delay(policy, member, ns)


def thread_policy():
    """The back-off's state: ``backing_off_ns`` (left of the current back-off's time, 0 if
    none), ``backoff_forwards_left`` (forwards the back-off runs on one thread at least, beyond
    its time), ``last_backoff_ns``, counts of ``parallel_forwards``, ``backoffs_started`` and
    ``backed_off_forwards`` (run on one thread instead of several), ``debt_ns`` (losses less
    savings since the last back-off; negative: a credit), and the share of the last parallel
    forward's multiply-adds that the calling thread computed."""
    cdef nnx_thread_policy_view view = nnx_view_thread_policy(policy)
    return {"backing_off_ns": view.backing_off_ns,
            "backoff_forwards_left": view.backoff_forwards_left,
            "last_backoff_ns": view.last_backoff_ns,
            "parallel_forwards": view.parallel_forwards,
            "backoffs_started": view.backoffs_started, "debt_ns": view.debt_ns,
            "backed_off_forwards": view.backed_off_forwards,
            "last_caller_share": view.last_caller_share}


def reset_thread_policy():
    """Forget every loss and count (tests; a machine that has become quiet)."""
    nnx_reset_thread_policy(policy)


def allow_backoff(allowed):
    """Whether losses send forwards to one thread for a while (default True). Returns the
    previous setting."""
    return bool(nnx_allow_backoff(policy, bool(allowed)))


def _observe_parallel_forward(long long started, long long ended, long long elapsed,
                              long long serial):
    """Test entry to the back-off's judgement (nnx_observe_parallel)."""
    return nnx_observe_parallel(policy, started, ended, elapsed, serial)


def _backing_off():
    """Test entry: whether a forward that would use threads runs on one thread now, counted
    as one (nnx_backing_off)."""
    return bool(nnx_backing_off(policy))


def _now_ns():
    """The clock of the back-off (nanoseconds, monotonic)."""
    return nnx_now_ns()


def _observe_from_threads(int n_threads, int calls, long long elapsed, long long serial):
    """Test entry: ``n_threads`` OpenMP threads at once each judge ``calls`` parallel
    forwards that took ``elapsed`` ns, ``serial`` ns on the caller alone, all started and
    ended now (nnx_observe_parallel)."""
    cdef int i
    cdef long long now = nnx_now_ns()
    with nogil:
        for i in prange(n_threads * calls, num_threads=n_threads, schedule="static"):
            nnx_observe_parallel(policy, now, now, elapsed, serial)
