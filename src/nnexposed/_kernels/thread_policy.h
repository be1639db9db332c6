/* Threads on shared cores: backing off to one thread while other processes hold the cores.
   One process-wide state (in nnx_shared_state, owned by nnexposed._settings) that every
   module running parallel forwards reads and updates: the float kernel builds and
   nnexposed._quantized. Updated with relaxed atomics by concurrent forwards.

   A parallel region ends when all its threads have: one that another process keeps off its
   core (a busy loop, another process's threads) holds the caller up for a scheduler time
   slice, milliseconds, where the forward pass takes microseconds. Each parallel forward is
   compared with the caller's own pace (its computing time over its share of the work): the
   time it took beyond what the caller alone would have taken (less what waking sleeping
   threads may cost) is a loss, and time it took less is a saving. Two things end in a
   back-off, during which the process's forwards run on one thread:
   - the mean: losses and savings add up into a balance; savings build a credit of up to
     NNX_CREDIT_LIMIT_NS, which pays for the odd stall of an idle machine (another process
     run on a core for a few milliseconds now and then), and the losses may pass it by
     NNX_DEBT_LIMIT_NS;
   - the tail: a forward slower than the caller alone by NNX_STALL_SHARE of its time (and by
     NNX_STALL_MIN_NS) is a stall, and stalls may come once in NNX_STALL_CALLS parallel
     forwards (a few in a row at most, NNX_MAX_STALLS): more, and the 99th percentile would
     be the stalls'.
   A back-off lasts NNX_LOSS_FACTOR times the debt or the stall, at least NNX_MIN_BACKOFF_NS,
   and leaves no credit and no stall allowance; one soon after the previous one doubles it, up
   to NNX_MAX_BACKOFF_NS. So under lasting contention the time lost to probing stays about
   1/NNX_LOSS_FACTOR of the time run on one thread, and an idle machine keeps its threads.
   A back-off that starts within NNX_PROBE_FORWARDS parallel forwards of the previous one (its
   probes, the first parallel forwards after it, stalled again: the contention lasts) also
   lasts NNX_MIN_BACKOFF_FORWARDS of the process's forwards (those that would have used
   threads), twice the previous back-off's if that one had such a count too, up to
   NNX_MAX_BACKOFF_FORWARDS, unless NNX_BACKOFF_FORWARDS_LAPSE_NS pass first. Counted in
   forwards, the probes soon fall under 1 in 100 calls (the 99th percentile) however long each
   call and however irregular the calling; the time rule alone gives a forward of
   milliseconds a few forwards. A lone stall (an idle machine's) starts no such count.

   The caller's pace is timed on its own CPU time in regions long enough for that clock's
   cost (a system call) not to matter: on the wall clock, a caller whose core another
   process takes for a while looks slow, and so does the forward it would have run alone,
   which hides the loss. */
#ifndef NNX_THREAD_POLICY_H
#define NNX_THREAD_POLICY_H

#include "atomics.h"
#include "claims.h"
#include "clock.h"

#define NNX_THREADS_AWAKE_NS 300000LL      /* idle OpenMP threads spin this long (about) */
#define NNX_WAKE_ALLOWANCE_NS 200000LL     /* waking sleeping threads costs up to this */
#define NNX_DEBT_LIMIT_NS 100000LL
#define NNX_CREDIT_LIMIT_NS 10000000LL
#define NNX_STALL_SHARE 0.2
#define NNX_STALL_MIN_NS 20000LL
#define NNX_STALL_CALLS 200LL
#define NNX_MAX_STALLS 4LL
#define NNX_LOSS_FACTOR 50LL
#define NNX_MIN_BACKOFF_NS 10000000LL
#define NNX_MAX_BACKOFF_NS 2000000000LL
#define NNX_PROBE_FORWARDS 16LL
#define NNX_MIN_BACKOFF_FORWARDS 100LL
#define NNX_MAX_BACKOFF_FORWARDS 800LL
#define NNX_BACKOFF_FORWARDS_LAPSE_NS 10000000000LL
/* Regions expected to take at least this long on one core time the caller on its CPU time,
   whose clock costs a system call (about a microsecond). */
