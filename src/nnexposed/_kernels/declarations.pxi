# Constants and the layer struct shared by the kernels. Included by core.pxi.

# Activation codes; the order matches ACTIVATION_NAMES in core.pxi.
cdef enum:
    ACT_LINEAR = 0
    ACT_RELU = 1
    ACT_LEAKY_RELU = 2
    ACT_SIGMOID = 3
    ACT_TANH = 4
    ACT_SOFTMAX = 5
    ACT_GELU = 6
    ACT_GELU_TANH = 7
    ACT_SILU = 8
    ACT_ELU = 9          # uses the layer's alpha (ELU's alpha)
    ACT_SOFTPLUS = 10
    N_ACTIVATIONS = 11

# Samples per tile in the batched kernel: the batch index is the innermost loop,
# so the compiler keeps TILE accumulators in vector registers.
cdef enum:
    TILE = 32
    # Partial sums per output neuron in the one-sample kernel (64 bytes of float32).
    LANES = 16
    # Batches smaller than this run one sample at a time.
    MIN_TILED_BATCH = 4
    # Widths up to this run small batches from a stack buffer instead of malloc.
    STACK_WIDTH = 256
    # Samples per block when BLAS computes the wide layers.
    BLAS_TILE = 256
    # Values per layer of a sample-major block when BLAS computes every layer (4 MiB of
    # float32): the samples per block are this over the widest layer, at least BLAS_TILE.
    BLAS_BLOCK_VALUES = 1 << 20
    # Rows per chunk when a one-sample layer splits its rows over the threads.
    ROW_CHUNK = 128
    # Output neurons per panel (see LayerPlan.panels), for dense_panels.
    OUT_BLOCK = 64
# The size thresholds of the paths are settings (nnexposed._config, plan_forward).

# Layer kinds: a dense layer, or layer normalisation (see layer_norm.pxi).
cdef enum:
    KIND_DENSE = 0
    KIND_LAYER_NORM = 1

# One layer as the kernels see it: raw pointers into arrays owned by the network.
ctypedef struct LayerPlan:
    int kind
    Py_ssize_t n_in
    Py_ssize_t n_out
    int activation
    double alpha
    double eps             # KIND_LAYER_NORM's epsilon
    const void* weights    # (n_out, n_in), C order; KIND_LAYER_NORM: its weight (n_out,)
    const void* biases     # (n_out,)
    # n_out // OUT_BLOCK panels of (n_in, OUT_BLOCK): panel p holds weights[p * OUT_BLOCK:
    # (p + 1) * OUT_BLOCK].T, C order, 64-byte aligned; NULL for large or narrow layers.
    const void* panels
