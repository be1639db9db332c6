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
# compared with the caller's own pace (its computing time over its share of the work): the
# time it took beyond what the caller alone would have taken (less what waking sleeping
# threads may cost) is a loss, and time it took less is a saving. Two things end in a
# back-off, during which the process's forwards run on one thread:
# - the mean: losses and savings add up into a balance; savings build a credit of up to
#   CREDIT_LIMIT_NS, which pays for the odd stall of an idle machine (another process run on
#   a core for a few milliseconds now and then), and the losses may pass it by DEBT_LIMIT_NS;
# - the tail: a forward slower than the caller alone by STALL_SHARE of its time (and by
#   STALL_MIN_NS) is a stall, and stalls may come once in STALL_CALLS parallel forwards (a
#   few in a row at most, MAX_STALLS): more, and the 99th percentile would be the stalls'.
# A back-off lasts LOSS_FACTOR times the debt or the stall, at least MIN_BACKOFF_NS, and
# leaves no credit and no stall allowance; one soon after the previous one doubles it, up to
# MAX_BACKOFF_NS. So under lasting contention the time lost to probing stays about
# 1/LOSS_FACTOR of the time run on one thread, and an idle machine keeps its threads.

cdef long long THREADS_AWAKE_NS = 300_000      # idle OpenMP threads spin this long (about)
cdef long long WAKE_ALLOWANCE_NS = 200_000     # waking sleeping threads costs up to this
cdef long long DEBT_LIMIT_NS = 100_000
cdef long long CREDIT_LIMIT_NS = 10_000_000
cdef double STALL_SHARE = 0.2
cdef long long STALL_MIN_NS = 20_000
cdef long long STALL_CALLS = 200
cdef double MAX_STALLS = 4
cdef long long LOSS_FACTOR = 50
cdef long long MIN_BACKOFF_NS = 10_000_000
cdef long long MAX_BACKOFF_NS = 2_000_000_000

ctypedef struct ThreadPolicy:
    long long backoff_until        # forwards run on one thread until then (nnx_now_ns)
    long long backoff_ns           # length of the last back-off
    long long last_parallel_end
    long long parallel_forwards
    long long losses               # back-offs started
    long long debt_ns              # losses less savings, from -CREDIT_LIMIT_NS
    double stalls_allowed          # up to MAX_STALLS, 1 / STALL_CALLS more a forward
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
    cdef long long loss = elapsed - serial
    cdef long long backoff
    cdef bint stalled
    if started - policy.last_parallel_end > THREADS_AWAKE_NS:
        # Forgives (up to) the cost of waking the threads; counts no saving of its own.
        loss -= min(WAKE_ALLOWANCE_NS, max(loss, 0))
    policy.parallel_forwards += 1
    policy.last_parallel_end = ended
    policy.debt_ns = max(-CREDIT_LIMIT_NS, policy.debt_ns + loss)
    policy.stalls_allowed = min(MAX_STALLS, policy.stalls_allowed + 1.0 / STALL_CALLS)
    stalled = loss > max(STALL_MIN_NS, <long long>(STALL_SHARE * serial))
    if stalled:
        policy.stalls_allowed -= 1
    if policy.debt_ns <= DEBT_LIMIT_NS and policy.stalls_allowed >= 0:
        return 0
    policy.losses += 1
    backoff = max(LOSS_FACTOR * max(policy.debt_ns, loss), MIN_BACKOFF_NS)
    policy.debt_ns = 0
    policy.stalls_allowed = 0
    if ended - policy.backoff_until < policy.backoff_ns:
        backoff = max(backoff, 2 * policy.backoff_ns)
    policy.backoff_ns = min(backoff, MAX_BACKOFF_NS)
    policy.backoff_until = ended + policy.backoff_ns
    return policy.backoff_ns


def thread_policy():
    """The back-off's state: ``backing_off_ns`` (left of the current back-off, 0 if none),
    ``last_backoff_ns``, counts of ``parallel_forwards``, ``losses`` (back-offs started) and
    ``backed_off_forwards`` (run on one thread instead of several), ``debt_ns`` (losses less
    savings since the last back-off; negative: a credit), and the share of the last parallel
    forward's multiply-adds that the calling thread computed."""
    return {"backing_off_ns": max(0, policy.backoff_until - nnx_now_ns()),
            "last_backoff_ns": policy.backoff_ns,
            "parallel_forwards": policy.parallel_forwards, "losses": policy.losses,
            "debt_ns": policy.debt_ns,
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
    policy.debt_ns = 0
    policy.stalls_allowed = MAX_STALLS
    policy.backed_off_forwards = 0
    policy.last_caller_share = 0


reset_thread_policy()


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
