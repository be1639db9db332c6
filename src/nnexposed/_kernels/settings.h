/* The runtime settings and the test-only path counters, shared by every kernel build.

   One module (nnexposed._settings) owns the storage: a process-wide nnx_settings, each
   thread's optional override of some of its values, and the counters. The builds reach them
   through that module (a pointer to nnx_shared_state and nnx_read_settings), so that they
   all read the same values. The values are read and written with relaxed atomics: a change
   from one thread is seen by the next forward pass of another, value by value. */
#ifndef NNX_SETTINGS_H
#define NNX_SETTINGS_H

#include "atomics.h"
#include "openmp.h"
#include "thread_policy.h"

/* Upper bound on threads per call: asking OpenMP for tens of thousands kills the process. */
#define NNX_MAX_THREADS 256

/* Settings, by index (the order of nnexposed._settings.SETTING_NAMES). */
enum {
    NNX_THREADS,                /* threads per forward; 0: OpenMP's default */
    NNX_BLAS,                   /* NNX_NEVER, NNX_AUTO or NNX_ALWAYS */
    NNX_SHARED_PANELS,          /* one-sample forwards sharing layers: NEVER, AUTO, ALWAYS */
    NNX_PARALLEL_MIN_MACS,      /* threads from this many multiply-adds per call */
    NNX_ROW_SPLIT_MIN_MACS,     /* one sample: layers this big split rows over threads */
    NNX_SHARE_MIN_MACS,         /* one sample: networks this big may share their panels */
    NNX_BLAS_MIN_WEIGHTS,       /* BLAS takes layers with at least this many weights */
    NNX_BLAS_MIN_BATCH,         /* ... on blocks of at least this many samples */
    NNX_PANEL_MAX_WEIGHTS,      /* layers up to this many weights keep panels (at build) */
    NNX_N_SETTINGS
};
enum { NNX_NEVER = 0, NNX_AUTO = 1, NNX_ALWAYS = 2 };

/* Counters, by index (the order of nnexposed._settings.COUNTER_NAMES). */
enum {
    NNX_COUNT_ONE_SAMPLE,
    NNX_COUNT_ROW_SPLIT,
    NNX_COUNT_SHARED_PANELS,
    NNX_COUNT_TILES,
    NNX_COUNT_BLAS,
    NNX_COUNT_PARALLEL_REGIONS,
    NNX_N_COUNTERS
};

typedef struct nnx_settings {
    long long values[NNX_N_SETTINGS];
    unsigned int overridden;    /* in a thread's override: bit i set when it sets value i */
} nnx_settings;

typedef struct nnx_shared_state {
    nnx_settings process;       /* every value set */
    int counting;               /* counters run while > 0 (tests only) */
    long long counts[NNX_N_COUNTERS];
    /* When the last one-sample forward that could share its layers ended (ns). */
    long long last_shared_end_ns;
    /* GNU OpenMP hangs in a fork()ed child of a process that ran a parallel region, so such
       a child runs single-threaded. */
    int openmp_started;
    int openmp_unusable;
    /* Threads of the forward passes running now that took threads (nnx_take_threads). */
    int threads_in_use;
    /* Cap on the default threads: the CPUs this process may use (nnexposed._cpu_limits, set
       at import), which OpenMP's default ignores when a cgroup quota limits them; 0: none. */
    int default_thread_cap;
    /* The back-off of every module's parallel forwards (thread_policy.h). */
    nnx_thread_policy thread_policy;
} nnx_shared_state;

/* Count one event, while a test counts them. */
static inline void nnx_count(nnx_shared_state* state, int counter) {
    if (nnx_load_int(&state->counting) > 0) nnx_add_ll(&state->counts[counter], 1);
}

static inline long long nnx_last_shared_end(nnx_shared_state* state) {
    return nnx_load_ll(&state->last_shared_end_ns);
}
static inline void nnx_set_last_shared_end(nnx_shared_state* state, long long ns) {
    nnx_store_ll(&state->last_shared_end_ns, ns);
}
static inline int nnx_openmp_unusable(nnx_shared_state* state) {
    return nnx_load_int(&state->openmp_unusable);
}
static inline void nnx_note_openmp_started(nnx_shared_state* state) {
    if (!nnx_load_int(&state->openmp_started)) nnx_store_int(&state->openmp_started, 1);
}

/* Let the default (no ``threads`` setting, no threads= argument) use at most n threads. */
static inline void nnx_cap_default_threads(nnx_shared_state* state, int n) {
    nnx_store_int(&state->default_thread_cap,
                  n < 1 ? 1 : n > NNX_MAX_THREADS ? NNX_MAX_THREADS : n);
}

/* OpenMP's default (OMP_NUM_THREADS, else the CPUs of the affinity mask) capped by
   nnx_cap_default_threads and NNX_MAX_THREADS; 1 without OpenMP. */
static inline int nnx_default_threads(nnx_shared_state* state) {
    int threads = nnx_max_threads();
    int cap = nnx_load_int(&state->default_thread_cap);
    if (cap > 0 && threads > cap) threads = cap;
    return threads < NNX_MAX_THREADS ? threads : NNX_MAX_THREADS;
}

/* Threads a call may use: ``threads`` if > 0, else the ``threads`` setting of ``settings``
   (the settings in effect) if > 0, else nnx_default_threads; at most NNX_MAX_THREADS; 1 after
   a fork() of a process that ran threads. */
static inline int nnx_threads_for_call(int threads, const long long* settings,
                                       nnx_shared_state* state) {
    if (nnx_openmp_unusable(state)) return 1;
    if (threads <= 0)
        threads = settings[NNX_THREADS] > 0 ? (int)settings[NNX_THREADS]
                                            : nnx_default_threads(state);
    return threads < NNX_MAX_THREADS ? threads : NNX_MAX_THREADS;
}

/* Threads for a forward pass that wants ``wanted`` (> 1, its calling thread included), from a
   process-wide budget that the forward passes running at once share: the process's thread
   count (``budget``), or ``wanted`` if that is more. Gives what is left of it, at least the
   calling thread and at most ``wanted``; nnx_give_back_threads returns them. So several
   Python threads calling at once do not start threads x calls OS threads. */
static inline int nnx_take_threads(nnx_shared_state* state, int wanted, int budget) {
    int limit = budget > wanted ? budget : wanted;
    int in_use = nnx_load_int(&state->threads_in_use);
    int granted;
    do {
        granted = limit - in_use;
        if (granted > wanted) granted = wanted;
        if (granted < 1) granted = 1;
    } while (!nnx_cas_int(&state->threads_in_use, &in_use, in_use + granted));
    return granted;
}
static inline void nnx_give_back_threads(nnx_shared_state* state, int taken) {
    nnx_add_int(&state->threads_in_use, -taken);
}
static inline int nnx_threads_in_use(nnx_shared_state* state) {
    return nnx_load_int(&state->threads_in_use);
}
static inline nnx_thread_policy* nnx_thread_policy_of(nnx_shared_state* state) {
    return &state->thread_policy;
}

#endif
