"""What a one-sample forward costs after the caller has been busy elsewhere for a while.

    python tools/one_sample_gaps.py [--sizes 784,256,256,10] [--calls 200]

For each gap (the caller spins on its own work for that long between calls), the median
and 90th percentile of single calls on one thread and on all threads: OpenMP's idle
threads spin for a few hundred microseconds after a parallel region, then sleep, and
waking them costs more than sharing the layers saves. This is how nnexposed's rule "share a
one-sample forward's layers among threads only when the previous one ended less than
100 µs ago" was chosen (SPLIT_AWAKE_NS in src/nnexposed/_kernels/threads.pxi). Prints
figures; asserts nothing.
"""

import argparse
import statistics
import time

import numpy as np

import nnexposed
from nnexposed.benchmark import time_per_call

GAPS_US = [10, 50, 100, 200, 300, 1_000, 10_000]


def single_calls(forward, x, threads, gap_s, calls):
    """Microseconds of each of ``calls`` forwards, each after ``gap_s`` of busy waiting."""
    times = []
    for _ in range(calls):
        end = time.perf_counter() + gap_s
        while time.perf_counter() < end:   # the caller busy with its own work
            pass
        start = time.perf_counter_ns()
        forward(x, None, threads)
        times.append((time.perf_counter_ns() - start) / 1e3)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="784,256,256,10")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    network = nnexposed.Network.from_sizes(sizes, seed=0)
    x = np.random.default_rng(0).standard_normal(sizes[0]).astype(network.dtype)
    forward = network._compiled.forward
    all_threads = nnexposed.get_num_threads()
    print(f"network {args.sizes}, float32, one sample; {all_threads} threads available")
    for label, threads, share in [("1 thread", 1, False),
                                  (f"{all_threads} threads, always shared", all_threads, True)]:
        with nnexposed.config_context(shared_panels="always" if share else "never"):
            loop = time_per_call(forward, x, None, threads, repeat=7) * 1e6
            print(f"\n{label}: {loop:.2f} µs per call back to back")
            print(f"{'gap µs':>8} {'median µs':>10} {'p90 µs':>8}")
            for gap in GAPS_US:
                times = sorted(single_calls(forward, x, threads, gap / 1e6,
                                            args.calls if gap < 10_000 else args.calls // 4))
                print(f"{gap:>8,} {statistics.median(times):>10.2f} "
                      f"{times[int(len(times) * 0.9)]:>8.2f}")


if __name__ == "__main__":
    main()
