"""A batch whose output has more than 2**31 elements: N samples through a 1 -> 8 layer.

    python tools/big_batch.py [--batch 270000000] [--dtype float32] [--threads 1]

With the default 2.7 * 10**8 samples the output has 2.16 * 10**9 elements (8.6 GB float32)
and the input 1.08 GB: it refuses to start unless MemAvailable covers both plus 2 GB. Checks
every sample whose output offset is near 2**31 and a million random ones against NumPy, and
prints the time and the peak resident memory.
"""

import argparse
import resource
import sys
import time

import numpy as np

import nnexposed


def available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=270_000_000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)
    n_out = 8
    need = args.batch * (1 + n_out) * dtype.itemsize
    available = available_bytes()
    if available is not None and available < need + 2 * 2**30:
        print(f"skipped: needs {need / 2**30:.1f} GiB + 2 GiB, "
              f"{available / 2**30:.1f} GiB available")
        return 0
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((n_out, 1)).astype(dtype)
    biases = rng.standard_normal(n_out).astype(dtype)
    network = nnexposed.Network([nnexposed.Dense(weights, biases, "leaky_relu", alpha=0.1)])
    x = rng.standard_normal((args.batch, 1), dtype=np.float32).astype(dtype, copy=False)
    start = time.perf_counter()
    y = network(x, threads=args.threads)
    seconds = time.perf_counter() - start
    crossing = 2**31 // n_out
    rows = np.concatenate([np.arange(max(crossing - 64, 0), min(crossing + 64, args.batch)),
                           rng.integers(0, args.batch, 1_000_000),
                           np.arange(max(args.batch - 64, 0), args.batch)])
    z = x[rows].astype(np.float64) @ weights.T.astype(np.float64) + biases
    expected = np.where(z >= 0, z, 0.1 * z)
    error = float(np.abs(y[rows] - expected).max())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"batch {args.batch:,} x 1 -> {n_out} ({y.size:,} output elements, "
          f"{y.nbytes / 2**30:.2f} GiB {dtype}), threads {args.threads}: {seconds:.2f} s, "
          f"peak RSS {peak:.2f} GiB, max error on {rows.size:,} checked samples {error:.3g}")
    limit = 1e-5 if dtype == np.float32 else 1e-12
    if y.size > 2**31 and error <= limit * (1 + float(np.abs(expected).max())):
        print("ok")
        return 0
    print("FAILED" if y.size > 2**31 else "too small to pass 2**31 output elements")
    return 1


if __name__ == "__main__":
    sys.exit(main())
