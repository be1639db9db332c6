# Declarations shared by the compiled kernels of nnexposed.

from cython cimport floating

# Activation codes; the order matches ACTIVATION_NAMES in _core.pyx.
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
    # BLAS takes a layer with at least this many weights, on blocks of this many samples.
    BLAS_MIN_WEIGHTS = 256 * 256
    BLAS_MIN_COLS = 64
    # One-sample layers of at least this many weights split their rows over the threads.
    ROW_PARALLEL_MIN_MACS = 1 << 21
    ROW_CHUNK = 128
    # One-sample layers of at most this many weights also keep weights.T, for
    # dense_row_transposed; OUT_BLOCK output neurons are accumulated at a time there.
    TRANSPOSED_MAX_WEIGHTS = 1 << 20
    OUT_BLOCK = 64

# One dense layer as the kernels see it: raw pointers into arrays owned by the network.
ctypedef struct LayerPlan:
    Py_ssize_t n_in
    Py_ssize_t n_out
    int activation
    double alpha
    const void* weights    # (n_out, n_in), C order
    const void* biases     # (n_out,)
    const void* weights_t  # (n_in, n_out), C order, or NULL for large layers

