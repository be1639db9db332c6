# The choice of kernel path and thread count for one forward pass. Included by core.pxi.

cdef enum:
    PATH_ONE_SAMPLE = NNX_COUNT_ONE_SAMPLE
    PATH_ROW_SPLIT = NNX_COUNT_ROW_SPLIT
    PATH_SHARED_PANELS = NNX_COUNT_SHARED_PANELS
    PATH_TILES = NNX_COUNT_TILES
    PATH_BLAS = NNX_COUNT_BLAS


ctypedef struct ForwardPlan:
    int path                 # a PATH_* (also the index of its counter)
    int n_threads            # threads of the parallel regions (1: none)
    int threads_taken        # from the process's budget (give_back_threads), 0: none
    Py_ssize_t cols          # batched paths: samples per block
    bint may_share           # a one-sample forward that could share panels (see threads_awake)
    # Path blas: BLAS computes every dense layer, so the batch keeps the caller's
    # sample-major order (network_rows_blas), as NumPy's x @ W.T.
    bint sample_major
    # The per-layer choices within the path: layer_uses_blas, layer_splits_rows.
    bint blas_usable
    long long blas_min_weights
    long long blas_min_batch
    long long row_split_min_macs


cdef inline Py_ssize_t blas_block_cols(Py_ssize_t batch) noexcept nogil:
    """Samples per block where BLAS may compute layers: up to BLAS_TILE, whole tiles."""
    return min(BLAS_TILE, (batch + TILE - 1) // TILE * TILE)


cdef inline bint blas_mode_allows(long long mode) noexcept nogil:
    """Whether the ``blas`` setting lets BLAS compute wide layers in this build."""
    return mode == NNX_ALWAYS or mode == NNX_AUTO and NNX_BLAS_AUTO_MIN_WEIGHTS > 0


cdef inline long long blas_min_weights(const long long* settings) noexcept nogil:
    """Weights from which BLAS takes a layer: the ``blas_min_weights`` setting, and with
    ``blas`` "auto" at least this build's NNX_BLAS_AUTO_MIN_WEIGHTS (see isa_tuning.h)."""
    if settings[NNX_BLAS] == NNX_AUTO:
        return max(settings[NNX_BLAS_MIN_WEIGHTS], <long long>NNX_BLAS_AUTO_MIN_WEIGHTS)
    return settings[NNX_BLAS_MIN_WEIGHTS]


cdef inline bint layer_uses_blas(const ForwardPlan* plan, const LayerPlan* layer,
                                 Py_ssize_t cols) noexcept nogil:
    """Whether BLAS computes this layer for a block of ``cols`` samples."""
    return (layer.kind == KIND_DENSE and plan.blas_usable and cols >= plan.blas_min_batch
            and layer.n_in * layer.n_out >= plan.blas_min_weights
            and layer.n_in <= INT_MAX and layer.n_out <= INT_MAX)


cdef inline bint layer_splits_rows(const ForwardPlan* plan, const LayerPlan* layer) noexcept nogil:
    """Whether a one-sample forward splits this layer's output neurons over the threads."""
    return (layer.kind == KIND_DENSE and plan.n_threads > 1
            and layer.n_in * layer.n_out >= plan.row_split_min_macs)


cdef inline void take_threads(ForwardPlan* plan, const long long* settings,
                              nnx_shared_state* state) noexcept nogil:
    """Take the plan's threads from the process's budget (the ``threads`` setting, else the
    default); with only its own thread left, a one-sample forward runs alone."""
    if plan.n_threads <= 1:
        return
    plan.threads_taken = nnx_take_threads(state, plan.n_threads,
                                          nnx_threads_for_call(0, settings, state))
    plan.n_threads = plan.threads_taken
    if plan.n_threads == 1 and (plan.path == PATH_SHARED_PANELS or plan.path == PATH_ROW_SPLIT):
        plan.path = PATH_ONE_SAMPLE


cdef inline void give_back_threads(ForwardPlan* plan, nnx_shared_state* state) noexcept nogil:
    if plan.threads_taken > 0:
        nnx_give_back_threads(state, plan.threads_taken)
        plan.threads_taken = 0


cdef ForwardPlan plan_forward(const LayerPlan* layers, Py_ssize_t n_layers,
                              Py_ssize_t macs_per_sample, bint keeps_panels, Py_ssize_t batch,
                              int threads, const long long* settings, bint blas_found,
                              nnx_shared_state* state) noexcept nogil:
    """The kernel path and thread count of a forward pass of ``batch`` samples.

    ``threads``: the caller's limit (<= 0: the ``threads`` setting, else OpenMP's default),
    capped at MAX_THREADS; ``settings``: the settings in effect (nnexposed._config);
    ``blas_found``: SciPy's BLAS was looked up and found;
    ``keeps_panels``: the network kept every layer of at most ``panel_max_weights`` weights
    as panels, and has no larger layer. Macs: multiply-adds.

    ============  ==============================================================  ==========
    path          when (first match)                                              threads
    ============  ==============================================================  ==========
    shared_panels batch < 4; keeps_panels; macs per sample >= share_min_macs;     all
                  threads > 1; ``shared_panels`` "always", or "auto" and the
                  last such forward ended < 100 us ago (its threads still spin)
    row_split     batch < 4; batch * macs >= parallel_min_macs; threads > 1;      all, on
                  a layer has >= row_split_min_macs weights                      those layers
    one_sample    batch < 4                                                       1
    blas          a layer has >= blas_min_weights weights, blocks of              1 (BLAS
                  min(256, batch rounded up to 32) >= blas_min_batch samples;    threads
                  ``blas`` "always", or "auto" in builds without AVX-512 and     itself)
                  layers of >= 2^22 weights (NNX_BLAS_AUTO_MIN_WEIGHTS); SciPy.
                  sample_major when every dense layer is such a layer
    tiles         otherwise: blocks of 32 samples                                 min(all,
                                                                                  blocks) if
                                                                                  batch * macs
                                                                                  >= parallel_
                                                                                  min_macs
    ============  ==============================================================  ==========

    After a fork() of a process that ran threads, every path runs on one thread; so does
    every path but a forced ("always") shared_panels while the process backs off after a
    parallel forward that was slower than one thread (thread_policy.h). The threads come
    from a budget shared by the forward passes running at once (nnx_take_threads): a call
    may get fewer, one-sample paths then running on one thread if it gets only its own; the
    caller gives them back with give_back_threads.
    """
    cdef ForwardPlan plan
    cdef Py_ssize_t k, n_blocks
    cdef long long sharing = settings[NNX_SHARED_PANELS]
    cdef bint parallel_worth_it = batch * macs_per_sample >= settings[NNX_PARALLEL_MIN_MACS]
    threads = nnx_threads_for_call(threads, settings, state)
    plan.n_threads = 1
    plan.threads_taken = 0
    plan.cols = 1
    plan.sample_major = False
    plan.blas_usable = blas_found and blas_mode_allows(settings[NNX_BLAS])
    plan.blas_min_weights = blas_min_weights(settings)
    plan.blas_min_batch = settings[NNX_BLAS_MIN_BATCH]
    plan.row_split_min_macs = settings[NNX_ROW_SPLIT_MIN_MACS]
    plan.may_share = (keeps_panels and batch < MIN_TILED_BATCH
                      and macs_per_sample >= settings[NNX_SHARE_MIN_MACS])
    if batch < MIN_TILED_BATCH:
        plan.path = PATH_ONE_SAMPLE
        if plan.may_share and threads > 1 and sharing != NNX_NEVER and (
                sharing == NNX_ALWAYS or threads_awake(state) and not nnx_backing_off(policy)):
            plan.path = PATH_SHARED_PANELS
            plan.n_threads = threads
        elif parallel_worth_it and threads > 1:
            for k in range(n_layers):
                if layers[k].n_in * layers[k].n_out >= plan.row_split_min_macs:
                    if not nnx_backing_off(policy):
                        plan.path = PATH_ROW_SPLIT
                        plan.n_threads = threads
                    break
        take_threads(&plan, settings, state)
        return plan
    plan.cols = blas_block_cols(batch)
    plan.path = PATH_TILES
    plan.sample_major = True
    for k in range(n_layers):
        if layer_uses_blas(&plan, &layers[k], plan.cols):
            plan.path = PATH_BLAS
        elif layers[k].kind == KIND_DENSE:
            plan.sample_major = False
    plan.sample_major = plan.sample_major and plan.path == PATH_BLAS
    if plan.path == PATH_TILES:
        plan.cols = TILE
        n_blocks = (batch + TILE - 1) // TILE
        if parallel_worth_it and threads > 1 and n_blocks > 1 and not nnx_backing_off(policy):
            plan.n_threads = <int>min(threads, n_blocks)
    take_threads(&plan, settings, state)
    return plan