#define NNX_CPU_CLOCK_MIN_NS 1000000.0
/* float32 multiply-adds per nanosecond of one core, roughly (only for choosing the clock):
   on blocks of samples, and on one sample (matrix-vector, weights streamed from memory). */
#define NNX_BLOCK_MACS_PER_NS 50.0
#define NNX_ROW_MACS_PER_NS 5.0
/* nnx_delay_if_asked: the delayed thread waits until the others have done all the work. */
#define NNX_DELAY_UNTIL_DONE (-1LL)

/* What the caller saw of the parallel regions of one forward pass. */
typedef struct nnx_parallel_watch {
    long long elapsed_ns;      /* wall time of the parallel regions */
    long long caller_ns;       /* of which the calling thread spent computing */
    double caller_work;        /* multiply-adds the calling thread computed in them */
    double total_work;         /* multiply-adds of the regions in all */
    int regions;
} nnx_parallel_watch;

typedef struct nnx_thread_policy {
    long long backoff_until;       /* forwards run on one thread until then (nnx_now_ns) */
    /* and until this many more forwards have, unless backoff_lapses (nnx_now_ns) comes first */
    long long backoff_forwards_left;
    long long backoff_lapses;
    long long backoff_forwards;    /* length of the last back-off in forwards */
    long long backoff_mark;        /* parallel_forwards when the last back-off started */
    long long backoff_ns;          /* length of the last back-off */
    long long last_parallel_end;
    long long parallel_forwards;
    long long backoffs_started;
    long long debt_ns;             /* losses less savings, from -NNX_CREDIT_LIMIT_NS */
    /* Stalls beyond the allowance, in 1/NNX_STALL_CALLS of a stall: each stall adds
       NNX_STALL_CALLS, each parallel forward takes 1 off; above NNX_MAX_STALLS stalls'
       worth, the process backs off. */
    long long stall_debt;
    long long backed_off_forwards; /* forwards that would have used threads */
    long long last_caller_share;   /* of the last parallel forward's work, the caller's (ppb) */
    int backoff_disabled;
    /* Test hook (nnx_delay_if_asked): team member delayed_member - 1 waits delay_ns (ns);
       0: nobody. */
    int delayed_member;
    long long delay_ns;
} nnx_thread_policy;

typedef struct nnx_thread_policy_view {
    long long backing_off_ns;
    long long backoff_forwards_left;
    long long last_backoff_ns;
    long long parallel_forwards;
    long long backoffs_started;
    long long debt_ns;
    long long backed_off_forwards;
    double last_caller_share;
} nnx_thread_policy_view;

#define NNX_SHARE_SCALE 1000000000LL

static inline long long nnx_max_ll(long long a, long long b) { return a > b ? a : b; }
static inline long long nnx_min_ll(long long a, long long b) { return a < b ? a : b; }

/* The clock the caller's pace is timed on in a region expected to take ``expected_ns`` on
   one core: its CPU time when the region is long, else the wall clock (nanoseconds; only
   differences count). */
static inline int nnx_caller_clock(double expected_ns) {
    return expected_ns >= NNX_CPU_CLOCK_MIN_NS;
}
static inline long long nnx_caller_now_ns(int cpu_clock) {
    return cpu_clock ? nnx_thread_cpu_ns() : nnx_now_ns();
}

/* Forget every loss and count (not the switch, not the test hook). */
static void nnx_reset_thread_policy(nnx_thread_policy* p) {
    nnx_store_ll(&p->backoff_until, 0);
    nnx_store_ll(&p->backoff_forwards_left, 0);
    nnx_store_ll(&p->backoff_lapses, 0);
    nnx_store_ll(&p->backoff_forwards, 0);
    nnx_store_ll(&p->backoff_mark, 0);
    nnx_store_ll(&p->backoff_ns, 0);
    nnx_store_ll(&p->last_parallel_end, 0);
    nnx_store_ll(&p->parallel_forwards, 0);
    nnx_store_ll(&p->backoffs_started, 0);
    nnx_store_ll(&p->debt_ns, 0);
    nnx_store_ll(&p->stall_debt, 0);
    nnx_store_ll(&p->backed_off_forwards, 0);
    nnx_store_ll(&p->last_caller_share, 0);
}

