# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled forward pass of reduced-precision networks: int8, bfloat16 and float16 weights.

One build for every CPU of the platform: the kernels for ISA extensions (AVX2, AVX-512,
AVX-512 VNNI, AVX-512 BF16) carry per-function target attributes (``_kernels/int8.h``,
``_kernels/half.h``) and are called only when the CPU runs them. The kernel set is chosen
at import from the float kernels' choice (``nnexposed._dispatch.ISA``, so ``NNEXPOSED_ISA``
forces it too) and the CPU's extensions; ``use_kernel_set`` switches it (for tests).

Inputs and outputs are float32. Batches run in blocks of up to BLOCK samples, all layers on
a block while it is in cache, blocks claimed by OpenMP threads as they come free; one sample
(and batches below MIN_TILED_BATCH, as the float kernels) layer by layer, wide layers'
neurons claimed by threads SHARED_ROW_CHUNK at a time. The threads come from the process's
budget and back off to one while other processes hold the cores, as the float kernels'
(``_kernels/thread_policy.h``, one state for both).
"""

from cython.parallel cimport parallel, threadid
from libc.math cimport exp, expf, fabs, fabsf, tanh, tanhf
from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t, uint32_t
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.string cimport memset
from cython cimport floating

cimport numpy as cnp

import numpy as np

from nnexposed._settings cimport (
    NNX_BLOCK_MACS_PER_NS, NNX_N_SETTINGS, NNX_ROW_MACS_PER_NS, nnx_add_done, nnx_backing_off,
    nnx_caller_clock, nnx_caller_now_ns, nnx_claim, nnx_counter, nnx_delay_if_asked,
    nnx_give_back_threads, nnx_judge_forward, nnx_note_openmp_started, nnx_now_ns,
    nnx_parallel_watch, nnx_shared_state, nnx_take_threads, nnx_thread_policy,
    nnx_thread_policy_of, nnx_threads_for_call, read_settings, shared_state)
from nnexposed._validation import as_network_input, check_out
from nnexposed.activations import activation_code

cnp.import_array()

cdef extern from "_kernels/openmp.h":
    int nnx_team_size() noexcept nogil

# The process's thread budget, fork state and back-off, shared with the float kernels.
cdef nnx_shared_state* settings_state = shared_state()
cdef nnx_thread_policy* policy = nnx_thread_policy_of(settings_state)

cdef extern from "_kernels/int8.h" nogil:
    enum:
        NNX_Q_PORTABLE
        NNX_Q_AVX2
        NNX_Q_AVX512
        NNX_Q_AVX512_VNNI
        NNX_Q_AVX512_BF16
        NNX_I8_TILE
        NNX_I8_PANEL
    ctypedef void (*nnx_i8_tile_fn)(
        const uint8_t*, const int8_t*, const int32_t*, const float*, const float*, Py_ssize_t,
        Py_ssize_t, Py_ssize_t, const float*, const int32_t*, float*, int) noexcept nogil
    ctypedef void (*nnx_i8_row_fn)(
        const uint8_t*, const int8_t*, const int32_t*, const float*, const float*, Py_ssize_t,
        Py_ssize_t, Py_ssize_t, float, int32_t, float*, int) noexcept nogil
    ctypedef void (*nnx_i8_quantize_cols_fn)(
        const float*, Py_ssize_t, Py_ssize_t, uint8_t*, float*, int32_t*, float*) noexcept nogil
    ctypedef void (*nnx_i8_quantize_rows_fn)(
        const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, uint8_t*, float*,
        int32_t*) noexcept nogil
    ctypedef struct nnx_i8_kernels:
        nnx_i8_tile_fn tile
        nnx_i8_row_fn row
        nnx_i8_quantize_cols_fn quantize_cols
        nnx_i8_quantize_rows_fn quantize_rows
        int panels
    nnx_i8_kernels nnx_i8_kernels_for(int kernel_set)
    void nnx_i8_pack_weights(const int8_t*, Py_ssize_t, Py_ssize_t, uint32_t*)
    int nnx_cpu_avx512_vnni()
    int nnx_cpu_avx512_bf16()

cdef extern from "_kernels/half.h" nogil:
    enum:
        NNX_BFLOAT16
        NNX_FLOAT16
        NNX_HALF_TILE
        NNX_BF16_PANEL
    ctypedef void (*nnx_half_tile_fn)(
        const float*, const uint16_t*, int, const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
        float*, int, float*) noexcept nogil
    ctypedef void (*nnx_half_row_fn)(
        const float*, const uint16_t*, int, const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
        float*, int) noexcept nogil
    ctypedef struct nnx_half_kernels:
        nnx_half_tile_fn tile
        nnx_half_row_fn row
        int bf16_panels
    nnx_half_kernels nnx_half_kernels_for(int kernel_set)
    Py_ssize_t nnx_bf16_pairs(Py_ssize_t n_in)
    void nnx_bf16_pack_weights(const uint16_t*, Py_ssize_t, Py_ssize_t, uint32_t*)

cdef extern from "_kernels/quantized_common.h" nogil:
    ctypedef void (*nnx_transpose_fn)(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, float*,
                                      Py_ssize_t) noexcept nogil
    nnx_transpose_fn nnx_transpose_for(int kernel_set)

include "_kernels/declarations.pxi"
include "_kernels/activations.pxi"

cdef enum:
    PRECISION_INT8 = 0
    PRECISION_BFLOAT16 = 1
    PRECISION_FLOAT16 = 2
    # Samples per block of the batched path (a multiple of both kernels' tiles).
    BLOCK = 128
    # One-sample layers of at least this many weights share their neurons among threads,
    # SHARED_ROW_CHUNK at a time.
    ROW_PARALLEL_MIN_WEIGHTS = 1 << 20
    SHARED_ROW_CHUNK = 64
    # The workspace and the packed weights start on a cache line: the kernels' 64-byte loads
    # would otherwise each touch two lines (8% slower at 4096-4096).
    CACHE_LINE = 64

# Below this many multiply-adds per call, waking threads costs more than it saves.
cdef Py_ssize_t PARALLEL_MIN_MACS = 1 << 22

PRECISION_CODES = {"int8": PRECISION_INT8, "bfloat16": PRECISION_BFLOAT16,
                   "float16": PRECISION_FLOAT16}
# Best first. int8: VNNI (vpdpbusd; avx512_bf16 and avx512_vnni), then AVX2 (vpmaddwd; also
# what AVX-512 CPUs without VNNI run), then portable C. bfloat16: vdpbf16ps on inputs rounded
# to bfloat16 (avx512_bf16); bfloat16 otherwise and float16: widened in AVX-512 or AVX2 (F16C)
# registers, else portable C.
KERNEL_SETS = ("avx512_bf16", "avx512_vnni", "avx512", "avx2", "baseline")
cdef dict SET_CODES = {"avx512_bf16": NNX_Q_AVX512_BF16, "avx512_vnni": NNX_Q_AVX512_VNNI,
                       "avx512": NNX_Q_AVX512, "avx2": NNX_Q_AVX2, "baseline": NNX_Q_PORTABLE}

cdef nnx_i8_kernels int8_kernels = nnx_i8_kernels_for(NNX_Q_PORTABLE)
cdef nnx_half_kernels half_kernels = nnx_half_kernels_for(NNX_Q_PORTABLE)
cdef nnx_transpose_fn transpose = nnx_transpose_for(NNX_Q_PORTABLE)
cdef str current_set = "baseline"


def supported_kernel_sets():
    """The kernel sets this CPU and OS run, best first."""
    from nnexposed._cpu import cpu_supports
    usable = ["baseline"]
    if cpu_supports("avx2"):
        usable.insert(0, "avx2")
    if cpu_supports("avx512"):
        usable.insert(0, "avx512")
        if nnx_cpu_avx512_vnni():
            usable.insert(0, "avx512_vnni")
            if nnx_cpu_avx512_bf16():
                usable.insert(0, "avx512_bf16")
    return tuple(usable)


def default_kernel_set(isa):
    """The best kernel set this CPU runs within the float kernels' ISA ``isa``."""
    allowed = {"avx512": KERNEL_SETS, "avx2": ("avx2", "baseline")}.get(isa, ("baseline",))
    return next(name for name in supported_kernel_sets() if name in allowed)


