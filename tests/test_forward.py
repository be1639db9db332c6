"""The compiled forward pass against the pure-Python and NumPy references."""

import multiprocessing
import os
import pickle
import threading
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnexposed
from nnexposed import LayerNorm, Network, config_context, forward, kernels
from nnexposed._config import counting_paths
from nnexposed.reference import forward_numpy, forward_python
from tests.helpers import ALL_ACTIVATIONS, DTYPES, assert_close, random_network

# Batch sizes around the kernel's tile edges (tile of 32, tiled path from 4 samples).
EDGE_BATCHES = [0, 1, 2, 3, 4, 5, 31, 32, 33, 63, 64, 65, 97]


@st.composite
def networks_and_inputs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    depth = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, 64), min_size=depth + 1, max_size=depth + 1))
    activations = draw(st.lists(st.sampled_from(ALL_ACTIVATIONS), min_size=depth,
                                max_size=depth))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    network = random_network(rng, sizes, activations, dtype,
                             alpha=draw(st.floats(0.0, 0.5)))
    one_sample = draw(st.booleans())
    shape = (sizes[0],) if one_sample else (draw(st.integers(0, 100)), sizes[0])
    x = (rng.standard_normal(shape) * draw(st.sampled_from([0.1, 1.0, 10.0]))).astype(dtype)
    return network, x


@settings(max_examples=300, deadline=None)
@given(networks_and_inputs())
def test_forward_matches_numpy_reference(case):
    network, x = case
    expected = forward_numpy(network, x)
    assert_close(forward(network, x), expected, network.dtype)
    assert_close(network(x), expected, network.dtype)


