# The forward drivers: whole networks on blocks of samples (tiles or BLAS, over threads) and on
# one sample (alone, its rows over threads, or each layer's panels shared among threads).
# Included by core.pxi.


cdef inline void layer_activate(const LayerPlan* layer, floating* values,
                                Py_ssize_t n_samples) noexcept nogil:
    """Activation of one layer over ``n_samples`` outputs stored feature-major."""
    cdef Py_ssize_t t
    if layer.activation == ACT_SOFTMAX:
        for t in range(n_samples):
            softmax_strided(values + t, layer.n_out, n_samples)
    elif layer.activation != ACT_LINEAR:
        activate(values, layer.n_out * n_samples, layer.activation, <floating>layer.alpha)


cdef void dense_block(const ForwardPlan* plan, const LayerPlan* layer, const floating* x,
                      floating* y, Py_ssize_t cols, const char* ahead,
                      Py_ssize_t ahead_bytes) noexcept nogil:
    """y = activation(W @ x + b) on a block of ``cols`` samples stored feature-major;
    fetches ``ahead_bytes`` from ``ahead`` into cache along the way (see dense_tile).

    x: (n_in, cols), y: (n_out, cols), cols a multiple of TILE.
    """
    cdef Py_ssize_t j, t, chunk
    cdef char no_transpose = b"N"
    cdef const floating* weights = <const floating*>layer.weights
    cdef const floating* biases = <const floating*>layer.biases
    if layer.kind == KIND_LAYER_NORM:
        layer_norm_block(layer, x, y, cols)
        layer_activate(layer, y, cols)
        return
    if layer_uses_blas(plan, layer, cols):
        for j in range(layer.n_out):
            for t in range(cols):
                y[j * cols + t] = biases[j]
        # Row-major y (n_out, cols) is column-major y.T (cols, n_out) = x.T @ W.T + y.T, where
        # column-major x.T is row-major x and column-major W.T is row-major W.
        blas_gemm(no_transpose, no_transpose, <int>cols, <int>layer.n_out, <int>layer.n_in, x,
                  <int>cols, weights, <int>layer.n_in, 1, y, <int>cols)
        layer_activate(layer, y, cols)
    else:
        for chunk in range(cols // TILE):
            dense_tile(x + chunk * TILE, weights, biases, y + chunk * TILE, layer.n_in,
                       layer.n_out, cols, layer.activation == ACT_RELU, ahead,
                       ahead_bytes if chunk == 0 else 0)
        if layer.activation != ACT_RELU:
            layer_activate(layer, y, cols)


cdef void network_block(const ForwardPlan* plan, const LayerPlan* layers,
                        Py_ssize_t n_layers, const floating* x, Py_ssize_t sample_step,
                        Py_ssize_t feature_step, floating* out, Py_ssize_t n_rows,
                        Py_ssize_t cols, floating* work, Py_ssize_t max_width,
                        const floating* next_x, Py_ssize_t next_rows) noexcept nogil:
    """All layers on up to ``cols`` samples of x, depth-first while they are in cache.

    Feature i of sample t is x[t * sample_step + i * feature_step], one of the steps being
    1: sample-major rows (a C-order array) or feature-major columns (Fortran order), which
    are copied into the block's feature-major layout alike. work holds 2 * max_width * cols
    values; samples past n_rows are zero padding. The first layer fetches the ``next_rows``
    rows at next_x (the next block's sample-major input; NULL: none) into cache while it
    computes, so that block need not wait for memory.
    """
    cdef Py_ssize_t i, j, k, t, first
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef floating* src = work
    cdef floating* dst = work + max_width * cols
    cdef floating* swap
    if sample_step == 1:
        # Feature-major input: each feature's samples are one run.
        for i in range(n_in):
            memcpy(src + i * cols, x + i * feature_step, n_rows * sizeof(floating))
    else:
        # Eight features at a time: the reads stay within a cache line per sample, the
        # writes within eight rows of the tile.
        for first in range(0, n_in - n_in % 8, 8):
            for t in range(n_rows):
                for i in range(first, first + 8):
                    src[i * cols + t] = x[t * sample_step + i]
        for i in range(n_in - n_in % 8, n_in):
            for t in range(n_rows):
                src[i * cols + t] = x[t * sample_step + i]
    for i in range(n_in):
        for t in range(n_rows, cols):
            src[i * cols + t] = 0
    for k in range(n_layers):
        if k == 0:
            dense_block(plan, &layers[k], src, dst, cols, <const char*>next_x,
                        next_rows * n_in * <Py_ssize_t>sizeof(floating))
        else:
            dense_block(plan, &layers[k], src, dst, cols, NULL, 0)
        swap = src
        src = dst
        dst = swap
    for t in range(n_rows):
        for j in range(n_out):
            out[t * n_out + j] = src[j * cols + t]


cdef inline void rows_activate(const LayerPlan* layer, floating* values,
                               Py_ssize_t rows) noexcept nogil:
    """Activation of one layer over ``rows`` outputs stored sample-major."""
    cdef Py_ssize_t t
    if layer.activation == ACT_SOFTMAX:
        for t in range(rows):
            softmax_strided(values + t * layer.n_out, layer.n_out, 1)
    elif layer.activation != ACT_LINEAR:
        activate(values, layer.n_out * rows, layer.activation, <floating>layer.alpha)


cdef void layer_rows_blas(const LayerPlan* layer, const floating* x, Py_ssize_t sample_step,
                          Py_ssize_t feature_step, floating* y, Py_ssize_t rows) noexcept nogil:
    """y = activation(x @ W.T + b) on ``rows`` samples, y: (rows, n_out) sample-major: y
    filled with the biases, then BLAS adds x @ W.T as NumPy calls it (no copies, no
    transposes); layer normalisation sample by sample.

    Feature i of sample t is x[t * sample_step + i * feature_step]: sample-major rows
    (feature_step 1) or, for dense layers, feature-major columns (sample_step 1).
    """
    cdef Py_ssize_t t
    cdef Py_ssize_t n_in = layer.n_in, n_out = layer.n_out
    cdef char transpose = b"T", no_transpose = b"N"
    cdef const floating* biases = <const floating*>layer.biases
    if layer.kind == KIND_LAYER_NORM:
        for t in range(rows):
            layer_norm_strided(x + t * sample_step, y + t * n_out, n_out, 1,
                               <const floating*>layer.weights, biases, layer.eps)
    else:
        for t in range(rows):
            memcpy(y + t * n_out, biases, n_out * sizeof(floating))
        # Row-major y (rows, n_out) is column-major y.T (n_out, rows) = W @ x.T + y.T, where
        # W is the transpose of column-major W.T (row-major W), and x.T is column-major
        # row-major x, or the transpose of column-major (feature-major) x.
        if feature_step == 1:
            blas_gemm(transpose, no_transpose, <int>n_out, <int>rows, <int>n_in,
                      <const floating*>layer.weights, <int>n_in, x, <int>sample_step, 1, y,
                      <int>n_out)
        else:
            blas_gemm(transpose, transpose, <int>n_out, <int>rows, <int>n_in,
                      <const floating*>layer.weights, <int>n_in, x, <int>feature_step, 1, y,
                      <int>n_out)
    rows_activate(layer, y, rows)


cdef int network_rows_blas(const LayerPlan* layers, Py_ssize_t n_layers, Py_ssize_t max_width,
                           const floating* x, Py_ssize_t sample_step, Py_ssize_t feature_step,
                           floating* out, Py_ssize_t batch) noexcept nogil:
    """All layers on ``batch`` samples kept in the caller's order, BLAS computing every dense
    layer (ForwardPlan.sample_major); x as for layer_rows_blas, the layers after the first
    sample-major. A network of one layer takes the whole batch in one call, as NumPy; deeper
    ones go BLAS_BLOCK_VALUES // max_width samples (at least BLAS_TILE) at a time through
    all layers. Returns -1 if out of memory."""
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef Py_ssize_t k, first = 0, rows
    cdef Py_ssize_t block = batch
    cdef floating* work = NULL
    cdef const floating* src = NULL
    cdef floating* dst
    if n_layers > 1:
        block = min(batch, max(<Py_ssize_t>BLAS_TILE, BLAS_BLOCK_VALUES // max_width))
        work = <floating*>PyMem_RawMalloc(2 * max_width * block * sizeof(floating))
        if work == NULL:
            return -1
    block = min(block, <Py_ssize_t>INT_MAX)
    while first < batch:
        rows = min(block, batch - first)
        for k in range(n_layers):
            dst = out + first * n_out if k == n_layers - 1 else work + (k % 2) * max_width * block
            if k == 0:
                layer_rows_blas(&layers[k], x + first * sample_step, sample_step, feature_step,
                                dst, rows)
            else:
                layer_rows_blas(&layers[k], src, layers[k].n_in, 1, dst, rows)
            src = dst
        first += rows
    PyMem_RawFree(work)
    return 0


cdef void dense_rows(const LayerPlan* layer, const floating* x, floating* y, Py_ssize_t first,
                     Py_ssize_t last) noexcept nogil:
    """y[first:last] = weights[first:last] @ x + biases[first:last] for one sample; from the
    layer's panels where they hold these neurons (first is then a multiple of OUT_BLOCK)."""
    cdef Py_ssize_t n_in = layer.n_in
    cdef Py_ssize_t panels_end = first
    cdef const floating* biases = <const floating*>layer.biases
    if layer.panels != NULL:
        panels_end = max(first, min(last, layer.n_out - layer.n_out % OUT_BLOCK))
        dense_panels(x, <const floating*>layer.panels, biases, y, n_in, first // OUT_BLOCK,
                     panels_end // OUT_BLOCK)
    if panels_end < last:
        dense_row(x, <const floating*>layer.weights + panels_end * n_in, biases + panels_end,
                  y + panels_end, n_in, last - panels_end)


cdef void layer_rows_shared(const LayerPlan* layer, const floating* x, floating* y,
                            int n_threads, nnx_parallel_watch* watch) noexcept nogil:
    """y = weights @ x + biases for one sample, ROW_CHUNK rows at a time claimed by
    ``n_threads`` threads as they come free (see claims.h)."""
    cdef int member, team
    cdef Py_ssize_t n_in = layer.n_in
    cdef Py_ssize_t n_chunks = (layer.n_out + ROW_CHUNK - 1) // ROW_CHUNK
    cdef Py_ssize_t chunk, first, count
    cdef long long started, caller_started
    cdef const floating* weights = <const floating*>layer.weights
    cdef const floating* biases = <const floating*>layer.biases
    cdef nnx_counter counters[2]    # pieces claimed, pieces finished
    cdef int cpu_clock = nnx_caller_clock(<double>layer.n_out * n_in / NNX_ROW_MACS_PER_NS)
    counters[0].value = 0
    counters[1].value = 0
    nnx_count(settings_state, NNX_COUNT_PARALLEL_REGIONS)
    started = nnx_now_ns()
    with parallel(num_threads=n_threads):
        member = threadid()
        team = nnx_team_size()
        caller_started = nnx_caller_now_ns(cpu_clock) if member == 0 else 0
        while True:
            nnx_delay_if_asked(policy, member, team, &counters[1], n_chunks)
            chunk = nnx_claim(&counters[0])
            if chunk >= n_chunks:
                break
            first = chunk * ROW_CHUNK
            count = min(<Py_ssize_t>ROW_CHUNK, layer.n_out - first)
            dense_row(x, weights + first * n_in, biases + first, y + first, n_in, count)
            if member == 0:
                watch.caller_work += count * n_in
            nnx_add_done(&counters[1], 1)
        if member == 0:
            watch.caller_ns += nnx_caller_now_ns(cpu_clock) - caller_started
    watch.elapsed_ns += nnx_now_ns() - started
    watch.total_work += layer.n_out * n_in
    watch.regions += 1


cdef void network_row(const ForwardPlan* plan, const LayerPlan* layers, Py_ssize_t n_layers,
                      const floating* x, floating* out, floating* work,
                      Py_ssize_t max_width, nnx_parallel_watch* watch) noexcept nogil:
    """All layers on one sample; work holds 2 * max_width values.

    The layers the plan splits (layer_splits_rows) share their output neurons among
    ``plan.n_threads`` threads (layer_rows_shared).
    """
    cdef Py_ssize_t k
    cdef const floating* src = x
    cdef floating* dst
    for k in range(n_layers):
        dst = out if k == n_layers - 1 else work + (k % 2) * max_width
        if layers[k].kind == KIND_LAYER_NORM:
            layer_norm_strided(src, dst, layers[k].n_out, 1, <const floating*>layers[k].weights,
                               <const floating*>layers[k].biases, layers[k].eps)
        elif layer_splits_rows(plan, &layers[k]):
            layer_rows_shared(&layers[k], src, dst, plan.n_threads, watch)
        else:
            dense_rows(&layers[k], src, dst, 0, layers[k].n_out)
        layer_activate(&layers[k], dst, 1)
        src = dst


cdef void network_row_split(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                            floating* out, floating* work, Py_ssize_t max_width,
                            int n_threads, nnx_counter* counters,
                            nnx_parallel_watch* watch) noexcept nogil:
    """network_row with each layer's output neurons shared among ``n_threads`` threads, in
    pieces of one panel (OUT_BLOCK neurons) claimed as threads come free; work holds
    2 * max_width values, counters n_layers * (n_threads + 1) zeroed ones.

    Each thread has a run of panels of its own, the same on every call, which it claims
    first, so that its share of the weights stays in its core's cache (a network too big for
    one core's L2 runs from two); then it helps with the others' runs. A thread that comes
    late (the OS gave its core to another process) finds its run done by the others.
    """
    cdef int member, team, r, run
    cdef Py_ssize_t k, n_pieces, run_first, run_length, index, first, last
    cdef long long started, layer_started, target
    cdef bint softmax
    cdef nnx_counter* runs
    cdef nnx_counter* done
    cdef const floating* src
    cdef floating* dst
    cdef double macs = 0
    cdef int cpu_clock
    for k in range(n_layers):
        macs += layers[k].n_out * layers[k].n_in
    cpu_clock = nnx_caller_clock(macs / NNX_ROW_MACS_PER_NS)
    nnx_count(settings_state, NNX_COUNT_PARALLEL_REGIONS)
    started = nnx_now_ns()
    with parallel(num_threads=n_threads):
        member = threadid()
        team = nnx_team_size()
        src = x
        for k in range(n_layers):
            layer_started = nnx_caller_now_ns(cpu_clock) if member == 0 else 0
            dst = out if k == n_layers - 1 else work + (k % 2) * max_width
            n_pieces = (layers[k].n_out + OUT_BLOCK - 1) // OUT_BLOCK
            softmax = layers[k].activation == ACT_SOFTMAX
            runs = counters + k * (n_threads + 1)
            done = runs + n_threads
            for r in range(team):
                run = (member + r) % team
                run_first = n_pieces * run // team
                run_length = n_pieces * (run + 1) // team - run_first
                while True:
                    nnx_delay_if_asked(policy, member, team, done, n_pieces)
                    index = nnx_claim(&runs[run])
                    if index >= run_length:
                        break
                    first = (run_first + index) * OUT_BLOCK
                    last = min(first + OUT_BLOCK, layers[k].n_out)
                    dense_rows(&layers[k], src, dst, first, last)
                    if not softmax:
                        activate(dst + first, last - first, layers[k].activation,
                                 <floating>layers[k].alpha)
                    if member == 0:
                        watch.caller_work += (last - first) * layers[k].n_in
                    nnx_add_done(done, 1)
            target = n_pieces
            if member == 0:
                watch.caller_ns += nnx_caller_now_ns(cpu_clock) - layer_started
                if softmax:
                    nnx_wait_done(done, n_pieces)
                    softmax_strided(dst, layers[k].n_out, 1)
                    nnx_add_done(done, 1)
            if softmax:
                target = n_pieces + 1
            # The next layer reads all of dst; after the last one, the end of the parallel
            # region waits for every thread.
            if k < n_layers - 1:
                nnx_wait_done(done, target)
            src = dst
    watch.elapsed_ns += nnx_now_ns() - started
    watch.total_work += macs
    watch.regions += 1


cdef inline const floating* rows_from(const floating* x, Py_ssize_t first, Py_ssize_t batch,
                                      Py_ssize_t sample_step,
                                      Py_ssize_t feature_step) noexcept nogil:
    """The rows of sample-major x from ``first`` on, to fetch ahead (network_block); NULL
    past the end, and for feature-major x (one run per feature: fetching them ahead did not
    pay)."""
    return x + first * sample_step if first < batch and feature_step == 1 else NULL


cdef void network_blocks_shared(const ForwardPlan* plan, const LayerPlan* layers,
                                Py_ssize_t n_layers, Py_ssize_t max_width, const floating* x,
                                Py_ssize_t sample_step, Py_ssize_t feature_step,
                                floating* out, Py_ssize_t batch, floating* work,
                                nnx_parallel_watch* watch) noexcept nogil:
    """network_block on every block of ``plan.cols`` samples of x (laid out as for
    network_block), blocks claimed by ``plan.n_threads`` threads as they come free; work
    holds n_threads * 2 * max_width * cols values."""
    cdef int member, team
    cdef int n_threads = plan.n_threads
    cdef Py_ssize_t cols = plan.cols
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef Py_ssize_t n_blocks = (batch + cols - 1) // cols
    cdef Py_ssize_t block_size = 2 * max_width * cols
    cdef Py_ssize_t k, block, first, rows
    cdef long long started, caller_started
    cdef double macs_per_sample = 0
    cdef nnx_counter counters[2]    # blocks claimed, blocks finished
    cdef int cpu_clock
    for k in range(n_layers):
        macs_per_sample += layers[k].n_in * layers[k].n_out
    cpu_clock = nnx_caller_clock(batch * macs_per_sample / NNX_BLOCK_MACS_PER_NS)
    counters[0].value = 0
    counters[1].value = 0
    nnx_count(settings_state, NNX_COUNT_PARALLEL_REGIONS)
    started = nnx_now_ns()
    with parallel(num_threads=n_threads):
        member = threadid()
        team = nnx_team_size()
        caller_started = nnx_caller_now_ns(cpu_clock) if member == 0 else 0
        while True:
            nnx_delay_if_asked(policy, member, team, &counters[1], n_blocks)
            block = nnx_claim(&counters[0])
            if block >= n_blocks:
                break
            first = block * cols
            rows = min(cols, batch - first)
            # Fetch the input of the block n_threads further on: the one this thread
            # probably takes next.
            network_block(plan, layers, n_layers, x + first * sample_step, sample_step,
                          feature_step, out + first * n_out, rows, cols,
                          work + member * block_size, max_width,
                          rows_from(x, first + n_threads * cols, batch, sample_step,
                                    feature_step),
                          min(cols, max(0, batch - first - n_threads * cols)))
            if member == 0:
                watch.caller_work += rows * macs_per_sample
            nnx_add_done(&counters[1], 1)
        if member == 0:
            watch.caller_ns += nnx_caller_now_ns(cpu_clock) - caller_started
    watch.elapsed_ns += nnx_now_ns() - started
    watch.total_work += batch * macs_per_sample
    watch.regions += 1


cdef enum:
    # Counters of a shared one-sample forward held on the stack (else allocated).
    STACK_COUNTERS = 32


cdef int network_forward(const ForwardPlan* plan, const LayerPlan* layers, Py_ssize_t n_layers,
                         Py_ssize_t max_width, const floating* x, Py_ssize_t sample_step,
                         Py_ssize_t feature_step, floating* out, Py_ssize_t batch,
                         nnx_parallel_watch* watch) noexcept nogil:
    """Forward ``batch`` samples of x through all layers as planned (plan_forward), into
    sample-major out. Returns -1 if out of memory. ``watch`` adds up what the caller saw of
    the parallel regions (for the back-off, thread_policy.h).

    Feature i of sample t is x[t * sample_step + i * feature_step]: sample-major rows
    (C order, feature_step 1) on every path; feature-major columns (Fortran order,
    sample_step 1) on the batched paths, and on path blas when the first layer is dense.

    The workspace comes from PyMem_RawMalloc (callable without the GIL, seen by tracemalloc).
    """
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef Py_ssize_t s, block, n_blocks, first, rows, block_size
    cdef Py_ssize_t cols = plan.cols
    cdef int n_threads = plan.n_threads
    cdef floating stack_work[2 * STACK_WIDTH]
    cdef floating* work
    cdef nnx_counter stack_counters[STACK_COUNTERS]
    cdef nnx_counter* counters = stack_counters
    cdef Py_ssize_t n_counters = n_layers * (n_threads + 1)
    cdef bint shared = plan.path == PATH_SHARED_PANELS
    if plan.path != PATH_TILES and plan.path != PATH_BLAS:
        if max_width <= STACK_WIDTH:
            work = stack_work
        else:
            work = <floating*>PyMem_RawMalloc(2 * max_width * sizeof(floating))
            if work == NULL:
                return -1
        if shared and n_counters > STACK_COUNTERS:
            counters = <nnx_counter*>PyMem_RawMalloc(n_counters * sizeof(nnx_counter))
            if counters == NULL:
                if work != stack_work:
                    PyMem_RawFree(work)
                return -1
        for s in range(batch):
            if shared:
                memset(counters, 0, n_counters * sizeof(nnx_counter))
                network_row_split(layers, n_layers, x + s * sample_step, out + s * n_out,
                                  work, max_width, n_threads, counters, watch)
            else:
                network_row(plan, layers, n_layers, x + s * sample_step, out + s * n_out,
                            work, max_width, watch)
        if work != stack_work:
            PyMem_RawFree(work)
        if counters != stack_counters:
            PyMem_RawFree(counters)
        return 0

    if plan.sample_major:
        return network_rows_blas(layers, n_layers, max_width, x, sample_step, feature_step, out,
                                 batch)
    n_blocks = (batch + cols - 1) // cols
    block_size = 2 * max_width * cols
    work = <floating*>PyMem_RawMalloc(n_threads * block_size * sizeof(floating))
    if work == NULL:
        return -1
    if n_threads == 1:
        for block in range(n_blocks):
            first = block * cols
            rows = min(cols, batch - first)
            network_block(plan, layers, n_layers, x + first * sample_step, sample_step,
                          feature_step, out + first * n_out, rows,
                          min(cols, (rows + TILE - 1) // TILE * TILE), work, max_width,
                          rows_from(x, first + cols, batch, sample_step, feature_step),
                          min(cols, max(0, batch - first - cols)))
    else:
        network_blocks_shared(plan, layers, n_layers, max_width, x, sample_step, feature_step,
                              out, batch, work, watch)
    PyMem_RawFree(work)
    return 0
