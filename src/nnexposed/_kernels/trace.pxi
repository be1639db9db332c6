# Every layer's values in one pass (Network.trace): the same kernels as the forward pass
# (dense_rows for one sample, dense_tile for tiles of TILE samples), with each layer's
# pre-activation and output copied out as they are computed.


cdef void trace_row(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                    floating** pre, floating** post, Py_ssize_t sample) noexcept nogil:
    """All layers on sample ``sample`` of x; pre[k] and post[k]: (batch, n_out of layer k)."""
    cdef Py_ssize_t k, j, n_out
    cdef const floating* src = x + sample * layers[0].n_in
    cdef floating* y
    for k in range(n_layers):
        n_out = layers[k].n_out
        if layers[k].kind == KIND_LAYER_NORM:
            layer_norm_strided(src, pre[k] + sample * n_out, n_out, 1,
                               <const floating*>layers[k].weights,
                               <const floating*>layers[k].biases, layers[k].eps)
        else:
            dense_rows(&layers[k], src, pre[k] + sample * n_out, 0, n_out)
        y = post[k] + sample * n_out
        for j in range(n_out):
            y[j] = pre[k][sample * n_out + j]
        layer_activate(&layers[k], y, 1)
        src = y


cdef void trace_tile(const LayerPlan* layers, Py_ssize_t n_layers, const floating* x,
                     floating** pre, floating** post, Py_ssize_t first, Py_ssize_t n_rows,
                     floating* work, Py_ssize_t max_width) noexcept nogil:
    """All layers on the n_rows (<= TILE) samples from ``first`` on; work holds
    2 * max_width * TILE values. Samples past n_rows are zero padding, never copied out."""
    cdef Py_ssize_t i, j, k, t, n_out
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef floating* src = work
    cdef floating* dst = work + max_width * TILE
    cdef floating* swap
    for i in range(n_in):
        for t in range(TILE):
            src[i * TILE + t] = x[(first + t) * n_in + i] if t < n_rows else 0
    for k in range(n_layers):
        n_out = layers[k].n_out
        if layers[k].kind == KIND_LAYER_NORM:
            layer_norm_block(&layers[k], src, dst, TILE)
        else:
            dense_tile(src, <const floating*>layers[k].weights,
                       <const floating*>layers[k].biases, dst, layers[k].n_in, n_out, TILE,
                       False, NULL, 0)
        for t in range(n_rows):
            for j in range(n_out):
                pre[k][(first + t) * n_out + j] = dst[j * TILE + t]
        layer_activate(&layers[k], dst, TILE)
        for t in range(n_rows):
            for j in range(n_out):
                post[k][(first + t) * n_out + j] = dst[j * TILE + t]
        swap = src
        src = dst
        dst = swap


cdef int network_trace(const LayerPlan* layers, Py_ssize_t n_layers, Py_ssize_t max_width,
                       const floating* x, floating** pre, floating** post, Py_ssize_t batch,
                       int n_threads) noexcept nogil:
    """Forward ``batch`` samples (rows of x), keeping every layer's pre-activation in pre[k]
    and output in post[k]. Returns -1 if out of memory.

    Batches of fewer than MIN_TILED_BATCH samples go sample by sample; larger ones in tiles of
    TILE samples, spread over ``n_threads`` threads.
    """
    cdef Py_ssize_t s, tile, n_tiles, first
    cdef floating* work
    if batch < MIN_TILED_BATCH:
        for s in range(batch):
            trace_row(layers, n_layers, x, pre, post, s)
        return 0
    n_tiles = (batch + TILE - 1) // TILE
    n_threads = <int>max(1, min(n_threads, n_tiles))
    work = <floating*>PyMem_RawMalloc(n_threads * 2 * max_width * TILE * sizeof(floating))
    if work == NULL:
        return -1
    if n_threads == 1:
        for tile in range(n_tiles):
            first = tile * TILE
            trace_tile(layers, n_layers, x, pre, post, first, min(<Py_ssize_t>TILE, batch - first),
                       work, max_width)
    else:
        nnx_count(settings_state, NNX_COUNT_PARALLEL_REGIONS)
        for tile in prange(n_tiles, num_threads=n_threads, schedule="dynamic"):
            first = tile * TILE
            trace_tile(layers, n_layers, x, pre, post, first, min(<Py_ssize_t>TILE, batch - first),
                       work + threadid() * 2 * max_width * TILE, max_width)
    PyMem_RawFree(work)
    return 0
