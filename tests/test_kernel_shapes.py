"""Every kernel build this CPU runs, on the shapes at the edges of its micro-kernel.

The batched kernel computes blocks of neurons x samples in registers and takes the inputs a
chunk at a time; the block shape differs per build (tile_shape()). Output neurons not a
multiple of the block, inputs around the chunk size and batches that leave part of a tile
empty are each compared with NumPy in float64, on every build, both dtypes.
"""

import importlib

import numpy as np
import pytest

from nnexposed import _dispatch, config_context
from nnexposed._config import counting_paths

TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-10, "atol": 1e-12}}
TILE = 32  # samples per tile (TILE in _kernels/declarations.pxi)


def runnable_builds():
    usable = set(_dispatch.supported()) & set(_dispatch.installed())
    return [isa for isa in _dispatch.ISAS if isa in usable]


@pytest.fixture(params=runnable_builds())
def core(request):
    """One build's compiled module, with BLAS off so the own kernels do every layer."""
    module = importlib.import_module(_dispatch.MODULES[request.param])
    with config_context(blas="never"):
        yield module


def compile_network(core, layers, dtype):
    """layers: [(weights (n_out, n_in), biases (n_out,), activation name)]."""
    return core.CompiledNetwork(
        [np.ascontiguousarray(w, dtype) for w, _, _ in layers],
        [np.ascontiguousarray(b, dtype) for _, b, _ in layers],
        [core.ACTIVATION_NAMES.index(act) for _, _, act in layers],
        [0.01] * len(layers), keep_panels=False)


def reference(layers, x):
    y = np.asarray(x, np.float64)
    for weights, biases, activation in layers:
        y = y @ np.asarray(weights, np.float64).T + np.asarray(biases, np.float64)
        if activation == "relu":
            y = np.where(y < 0, 0.0, y)
    return y


def random_layer(rng, n_in, n_out, activation):
    return (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in),
            rng.standard_normal(n_out) * 0.5, activation)