def kernel_set():
    """The name of the kernel set in use."""
    return current_set


def rounds_bfloat16_inputs():
    """Whether the kernel set in use rounds a bfloat16 layer's inputs to bfloat16 (the
    vdpbf16ps kernels), rather than widening the weights to float32."""
    return bool(half_kernels.bf16_panels)


def use_kernel_set(name):
    """Run reduced-precision networks on the kernel set ``name`` (one of
    ``supported_kernel_sets()``); returns the previous one. Not for use while forwards run."""
    global int8_kernels, half_kernels, transpose, current_set
    if name not in SET_CODES:
        raise ValueError(f"unknown kernel set {name!r}; expected one of: "
                         f"{', '.join(KERNEL_SETS)}")
    if name not in supported_kernel_sets():
        raise ValueError(f"this CPU cannot run the {name} kernels; it runs: "
                         f"{', '.join(supported_kernel_sets())}")
    previous = current_set
    int8_kernels = nnx_i8_kernels_for(SET_CODES[name])
    half_kernels = nnx_half_kernels_for(SET_CODES[name])
    transpose = nnx_transpose_for(SET_CODES[name])
    current_set = name
    return previous


def _choose_at_import():
    from nnexposed import _dispatch
    use_kernel_set(default_kernel_set(_dispatch.ISA))


