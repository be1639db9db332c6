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
    cdef int m = <int>cols, n = <int>layer.n_out, k = <int>layer.n_in
    cdef floating one = 1, zero = 0
    cdef char no_transpose = b"N"
    cdef const floating* weights = <const floating*>layer.weights
    cdef const floating* biases = <const floating*>layer.biases
    if layer_uses_blas(plan, layer, cols):
        # Row-major y (n_out, cols) is column-major y.T (cols, n_out) = x.T @ W.T, where
        # column-major x.T is row-major x and column-major W.T is row-major W.
        if floating is float:
            blas_sgemm(&no_transpose, &no_transpose, &m, &n, &k, &one, <float*>x, &m,
                       <float*>weights, &k, &zero, y, &m)
        else:
            blas_dgemm(&no_transpose, &no_transpose, &m, &n, &k, &one, <double*>x, &m,
                       <double*>weights, &k, &zero, y, &m)
        for j in range(layer.n_out):
            for t in range(cols):
                y[j * cols + t] += biases[j]
        layer_activate(layer, y, cols)
    else:
        for chunk in range(cols // TILE):
            dense_tile(x + chunk * TILE, weights, biases, y + chunk * TILE, layer.n_in,
                       layer.n_out, cols, layer.activation == ACT_RELU, ahead,
                       ahead_bytes if chunk == 0 else 0)
        if layer.activation != ACT_RELU:
            layer_activate(layer, y, cols)


cdef void network_block(const ForwardPlan* plan, const LayerPlan* layers,
                        Py_ssize_t n_layers, const floating* x, floating* out,
                        Py_ssize_t n_rows, Py_ssize_t cols, floating* work,
                        Py_ssize_t max_width, const floating* next_x,
                        Py_ssize_t next_rows) noexcept nogil:
    """All layers on up to ``cols`` samples (rows of x), depth-first while they are in cache.

    work holds 2 * max_width * cols values; samples past n_rows are zero padding. The first
    layer fetches the ``next_rows`` rows at next_x (the next block's input) into cache while
    it computes, so that block need not wait for memory.
    """
    cdef Py_ssize_t i, j, k, t, first
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef floating* src = work
    cdef floating* dst = work + max_width * cols
    cdef floating* swap
    # Eight features at a time: the reads stay within a cache line per sample, the writes
    # within eight rows of the tile.
    for first in range(0, n_in - n_in % 8, 8):
        for t in range(n_rows):
            for i in range(first, first + 8):
                src[i * cols + t] = x[t * n_in + i]
    for i in range(n_in - n_in % 8, n_in):
        for t in range(n_rows):
            src[i * cols + t] = x[t * n_in + i]
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


cdef void network_row(const ForwardPlan* plan, const LayerPlan* layers, Py_ssize_t n_layers,
                      const floating* x, floating* out, floating* work,
                      Py_ssize_t max_width) noexcept nogil:
    """All layers on one sample; work holds 2 * max_width values.

    The layers the plan splits (layer_splits_rows) share their output neurons among
    ``plan.n_threads`` threads, ROW_CHUNK rows at a time.
    """
    cdef Py_ssize_t k, chunk, n_chunks, first, count
    cdef const floating* src = x
    cdef floating* dst
    cdef const floating* weights
    cdef const floating* biases
    for k in range(n_layers):
        dst = out if k == n_layers - 1 else work + (k % 2) * max_width
        weights = <const floating*>layers[k].weights
        biases = <const floating*>layers[k].biases
        if layer_splits_rows(plan, &layers[k]):
            # Chunks of rows handed out as threads come free: a thread slowed by another
            # process (another library's spinning BLAS threads, say) delays nobody.
            n_chunks = (layers[k].n_out + ROW_CHUNK - 1) // ROW_CHUNK
            nnx_count(settings_state, NNX_COUNT_PARALLEL_REGIONS)
            for chunk in prange(n_chunks, num_threads=plan.n_threads, schedule="dynamic"):
                first = chunk * ROW_CHUNK
                count = min(<Py_ssize_t>ROW_CHUNK, layers[k].n_out - first)
                dense_row(src, weights + first * layers[k].n_in, biases + first,
                          dst + first, layers[k].n_in, count)
        else:
            dense_rows(&layers[k], src, dst, 0, layers[k].n_out)
        layer_activate(&layers[k], dst, 1)
        src = dst


cdef void network_row_split(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                            floating* out, floating* work, Py_ssize_t max_width,
                            int n_threads) noexcept nogil:
    """network_row with each layer's output neurons shared among ``n_threads`` threads, a
    run of whole panels to each; work holds 2 * max_width values.

    A thread takes the same neurons on every call, so its share of the weights stays in its
    own core's cache: a network too big for one core's L2 runs from two.
    """
    cdef int member, team
    cdef Py_ssize_t k, n_blocks, first, last
    cdef const floating* src
    cdef floating* dst
    nnx_count(settings_state, NNX_COUNT_PARALLEL_REGIONS)
    with parallel(num_threads=n_threads):
        member = threadid()
        team = nnx_team_size()
        src = x
        for k in range(n_layers):
            dst = out if k == n_layers - 1 else work + (k % 2) * max_width
            n_blocks = (layers[k].n_out + OUT_BLOCK - 1) // OUT_BLOCK
            first = min(n_blocks * member // team * OUT_BLOCK, layers[k].n_out)
            last = min(n_blocks * (member + 1) // team * OUT_BLOCK, layers[k].n_out)
            if first < last:
                dense_rows(&layers[k], src, dst, first, last)
                if layers[k].activation != ACT_SOFTMAX:
                    activate(dst + first, last - first, layers[k].activation,
                             <floating>layers[k].alpha)
            # The next layer reads all of dst; after the last one, the end of the parallel
            # region waits for every thread.
            if k < n_layers - 1 or layers[k].activation == ACT_SOFTMAX:
                nnx_barrier()
            if layers[k].activation == ACT_SOFTMAX:
                if member == 0:
                    softmax_strided(dst, layers[k].n_out, 1)
                if k < n_layers - 1:
                    nnx_barrier()
            src = dst


cdef inline const floating* rows_from(const floating* x, Py_ssize_t first, Py_ssize_t batch,
                                      Py_ssize_t n_in) noexcept nogil:
    """The rows of x: (batch, n_in) from ``first`` on; NULL when first is past the end."""
    return x + first * n_in if first < batch else NULL


cdef int network_forward(const ForwardPlan* plan, const LayerPlan* layers, Py_ssize_t n_layers,
                         Py_ssize_t max_width, const floating* x, floating* out,
                         Py_ssize_t batch) noexcept nogil:
    """Forward ``batch`` samples (rows of x) through all layers as planned (plan_forward).
    Returns -1 if out of memory.

    The workspace comes from PyMem_RawMalloc (callable without the GIL, seen by tracemalloc).
    """
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef Py_ssize_t s, block, n_blocks, first, rows, block_size
    cdef Py_ssize_t cols = plan.cols
    cdef int n_threads = plan.n_threads
    cdef floating stack_work[2 * STACK_WIDTH]
    cdef floating* work
    if plan.path != PATH_TILES and plan.path != PATH_BLAS:
        if max_width <= STACK_WIDTH:
            work = stack_work
        else:
            work = <floating*>PyMem_RawMalloc(2 * max_width * sizeof(floating))
            if work == NULL:
                return -1
        for s in range(batch):
            if plan.path == PATH_SHARED_PANELS:
                network_row_split(layers, n_layers, x + s * n_in, out + s * n_out, work,
                                  max_width, n_threads)
            else:
                network_row(plan, layers, n_layers, x + s * n_in, out + s * n_out, work,
                            max_width)
        if work != stack_work:
            PyMem_RawFree(work)
        return 0

    n_blocks = (batch + cols - 1) // cols
    block_size = 2 * max_width * cols
    work = <floating*>PyMem_RawMalloc(n_threads * block_size * sizeof(floating))
    if work == NULL:
        return -1
    # Each block fetches the input of the block n_threads further on: the one this thread
    # probably takes next.
    if n_threads == 1:
        for block in range(n_blocks):
            first = block * cols
            rows = min(cols, batch - first)
            network_block(plan, layers, n_layers, x + first * n_in, out + first * n_out, rows,
                          min(cols, (rows + TILE - 1) // TILE * TILE), work, max_width,
                          rows_from(x, first + cols, batch, n_in),
                          min(cols, max(0, batch - first - cols)))
    else:
        nnx_count(settings_state, NNX_COUNT_PARALLEL_REGIONS)
        for block in prange(n_blocks, num_threads=n_threads, schedule="dynamic"):
            first = block * cols
            rows = min(cols, batch - first)
            network_block(plan, layers, n_layers, x + first * n_in, out + first * n_out, rows,
                          cols, work + threadid() * block_size, max_width,
                          rows_from(x, first + n_threads * cols, batch, n_in),
                          min(cols, max(0, batch - first - n_threads * cols)))
    PyMem_RawFree(work)
    return 0
