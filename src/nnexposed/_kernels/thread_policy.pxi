# Threads on shared cores: work claimed as threads come free, and backing off to one thread
# while other processes hold the cores. Included by core.pxi.

cdef extern from "_kernels/claims.h":
    ctypedef struct nnx_counter:
        long long value
    long long nnx_claim(nnx_counter* counter) noexcept nogil
    void nnx_add_done(nnx_counter* counter, long long n) noexcept nogil
    void nnx_wait_done(nnx_counter* counter, long long target) noexcept nogil
    void nnx_pause() noexcept nogil


# What the caller saw of the parallel regions of one forward pass, for the back-off.
ctypedef struct ParallelWatch:
    long long elapsed_ns     # wall time of the parallel regions
    long long caller_ns      # of which the calling thread spent computing
    double caller_work       # multiply-adds the calling thread computed in them
    double total_work        # multiply-adds of the regions in all
    int regions


# ---------------------------------------------------------------------------------------------
# Test hook: one thread of the team waits before each piece of work it would claim.
# ---------------------------------------------------------------------------------------------

cdef enum:
    DELAY_UNTIL_DONE = -1
cdef int delayed_member = -1
cdef long long delay_ns = 0


cdef inline void delay_if_asked(int member, int team, nnx_counter* done,
                                long long total) noexcept nogil:
    """Make ``delayed_member`` wait: delay_ns of spinning, or until the ``total`` pieces
    counted by ``done`` are finished by the others (teams of two or more)."""
    cdef long long until
    if member != delayed_member or team < 2:
        return
    if delay_ns == DELAY_UNTIL_DONE:
        nnx_wait_done(done, total)
    else:
        until = nnx_now_ns() + delay_ns
        while nnx_now_ns() < until:
            nnx_pause()


def _delay_thread(int member, long long ns):
    """Test hook: team member ``member`` (0 is the calling thread) of every parallel region
    waits ``ns`` nanoseconds before each piece of work it would claim; ``ns`` = -1: until
    the other threads have finished every piece (so that it computes none). ``member`` = -1
    delays nobody."""
    global delayed_member, delay_ns
    if ns < DELAY_UNTIL_DONE:
        raise ValueError(f"ns must be >= -1, got {ns}")
    delayed_member = member
    delay_ns = ns


# ---------------------------------------------------------------------------------------------
# Back-off
# ---------------------------------------------------------------------------------------------
#
# A parallel region ends when all its threads have: one that another process keeps off its
# core (a busy loop, another process's threads) holds the caller up for a scheduler time
# slice, milliseconds, where the forward pass takes microseconds. Each parallel forward is
# compared with the caller's own pace (its computing time over its share of the work): when
# it took longer than the caller alone would have (by more than waking sleeping threads may
# cost), that is a loss, and the process's forwards run on one thread
# for LOSS_FACTOR times the loss, at least MIN_BACKOFF_NS; a loss soon after a back-off
# doubles it, up to MAX_BACKOFF_NS. So the time lost to probing stays about 1/LOSS_FACTOR of
# the time run on one thread, and an idle machine (no losses) keeps its threads.

cdef long long THREADS_AWAKE_NS = 300_000      # idle OpenMP threads spin this long (about)
cdef long long WAKE_ALLOWANCE_NS = 200_000     # waking sleeping threads costs up to this
cdef long long LOSS_FACTOR = 50
cdef long long MIN_BACKOFF_NS = 10_000_000
cdef long long MAX_BACKOFF_NS = 2_000_000_000

ctypedef struct ThreadPolicy:
    long long backoff_until        # forwards run on one thread until then (nnx_now_ns)
    long long backoff_ns           # length of the last back-off
    long long last_parallel_end
    long long parallel_forwards
    long long losses
    long long backed_off_forwards  # forwards that would have used threads
    double last_caller_share       # of the last parallel forward's work, the caller's

cdef ThreadPolicy policy
cdef bint backoff_allowed = True


cdef inline bint backing_off() noexcept nogil:
    """Whether forwards run on one thread now; counts the forward if so."""
    if backoff_allowed and nnx_now_ns() < policy.backoff_until:
        policy.backed_off_forwards += 1
        return True
    return False


cdef inline long long serial_estimate(const ParallelWatch* watch) noexcept nogil:
    """Nanoseconds the regions' work would have taken the caller alone, at its pace in them;
    their elapsed time where the caller computed nothing (nothing to judge by)."""
    if watch.caller_work <= 0:
        return watch.elapsed_ns
    return <long long>(watch.caller_ns * (watch.total_work / watch.caller_work))


cdef long long observe_parallel(long long started, long long ended, long long elapsed,
                                long long serial) noexcept nogil:
    """Judge a parallel forward from ``started`` to ``ended`` (ns) whose parallel regions
    took ``elapsed`` ns, ``serial`` ns on the caller alone; returns the back-off it starts
    (0: none)."""
    cdef long long allowance = 0
    cdef long long loss, backoff
    if started - policy.last_parallel_end > THREADS_AWAKE_NS:
        allowance = WAKE_ALLOWANCE_NS
    loss = elapsed - serial - allowance
    policy.parallel_forwards += 1
    policy.last_parallel_end = ended
    if loss <= 0:
        return 0
    policy.losses += 1
    backoff = max(LOSS_FACTOR * loss, MIN_BACKOFF_NS)
    if ended - policy.backoff_until < policy.backoff_ns:
        backoff = max(backoff, 2 * policy.backoff_ns)
    policy.backoff_ns = min(backoff, MAX_BACKOFF_NS)
    policy.backoff_until = ended + policy.backoff_ns
    return policy.backoff_ns


def thread_policy():
    """The back-off's state: ``backing_off_ns`` (left of the current back-off, 0 if none),
    ``last_backoff_ns``, counts of ``parallel_forwards``, ``losses`` among them and
    ``backed_off_forwards`` (run on one thread instead of several), and the share of the
    last parallel forward's multiply-adds that the calling thread computed."""
    return {"backing_off_ns": max(0, policy.backoff_until - nnx_now_ns()),
            "last_backoff_ns": policy.backoff_ns,
            "parallel_forwards": policy.parallel_forwards, "losses": policy.losses,
            "backed_off_forwards": policy.backed_off_forwards,
            "last_caller_share": policy.last_caller_share}


def reset_thread_policy():
    """Forget every loss and count (tests; a machine that has become quiet)."""
    global policy
    policy.backoff_until = 0
    policy.backoff_ns = 0
    policy.last_parallel_end = 0
    policy.parallel_forwards = 0
    policy.losses = 0
    policy.backed_off_forwards = 0
    policy.last_caller_share = 0


def allow_backoff(allowed):
    """Whether losses send forwards to one thread for a while (default True). Returns the
    previous setting."""
    global backoff_allowed
    previous = bool(backoff_allowed)
    backoff_allowed = bool(allowed)
    return previous


def _observe_parallel_forward(long long started, long long ended, long long elapsed,
                              long long serial):
    """Test entry to the back-off's judgement (see observe_parallel)."""
    return observe_parallel(started, ended, elapsed, serial)


def _now_ns():
    """The clock of the back-off (nanoseconds, monotonic)."""
    return nnx_now_ns()