_choose_at_import()


ctypedef struct QLayer:
    Py_ssize_t n_in
    Py_ssize_t n_out
    Py_ssize_t n_in4          # n_in rounded up to 4 (int8 weights are padded with zeros)
    int precision
    int activation
    float alpha
    # q: NULL where the CPU has AVX-512 VNNI until kernels without panels run
    # (QuantizedNetwork.ensure_row_major)
    const int8_t* q           # int8: (n_out, n_in4)
    const int8_t* q_panels    # int8 where the CPU has AVX-512 VNNI: int8.h's panels
    const int32_t* row_sums   # int8: q's row sums, for the inputs' zero points
    const float* scales       # int8: (n_out,)
    const uint16_t* half      # bfloat16 / float16: (n_out, n_in) bit patterns
    const uint16_t* bf16_panels   # bfloat16 where the CPU has AVX-512 BF16: half.h's panels
    const float* biases


cdef inline void layer_activate(const QLayer* layer, float* values,
                                Py_ssize_t n_samples) noexcept nogil:
    """The activation of a layer (ReLU is applied by the kernels) over ``n_samples``
    outputs stored feature-major."""
    cdef Py_ssize_t t
    if layer.activation == ACT_SOFTMAX:
        for t in range(n_samples):
            softmax_strided(values + t, layer.n_out, n_samples)
    elif layer.activation != ACT_LINEAR and layer.activation != ACT_RELU:
        activate(values, layer.n_out * n_samples, layer.activation, layer.alpha)


cdef inline const uint16_t* half_weights(const QLayer* layer) noexcept nogil:
    """The 16-bit weights of a layer in the layout the kernels in use read."""
    if layer.precision == PRECISION_BFLOAT16 and half_kernels.bf16_panels:
        return layer.bf16_panels
    return layer.half


cdef inline const int8_t* int8_weights(const QLayer* layer) noexcept nogil:
    """The int8 weights of a layer in the layout the kernels in use read."""
    return layer.q_panels if int8_kernels.panels else layer.q


cdef inline double one_core_ns(const QLayer* layer, double macs,
                               double float32_macs_per_ns) noexcept nogil:
    """About how long ``macs`` multiply-adds of this layer's precision take on one core, for
    nnx_caller_clock: int8 and bfloat16 kernels do about four in the time of float32's one."""
    return macs / float32_macs_per_ns / (1 if layer.precision == PRECISION_FLOAT16 else 4)


cdef inline void layer_rows(const QLayer* layer, const float* x, float* y, const uint8_t* xq,
                            float x_scale, int32_t zero_point, Py_ssize_t first,
                            Py_ssize_t last) noexcept nogil:
    """y[first:last] of one sample (ReLU applied, other activations not): from xq, x
    quantized with x_scale and zero_point, for int8 layers, else from x."""
    cdef int relu = layer.activation == ACT_RELU
    if layer.precision == PRECISION_INT8:
        int8_kernels.row(xq, int8_weights(layer), layer.row_sums, layer.scales, layer.biases,
                         layer.n_in4, first, last, x_scale, zero_point, y, relu)
    else:
        half_kernels.row(x, half_weights(layer),
                         NNX_BFLOAT16 if layer.precision == PRECISION_BFLOAT16 else NNX_FLOAT16,
                         layer.biases, layer.n_in, first, last, y, relu)


ctypedef double (*piece_fn)(void* job, Py_ssize_t piece, int member) noexcept nogil


cdef void run_claimed(piece_fn run_piece, void* job, Py_ssize_t n_pieces, double total_work,
                      int cpu_clock, int n_threads, nnx_parallel_watch* watch) noexcept nogil:
    """run_piece(job, piece, member) for every piece < n_pieces, claimed by ``n_threads``
    threads as they come free (_kernels/claims.h); run_piece returns the piece's work, of
    ``total_work`` in all, and ``watch`` adds up what the caller (member 0) saw."""
    cdef int member, team
    cdef Py_ssize_t piece
    cdef double done
    cdef long long started, caller_started
    cdef nnx_counter counters[2]    # pieces claimed, pieces finished
    counters[0].value = 0
    counters[1].value = 0
    started = nnx_now_ns()
    with parallel(num_threads=n_threads):
        member = threadid()
        team = nnx_team_size()
        caller_started = nnx_caller_now_ns(cpu_clock) if member == 0 else 0
        while True:
            nnx_delay_if_asked(policy, member, team, &counters[1], n_pieces)
            piece = nnx_claim(&counters[0])
            if piece >= n_pieces:
                break
            done = run_piece(job, piece, member)
            if member == 0:
                watch.caller_work += done
            nnx_add_done(&counters[1], 1)
        if member == 0:
            watch.caller_ns += nnx_caller_now_ns(cpu_clock) - caller_started
    watch.elapsed_ns += nnx_now_ns() - started
    watch.total_work += total_work
    watch.regions += 1