def edge_sizes(block, *extra):
    """1, around one and two blocks, and ``extra``: sizes that leave every remainder."""
    return sorted({1, block - 1, block, block + 1, 2 * block + block // 2 + 1, *extra} - {0})


def test_tile_shape_fits_the_register_file(core):
    """Accumulators, input vectors and a broadcast weight fit the vector registers."""
    shape = core.tile_shape()
    registers = {"avx512": 32, "neon": 32, "avx2": 16, "sse2": 16}.get(shape["isa"])
    for dtype in ("float32", "float64"):
        neurons, samples, inputs = shape[dtype]
        assert TILE % samples == 0 and neurons >= 1 and inputs >= 1
        if registers is not None:
            lanes = {"avx512": 64, "avx2": 32}.get(shape["isa"], 16) // np.dtype(dtype).itemsize
            vectors = samples // lanes
            assert samples % lanes == 0
            assert neurons * vectors + vectors + 1 <= registers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_one_layer_at_the_block_edges(core, dtype, activation):
    neurons, samples, inputs = core.tile_shape()[dtype]
    rng = np.random.default_rng(15)
    for n_out in edge_sizes(neurons, 8 + 4 + 2 + 1 + neurons):
        for n_in in edge_sizes(inputs, 2, 3, 2 * inputs + 3):
            layers = [random_layer(rng, n_in, n_out, activation)]
            net = compile_network(core, layers, dtype)
            for batch in (4, samples - 1, TILE + samples + 1, 3 * TILE):
                x = rng.standard_normal((batch, n_in)).astype(dtype)
                out = net.forward(x)
                assert out.dtype == np.dtype(dtype) and out.shape == (batch, n_out)
                np.testing.assert_allclose(out, reference(layers, x), **TOLERANCES[dtype],
                                           err_msg=f"{n_in}->{n_out}, batch {batch}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_streamed_layer_in_one_pass_over_its_inputs(core, dtype):
    """A layer of streamed_min_weights weights or more takes all its inputs in one pass; its
    neurons' results are those of a layer below the threshold (chunked inputs), bit for bit,
    and the reference's."""
    neurons, samples, inputs = core.tile_shape()[dtype]
    threshold = core.tile_shape()["streamed_min_weights"]
    rng = np.random.default_rng(20)
    n_in = 2 * inputs + 3
    n_out = -(-threshold // n_in) + neurons + 1
    weights, biases, _ = random_layer(rng, n_in, n_out, "relu")
    streamed = [(weights, biases, "relu")]
    chunked = [(weights[:neurons + 1], biases[:neurons + 1], "relu")]
    assert n_in * n_out >= threshold > n_in * (neurons + 1)
    x = rng.standard_normal((TILE + samples + 1, n_in)).astype(dtype)
    out = compile_network(core, streamed, dtype).forward(x)
    np.testing.assert_allclose(out, reference(streamed, x), **TOLERANCES[dtype])
    np.testing.assert_array_equal(out[:, :neurons + 1],
                                  compile_network(core, chunked, dtype).forward(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_network_of_odd_widths(core, dtype):
    """Layers whose widths leave remainders of every kind feed one another."""
    neurons, samples, inputs = core.tile_shape()[dtype]
    rng = np.random.default_rng(16)
    sizes = [inputs + 5, neurons * 3 + 7, 1, neurons + 1, 2 * neurons - 1]
    layers = [random_layer(rng, a, b, "relu" if k < len(sizes) - 2 else "linear")
              for k, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    net = compile_network(core, layers, dtype)
    for batch in (5, 2 * TILE - 1, 200):
        x = rng.standard_normal((batch, sizes[0])).astype(dtype)
        np.testing.assert_allclose(net.forward(x), reference(layers, x), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_keeps_nan(core, dtype):
    """relu(nan) is nan in the fused kernel, as in the reference."""
    neurons, _, inputs = core.tile_shape()[dtype]
    rng = np.random.default_rng(17)
    layers = [random_layer(rng, inputs + 1, neurons + 1, "relu")]
    net = compile_network(core, layers, dtype)
    x = rng.standard_normal((TILE + 3, inputs + 1)).astype(dtype)
    x[[0, TILE + 1], 2] = np.nan
    out = net.forward(x)
    assert np.isnan(out[[0, TILE + 1]]).all()
    finite = np.delete(np.arange(len(x)), [0, TILE + 1])
    np.testing.assert_allclose(out[finite], reference(layers, x[finite]), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_bits_on_any_number_of_threads(core, dtype):
    neurons, samples, inputs = core.tile_shape()[dtype]
    rng = np.random.default_rng(18)
    layers = [random_layer(rng, inputs + 3, 4 * neurons + 1, "relu"),
              random_layer(rng, 4 * neurons + 1, neurons - 1 or 1, "linear")]
    net = compile_network(core, layers, dtype)
    x = rng.standard_normal((40 * TILE + 7, inputs + 3)).astype(dtype)
    one = net.forward(x, threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(net.forward(x, threads=threads), one)


@pytest.mark.parametrize("isa", runnable_builds())
def test_blas_takes_only_huge_layers_by_default(isa):
    """With ``blas`` "auto", BLAS takes layers from 2**22 weights in builds without AVX-512,
    none in the AVX-512 build; the micro-kernel takes the rest."""
    module = importlib.import_module(_dispatch.MODULES[isa])
    if not module.blas_available():
        pytest.skip("SciPy's BLAS is not available")
    huge_path = "tiles" if module.tile_shape()["isa"] == "avx512" else "blas"
    rng = np.random.default_rng(19)
    for width, path in ((1024, "tiles"), (2048, huge_path)):
        layers = [random_layer(rng, width, width, "relu")]
        net = compile_network(module, layers, "float32")
        x = rng.standard_normal((64, width)).astype("float32")
        with config_context(blas="auto"), counting_paths() as counts:
            out = net.forward(x)
        assert counts[path] == 1, (width, dict(counts))
        np.testing.assert_allclose(out, reference(layers, x), rtol=1e-3, atol=1e-4)
