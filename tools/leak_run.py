"""The long leak run: prints resident-memory and tracemalloc growth for the README figures.

    python tools/leak_run.py [--calls 1000000] [--constructions 10000]

forward at batch 1 and at batch 64 (``--calls`` each, RSS measured over all of them without
tracing, tracemalloc over two rounds of a tenth more, the smaller growth of the two), and
``--constructions`` network constructions. Uses the measurement of
tests/reliability/test_leaks.py and exits non-zero if a bound is exceeded.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import nnexposed  # noqa: E402
import tests.reliability.test_leaks as leaks  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10**6)
    parser.add_argument("--constructions", type=int, default=10**4)
    args = parser.parse_args(argv)
    network = nnexposed.Network.from_sizes([16, 32, 32, 4], activation="relu",
                                           output_activation="softmax", seed=0)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal(16).astype(np.float32)
    x64 = rng.standard_normal((64, 16)).astype(np.float32)
    weights = [rng.standard_normal((8, 8)) for _ in range(3)]

    def construct():
        nnexposed.Network([nnexposed.Dense(w, None, "tanh") for w in weights])

    cases = [(f"forward, batch 1, {args.calls:,} calls", lambda: network(x1), args.calls),
             (f"forward, batch 64, {args.calls:,} calls", lambda: network(x64), args.calls),
             (f"Network construction, {args.constructions:,} times", construct,
              args.constructions)]
    failed = False
    for label, function, calls in cases:
        start = time.perf_counter()
        rss, traced = leaks.measure(function, calls)
        seconds = time.perf_counter() - start
        traced_calls = max(calls // 10, 1)
        ok = rss <= leaks.RSS_BOUND and traced <= leaks.traced_bound(traced_calls)
        failed |= not ok
        print(f"{label}: RSS {rss / 1024:+.0f} KiB (bound {leaks.RSS_BOUND // 1024} KiB), "
              f"tracemalloc {traced:+d} B over {traced_calls:,} traced calls "
              f"(bound {leaks.traced_bound(traced_calls):,} B), {seconds:.1f} s "
              f"{'ok' if ok else 'LEAK'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