/* Whether forwards run on one thread now; counts the forward if so (concurrent forwards may
   take the last of the back-off's forwards at once: one or two more run on one thread). */
static inline int nnx_backing_off(nnx_thread_policy* p) {
    long long now;
    if (nnx_load_int(&p->backoff_disabled)) return 0;
    now = nnx_now_ns();
    if (now >= nnx_load_ll(&p->backoff_until)
            && (nnx_load_ll(&p->backoff_forwards_left) <= 0
                || now >= nnx_load_ll(&p->backoff_lapses)))
        return 0;
    nnx_add_ll(&p->backoff_forwards_left, -1);
    nnx_add_ll(&p->backed_off_forwards, 1);
    return 1;
}

/* Switch the back-off on or off; returns whether it was on. */
static int nnx_allow_backoff(nnx_thread_policy* p, int allowed) {
    return !nnx_exchange_int(&p->backoff_disabled, !allowed);
}

/* Nanoseconds the regions' work would have taken the caller alone, at its pace in them; their
   elapsed time where the caller computed nothing (nothing to judge by). */
static inline long long nnx_serial_estimate(const nnx_parallel_watch* watch) {
    if (watch->caller_work <= 0) return watch->elapsed_ns;
    return (long long)((double)watch->caller_ns * (watch->total_work / watch->caller_work));
}

/* Judge a parallel forward from ``started`` to ``ended`` (ns) whose parallel regions took
   ``elapsed`` ns, ``serial`` ns on the caller alone; returns the back-off it starts (0:
   none). Concurrent calls each add their own loss; when several find the limits passed at
   once, the first to move backoff_until starts the back-off. */
static long long nnx_observe_parallel(nnx_thread_policy* p, long long started, long long ended,
                                      long long elapsed, long long serial) {
    long long loss = elapsed - serial;
    long long previous_end, debt, new_debt, stalls, new_stalls, until, backoff, last_backoff;
    long long forwards, backoff_forwards = 0;
    int stalled;
    previous_end = nnx_exchange_ll(&p->last_parallel_end, ended);
    if (started - previous_end > NNX_THREADS_AWAKE_NS) {
        /* Forgives (up to) the cost of waking the threads; counts no saving of its own. */
        loss -= nnx_min_ll(NNX_WAKE_ALLOWANCE_NS, nnx_max_ll(loss, 0));
    }
    forwards = nnx_add_ll(&p->parallel_forwards, 1) + 1;
    debt = nnx_load_ll(&p->debt_ns);
    do {
        new_debt = nnx_max_ll(-NNX_CREDIT_LIMIT_NS, debt + loss);
    } while (!nnx_cas_ll(&p->debt_ns, &debt, new_debt));
    stalled = loss > nnx_max_ll(NNX_STALL_MIN_NS, (long long)(NNX_STALL_SHARE * serial));
    stalls = nnx_load_ll(&p->stall_debt);
    do {
        new_stalls = nnx_max_ll(0, stalls - 1) + (stalled ? NNX_STALL_CALLS : 0);
    } while (!nnx_cas_ll(&p->stall_debt, &stalls, new_stalls));
    if (new_debt <= NNX_DEBT_LIMIT_NS && new_stalls <= NNX_MAX_STALLS * NNX_STALL_CALLS)
        return 0;
    backoff = nnx_max_ll(NNX_LOSS_FACTOR * nnx_max_ll(new_debt, loss), NNX_MIN_BACKOFF_NS);
    until = nnx_load_ll(&p->backoff_until);
    if (until > ended) return 0;    /* another forward started a back-off meanwhile */
    last_backoff = nnx_load_ll(&p->backoff_ns);
    if (ended - until < last_backoff) backoff = nnx_max_ll(backoff, 2 * last_backoff);
    backoff = nnx_min_ll(backoff, NNX_MAX_BACKOFF_NS);
    if (!nnx_cas_ll(&p->backoff_until, &until, ended + backoff)) return 0;
    if (nnx_load_ll(&p->backoffs_started) > 0
            && forwards - nnx_load_ll(&p->backoff_mark) <= NNX_PROBE_FORWARDS)
        backoff_forwards = nnx_max_ll(NNX_MIN_BACKOFF_FORWARDS, nnx_min_ll(
            2 * nnx_load_ll(&p->backoff_forwards), NNX_MAX_BACKOFF_FORWARDS));
    nnx_store_ll(&p->backoff_forwards, backoff_forwards);
    nnx_store_ll(&p->backoff_mark, forwards);
    nnx_store_ll(&p->backoff_forwards_left, backoff_forwards);
    nnx_store_ll(&p->backoff_lapses, ended + NNX_BACKOFF_FORWARDS_LAPSE_NS);
    nnx_store_ll(&p->backoff_ns, backoff);
    nnx_store_ll(&p->debt_ns, 0);
    nnx_store_ll(&p->stall_debt, NNX_MAX_STALLS * NNX_STALL_CALLS);
    nnx_add_ll(&p->backoffs_started, 1);
    return backoff;
}