ctypedef struct RowsJob:
    const QLayer* layer
    const float* x
    float* y
    const uint8_t* xq
    float x_scale
    int32_t zero_point


cdef double rows_piece(void* job, Py_ssize_t chunk, int member) noexcept nogil:
    """Rows [chunk * SHARED_ROW_CHUNK, ...) of a RowsJob; returns their multiply-adds."""
    cdef RowsJob* rows = <RowsJob*>job
    cdef Py_ssize_t first = chunk * SHARED_ROW_CHUNK
    cdef Py_ssize_t last = min(first + SHARED_ROW_CHUNK, rows.layer.n_out)
    layer_rows(rows.layer, rows.x, rows.y, rows.xq, rows.x_scale, rows.zero_point, first, last)
    return (last - first) * rows.layer.n_in


cdef void layer_rows_shared(const QLayer* layer, const float* x, float* y, const uint8_t* xq,
                            float x_scale, int32_t zero_point, int n_threads,
                            nnx_parallel_watch* watch) noexcept nogil:
    """layer_rows on all of y, SHARED_ROW_CHUNK rows at a time claimed by ``n_threads``
    threads as they come free."""
    cdef RowsJob job = RowsJob(layer=layer, x=x, y=y, xq=xq, x_scale=x_scale,
                               zero_point=zero_point)
    cdef double macs = <double>layer.n_out * layer.n_in
    run_claimed(rows_piece, &job, (layer.n_out + SHARED_ROW_CHUNK - 1) // SHARED_ROW_CHUNK,
                macs, nnx_caller_clock(one_core_ns(layer, macs, NNX_ROW_MACS_PER_NS)),
                n_threads, watch)


cdef void layer_row(const QLayer* layer, const float* x, float* y, uint8_t* xq,
                    int n_threads, nnx_parallel_watch* watch) noexcept nogil:
    """y = activation(layer(x)) for one sample; xq: n_in4 bytes."""
    cdef float x_scale = 0
    cdef int32_t zero_point = 0
    if layer.precision == PRECISION_INT8:
        int8_kernels.quantize_rows(x, layer.n_in, 1, 1, xq, &x_scale, &zero_point)
    if n_threads > 1 and layer.n_in * layer.n_out >= ROW_PARALLEL_MIN_WEIGHTS:
        layer_rows_shared(layer, x, y, xq, x_scale, zero_point, n_threads, watch)
    else:
        layer_rows(layer, x, y, xq, x_scale, zero_point, 0, layer.n_out)
    layer_activate(layer, y, 1)


cdef void network_block(const QLayer* layers, Py_ssize_t n_layers, Py_ssize_t max_width,
                        const float* x, float* out, Py_ssize_t rows, Py_ssize_t cols,
                        char* work) noexcept nogil:
    """All layers on ``rows`` samples of x (rows, n_in) into out (rows, n_out), as a block
    of ``cols`` samples (a multiple of the tiles; the samples past ``rows`` are zeros).

    work: block_work_bytes(max_width, cols) bytes.
    """
    cdef Py_ssize_t i, k, t
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef float* src = <float*>work
    cdef float* dst = src + max_width * cols
    cdef float* swap
    cdef float* x_scale = dst + max_width * cols
    cdef int32_t* zero_point = <int32_t*>(x_scale + cols)
    cdef float* scratch = <float*>(zero_point + cols)
    cdef uint8_t* xq = <uint8_t*>(scratch + scratch_floats(max_width, cols))
    cdef const QLayer* layer
    cdef int kind
    if layers[0].precision == PRECISION_INT8:
        int8_kernels.quantize_rows(x, n_in, rows, cols, xq, x_scale, zero_point)
    else:
        transpose(x, rows, n_in, n_in, src, cols)
        for i in range(n_in):
            for t in range(rows, cols):
                src[i * cols + t] = 0
    for k in range(n_layers):
        layer = &layers[k]
        if layer.precision == PRECISION_INT8:
            if k > 0:
                int8_kernels.quantize_cols(src, layer.n_in, cols, xq, x_scale, zero_point,
                                           scratch)
            int8_kernels.tile(xq, int8_weights(layer), layer.row_sums, layer.scales,
                              layer.biases, layer.n_in4, layer.n_out, cols, x_scale,
                              zero_point, dst, layer.activation == ACT_RELU)
        else:
            kind = NNX_BFLOAT16 if layer.precision == PRECISION_BFLOAT16 else NNX_FLOAT16
            half_kernels.tile(src, half_weights(layer), kind, layer.biases, layer.n_in,
                              layer.n_out, cols, dst, layer.activation == ACT_RELU, scratch)
        layer_activate(layer, dst, cols)
        swap = src
        src = dst
        dst = swap
    transpose(src, n_out, rows, cols, out, n_out)


