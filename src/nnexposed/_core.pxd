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
    # Batches smaller than this run one sample at a time.
    MIN_TILED_BATCH = 4
    # Widths up to this run small batches from a stack buffer instead of malloc.
    STACK_WIDTH = 256

# One dense layer as the kernels see it: raw pointers into arrays owned by the network.
ctypedef struct LayerPlan:
    Py_ssize_t n_in
    Py_ssize_t n_out
    int activation
    double alpha
    const void* weights    # (n_out, n_in), C order
    const void* biases     # (n_out,)

