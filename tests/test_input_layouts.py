"""Batches in Fortran (column-major) order, as pandas DataFrames hold them, read where they lie.

Every kernel build this CPU runs, both dtypes, every batched path (tiles on one thread and on
two, BLAS in blocks, BLAS in the caller's order), one sample and small batches (copied to rows
first), and layouts that are neither C nor Fortran order (always copied), each against the
NumPy reference.
"""

import importlib
import tracemalloc

import numpy as np
import pytest

from nnexposed import LayerNorm, Network, config_context, kernels
from nnexposed._config import counting_paths
from nnexposed.reference import forward_numpy
from tests.helpers import DTYPES, assert_close, random_network
from tests.test_kernel_shapes import runnable_builds

# Around the one-sample limit (4) and the tile of 32; 3500 samples of a network 300 wide take
# two sample-major BLAS blocks.
BATCHES = [1, 2, 3, 4, 5, 31, 32, 33, 97, 3500]
PATHS = {
    # path: (settings, threads)
    "tiles": (dict(blas="never"), 1),
    "tiles on 2 threads": (dict(blas="never", parallel_min_macs=0), 2),
    "blas in blocks": (dict(blas="always", blas_min_weights=1000, blas_min_batch=0), 1),
    "blas in the caller's order": (dict(blas="always", blas_min_weights=0, blas_min_batch=0),
                                   1),
}


@pytest.fixture(params=runnable_builds())
def build(request, monkeypatch):
    """Networks built in the test compiled by one build's kernels."""
    module = importlib.import_module(f"nnexposed._core_{request.param}")
    monkeypatch.setattr(kernels, "CompiledNetwork", module.CompiledNetwork)
    return module


def layer_norm_network(rng, dtype, first):
    """A network with a layer normalisation first or between its dense layers."""
    dense = random_network(rng, [9, 40, 33, 3], ["gelu", "relu", "softmax"], dtype).layers
    norm = LayerNorm(rng.uniform(0.5, 2, 9 if first else 40), rng.standard_normal(
        9 if first else 40), 1e-5, "tanh").astype(dtype)
    return Network([norm, *dense] if first else [dense[0], norm, *dense[1:]])


NETWORKS = {
    "deep": lambda rng, dtype: random_network(
        rng, [64, 128, 128, 3], ["relu", "relu", "softmax"], dtype),
    "wide": lambda rng, dtype: random_network(rng, [300, 301, 7], ["tanh", "linear"], dtype),
    "one input": lambda rng, dtype: random_network(rng, [1, 40, 2], ["relu", "linear"], dtype),
    "layer norm first": lambda rng, dtype: layer_norm_network(rng, dtype, first=True),
    "layer norm inside": lambda rng, dtype: layer_norm_network(rng, dtype, first=False),
}


def expected_path(path, network, batch):
    if batch < 4:
        return "one_sample"
    if path.startswith("tiles"):
        return "tiles"
    if path == "blas in blocks" and not any(
            getattr(layer, "weights", np.empty(0)).size >= 1000 for layer in network.layers):
        return "tiles"
    return "blas"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NETWORKS)
def test_fortran_order_batches_on_every_path(rng, build, dtype, path, name):
    if path.startswith("blas") and not build.blas_available():
        pytest.skip("SciPy's BLAS is not available")
    network = NETWORKS[name](rng, dtype)
    settings, threads = PATHS[path]
    for batch in BATCHES:
        rows = rng.standard_normal((batch, network.n_in)).astype(dtype)
        columns = np.asfortranarray(rows)
        assert columns.flags.f_contiguous and (batch == 1 or network.n_in == 1
                                               or not columns.flags.c_contiguous)
        with config_context(**settings), counting_paths() as counts:
            from_columns = network.forward(columns, threads=threads)
            from_rows = network.forward(rows, threads=threads)
        assert counts[expected_path(path, network, batch)] == 2, (batch, dict(counts))
        assert_close(from_columns, forward_numpy(network, rows), dtype)
        if path.startswith("tiles"):
            # The same block, packed from columns or rows: the same arithmetic.
            np.testing.assert_array_equal(from_columns, from_rows)
        else:
            assert_close(from_columns, from_rows, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_sample_and_other_layouts(rng, build, dtype):
    network = NETWORKS["deep"](rng, dtype)
    wide = rng.standard_normal((70, 2 * network.n_in)).astype(dtype)
    cases = {
        "one sample": rng.standard_normal(network.n_in).astype(dtype),
        "every other column": wide[:, ::2],
        "every other row of columns": np.asfortranarray(wide[:, :network.n_in])[::2],
        "reversed rows": wide[::-1, :network.n_in],
        "a transposed view": np.ascontiguousarray(wide[:, :network.n_in].T).T[5:60],
        "another dtype, Fortran order": np.asfortranarray(wide[:, :network.n_in]).astype(
            np.float64 if dtype == np.float32 else np.float32, order="F"),
        "swapped bytes, Fortran order": np.asfortranarray(
            wide[:, :network.n_in]).astype(np.dtype(dtype).newbyteorder(), order="F"),
    }
    for case, x in cases.items():
        expected = forward_numpy(network, np.asarray(x, np.float64).astype(dtype))
        for threads in (1, 2):
            result = network.forward(x, threads=threads)
            assert result.flags.c_contiguous, case
            assert_close(result, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fortran_order_batch_is_not_copied(rng, build, dtype):
    """The batch is read where it lies: the call allocates its output and small blocks, not
    a copy of the input."""
    network = NETWORKS["deep"](rng, dtype)
    columns = np.asfortranarray(rng.standard_normal((20000, network.n_in)).astype(dtype))
    expected = forward_numpy(network, columns)
    with config_context(blas="never"):
        network.forward(columns, threads=1)
        tracemalloc.start()
        try:
            result = network.forward(columns, threads=1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert_close(result, expected, dtype)
    assert result.nbytes <= peak < result.nbytes + columns.nbytes // 4, (peak, columns.nbytes)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fortran_order_input_aliasing_out(rng, build, dtype):
    """out= the input's own memory: the input is copied first, whatever its order."""
    network = random_network(rng, [6, 20, 6], ["relu", "linear"], dtype)
    buffer = np.asfortranarray(rng.standard_normal((50, 6)).astype(dtype))
    expected = forward_numpy(network, buffer)
    out = buffer.reshape(-1, order="F").reshape(50, 6)     # C-order view of the same memory
    assert np.shares_memory(out, buffer) and out.flags.c_contiguous
    assert network.forward(buffer, out=out) is out
    assert_close(out, expected, dtype)
