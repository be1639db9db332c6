"""The cost of Network.trace (every layer's values) against a plain forward pass, same run.

    python bench/trace_cost.py [--repeat 7] [--out bench/results/trace_cost.md]

Median µs per call of ``net(x)``, ``net.trace(x)`` and the NumPy reference ``trace_numpy``
for random ReLU networks of float32, at batch 1 and 1,000.
"""

import argparse
import os
import pathlib

import numpy as np

from nnexposed import Network
from nnexposed.benchmark import time_per_call
from nnexposed.reference import trace_numpy

CASES = [((3, 5, 5, 5, 2), 1), ((3, 5, 5, 5, 2), 1000),
         ((784, 256, 256, 10), 1), ((784, 256, 256, 10), 1000)]


def measure(repeat):
    rows = []
    for sizes, batch in CASES:
        network = Network.from_sizes(sizes, seed=0)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((sizes[0],) if batch == 1 else (batch, sizes[0]))
        x = x.astype(np.float32)
        forward_us = 1e6 * time_per_call(network, x, repeat=repeat)
        trace_us = 1e6 * time_per_call(network.trace, x, repeat=repeat)
        numpy_us = 1e6 * time_per_call(trace_numpy, network, x, repeat=repeat)
        rows.append(("-".join(map(str, sizes)), batch, forward_us, trace_us, numpy_us))
    return rows


def markdown(rows):
    lines = ["| network | batch | forward µs | trace µs | trace / forward | trace_numpy µs |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {net} | {batch:,} | {f:,.2f} | {t:,.2f} | {t / f:.2f}× | {n:,.2f} |"
              for net, batch, f, t, n in rows]
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return "\n".join(lines) + f"\n\nLoad average when measured: {load}.\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=pathlib.Path, help="also write the table here")
    args = parser.parse_args()
    table = markdown(measure(args.repeat))
    print(table)
    if args.out:
        args.out.write_text("# Cost of Network.trace\n\n"
                            "`python bench/trace_cost.py --out bench/results/trace_cost.md`\n\n"
                            + table)


if __name__ == "__main__":
    main()
