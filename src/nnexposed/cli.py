"""The ``nnexposed`` command: bench (the main job), summary and info."""

import argparse
import json
import sys

from nnexposed import benchmark
from nnexposed._version import __version__
from nnexposed.activations import ACTIVATIONS
from nnexposed.network import Network

DEFAULT_SIZES = [(3, 5, 5, 5, 2), (784, 256, 256, 10)]
DEFAULT_BATCHES = [1, 1000]


def _int_list(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _sizes(text):
    sizes = _int_list(text)
    if len(sizes) < 2 or 0 in sizes:
        raise argparse.ArgumentTypeError(
            f"expected at least two positive layer sizes like 3,5,5,5,2, got {text!r}")
    return tuple(sizes)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _progress(done, total, label):
    message = f"[{done}/{total}] {label}"
    if sys.stderr.isatty():  # one line, rewritten in place
        end = "\n" if done == total else ""
        print(f"\r{message:<60}", end=end, file=sys.stderr, flush=True)
    else:
        print(message, file=sys.stderr, flush=True)


def cmd_bench(args):
    sizes_list = args.sizes or DEFAULT_SIZES
    rows = benchmark.run(sizes_list, args.batch, args.dtype, repeat=args.repeat,
                         progress=_progress)
    print(benchmark.format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": benchmark.machine_info(), "results": rows}, f, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_summary(args):
    network = Network.from_sizes(args.sizes, args.activation, args.output_activation,
                                 dtype=args.dtype, seed=0)
    print(network.summary())
    return 0


def cmd_info(args):
    info = benchmark.machine_info()
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="nnexposed", description="Multi-layer perceptron forward pass in typed Cython.")
    parser.add_argument("--version", action="version", version=f"nnexposed {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="time forward against forward_numpy")
    bench.add_argument("--sizes", type=_sizes, action="append",
                       help="layer sizes, e.g. 3,5,5,5,2 (repeatable; default: 3,5,5,5,2 "
                            "and 784,256,256,10)")
    bench.add_argument("--batch", type=_int_list, default=DEFAULT_BATCHES,
                       help="comma-separated batch sizes (default: 1,1000)")
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    bench.add_argument("--repeat", type=_positive_int, default=7,
                       help="timed runs per measurement; the median is reported (default: 7)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.set_defaults(run=cmd_bench)

    summary = commands.add_parser("summary", help="print a network's layer table")
    summary.add_argument("sizes", type=_sizes, help="layer sizes, e.g. 3,5,5,5,2")
    summary.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    summary.add_argument("--output-activation", choices=ACTIVATIONS, default="linear")
    summary.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    summary.set_defaults(run=cmd_summary)

    info = commands.add_parser("info", help="version, build and machine information")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
