"""Regression tests of defects found by the reliability work (fuzzing, stress, review)."""

import numpy as np
import pytest

import nnexposed
from nnexposed._config import MAX_THREADS
from tests.helpers import run_isolated


def test_huge_thread_counts_are_capped_not_fatal():
    # Asking OpenMP for 10^5 threads segfaulted (and 4 * 10^4 made libgomp exit the process):
    # the thread count is now capped at MAX_THREADS.
    out = run_isolated("""
        import numpy as np, nnexposed
        from nnexposed._config import counting_paths
        from nnexposed.reference import forward_numpy
        # A busy machine would back off to one thread: the paths counted below must run.
        nnexposed.kernels.allow_backoff(False)
        net = nnexposed.Network.from_sizes([2048, 2048], seed=0)   # rows split over threads
        x = np.ones(2048, np.float32)
        with counting_paths() as counts:
            for threads in (10**5, 2**31, 2**70):
                np.testing.assert_allclose(nnexposed.forward(net, x, threads=threads),
                                           forward_numpy(net, x), rtol=1e-4, atol=1e-5)
        assert counts["row_split"] == 3 and counts["parallel_regions"] == 3, counts
        big = nnexposed.Network.from_sizes([64, 64, 64], seed=0)
        xb = np.ones((100_000, 64), np.float32)
        with counting_paths() as counts:
            np.testing.assert_array_equal(big(xb, threads=10**6), big(xb, threads=1))
        assert counts["tiles"] == 2 and counts["parallel_regions"] == 1, counts
        print("ok")
    """)
    assert out.strip() == "ok"


def test_huge_omp_num_threads_is_capped():
    out = run_isolated("""
        import numpy as np, nnexposed
        net = nnexposed.Network.from_sizes([2048, 2048], seed=0)
        from nnexposed._config import MAX_THREADS
        cap = MAX_THREADS if nnexposed.kernels.openmp_enabled() else 1
        assert nnexposed.get_num_threads() == cap
        print(nnexposed.forward(net, np.ones(2048)).shape)
    """, env={"OMP_NUM_THREADS": "100000"})
    assert out.strip() == "(2048,)"


def test_set_num_threads_huge_value_is_capped():
    # Was OverflowError (a C int conversion), outside the ValueError/TypeError contract.
    try:
        nnexposed.set_num_threads(2**40)
        assert nnexposed.get_num_threads() == MAX_THREADS
    finally:
        nnexposed.set_num_threads(None)
    network = nnexposed.Network.from_sizes([4, 4], seed=0)
    np.testing.assert_array_equal(network(np.ones(4), threads=2**64), network(np.ones(4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["weights", "biases"])
def test_dense_out_aliasing_weights_or_biases(dtype, target):
    # out= sharing memory with the weights was overwritten while still being read: a silent
    # wrong answer (max error ~280 on a 40 x 40 layer).
    rng = np.random.default_rng(0)
    n = 40
    weights = rng.standard_normal((n, n)).astype(dtype)
    biases = rng.standard_normal(n).astype(dtype)
    x = rng.standard_normal((n, n) if target == "weights" else n).astype(dtype)
    expected = x @ weights.T + biases
    out = weights if target == "weights" else biases
    result = nnexposed.dense(x, weights, biases, out=out)
    assert result is out
    tolerance = ({"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32
                 else {"rtol": 1e-12, "atol": 1e-12})
    np.testing.assert_allclose(result, expected, **tolerance)


def test_first_concurrent_batches_use_the_same_kernels_as_serial():
    # The BLAS pointers were looked up under a flag set *before* the lookup, so threads that
    # raced the first lookup ran without BLAS: results differed in the last bits from serial.
    # BLAS is forced on: builds with AVX2 or better leave it off by default.
    out = run_isolated("""
        import importlib.util, threading, numpy as np, nnexposed
        from nnexposed._config import counting_paths
        if importlib.util.find_spec("scipy") is None:   # looking BLAS up would end the race
            print("no BLAS")
            raise SystemExit
        nnexposed.set_config(blas="always")
        rng = np.random.default_rng(0)
        net = nnexposed.Network.from_sizes([300, 300, 300], seed=1)
        xs = [rng.standard_normal((256, 300)).astype(np.float32) for _ in range(16)]
        results = [None] * 16
        barrier = threading.Barrier(16)
        def work(i):
            barrier.wait()
            results[i] = net(xs[i])
        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        with counting_paths() as counts:
            for t in threads: t.start()
            for t in threads: t.join()
        assert counts["blas"] == 16, counts
        print(sum(not np.array_equal(results[i], net(xs[i])) for i in range(16)))
    """)
    if out.strip() == "no BLAS":
        pytest.skip("SciPy's BLAS is not available")
    assert out.strip() == "0"


def _unaligned(values, dtype):
    """A C-contiguous but unaligned copy of ``values`` (its buffer starts one byte off)."""
    values = np.asarray(values, dtype)
    buffer = bytearray(values.nbytes + 1)
    array = np.frombuffer(buffer, dtype, count=values.size, offset=1).reshape(values.shape)
    array[...] = values
    assert not array.flags.aligned and array.flags.c_contiguous
    return array


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unaligned_inputs_are_copied_before_the_kernels(dtype):
    # np.ascontiguousarray returned unaligned buffers unchanged, so the kernels read floats
    # through misaligned pointers (undefined behaviour; UBSan reports it), and dense() refused
    # unaligned weights with a misleading "not C-contiguous" error.
    from nnexposed._validation import as_network_input
    from nnexposed.reference import forward_numpy
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8))
    weights = rng.standard_normal((8, 8))
    biases = rng.standard_normal(8)
    assert as_network_input(_unaligned(x, dtype), np.dtype(dtype), 8).flags.aligned
    network = nnexposed.Network([nnexposed.Dense(weights.astype(dtype), biases.astype(dtype),
                                                 "tanh")])
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12}
    np.testing.assert_allclose(network(_unaligned(x, dtype)), forward_numpy(network, x),
                               **tolerance)
    result = nnexposed.dense(_unaligned(x, dtype), _unaligned(weights, dtype),
                             _unaligned(biases, dtype), "tanh")
    np.testing.assert_allclose(result, np.tanh(x @ weights.T + biases), **tolerance)