@settings(max_examples=60, deadline=None)
@given(networks_and_inputs())
def test_forward_matches_python_reference(case):
    network, x = case
    expected = forward_python(network, x)
    assert_close(forward(network, x), expected, network.dtype)
    assert_close(forward_numpy(network, x), expected, network.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", EDGE_BATCHES)
@pytest.mark.parametrize("threads", [1, 2])
def test_tile_edges_and_threads(rng, dtype, batch, threads):
    network = random_network(rng, [7, 33, 1, 9], ["relu", "sigmoid", "softmax"], dtype)
    x = rng.standard_normal((batch, 7)).astype(dtype)
    expected = forward_numpy(network, x)
    # Threads however small the call: tiles shared among them from two tiles on, one sample's
    # rows split over them.
    with config_context(parallel_min_macs=0, row_split_min_macs=0), counting_paths() as counts:
        assert_close(network._compiled.forward(x, None, threads), expected, dtype)
    if batch == 0:
        assert sum(counts.values()) == 0
    elif batch < 4:
        assert counts[("row_split" if threads > 1 else "one_sample")] == 1
        assert counts["parallel_regions"] == (3 * batch if threads > 1 else 0)  # per layer
    else:
        assert counts["tiles"] == 1
        assert counts["parallel_regions"] == (1 if threads > 1 and batch > 32 else 0)


@pytest.fixture(params=[True, False], ids=["blas", "own-kernels"])
def blas(request):
    """Run the test with SciPy's BLAS for every wide layer, then with the own kernels only."""
    if request.param and not kernels.blas_available():
        pytest.skip("SciPy's BLAS is not available")
    with config_context(blas="always" if request.param else "never"):
        yield request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_path_on_large_batch(rng, dtype, threads):
    # 3001 samples x 64*64*2 multiply-adds is above the threshold for starting threads.
    network = random_network(rng, [64, 256, 64, 5], ["tanh", "leaky_relu", "softmax"], dtype)
    x = rng.standard_normal((3001, 64)).astype(dtype)
    expected = forward_numpy(network, x)
    with counting_paths() as counts:
        assert_close(forward(network, x, threads=threads), expected, dtype)
    assert counts["tiles"] == 1
    assert counts["parallel_regions"] == (1 if threads > 1 else 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [63, 64, 65, 255, 256, 257, 600])
def test_wide_layers_in_blocks(rng, dtype, batch, blas):
    # 300 x 300 weights reach the BLAS threshold; the 3-wide layers never do; a last block of
    # fewer than 64 samples falls back to the own kernel within the same call.
    network = random_network(rng, [3, 300, 300, 3, 2], ["relu", "sigmoid", "tanh", "softmax"],
                             dtype)
    x = rng.standard_normal((batch, 3)).astype(dtype)
    with counting_paths() as counts:
        assert_close(forward(network, x), forward_numpy(network, x), dtype)
    assert counts["blas" if blas else "tiles"] == 1


def all_layers_by_blas_network(rng, layout, dtype):
    """Networks whose every dense layer BLAS computes once blas_min_weights is 0."""
    if layout == "one layer":
        return random_network(rng, [300, 301], ["relu"], dtype)
    if layout == "layer norm":
        layers = random_network(rng, [17, 300, 40], ["gelu", "linear"], dtype).layers
        return Network([layers[0], LayerNorm(rng.uniform(0.5, 2, 300), rng.standard_normal(300),
                                             1e-5, "tanh").astype(dtype), layers[1]])
    return random_network(rng, [3, 300, 299, 7, 5], ["relu", "sigmoid", "elu", "softmax"], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["deep", "one layer", "layer norm"])
# 3500 samples of a network 300 wide take two blocks (2**20 // 300 = 3495 samples per block).
@pytest.mark.parametrize("batch", [4, 5, 33, 256, 257, 3500])
def test_every_layer_by_blas_in_the_callers_sample_order(rng, dtype, layout, batch):
    # Every dense layer reaches the BLAS threshold: the batch keeps its sample-major order,
    # each layer's output filled with its biases before BLAS adds x @ W.T.
    network = all_layers_by_blas_network(rng, layout, dtype)
    x = rng.standard_normal((batch, network.n_in)).astype(dtype)
    with config_context(blas="always", blas_min_weights=0, blas_min_batch=0), \
            counting_paths() as counts:
        result = forward(network, x)
        assert_close(forward(network, x[::-1].copy()), forward_numpy(network, x[::-1]), dtype)
    assert_close(result, forward_numpy(network, x), dtype)
    assert counts["blas"] == 2 and counts["tiles"] == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_one_sample_rows_split_over_threads(rng, dtype, threads):
    # 1502 x 1501 weights pass the threshold for splitting one sample's rows over threads
    # (the call, ~2.3 M multiply-adds, is made to pass the threshold for threads); odd sizes
    # leave uneven shares.
    network = random_network(rng, [1501, 1502, 7], ["relu", "linear"], dtype)
    x = rng.standard_normal(1501).astype(dtype)
    with config_context(parallel_min_macs=0), counting_paths() as counts:
        assert_close(forward(network, x, threads=threads), forward_numpy(network, x), dtype)
        assert_close(forward(network, x[None], threads=threads),
                     forward_numpy(network, x[None]), dtype)
    if threads > 1:
        assert counts["row_split"] == 2 and counts["parallel_regions"] == 2
    else:
        assert counts["one_sample"] == 2 and counts["parallel_regions"] == 0


@pytest.fixture(params=[True, False], ids=["split", "whole"])
def row_split(request):
    """Run the test with one-sample layers shared among threads, then with no sharing."""
    with config_context(shared_panels="always" if request.param else "never"):
        yield request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("sizes, activations", [
    ([784, 256, 256, 10], ["relu", "relu", "linear"]),
    # Uneven shares of 64-neuron panels, neurons past the last panel, a softmax layer
    # (computed once all shares are done) and an input narrower than the vector lanes.
    ([300, 455, 130, 3], ["tanh", "softmax", "sigmoid"]),
    ([5, 900, 200, 64, 1], ["elu", "leaky_relu", "gelu", "linear"]),
])
def test_one_sample_layers_shared_among_threads(rng, dtype, threads, sizes, activations,
                                                row_split):
    network = random_network(rng, sizes, activations, dtype)
    x = rng.standard_normal(sizes[0]).astype(dtype)
    expected = forward_numpy(network, x)
    with counting_paths() as counts:
        result = forward(network, x, threads=threads)
    assert counts["shared_panels" if row_split and threads > 1 else "one_sample"] == 1
    assert_close(result, expected, dtype)
    assert_close(forward(network, x[None], threads=threads), expected[None], dtype)
    assert_close(forward(network, np.stack([x, -x, x]), threads=threads),
                 forward_numpy(network, np.stack([x, -x, x])), dtype)
    # Each neuron is computed by the same code whichever thread owns it, so sharing the
    # layers among threads changes no bit of the result.
    with config_context(shared_panels="never" if row_split else "always"):
        np.testing.assert_array_equal(forward(network, x, threads=threads), result)


def test_thread_settings(rng):
    network = random_network(rng, [8, 8], ["relu"], np.float64)
    x = rng.standard_normal((5, 8))
    default = nnexposed.get_num_threads()
    assert default >= 1
    try:
        nnexposed.set_num_threads(1)
        assert nnexposed.get_num_threads() == 1
        np.testing.assert_array_equal(forward(network, x), forward(network, x, threads=2))
    finally:
        nnexposed.set_num_threads(None)
    assert nnexposed.get_num_threads() == default
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        forward(network, x, threads=0)
    with pytest.raises(TypeError, match="threads must be an integer"):
        network.forward(x, threads=1.5)
    with pytest.raises(ValueError, match="n must be >= 1"):
        nnexposed.set_num_threads(-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_wide_layers_use_heap_workspace(rng, dtype, batch):
    network = random_network(rng, [300, 517, 2], ["relu", "linear"], dtype)
    x = rng.standard_normal((batch, 300)).astype(dtype)
    assert_close(forward(network, x), forward_numpy(network, x), dtype)
    assert_close(forward(network, x[0]), forward_numpy(network, x[0]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_sample_equals_row_of_batch(rng, dtype):
    network = random_network(rng, [5, 8, 3], ["relu", "softmax"], dtype)
    x = rng.standard_normal((50, 5)).astype(dtype)
    batch = forward(network, x)
    for i in [0, 17, 49]:
        assert_close(forward(network, x[i]), batch[i], dtype)


def test_article_network_output_shapes(article_network):
    assert forward(article_network, [1.0, 2.0, 3.0]).shape == (2,)
    assert forward(article_network, np.ones((4, 3))).shape == (4, 2)
    assert forward(article_network, np.ones((0, 3))).shape == (0, 2)
    assert forward(article_network, np.ones((0, 3))).dtype == np.float32


# --------------------------------------------------------------------------------------------
# Inputs of every layout and type
# --------------------------------------------------------------------------------------------


class _Subclass(np.ndarray):
    pass


def _layouts(x):
    big_endian = x.astype(x.dtype.newbyteorder(">"))
    read_only = x.copy()
    read_only.setflags(write=False)
    padded = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
    padded[:, ::2] = x
    return {
        "fortran": np.asfortranarray(x),
        "strided": padded[:, ::2],
        "reversed": x[::-1].copy()[::-1],
        "read_only": read_only,
        "big_endian": big_endian,
        "float64": x.astype(np.float64),
        "float16": x.astype(np.float16).astype(x.dtype),
        "list": x.tolist(),
        "tuple": tuple(map(tuple, x.tolist())),
        "memmap_like_subclass": x.view(_Subclass),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(_layouts(np.zeros((2, 2), np.float32))))
def test_input_layouts(rng, dtype, layout):
    network = random_network(rng, [6, 10, 4], ["relu", "tanh"], dtype)
    x = rng.standard_normal((9, 6)).astype(dtype)
    given = _layouts(x)[layout]
    expected = forward_numpy(network, np.asarray(given, dtype=dtype))
    result = forward(network, given)
    assert type(result) is np.ndarray
    assert_close(result, expected, dtype)


@pytest.mark.parametrize("values", [
    np.arange(12).reshape(4, 3),                       # int64
    np.arange(12, dtype=np.uint8).reshape(4, 3),
    np.array([[True, False, True]]),
    [[1, 2, 3], [4, 5, 6]],
    [1, 2, 3],
])
def test_real_array_likes_are_cast_to_network_dtype(article_network, values):
    result = forward(article_network, values)
    assert result.dtype == np.float32
    assert_close(result, forward_numpy(article_network, np.asarray(values, np.float32)),
                 np.float32)


def test_input_is_never_modified(rng):
    network = random_network(rng, [4, 4, 4], ["relu", "softmax"], np.float64)
    x = rng.standard_normal((10, 4))
    before = x.copy()
    forward(network, x)
    forward(network, x[0])
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [None, 1, 6, 40])
def test_out_is_filled_and_returned(rng, dtype, batch):
    network = random_network(rng, [3, 8, 2], ["relu", "sigmoid"], dtype)
    shape = (3,) if batch is None else (batch, 3)
    x = rng.standard_normal(shape).astype(dtype)
    out = np.full(shape[:-1] + (2,), np.nan, dtype)
    result = forward(network, x, out=out)
    assert result is out
    assert_close(out, forward_numpy(network, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 2, 50])
def test_out_may_alias_the_input(rng, dtype, batch):
    network = random_network(rng, [5, 7, 5], ["tanh", "linear"], dtype)
    x = rng.standard_normal((batch, 5)).astype(dtype)
    expected = forward_numpy(network, x)
    assert forward(network, x, out=x) is x
    assert_close(x, expected, dtype)
    row = rng.standard_normal(5).astype(dtype)
    expected_row = forward_numpy(network, row)
    forward(network, row, out=row)
    assert_close(row, expected_row, dtype)


@pytest.mark.parametrize("out, error, message", [
    (np.zeros((4, 3), np.float32), ValueError, r"shape \(4, 2\)"),
    (np.zeros((4, 2), np.float64), TypeError, "dtype float32"),
    (np.zeros((4, 2), np.dtype(">f4")), TypeError, "dtype float32"),
    (np.zeros((2, 4), np.float32).T, ValueError, "C-contiguous"),
    (np.zeros((4, 4), np.float32)[:, ::2], ValueError, "C-contiguous"),
    (np.zeros(8, np.float32), ValueError, "shape"),
    ([[0.0, 0.0]] * 4, TypeError, "ndarray"),
])
def test_bad_out_raises(article_network, out, error, message):
    with pytest.raises(error, match=message):
        forward(article_network, np.ones((4, 3)), out=out)


def test_read_only_out_raises(article_network):
    out = np.zeros((4, 2), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        forward(article_network, np.ones((4, 3)), out=out)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, error, message", [
    (np.ones(4), ValueError, r"shape \(3,\) or \(batch, 3\), got shape \(4,\)"),
    (np.ones((2, 4)), ValueError, r"got shape \(2, 4\)"),
    (np.float64(1.0), ValueError, r"got shape \(\)"),
    (1.0, ValueError, r"got shape \(\)"),
    (np.ones((2, 2, 3)), ValueError, r"got shape \(2, 2, 3\)"),
    (np.ones((2, 3), complex), TypeError, "complex128"),
    (np.array([[1.0, None, 2.0]], dtype=object), TypeError, "object"),
    (["a", "b", "c"], TypeError, "<U1"),
    ([[1.0, 2.0], [3.0]], ValueError, "not an array of real numbers"),
    (None, TypeError, "object"),
])
def test_bad_input_raises_with_message(article_network, x, error, message):
    with pytest.raises(error, match=message):
        forward(article_network, x)


def test_forward_needs_a_network():
    with pytest.raises(TypeError, match="expects a nnexposed.Network, got list"):
        forward([[1.0]], [1.0])
    with pytest.raises(TypeError, match="expected a nnexposed.Network"):
        forward_numpy("net", [1.0])


# --------------------------------------------------------------------------------------------
# NaN and inf
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_nan_and_inf_propagate_as_in_numpy(rng, dtype, activation):
    network = random_network(rng, [4, 6, 3], [activation, activation], dtype)
    x = rng.standard_normal((8, 4)).astype(dtype)
    x[1, 0] = np.nan
    x[2, 1] = np.inf
    x[3, 2] = -np.inf
    x[4] = 1e30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the NumPy reference warns on inf - inf
        expected = forward_numpy(network, x)
    result = forward(network, x)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    assert_close(result, expected, dtype)
    assert_close(forward(network, x[1]), expected[1], dtype)


# --------------------------------------------------------------------------------------------
# Threads and pickling
# --------------------------------------------------------------------------------------------


def test_threads_sharing_one_network_match_serial(rng):
    network = random_network(rng, [32, 64, 64, 4], ["relu", "relu", "softmax"], np.float32)
    inputs = [rng.standard_normal((n, 32)).astype(np.float32) for n in (1, 7, 40, 300) * 2]
    serial = [forward(network, x) for x in inputs]
    results = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def work(i):
        barrier.wait()
        for _ in range(50):
            results[i] = forward(network, inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def test_network_pickles(rng):
    network = random_network(rng, [3, 4, 2], ["leaky_relu", "softmax"], np.float64, alpha=0.2)
    copy = pickle.loads(pickle.dumps(network))
    x = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(forward(copy, x), forward(network, x))
    assert copy.layers[0].alpha == 0.2


def test_forward_is_exported():
    assert nnexposed.forward is forward
    assert Network.__call__ is Network.forward


@pytest.mark.parametrize("blas_layers", ["all", "wide", "none"])
def test_batched_forward_allocates_output_and_bounded_workspace(rng, blas_layers):
    network = random_network(rng, [16, 300, 300, 4], ["relu", "relu", "linear"], np.float32)
    x = rng.standard_normal((100_000, 16)).astype(np.float32)
    output_bytes = 100_000 * 4 * 4
    # Per thread: two blocks of up to 256 samples x the widest layer, float32; BLAS on every
    # layer: two blocks of 2**20 values.
    workspace_bound = max(2, nnexposed.get_num_threads()) * 2 * 300 * 256 * 4
    if blas_layers == "all":
        workspace_bound = 2 * 2**20 * 4
    thresholds = {"blas_min_weights": 0} if blas_layers == "all" else {}
    with config_context(blas="never" if blas_layers == "none" else "always", **thresholds):
        forward(network, x[:1000])  # the first batch may import SciPy's BLAS
        tracemalloc.start()
        forward(network, x)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= output_bytes + workspace_bound + 64 * 1024
    # The NumPy reference makes full-batch temporaries per layer: the bound above is tight.
    tracemalloc.start()
    forward_numpy(network, x)
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert numpy_peak > output_bytes + 100_000 * 300 * 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Forking a multi-threaded process is what this test is about (Python 3.12+ warns of it).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_after_parallel_forward_does_not_hang(rng):
    # GNU OpenMP cannot run a parallel region in the child of a process that already ran one;
    # such a child must fall back to one thread instead of hanging.
    network = random_network(rng, [64, 256, 64, 5], ["relu", "relu", "linear"], np.float32)
    x = rng.standard_normal((5000, 64)).astype(np.float32)
    with counting_paths() as counts:
        expected = forward(network, x, threads=2)
    assert counts["parallel_regions"] == 1    # the parent ran threads before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_in_child, args=(network, x, queue))
    child.start()
    try:
        result, child_counts = queue.get(timeout=60)
    except Exception:
        pytest.fail("forward hung in a forked child")
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    np.testing.assert_array_equal(result, expected)
    assert child_counts["tiles"] == 1
    if kernels.openmp_enabled():
        assert child_counts["parallel_regions"] == 0, child_counts


def _forward_in_child(network, x, queue):
    with counting_paths() as counts:
        result = forward(network, x, threads=2).tolist()
    queue.put((result, counts))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_in, n_out", [(15, 9), (16, 63), (17, 64), (40, 65), (33, 130),
                                         (1, 64), (3, 191), (64, 128)])
def test_one_sample_kernels(rng, dtype, n_in, n_out):
    # Networks keep small layers' weights as panels of 64 neurons (neurons in vector lanes)
    # and compute the neurons past the last panel row by row; dense() keeps no panels and
    # reduces 16 partial sums per neuron; inputs narrower than 16 take plain dot products.
    # All against NumPy, at the panel and lane edges.
    network = random_network(rng, [n_in, n_out, 3], ["relu", "linear"], dtype)
    layer = network.layers[0]
    x = rng.standard_normal(n_in).astype(dtype)
    assert_close(forward(network, x), forward_numpy(network, x), dtype)
    assert_close(nnexposed.dense(x, layer.weights, layer.biases, "relu"),
                 np.maximum(x @ layer.weights.T + layer.biases, 0), dtype)
