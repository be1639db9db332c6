"""Thread safety: 16 Python threads sharing one network, each with its own inputs, for a few
seconds, give results bit-identical to serial calls — with one OpenMP thread per call, and
with OpenMP threads inside each call as well (32 OS threads on however many cores: the
process's thread budget, which calls running at once share, raised to 32 for it; with the
default budget most of the calls would run on their own thread, as
tests/test_thread_policy.py checks).

Each stress runs in a child interpreter with a timeout, so a deadlock fails the test instead
of hanging the run. ``--stress-seconds S`` sets the duration of each stress (default 3).
Whether the GIL is really released is measured by tools/bench_threads.py, not asserted here.
"""

import json

import pytest

from tests.helpers import UNDER_ASAN, run_isolated

STRESS = """
import json, sys, threading, time
import numpy as np
import nnexposed
from nnexposed._config import counting_paths

n_threads, seconds, omp_threads, sizes, batches, settings = {args}
nnexposed.set_config(**settings)
# 16 threads on few cores make parallel forwards slower than one thread: the paths under
# test would back off to one thread (docs/threads.md).
nnexposed.kernels.allow_backoff(False)
rng = np.random.default_rng(0)
activations = list(nnexposed.ACTIVATIONS)
layers = []
for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
    w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    layers.append(nnexposed.Dense(w, b, activations[k % len(activations)], alpha=0.1))
network = nnexposed.Network(layers)
# Every thread has its own inputs, batch sizes cycling over the kernels' paths.
inputs = []
for i in range(n_threads):
    batch = batches[i % len(batches)]
    shape = (sizes[0],) if batch is None else (batch, sizes[0])
    inputs.append(rng.standard_normal(shape).astype(np.float32))
serial = [network(x, threads=1) for x in inputs]
calls = [0] * n_threads
mismatches = [0] * n_threads
errors = []
barrier = threading.Barrier(n_threads)
deadline = [0.0]

def work(i):
    try:
        barrier.wait()
        x, out = inputs[i], np.empty_like(serial[i])
        while time.perf_counter() < deadline[0]:
            result = network(x, threads=omp_threads)
            network(x, out=out, threads=omp_threads)
            if not (np.array_equal(result, serial[i]) and np.array_equal(out, serial[i])):
                mismatches[i] += 1
            calls[i] += 2
    except BaseException as error:
        errors.append(repr(error))

deadline[0] = time.perf_counter() + seconds
threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n_threads)]
with counting_paths() as counts:
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
alive = sum(t.is_alive() for t in threads)
print(json.dumps({{"calls": sum(calls), "mismatches": sum(mismatches), "errors": errors,
                  "alive": alive, "min_calls": min(calls), "counts": counts,
                  "openmp": nnexposed.kernels.openmp_enabled()}}))
sys.stdout.flush()
"""


@pytest.fixture
def seconds(pytestconfig):
    return pytestconfig.getoption("stress_seconds")


def stress(seconds, n_threads, omp_threads, sizes, batches, **settings):
    """Run the stress; ``settings`` (of nnexposed.set_config) force the kernel paths. Returns
    the child's report, with the paths its calls took ("counts")."""
    args = (n_threads, seconds, omp_threads, sizes, batches, settings)
    output = run_isolated(STRESS.format(args=repr(args)), timeout=seconds + 300)
    report = json.loads(output.strip().splitlines()[-1])
    assert report["alive"] == 0, f"{report['alive']} threads still running: deadlock"
    assert report["errors"] == []
    assert report["mismatches"] == 0, report
    assert report["min_calls"] > 0, report
    return report


# Batch sizes: one sample (vector and 1-row batch), small batches, tiles, blocks of 256.
BATCHES = [None, 1, 3, 4, 31, 33, 100, 257]


def test_16_threads_share_a_network_bit_identical_to_serial(seconds):
    report = stress(seconds, 16, 1, [24, 64, 48, 5], BATCHES)
    assert report["counts"]["one_sample"] > 0 and report["counts"]["tiles"] > 0, report
    print(f"16 threads, {report['calls']} calls in {seconds} s")


def test_16_threads_with_openmp_threads_inside(seconds):
    # 2 OpenMP threads per call on batches above the threshold for starting threads: the
    # tiled kernel splits blocks over them; no deadlock, no oversubscription blow-up.
    report = stress(seconds, 16, 2, [64, 256, 64, 8], [2000, 700, None, 5000], threads=32)
    assert report["calls"] >= 16
    assert report["counts"]["parallel_regions"] > 0 or not report["openmp"], report


def test_16_threads_one_sample_rows_split_over_openmp_threads(seconds):
    # One sample through a 2050 x 2048 layer (2**22 multiply-adds and more: threads start)
    # splits its rows over the OpenMP threads.
    report = stress(seconds, 16, 2, [2048, 2050, 4], [None, 1, 2], threads=32)
    assert report["counts"]["row_split"] > 0 and report["counts"]["one_sample"] == 0, report
    assert report["counts"]["parallel_regions"] > 0 or not report["openmp"], report


@pytest.mark.skipif(UNDER_ASAN, reason="SciPy's BLAS is not instrumented; slow under ASan")
def test_16_threads_with_blas_layers(seconds):
    # 300 x 300 layers on blocks of >= 64 samples run in SciPy's BLAS (forced: builds with
    # AVX2 or better leave it off by default).
    pytest.importorskip("scipy")
    report = stress(seconds, 16, 1, [300, 300, 300, 4], [64, 256, 300, 1], blas="always")
    assert report["counts"]["blas"] > 0, report