cdef inline Py_ssize_t scratch_floats(Py_ssize_t max_width, Py_ssize_t cols) noexcept nogil:
    """The kernels' scratch: widened 16-bit weights (a panel's) or bfloat16 input pairs
    (half.h), per-sample ranges (int8.h)."""
    return max(<Py_ssize_t>NNX_BF16_PANEL * max_width, 2 * cols,
               nnx_bf16_pairs(max_width) * cols)


cdef inline Py_ssize_t block_work_bytes(Py_ssize_t max_width, Py_ssize_t cols) noexcept nogil:
    """Workspace of network_block: two float blocks, per-sample scales and zero points, the
    kernels' scratch and the quantized block (64 bytes to spare)."""
    cdef Py_ssize_t width4 = (max_width + 3) // 4 * 4
    return ((2 * max_width * cols + 2 * cols + scratch_floats(max_width, cols)) * 4
            + width4 * cols + 64)


cdef inline Py_ssize_t block_samples(Py_ssize_t batch, int n_threads) noexcept nogil:
    """Samples per block of a batched forward: BLOCK, fewer when that leaves threads idle."""
    cdef Py_ssize_t cols = (batch + n_threads - 1) // n_threads
    return min(<Py_ssize_t>BLOCK, (cols + NNX_I8_TILE - 1) // NNX_I8_TILE * NNX_I8_TILE)


cdef inline Py_ssize_t block_stride(Py_ssize_t max_width, Py_ssize_t cols) noexcept nogil:
    """Bytes of workspace per thread of a batched forward (whole cache lines)."""
    return (block_work_bytes(max_width, cols) + 63) // 64 * 64


cdef Py_ssize_t forward_work_bytes(Py_ssize_t max_width, Py_ssize_t batch,
                                   int n_threads) noexcept nogil:
    """Workspace of network_forward for ``batch`` samples on up to ``n_threads`` threads."""
    cdef Py_ssize_t cols, n_blocks
    if batch < MIN_TILED_BATCH:
        # two float vectors, then the quantized one
        return 2 * max_width * sizeof(float) + max_width + 64
    cols = block_samples(batch, n_threads)
    n_blocks = (batch + cols - 1) // cols
    return max(1, min(n_threads, n_blocks)) * block_stride(max_width, cols)


ctypedef struct BlocksJob:
    const QLayer* layers
    Py_ssize_t n_layers
    Py_ssize_t max_width
    const float* x
    float* out
    Py_ssize_t batch
    Py_ssize_t cols
    char* work
    Py_ssize_t work_bytes
    double macs_per_sample


cdef double block_piece(void* job, Py_ssize_t block, int member) noexcept nogil:
    """Block ``block`` of a BlocksJob in member's workspace; returns its multiply-adds."""
    cdef BlocksJob* blocks = <BlocksJob*>job
    cdef Py_ssize_t first = block * blocks.cols
    cdef Py_ssize_t rows = min(blocks.cols, blocks.batch - first)
    network_block(blocks.layers, blocks.n_layers, blocks.max_width,
                  blocks.x + first * blocks.layers[0].n_in,
                  blocks.out + first * blocks.layers[blocks.n_layers - 1].n_out,
                  rows, blocks.cols, blocks.work + member * blocks.work_bytes)
    return rows * blocks.macs_per_sample


cdef void network_blocks_shared(const QLayer* layers, Py_ssize_t n_layers,
                                Py_ssize_t max_width, const float* x, float* out,
                                Py_ssize_t batch, Py_ssize_t cols, int n_threads, char* work,
                                Py_ssize_t work_bytes, nnx_parallel_watch* watch) noexcept nogil:
    """network_block on every block of ``cols`` samples, blocks claimed by ``n_threads``
    threads as they come free; work holds n_threads * work_bytes bytes."""
    cdef Py_ssize_t k
    cdef double macs_per_sample = 0
    for k in range(n_layers):
        macs_per_sample += layers[k].n_in * layers[k].n_out
    cdef BlocksJob job = BlocksJob(layers=layers, n_layers=n_layers, max_width=max_width, x=x,
                                   out=out, batch=batch, cols=cols, work=work,
                                   work_bytes=work_bytes, macs_per_sample=macs_per_sample)
    run_claimed(block_piece, &job, (batch + cols - 1) // cols, batch * job.macs_per_sample,
                nnx_caller_clock(one_core_ns(layers, batch * job.macs_per_sample,
                                             NNX_BLOCK_MACS_PER_NS)),
                n_threads, watch)


cdef void network_forward(const QLayer* layers, Py_ssize_t n_layers, Py_ssize_t max_width,
                          const float* x, float* out, Py_ssize_t batch, int n_threads,
                          char* work, nnx_parallel_watch* watch) noexcept nogil:
    """Forward ``batch`` samples (rows of x) on up to ``n_threads`` threads; ``watch`` adds
    up what the caller saw of the parallel regions. work: forward_work_bytes(max_width,
    batch, n_threads) bytes."""
    cdef Py_ssize_t n_in = layers[0].n_in
    cdef Py_ssize_t n_out = layers[n_layers - 1].n_out
    cdef Py_ssize_t s, k, block, n_blocks, first, cols, stride
    cdef float* row_work = <float*>work
    cdef const float* src
    cdef float* dst
    if batch < MIN_TILED_BATCH:
        for s in range(batch):
            src = x + s * n_in
            for k in range(n_layers):
                dst = out + s * n_out if k == n_layers - 1 else row_work + (k % 2) * max_width
                layer_row(&layers[k], src, dst, <uint8_t*>(row_work + 2 * max_width),
                          n_threads, watch)
                src = dst
        return
    cols = block_samples(batch, n_threads)
    n_blocks = (batch + cols - 1) // cols
    n_threads = <int>max(1, min(n_threads, n_blocks))
    stride = block_stride(max_width, cols)
    if n_threads == 1:
        for block in range(n_blocks):
            first = block * cols
            network_block(layers, n_layers, max_width, x + first * n_in, out + first * n_out,
                          min(cols, batch - first), cols, work)
    else:
        network_blocks_shared(layers, n_layers, max_width, x, out, batch, cols, n_threads, work,
                              stride, watch)


cdef inline char* line_aligned(char* work) noexcept nogil:
    """The first cache-line boundary at or after ``work``."""
    return work + (CACHE_LINE - <size_t>work % CACHE_LINE) % CACHE_LINE


def line_aligned_empty(size, dtype):
    """An uninitialised 1-d array of ``size`` elements that starts on a cache line."""
    itemsize = np.dtype(dtype).itemsize
    buffer = np.empty(size + CACHE_LINE // itemsize, dtype)
    start = (-buffer.ctypes.data) % CACHE_LINE // itemsize
    return buffer[start:start + size]


def padded_int8(weights, Py_ssize_t n_in4):
    """int8 weights (n_out, n_in) as a new (n_out, n_in4) array, zeros past n_in, on a
    cache line."""
    n_out, n_in = weights.shape
    q = line_aligned_empty(n_out * n_in4, np.int8).reshape(n_out, n_in4)
    q[:, n_in:] = 0
    q[:, :n_in] = weights
    return q


cdef inline bint is_float32_c_array(object arr):
    return (cnp.PyArray_Check(arr)
            and cnp.PyArray_TYPE(<cnp.ndarray>arr) == cnp.NPY_FLOAT32
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>arr)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>arr))


