"""The ``nnexposed`` command: bench (the main job), summary, demo and info."""

import argparse
import json
import os
import sys

import numpy as np

from nnexposed import _predict, benchmark
from nnexposed._version import __version__
from nnexposed.activations import ACTIVATIONS
from nnexposed.inference import forward
from nnexposed.io import load
from nnexposed.network import Network
from nnexposed.reference import forward_numpy

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


def _sizes_or_model(text):
    """Layer sizes like 3,5,5,5,2, or the path of a saved model (a file that exists)."""
    if os.path.isfile(text):
        return text
    if not set(text) <= set("0123456789, "):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an existing model file nor layer sizes like 3,5,5,5,2")
    try:
        return _sizes(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected layer sizes like 3,5,5,5,2 or a saved model file, got {text!r}") from None


def _load_model(path):
    """The saved network at ``path``, or a one-line error on stderr and None."""
    try:
        return load(path)
    except (OSError, ValueError) as error:
        print(f"nnexposed: cannot load model {path!r}: {error}", file=sys.stderr)
        return None


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
    models = []
    for path in args.model or []:
        models.append(_load_model(path))
        if models[-1] is None:
            return 1
    sizes_list = (args.sizes or []) + models or DEFAULT_SIZES
    rows = benchmark.run(sizes_list, args.batch, args.dtype, repeat=args.repeat,
                         progress=_progress)
    print(benchmark.format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": benchmark.machine_info(), "results": rows}, f, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_summary(args):
    if isinstance(args.network, str):
        network = _load_model(args.network)
        if network is None:
            return 1
        if args.dtype is not None:
            network = network.astype(args.dtype)
    else:
        network = Network.from_sizes(args.network, args.activation, args.output_activation,
                                     dtype=args.dtype or "float32", seed=0)
    print(network.summary())
    return 0


def _ascii_image(image, width=8):
    """An 8x8 image in [0, 1] as text, darker characters for more ink."""
    shades = " .:-=+*#%@"
    levels = np.clip((image * (len(shades) - 1)).round().astype(int), 0, len(shades) - 1)
    return ["".join(shades[v] * 2 for v in row) for row in levels.reshape(-1, width)]


def cmd_demo(args):
    from nnexposed.examples import digits

    network, images, labels = digits()
    predicted = forward(network, images).argmax(axis=1)
    correct = int((predicted == labels).sum())
    activations = ", ".join(dict.fromkeys(layer.activation for layer in network.layers))
    print(f"Example network: handwritten digits, {'-'.join(map(str, network.sizes))} "
          f"({activations}), {network.dtype}, {network.n_params:,} parameters")
    print(f"Accuracy on {len(labels)} held-out test images: {correct / len(labels):.1%} "
          f"({correct}/{len(labels)})")
    probabilities = forward(network, images[0])
    print(f"\nTest image 0 (label {labels[0]}), predicted {probabilities.argmax()} with "
          f"probability {probabilities.max():.3f}:")
    print("\n".join("    " + line for line in _ascii_image(images[0])))
    one = images[0]
    fast_one = 1e6 * benchmark.time_per_call(forward, network, one, repeat=args.repeat)
    numpy_one = 1e6 * benchmark.time_per_call(forward_numpy, network, one, repeat=args.repeat)
    fast_all = 1e6 * benchmark.time_per_call(forward, network, images, repeat=args.repeat)
    numpy_all = 1e6 * benchmark.time_per_call(forward_numpy, network, images, repeat=args.repeat)
    n = len(images)
    print(f"\nLatency per image (median of {args.repeat} runs):")
    print(f"  {'':<28}{'forward':>10}{'forward_numpy':>16}{'speed-up':>10}")
    for label, fast, slow in [("one image per call", fast_one, numpy_one),
                              (f"all {n} images in one call", fast_all / n, numpy_all / n)]:
        ratio = slow / fast
        print(f"  {label:<28}{fast:>8.2f}µs{slow:>14.2f}µs"
              f"{f'{ratio:.1f}' if ratio >= 1 else f'{ratio:.2f}':>9}x")
    return 0


def cmd_predict(args):
    network = _load_model(args.model)
    if network is None:
        return 1
    return _predict.run(network, args)


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
                       help="layer sizes, e.g. 3,5,5,5,2 (repeatable; default without "
                            "--model: 3,5,5,5,2 and 784,256,256,10)")
    bench.add_argument("--batch", type=_int_list, default=DEFAULT_BATCHES,
                       help="comma-separated batch sizes (default: 1,1000)")
    bench.add_argument("--model", metavar="PATH", action="append",
                       help="also time a saved model (repeatable)")
    bench.add_argument("--dtype", choices=["float32", "float64"], default=None,
                       help="dtype of the networks (default: float32, a model's own dtype)")
    bench.add_argument("--repeat", type=_positive_int, default=7,
                       help="timed runs per measurement; the median is reported (default: 7)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.set_defaults(run=cmd_bench)

    summary = commands.add_parser("summary", help="print a network's layer table")
    summary.add_argument("network", type=_sizes_or_model, metavar="SIZES|PATH",
                         help="layer sizes, e.g. 3,5,5,5,2, or a model saved with "
                              "nnexposed.save")
    summary.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                         help="hidden activation for SIZES (default: relu)")
    summary.add_argument("--output-activation", choices=ACTIVATIONS, default="linear",
                         help="output activation for SIZES (default: linear)")
    summary.add_argument("--dtype", choices=["float32", "float64"], default=None,
                         help="dtype (default: float32, a model's own dtype)")
    summary.set_defaults(run=cmd_summary)

    demo = commands.add_parser(
        "demo", help="run the shipped digits network: accuracy and latency per image")
    demo.add_argument("--repeat", type=_positive_int, default=7,
                      help="timed runs per measurement; the median is reported (default: 7)")
    demo.set_defaults(run=cmd_demo)

    predict = commands.add_parser(
        "predict", help="score the rows of a .npy, .csv or .parquet file into another")
    _predict.add_arguments(predict)
    predict.set_defaults(run=cmd_predict)

    info = commands.add_parser("info", help="version, build and machine information")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
