"""Sizes: index arithmetic in Py_ssize_t, so arrays of more than 2**31 elements compute right.

The always-on cases are cheap: their inputs come from np.zeros (pages the kernel maps lazily
to the shared zero page, so reading 8-17 GB of zeros costs no resident memory), with a few
non-zero values placed beyond element 2**31 where a 32-bit index would wrap around. The
expensive case (3 * 10**8 samples through a 1 -> 8 layer: 2.16 * 10**9 output elements,
8.6 GB) is tools/big_batch.py, run by ``pytest --slow`` here.
"""

import os
import sys

import numpy as np
import pytest

import nnexposed
from tests.helpers import TESTS_FOLDER, UNDER_ASAN, run_isolated, run_tests_isolated

pytestmark = [
    pytest.mark.skipif(sys.maxsize < 2**40, reason="needs a 64-bit address space"),
    pytest.mark.skipif(UNDER_ASAN, reason="the sanitizer's shadow of 10 GB arrays is too big"),
]


# A wrapped-around index would crash: the cases marked isolated run in a child interpreter.
def test_sizes_in_child_interpreter(pytestconfig):
    output = run_tests_isolated(__file__, pytestconfig, timeout=600)
    assert "failed" not in output and "3 passed" in output, output[-3000:]


def lazy_zeros(shape, dtype):
    try:
        return np.zeros(shape, dtype)
    except MemoryError:
        pytest.skip(f"cannot reserve {np.prod(shape) * np.dtype(dtype).itemsize / 2**30:.1f} "
                    f"GiB of address space here")


@pytest.mark.isolated
@pytest.mark.parametrize("threads", [1, 2])
def test_batch_with_more_than_2_31_input_elements(threads):
    # 2**21 + 40 samples of 1024 inputs: sample offsets t * n_in pass 2**31 (tiled kernel).
    n_in = 1024
    batch = 2**31 // n_in + 40
    x = lazy_zeros((batch, n_in), np.float32)
    rng = np.random.default_rng(0)
    rows = np.array([0, 5, batch // 2, 2**31 // n_in - 1, 2**31 // n_in, 2**31 // n_in + 1,
                     batch - 33, batch - 1])
    x[rows] = rng.standard_normal((len(rows), n_in)).astype(np.float32)
    weights = rng.standard_normal((1, n_in)).astype(np.float32)
    network = nnexposed.Network([nnexposed.Dense(weights, np.array([0.5], np.float32),
                                                 "tanh")])
    y = network(x, threads=threads)
    assert y.shape == (batch, 1)
    expected = np.tanh(x[rows].astype(np.float64) @ weights.T.astype(np.float64) + 0.5)
    np.testing.assert_allclose(y[rows], expected, rtol=1e-5, atol=1e-5)
    others = np.ones(batch, bool)
    others[rows] = False
    rest = y[others, 0]
    assert np.all(rest == rest[0]) and abs(rest[0] - np.tanh(0.5)) < 1e-6


@pytest.mark.isolated
def test_one_sample_with_more_than_2_31_weights_per_row():
    # n_in = 2**31 + 24: in-row indices and the row offset j * n_in pass 2**31 (one-sample
    # kernel). dense() does not copy C-contiguous float32 arrays, so nothing is touched.
    n = 2**31 + 24
    x = lazy_zeros(n, np.float32)
    w = lazy_zeros((2, n), np.float32)
    x[:3] = 1.0
    x[-8:] = np.arange(1, 9)
    w[0, :3] = 2.0
    w[1, -8:] = 1.0
    y = nnexposed.dense(x, w, np.array([0.25, 0.5], np.float32))
    np.testing.assert_array_equal(y, np.array([6.25, 36.5], np.float32))


@pytest.mark.slow  # 8.6 GB of output (also: python tools/big_batch.py)
def test_batch_with_more_than_2_31_output_elements():
    root = os.path.dirname(TESTS_FOLDER)
    output = run_isolated(f"""
        import runpy, sys
        sys.argv = ["big_batch.py", "--batch", "270000000"]
        runpy.run_path({os.path.join(root, "tools", "big_batch.py")!r}, run_name="__main__")
    """, timeout=1800)
    assert "ok" in output, output