cdef inline bint overlaps(cnp.ndarray a, cnp.ndarray b):
    cdef char* a0 = cnp.PyArray_BYTES(a)
    cdef char* b0 = cnp.PyArray_BYTES(b)
    cdef Py_ssize_t a_len = cnp.PyArray_NBYTES(a)
    cdef Py_ssize_t b_len = cnp.PyArray_NBYTES(b)
    return a_len > 0 and b_len > 0 and a0 < b0 + b_len and b0 < a0 + a_len


cdef class QuantizedNetwork:
    """The layers of a reduced-precision network as the kernels see them.

    Built by ``nnexposed.Network`` from validated ``Dense`` layers of one reduced precision;
    keeps the arrays the kernels read (int8 weights padded to a multiple of 4 inputs, their
    row sums; 16-bit weights as uint16 views) and never writes to them.

    The forward pass's workspace (the blocks of activations, one per thread) is kept between
    calls, so that a call does not fault in fresh pages: it grows to the largest call's need
    (batch blocks of at most BLOCK samples times the widest layer, per thread) and is freed
    with the network. A call that finds it in use by another Python thread takes one of its
    own for the call.
    """
    cdef QLayer* layers
    cdef char* workspace
    cdef Py_ssize_t workspace_bytes
    cdef bint workspace_busy
    cdef Py_ssize_t n_layers
    cdef Py_ssize_t max_width
    cdef Py_ssize_t macs_per_sample
    cdef readonly Py_ssize_t n_in
    cdef readonly Py_ssize_t n_out
    cdef readonly object dtype
    cdef tuple arrays
    cdef readonly Py_ssize_t copies_nbytes
    # int8 layers keep only the panels where the CPU has AVX-512 VNNI; the row-major copies
    # are made if other kernels run (use_kernel_set, in tests)
    cdef bint row_major_missing
    cdef tuple dense_layers

    def __cinit__(self, layers):
        cdef Py_ssize_t k, n_layers = len(layers)
        cdef cnp.ndarray q, row_sums, scales, half, biases, panels
        cdef bint bf16_kernels = "avx512_bf16" in supported_kernel_sets()
        cdef bint vnni_kernels = "avx512_vnni" in supported_kernel_sets()
        kept = []
        if n_layers == 0:
            raise ValueError("a network needs at least one layer")
        self.workspace = NULL
        self.workspace_bytes = 0
        self.workspace_busy = False
        self.row_major_missing = False
        self.dense_layers = tuple(layers)
        self.layers = <QLayer*>PyMem_RawMalloc(n_layers * sizeof(QLayer))
        if self.layers == NULL:
            raise MemoryError()
        self.n_layers = n_layers
        self.dtype = np.dtype(np.float32)
        self.max_width = 0
        self.macs_per_sample = 0
        for k, dense in enumerate(layers):
            n_out, n_in = dense.weights.shape
            if k > 0 and n_in != self.layers[k - 1].n_out:
                raise ValueError(f"layer {k} expects {n_in} inputs but layer {k - 1} gives "
                                 f"{self.layers[k - 1].n_out}")
            precision = PRECISION_CODES[dense.precision]
            biases = np.ascontiguousarray(dense.biases, np.float32)
            self.layers[k].n_in = n_in
            self.layers[k].n_out = n_out
            self.layers[k].n_in4 = (n_in + 3) // 4 * 4
            self.layers[k].precision = precision
            self.layers[k].activation = activation_code(dense.activation)
            self.layers[k].alpha = dense.alpha
            self.layers[k].biases = <const float*>cnp.PyArray_DATA(biases)
            self.layers[k].q = NULL
            self.layers[k].q_panels = NULL
            self.layers[k].row_sums = NULL
            self.layers[k].scales = NULL
            self.layers[k].half = NULL
            self.layers[k].bf16_panels = NULL
            kept.append(biases)
            if precision == PRECISION_INT8:
                q = padded_int8(dense.weights, self.layers[k].n_in4)
                row_sums = q.sum(axis=1, dtype=np.int32)
                scales = np.ascontiguousarray(dense.scales, np.float32)
                self.layers[k].row_sums = <const int32_t*>cnp.PyArray_DATA(row_sums)
                self.layers[k].scales = <const float*>cnp.PyArray_DATA(scales)
                kept += [row_sums, scales]
                if not vnni_kernels:
                    self.layers[k].q = <const int8_t*>cnp.PyArray_DATA(q)
                    kept.append(q)
                else:
                    self.row_major_missing = True
                    panels = line_aligned_empty((n_out + NNX_I8_PANEL - 1) // NNX_I8_PANEL
                                                * NNX_I8_PANEL * (self.layers[k].n_in4 // 4),
                                                np.uint32)
                    nnx_i8_pack_weights(<const int8_t*>cnp.PyArray_DATA(q),
                                        self.layers[k].n_in4, n_out,
                                        <uint32_t*>cnp.PyArray_DATA(panels))
                    self.layers[k].q_panels = <const int8_t*>cnp.PyArray_DATA(panels)
                    kept.append(panels)
            else:
                half = np.ascontiguousarray(dense.weights).view(np.uint16)
                self.layers[k].half = <const uint16_t*>cnp.PyArray_DATA(half)
                kept.append(half)
                if precision == PRECISION_BFLOAT16 and bf16_kernels:
                    panels = line_aligned_empty((n_out + NNX_BF16_PANEL - 1)
                                                // NNX_BF16_PANEL * NNX_BF16_PANEL
                                                * nnx_bf16_pairs(n_in), np.uint32)
                    nnx_bf16_pack_weights(<const uint16_t*>cnp.PyArray_DATA(half), n_in, n_out,
                                          <uint32_t*>cnp.PyArray_DATA(panels))
                    self.layers[k].bf16_panels = <const uint16_t*>cnp.PyArray_DATA(panels)
                    kept.append(panels)
            self.max_width = max(self.max_width, n_in, n_out)
            self.macs_per_sample += n_in * n_out
        self.arrays = tuple(kept)
        own = [dense.weights for dense in layers] + [dense.biases for dense in layers] + [
            dense.scales for dense in layers if dense.scales is not None]
        self.copies_nbytes = sum(
            array.nbytes for array in kept
            if not any(np.may_share_memory(array, original) for original in own))
        self.n_in = self.layers[0].n_in
        self.n_out = self.layers[n_layers - 1].n_out

    cdef ensure_row_major(self):
        """Give int8 layers the padded row-major weights that kernels without panels read
        (made the first time such kernels run, on a CPU whose own kernels read panels)."""
        cdef cnp.ndarray q
        cdef Py_ssize_t k
        added = []
        for k in range(self.n_layers):
            if self.layers[k].precision == PRECISION_INT8 and self.layers[k].q == NULL:
                q = padded_int8(self.dense_layers[k].weights, self.layers[k].n_in4)
                self.layers[k].q = <const int8_t*>cnp.PyArray_DATA(q)
                added.append(q)
        self.arrays += tuple(added)
        self.row_major_missing = False

    def __dealloc__(self):
        PyMem_RawFree(self.workspace)
        PyMem_RawFree(self.layers)

    @property
    def workspace_nbytes(self):
        """Bytes of the workspace kept for the next forward pass (0 before the first)."""
        return self.workspace_bytes

    cdef char* claim_workspace(self, Py_ssize_t n_bytes):
        """The kept workspace, grown to ``n_bytes`` if need be, or, while another thread
        uses it, a workspace for this call only; NULL if out of memory. Called with the GIL,
        which makes the claim atomic; give it back with release_workspace."""
        if self.workspace_busy:
            return <char*>PyMem_RawMalloc(n_bytes)
        if self.workspace_bytes < n_bytes:
            PyMem_RawFree(self.workspace)
            self.workspace = <char*>PyMem_RawMalloc(n_bytes)
            self.workspace_bytes = n_bytes if self.workspace != NULL else 0
            if self.workspace == NULL:
                return NULL
        self.workspace_busy = True
        return self.workspace

    cdef void release_workspace(self, char* work):
        if work == self.workspace:
            self.workspace_busy = False
        else:
            PyMem_RawFree(work)

    def forward(self, x, out=None, int threads=0):
        """Run all layers on float32 x: (n_in,) -> (n_out,) or (batch, n_in) ->
        (batch, n_out). ``threads`` <= 0 uses get_num_threads() (nnx_threads_for_call, as the
        float kernels do); small jobs use one, and so do all while the process backs off
        (_kernels/thread_policy.h). The threads come from the process's budget of
        get_num_threads() threads, shared with every forward pass running at once."""
        cdef cnp.ndarray xa, oa
        cdef cnp.npy_intp dims[2]
        cdef int ndim, taken = 0
        cdef long long settings[NNX_N_SETTINGS]
        cdef long long started = 0
        cdef nnx_parallel_watch watch
        cdef Py_ssize_t batch
        cdef char* work
        if is_float32_c_array(x):
            xa = <cnp.ndarray>x
        else:
            xa = as_network_input(x, self.dtype, self.n_in)
        ndim = cnp.PyArray_NDIM(xa)
        if not (1 <= ndim <= 2 and cnp.PyArray_DIM(xa, ndim - 1) == self.n_in):
            xa = as_network_input(xa, self.dtype, self.n_in)  # raises with the details
        batch = 1 if ndim == 1 else cnp.PyArray_DIM(xa, 0)
        dims[0] = batch
        dims[ndim - 1] = self.n_out
        if out is None:
            oa = <cnp.ndarray>cnp.PyArray_EMPTY(ndim, dims, cnp.NPY_FLOAT32, 0)
        else:
            if not (is_float32_c_array(out) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)
                    and cnp.PyArray_NDIM(<cnp.ndarray>out) == ndim
                    and cnp.PyArray_DIM(<cnp.ndarray>out, 0) == dims[0]
                    and cnp.PyArray_DIM(<cnp.ndarray>out, ndim - 1) == dims[ndim - 1]):
                check_out(out, tuple([dims[i] for i in range(ndim)]), self.dtype)
                raise ValueError("out is not a writeable, C-contiguous array of the result's "
                                 "shape and dtype")
            oa = <cnp.ndarray>out
            if overlaps(xa, oa):
                xa = xa.copy()
        if batch == 0:
            return oa
        if self.row_major_missing and not int8_kernels.panels:
            self.ensure_row_major()
        read_settings(settings)
        threads = nnx_threads_for_call(threads, settings, settings_state)
        if (batch * self.macs_per_sample < PARALLEL_MIN_MACS
                or threads > 1 and nnx_backing_off(policy)):
            threads = 1
        elif threads > 1:
            taken = threads = nnx_take_threads(settings_state, threads,
                                               nnx_threads_for_call(0, settings, settings_state))
            nnx_note_openmp_started(settings_state)
            started = nnx_now_ns()
        work = self.claim_workspace(forward_work_bytes(self.max_width, batch, threads)
                                    + CACHE_LINE - 1)
        if work == NULL:
            if taken > 0:
                nnx_give_back_threads(settings_state, taken)
            raise MemoryError("no memory for the forward pass workspace")
        memset(&watch, 0, sizeof(watch))
        with nogil:
            network_forward(self.layers, self.n_layers, self.max_width,
                            <const float*>cnp.PyArray_DATA(xa), <float*>cnp.PyArray_DATA(oa),
                            batch, threads, line_aligned(work), &watch)
        self.release_workspace(work)
        if taken > 0:
            nnx_give_back_threads(settings_state, taken)
        nnx_judge_forward(policy, started, &watch)
        return oa
