"""No leaks: many calls of forward (batch 1 and 64) and many network constructions leave the
resident set size and tracemalloc's count of traced Python/NumPy memory flat.

Bounds (a leak of 8 bytes per call would exceed each of them at these call counts):
- resident memory grows by at most RSS_BOUND (4 MiB) over the measured calls, after warm-up;
- tracemalloc's current traced memory grows by at most TRACED_BOUND (64 KiB).

Default call counts: 10**6 forward calls at batch 1, 10**5 at batch 64, 10**4 network
constructions. NNEXPOSED_SLOW=1 runs 10**6 at batch 64 too (see tools/leak_run.py, which
prints the measured figures). Under AddressSanitizer (LD_PRELOAD of libasan, see
tools/sanitize.sh) the counts are divided by 100 and only tracemalloc is checked: the
sanitizer's quarantine grows the resident set by design.
"""

import gc
import os
import resource
import tracemalloc

import numpy as np
import pytest

import nnexposed
from nnexposed._config import counting_paths

RSS_BOUND = 4 * 1024 * 1024
TRACED_BOUND = 64 * 1024
SLOW = os.environ.get("NNEXPOSED_SLOW") == "1"
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
SCALE = 100 if UNDER_ASAN else 1


def rss_bytes():
    """Current resident set size (Linux /proc/self/statm), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(function, calls, *, traced_calls=None):
    """(RSS growth, traced growth) over ``calls`` calls, after a warm-up of calls // 10.

    RSS is measured over all calls without tracing (tracemalloc slows every allocation);
    then tracemalloc over ``traced_calls`` more (default calls // 10).
    """
    traced_calls = max(calls // 10, 1) if traced_calls is None else traced_calls
    for _ in range(max(calls // 10, 1)):
        function()
    gc.collect()
    before = rss_bytes()
    for _ in range(calls):
        function()
    gc.collect()
    rss_growth = rss_bytes() - before
    tracemalloc.start()
    try:
        for _ in range(max(traced_calls // 10, 1)):
            function()
        gc.collect()
        traced_before, _ = tracemalloc.get_traced_memory()
        for _ in range(traced_calls):
            function()
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        tracemalloc.stop()
    return rss_growth, traced_growth


def check_flat(rss_growth, traced_growth):
    assert traced_growth <= TRACED_BOUND, f"tracemalloc grew by {traced_growth} bytes"
    if not UNDER_ASAN:
        assert rss_growth <= RSS_BOUND, f"resident memory grew by {rss_growth} bytes"


@pytest.fixture(scope="module")
def network():
    return nnexposed.Network.from_sizes([16, 32, 32, 4], activation="relu",
                                        output_activation="softmax", seed=0)


def test_forward_batch_1_does_not_leak(network):
    x = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    out = np.empty(4, np.float32)
    x64 = x.astype(np.float64)          # the conversion path, a new array per call

    def call():
        network(x)
        network(x, out=out)
        network(x64)

    check_flat(*measure(call, 10**6 // 3 // SCALE))


@pytest.mark.parametrize("calls", [10**5, pytest.param(10**6, marks=pytest.mark.skipif(
    not SLOW, reason="10**6 calls at batch 64: NNEXPOSED_SLOW=1 or tools/leak_run.py"))])
def test_forward_batch_64_does_not_leak(network, calls):
    x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    check_flat(*measure(lambda: network(x), calls // SCALE))


@pytest.mark.parametrize("blas", ["always", "never"])
def test_wide_batches_with_blas_and_threads_do_not_leak(blas):
    # BLAS forced on (builds with AVX2 or better leave it off), or tiles over 2 threads.
    if blas == "always":
        pytest.importorskip("scipy")
    wide = nnexposed.Network.from_sizes([300, 300, 8], seed=0)       # BLAS-sized layer
    x = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)
    with nnexposed.config_context(blas=blas), counting_paths() as counts:
        check_flat(*measure(lambda: wide(x, threads=2), 200 // SCALE + 10))
    assert counts["blas" if blas == "always" else "tiles"] > 0


def test_network_constructions_do_not_leak():
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((8, 8)) for _ in range(3)]

    def construct():
        layers = [nnexposed.Dense(w, None, "tanh") for w in weights]
        nnexposed.Network(layers)
        nnexposed.Network.from_sizes([4, 8, 2], seed=1)

    check_flat(*measure(construct, 10**4 // SCALE + 10))


def test_dense_activations_and_errors_do_not_leak():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6))
    w = rng.standard_normal((3, 6))
    network = nnexposed.Network.from_sizes([6, 3], seed=0)

    def call():
        nnexposed.dense(x, w, None, "sigmoid")
        for name in nnexposed.ACTIVATIONS:
            getattr(nnexposed, name)(x)
        for bad in (np.ones((2, 5)), np.ones(3, complex), "abc"):
            try:
                network(bad)
            except (ValueError, TypeError):
                pass
        try:
            network(x, out=np.empty((5, 3), np.float64))
        except (ValueError, TypeError):
            pass

    check_flat(*measure(call, 10**5 // 10 // SCALE + 10))
