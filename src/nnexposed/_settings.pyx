"""The storage of nnexposed's runtime settings and test-only path counters, in C.

One module, compiled once, so that every kernel build reads the same settings: the builds
``cimport`` ``shared_state`` and ``read_settings``. ``nnexposed._config`` is the Python API
(get_config, set_config, config_context); nothing else should call this module.
"""

import os

cdef extern from "_kernels/settings_store.h":
    ctypedef struct nnx_shared_state_fields "nnx_shared_state":
        nnx_settings process
        int counting
        long long counts[NNX_N_COUNTERS]
        int openmp_started
        int openmp_unusable
        int threads_in_use
    nnx_shared_state_fields nnx_state
    void nnx_read_settings(long long* out) noexcept nogil
    void nnx_set_thread_override(const nnx_settings* override) noexcept nogil
    long long nnx_load_ll(const long long* p) noexcept nogil
    void nnx_store_ll(long long* p, long long value) noexcept nogil
    int nnx_load_int(const int* p) noexcept nogil
    void nnx_store_int(int* p, int value) noexcept nogil
    void nnx_add_int(int* p, int value) noexcept nogil

# The order of the NNX_* setting and counter indices in _kernels/settings.h.
SETTING_NAMES = ("threads", "blas", "shared_panels", "parallel_min_macs",
                 "row_split_min_macs", "share_min_macs", "blas_min_weights", "blas_min_batch",
                 "panel_max_weights")
COUNTER_NAMES = ("one_sample", "row_split", "shared_panels", "tiles", "blas",
                 "parallel_regions")
MAX_THREADS = NNX_MAX_THREADS
NEVER, AUTO, ALWAYS = NNX_NEVER, NNX_AUTO, NNX_ALWAYS
DEFAULTS = {
    "threads": 0,
    "blas": NNX_AUTO,
    "shared_panels": NNX_AUTO,
    # About 100 microseconds of work on one core: below it, waking threads costs more than
    # they save.
    "parallel_min_macs": 1 << 22,
    "row_split_min_macs": 1 << 21,
    # From here every thread keeps its share of the weights in its own core's cache.
    "share_min_macs": 1 << 17,
    "blas_min_weights": 256 * 256,
    "blas_min_batch": 64,
    "panel_max_weights": 1 << 20,
}


cdef nnx_shared_state* shared_state() noexcept nogil:
    return <nnx_shared_state*>&nnx_state


cdef void read_settings(long long* values) noexcept nogil:
    nnx_read_settings(values)


cdef int index_of(name) except -1:
    try:
        return SETTING_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown setting {name!r}: expected one of {SETTING_NAMES}") from None


def set_process_setting(name, long long value):
    """Set one process-wide value (the caller has validated it)."""
    nnx_store_ll(&nnx_state.process.values[index_of(name)], value)


def effective_settings():
    """{name: value} in effect for the calling thread."""
    cdef long long values[NNX_N_SETTINGS]
    read_settings(values)
    return {name: values[i] for i, name in enumerate(SETTING_NAMES)}


cdef class Override:
    """Values of some settings for one thread, installed by ``install``."""
    cdef nnx_settings block
    cdef readonly dict values

    def __cinit__(self, dict values):
        cdef int i
        self.values = dict(values)
        self.block.overridden = 0
        for i in range(NNX_N_SETTINGS):
            self.block.values[i] = 0
        for name, value in values.items():
            i = index_of(name)
            self.block.values[i] = value
            self.block.overridden |= 1u << i


def install(Override override=None):
    """Make ``override`` (None: none) the calling thread's override; the caller keeps it alive
    while installed."""
    nnx_set_thread_override(NULL if override is None else &override.block)


def path_counts():
    """{counter name: count} since the last reset, counted only while counting."""
    return {name: nnx_load_ll(&nnx_state.counts[i]) for i, name in enumerate(COUNTER_NAMES)}


def reset_path_counts():
    for i in range(NNX_N_COUNTERS):
        nnx_store_ll(&nnx_state.counts[i], 0)


def count_paths(bint enable):
    """Start (or stop) counting; counting runs while more starts than stops were made."""
    nnx_add_int(&nnx_state.counting, 1 if enable else -1)


def _after_fork_in_child():
    nnx_store_int(&nnx_state.threads_in_use, 0)  # the parent's forward passes are not here
    if nnx_load_int(&nnx_state.openmp_started):
        nnx_store_int(&nnx_state.openmp_unusable, 1)


for _name, _value in DEFAULTS.items():
    set_process_setting(_name, _value)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
