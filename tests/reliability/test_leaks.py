"""No leaks: many calls of forward (one sample, batches on one thread, on several threads and
through BLAS), network constructions, activations and refused calls leave the resident set size
and tracemalloc's count of traced memory flat.

Bounds:
- tracemalloc, counting what nnexposed's code allocated (the kernels' PyMem_RawMalloc
  workspaces, the NumPy arrays it makes): over each of two rounds of ``traced_calls`` calls
  after a warm-up, it grows by less than 4 bytes per call (and at most TRACED_BOUND, 64 KiB)
  in at least one of them. A leak of 8
  bytes per call grows every round by 8 bytes per call, so it fails every test; memory kept
  once (a cache filled, a free list grown) grows one round only.
- resident memory grows by at most RSS_BOUND (4 MiB) over the measured calls, after warm-up.
  This sees leaks of plain malloc (OpenMP's, BLAS's) that tracemalloc does not: at 10**6 calls
  (the batch-1 test, and ``--slow`` at batch 64) an 8-byte leak from malloc, 32 bytes
  per allocation with glibc, exceeds it.

tools/mutate.py checks the first claim: an 8-byte leak per call injected on each path fails
the test of that path. Default call counts: 10**6 forward calls at batch 1, 10**5 at batch
64, 10**4 network constructions. ``pytest --slow`` runs 10**6 at batch 64 too (see
tools/leak_run.py, which prints the measured figures). Under AddressSanitizer (LD_PRELOAD of
libasan, see tools/sanitize.sh) the counts are divided by 100 and only tracemalloc is checked:
the sanitizer's quarantine grows the resident set by design.
"""

import gc
import os
import resource
import tracemalloc

import numpy as np
import pytest

import nnexposed
from nnexposed import config_context, kernels
from nnexposed._config import counting_paths
from tests.helpers import UNDER_ASAN

RSS_BOUND = 4 * 1024 * 1024
TRACED_BOUND = 64 * 1024
# A leak this size per call must fail every test.
LEAK_PER_CALL = 8
SCALE = 100 if UNDER_ASAN else 1
# Refused calls leave their exceptions' traceback objects and messages to be freed later:
# tens of KB that come and go between rounds. Rounds of this many calls, the least growth of
# three, keep that well under the bound while a leak of LEAK_PER_CALL still exceeds it.
LATE_FREED_CALLS = 10**4


def rss_bytes():
    """Current resident set size (Linux /proc/self/statm), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def traced_bound(traced_calls):
    """Most a round of ``traced_calls`` calls may grow traced memory: half of what a leak of
    LEAK_PER_CALL bytes per call grows it by, and at most TRACED_BOUND."""
    return min(TRACED_BOUND, LEAK_PER_CALL // 2 * traced_calls)


# Allocations made from nnexposed's code, its kernels' included (tracemalloc gives an
# allocation made without the GIL the Python frame that called into the kernels): other
# threads of the process (a finished test's pool, say) do not count.
PACKAGE_FILES = tracemalloc.Filter(True, os.path.join(os.path.dirname(nnexposed.__file__), "*"))


def traced_from_package():
    """Bytes currently traced that nnexposed's code allocated."""
    snapshot = tracemalloc.take_snapshot().filter_traces([PACKAGE_FILES])
    return sum(trace.size for trace in snapshot.traces)


def measure(function, calls, *, traced_calls=None, rounds=2):
    """(RSS growth, traced growth) over ``calls`` calls, after a warm-up of calls // 10.

    RSS is measured over all calls without tracing (tracemalloc slows every allocation);
    then tracemalloc over ``rounds`` rounds of ``traced_calls`` more (default calls // 10):
    the traced growth is the smallest of the rounds' growths of what nnexposed's code holds.
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
        growths = []
        for _ in range(rounds):
            gc.collect()
            traced_before = traced_from_package()
            for _ in range(traced_calls):
                function()
            gc.collect()
            growths.append(traced_from_package() - traced_before)
    finally:
        tracemalloc.stop()
    return rss_growth, min(growths)


def check_flat(function, calls, *, traced_calls=None, rounds=2):
    traced_calls = max(calls // 10, 1) if traced_calls is None else traced_calls
    rss_growth, traced_growth = measure(function, calls, traced_calls=traced_calls,
                                        rounds=rounds)
    assert traced_growth <= traced_bound(traced_calls), (
        f"tracemalloc grew by {traced_growth} bytes over {traced_calls} calls")
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

    check_flat(call, 10**6 // 3 // SCALE)


@pytest.mark.parametrize("calls", [10**5, pytest.param(10**6, marks=pytest.mark.slow)])
def test_forward_batch_64_does_not_leak(network, calls):
    x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    check_flat(lambda: network(x), calls // SCALE)


def test_batches_on_threads_do_not_leak():
    # 128 samples x 33,280 multiply-adds pass the threshold for starting threads.
    network = nnexposed.Network.from_sizes([64, 256, 64, 8], seed=0)
    x = np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32)
    with counting_paths() as counts:
        check_flat(lambda: network(x, threads=2), 500 // SCALE + 10, traced_calls=200)
    assert counts["parallel_regions"] > 0 or not kernels.openmp_enabled()


def test_batches_through_blas_do_not_leak():
    if not kernels.blas_available():
        pytest.skip("SciPy's BLAS is not available")
    wide = nnexposed.Network.from_sizes([300, 300, 8], seed=0)       # BLAS-sized layer
    x = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
    with config_context(blas="always"), counting_paths() as counts:
        check_flat(lambda: wide(x), 200 // SCALE + 10, traced_calls=150)
    assert counts["blas"] > 0 and counts["tiles"] == 0


def test_network_constructions_do_not_leak():
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((8, 8)) for _ in range(3)]

    def construct():
        layers = [nnexposed.Dense(w, None, "tanh") for w in weights]
        nnexposed.Network(layers)
        nnexposed.Network.from_sizes([4, 8, 2], seed=1)

    # Not scaled down under the sanitizers: rounds of a few calls cannot tell a leak from
    # error-message strings and NumPy's caches freed later (hundreds of bytes either way).
    check_flat(construct, 10**4 + 10, traced_calls=LATE_FREED_CALLS, rounds=3)


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

    check_flat(call, 10**4 + 10, traced_calls=LATE_FREED_CALLS, rounds=3)


@pytest.mark.parametrize("precision", ["int8", "bfloat16"])
def test_quantized_forwards_do_not_leak(precision):
    # The kept workspace grows to the largest call's need in the warm-up, then stays.
    if precision == "bfloat16":
        pytest.importorskip("ml_dtypes")
    network = nnexposed.Network.from_sizes([64, 256, 64, 8], seed=0).quantize(precision)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, 64)).astype(np.float32) for n in (1, 5, 64, 300)]

    def call():
        for x in batches:
            network(x, threads=2)
            network(x, threads=1)

    check_flat(call, 200 // SCALE + 10, traced_calls=100)


def test_quantized_workspace_is_freed_with_the_network():
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((256, 64)), rng.standard_normal((8, 256))]
    x = rng.standard_normal((200, 64)).astype(np.float32)

    def construct_and_run():
        layers = [nnexposed.Dense(weights[0], None, "relu"), nnexposed.Dense(weights[1], None)]
        network = nnexposed.Network(layers).quantize("int8")
        network(x, threads=2)       # a workspace of tens of KB, kept by the network

    check_flat(construct_and_run, 2000 + 10, traced_calls=LATE_FREED_CALLS // 10, rounds=3)