/* After a forward pass that started at ``started`` (ns, wall clock) and ran the parallel
   regions ``watch`` saw (none: nothing to judge): keep the caller's share and judge it. */
static void nnx_judge_forward(nnx_thread_policy* p, long long started,
                              const nnx_parallel_watch* watch) {
    if (watch->regions == 0) return;
    nnx_store_ll(&p->last_caller_share,
                 (long long)(watch->caller_work / watch->total_work * NNX_SHARE_SCALE));
    nnx_observe_parallel(p, started, nnx_now_ns(), watch->elapsed_ns,
                         nnx_serial_estimate(watch));
}

static nnx_thread_policy_view nnx_view_thread_policy(nnx_thread_policy* p) {
    nnx_thread_policy_view view;
    long long now = nnx_now_ns();
    view.backing_off_ns = nnx_max_ll(0, nnx_load_ll(&p->backoff_until) - now);
    view.backoff_forwards_left = now < nnx_load_ll(&p->backoff_lapses)
        ? nnx_max_ll(0, nnx_load_ll(&p->backoff_forwards_left)) : 0;
    view.last_backoff_ns = nnx_load_ll(&p->backoff_ns);
    view.parallel_forwards = nnx_load_ll(&p->parallel_forwards);
    view.backoffs_started = nnx_load_ll(&p->backoffs_started);
    view.debt_ns = nnx_load_ll(&p->debt_ns);
    view.backed_off_forwards = nnx_load_ll(&p->backed_off_forwards);
    view.last_caller_share = (double)nnx_load_ll(&p->last_caller_share) / NNX_SHARE_SCALE;
    return view;
}

/* Test hook: team member ``member`` (0: the caller; -1: nobody) of every parallel region
   waits ``ns`` before each piece of work it would claim, or (NNX_DELAY_UNTIL_DONE) until the
   others have finished every piece. */
static void nnx_set_delay(nnx_thread_policy* p, int member, long long ns) {
    nnx_store_ll(&p->delay_ns, ns);
    nnx_store_int(&p->delayed_member, member + 1);
}

/* Make the delayed member (if this is it, in a team of two or more) wait: delay_ns of
   spinning, or until the ``total`` pieces counted by ``done`` are finished by the others. */
static inline void nnx_delay_if_asked(nnx_thread_policy* p, int member, int team,
                                      nnx_counter* done, long long total) {
    long long ns, until;
    if (member + 1 != nnx_load_int(&p->delayed_member) || team < 2) return;
    ns = nnx_load_ll(&p->delay_ns);
    if (ns == NNX_DELAY_UNTIL_DONE) {
        nnx_wait_done(done, total);
        return;
    }
    until = nnx_now_ns() + ns;
    while (nnx_now_ns() < until) nnx_pause();
}

#endif
