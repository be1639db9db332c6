"""The ``nnexposed`` command: bench (the main job), summary, draw, demo and info.

Each subcommand is an ``add_NAME(commands)`` function that declares its arguments (with the
shared helpers below) and a ``run_NAME(args)`` function that does the work and returns the exit
status; ``COMMANDS`` lists them for the parser. Mistakes end in one line on stderr, without a
traceback: argument errors with status 2, errors found while running (a model that does not
load, a file that cannot be written) with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nnexposed import _predict, benchmark
from nnexposed._show_versions import show_versions
from nnexposed._version import __version__
from nnexposed.activations import ACTIVATIONS
from nnexposed.inference import forward
from nnexposed.io import load
from nnexposed.network import Network, summary_table
from nnexposed.precision import PRECISIONS
from nnexposed.reference import forward_numpy

DEFAULT_SIZES = [(3, 5, 5, 5, 2), (784, 256, 256, 10)]
DEFAULT_BATCHES = [1, 1000]
DTYPES = ["float32", "float64"]
PICTURE_FORMATS = ("png", "svg", "pdf")


class CommandError(Exception):
    """A mistake found while running a command: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------------------------
# Argument types: each raises ArgumentTypeError with what was expected and what was given
# --------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_ints(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [int(part) for part in parts if part]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 1,1000, got {text!r}")
    return values


def _precisions(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [value for value in values if value not in PRECISIONS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated precisions from {','.join(PRECISIONS)}, got {text!r}")
    return list(dict.fromkeys(values))


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = _positive_ints(text)
    except argparse.ArgumentTypeError:
        sizes = []
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(
            f"expected at least two positive layer sizes like 3,5,5,5,2, got {text!r}")
    return tuple(sizes)


def _not_a_file(path: str) -> str | None:
    """Why ``path`` is not a file that can be read, or None."""
    if os.path.isdir(path):
        return "a folder"
    return None if os.path.isfile(path) else "which does not exist"


def _model_file(text: str) -> str:
    reason = _not_a_file(text)
    if reason:
        raise argparse.ArgumentTypeError(f"expected a saved model file, got {text!r}, {reason}")
    return text


def _network(text: str) -> tuple[int, ...] | str:
    """Layer sizes like 3,5,5,5,2, or the path of a saved model file."""
    if os.path.isfile(text) or not set(text) <= set("0123456789, "):
        reason = _not_a_file(text)
        if reason:
            raise argparse.ArgumentTypeError(f"expected layer sizes like 3,5,5,5,2 or a saved "
                                             f"model file, got {text!r}, {reason}")
        return text
    return _sizes(text)


def _output_file(text: str) -> str:
    """A file that can be written: its folder exists and is writable (checked before any work)."""
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: it is a folder")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: no folder {folder!r}")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: folder {folder!r} is "
                                         f"not writable")
    return text


def _picture_file(text: str) -> str:
    """A picture to write: .png, .svg or .pdf, in a folder that can be written."""
    extension = os.path.splitext(text)[1].lower().lstrip(".")
    if extension not in PICTURE_FORMATS:
        raise argparse.ArgumentTypeError(
            f"expected a picture file ending in .{', .'.join(PICTURE_FORMATS)}, got {text!r}")
    return _output_file(text)


def _input_values(text: str) -> np.ndarray:
    """Input samples: comma-separated numbers (one sample) or a .npy file of samples."""
    if text.endswith(".npy"):
        try:
            return np.load(text, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: {error}") from None
    try:
        return np.array([float(part) for part in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.5,-1,2 or a .npy file, got {text!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# Shared arguments and their use
# --------------------------------------------------------------------------------------------


def add_network_arguments(parser: argparse.ArgumentParser, nargs: str | None) -> None:
    """NETWORK (layer sizes or a saved model; ``nargs`` as argparse's), --activation,
    --output-activation and --dtype."""
    parser.add_argument("networks" if nargs else "network", type=_network, nargs=nargs,
                        metavar="SIZES|MODEL",
                        help="layer sizes like 3,5,5,5,2 (a random network) or a model file "
                             "written by nnexposed.save")
    parser.add_argument("--activation", choices=ACTIVATIONS, default=None,
                        help="hidden activation of networks given by sizes (default: relu)")
    parser.add_argument("--output-activation", choices=ACTIVATIONS, default=None,
                        help="output activation of networks given by sizes (default: linear)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="dtype (default: float32 for sizes, a model's own dtype)")


def add_repeat_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=_positive_int, default=7,
                        help="timed runs per measurement; the median is reported (default: 7)")


def _check_activation_options(args: argparse.Namespace, specs: Sequence[object]) -> None:
    """--activation and --output-activation describe networks given by sizes: refuse them
    when every network is a model file (they would be silently ignored)."""
    for option in ("activation", "output_activation"):
        if getattr(args, option) is not None and all(isinstance(s, str) for s in specs):
            raise CommandError(f"--{option.replace('_', '-')} applies to networks given by "
                               f"layer sizes, not to a saved model")


def _load_model(path: str) -> Network:
    try:
        return load(path)
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot load model {path!r}: {error}") from None


def _build_network(args: argparse.Namespace, spec: tuple[int, ...] | str) -> Network:
    """The network of one SIZES|MODEL argument, in ``args.dtype`` if given."""
    if isinstance(spec, str):
        network = _load_model(spec)
        return network if args.dtype is None else network.astype(args.dtype)
    return Network.from_sizes(spec, args.activation or "relu", args.output_activation or "linear",
                              dtype=args.dtype or "float32", seed=0)


def _write_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(temporary)`` a file beside ``path``, then rename it to ``path``: an error or an
    interruption never leaves a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".nnexposed-", dir=folder)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise CommandError(f"cannot write {path!r}: {error}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _write_text(path: str, text: str) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w") as f:
            f.write(text)

    _write_atomically(path, write)


def _save_figure(path: str, figure: Any) -> None:
    """A matplotlib figure into ``path`` (.png, .svg or .pdf), written atomically."""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    _write_atomically(path, lambda temporary: figure.savefig(temporary, format=extension))
    print(f"wrote {path}", file=sys.stderr)


def _plot_module() -> Any:
    """nnexposed.plot, checked before any work that would end in drawing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError('drawing needs matplotlib: pip install "nnexposed[plot]"') from None
    from nnexposed import plot

    return plot


def _progress(done: int, total: int, label: str) -> None:
    message = f"[{done}/{total}] {label}"
    if sys.stderr.isatty():  # one line, rewritten in place
        end = "\n" if done == total else ""
        print(f"\r{message:<60}", end=end, file=sys.stderr, flush=True)
    else:
        print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------


def add_bench(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("bench", help="time forward against forward_numpy")
    add_network_arguments(parser, "*")
    parser.add_argument("--sizes", type=_sizes, action="append", default=[],
                        help="layer sizes, as a positional SIZES (repeatable)")
    parser.add_argument("--model", type=_model_file, action="append", default=[],
                        metavar="PATH", help="a saved model, as a positional MODEL (repeatable)")
    parser.add_argument("--batch", type=_positive_ints, default=DEFAULT_BATCHES,
                        help="comma-separated batch sizes (default: 1,1000)")
    parser.add_argument("--precision", type=_precisions, default=None,
                        help="comma-separated precisions to time each network in, e.g. "
                             "float32,int8,bfloat16 (default: the network's own)")
    add_repeat_argument(parser)
    parser.add_argument("--json", metavar="FILE", type=_output_file,
                        help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE", type=_picture_file,
                        help="also draw the speed-ups as a chart (.png, .svg or .pdf)")
    parser.epilog = ("Without networks: " + " and ".join(",".join(map(str, sizes))
                                                        for sizes in DEFAULT_SIZES) + ".")
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    specs = [*args.networks, *args.sizes, *args.model]
    _check_activation_options(args, specs)
    plot = _plot_module() if args.plot else None
    networks = [_build_network(args, spec) for spec in specs or DEFAULT_SIZES]
    if args.precision:
        if args.dtype == "float64" and set(args.precision) - {"float32", "float64"}:
            raise CommandError("--precision int8/bfloat16/float16 networks compute in "
                               "float32; leave out --dtype float64")
        networks = [network if precision == network.precision else network.quantize(precision)
                    for network in networks for precision in args.precision]
    rows = benchmark.run(networks, args.batch, None, repeat=args.repeat,
                         progress=_progress)
    print(benchmark.format_table(rows))
    if args.json:
        report = {"machine": benchmark.machine_info(), "results": rows}
        _write_text(args.json, json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    if plot is not None:
        _save_figure(args.plot, _speedup_chart(plot, rows))
    return 0


def _speedup_chart(plot: Any, rows: list[dict[str, Any]]) -> Any:
    """The speed-ups of a benchmark run against NumPy, as ``nnexposed.plot.speedup_chart``."""
    cases = [f"{row['network']} batch {row['batch']:,}" for row in rows]
    speedups = {"nnexposed": [row["speedup_vs_numpy"] for row in rows]}
    if any(row["python_us"] for row in rows):
        speedups["pure Python"] = [row["numpy_us"] / row["python_us"] if row["python_us"]
                                   else None for row in rows]
    title = (f"nnexposed bench, {benchmark.machine_info()['isa']} kernels "
             f"(NumPy = 1, higher is faster)")
    return plot.speedup_chart(cases, speedups, title=title)


def add_summary(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("summary", help="print a network's layer table")
    add_network_arguments(parser, None)
    parser.add_argument("--input", type=_input_values, metavar="VALUES|FILE.npy",
                        help="run these inputs (comma-separated numbers for one sample, or a "
                             ".npy file of samples) and show each layer's output range and "
                             "zero (dead) ReLU units")
    parser.set_defaults(run=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    _check_activation_options(args, [args.network])
    if args.input is not None:
        network = _build_network(args, args.network)
        print(network.summary(_checked_input(network, args.input)))
    elif isinstance(args.network, str):
        print(_build_network(args, args.network).summary())
    else:  # from the sizes alone: a network of any size allocates nothing here
        sizes = args.network
        activations = [args.activation or "relu"] * (len(sizes) - 2)
        print(summary_table(sizes, [*activations, args.output_activation or "linear"],
                            args.dtype or "float32"))
    return 0


def _checked_input(network: Network, values: np.ndarray) -> np.ndarray:
    """--input, refused in one line unless it is (n_in,) or (batch, n_in) real numbers."""
    if values.ndim not in (1, 2) or values.shape[-1] != network.n_in:
        raise CommandError(f"--input: expected {network.n_in} values per sample, as shape "
                           f"({network.n_in},) or (batch, {network.n_in}), got shape "
                           f"{values.shape}")
    if not (np.issubdtype(values.dtype, np.number) and not np.iscomplexobj(values)):
        raise CommandError(f"--input: expected real numbers, got dtype {values.dtype}")
    return values


def add_draw(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("draw", help="draw a network as a picture")
    add_network_arguments(parser, None)
    parser.add_argument("-o", "--output", required=True, type=_picture_file, metavar="FILE",
                        help="the picture to write: .png, .svg or .pdf")
    parser.add_argument("--input", type=_input_values, metavar="VALUES|FILE.npy",
                        help="one sample, e.g. 0.5,-1,2: colours the nodes by their values")
    parser.set_defaults(run=run_draw)


def run_draw(args: argparse.Namespace) -> int:
    _check_activation_options(args, [args.network])
    plot = _plot_module()
    network = _build_network(args, args.network)
    values = None if args.input is None else _checked_input(network, args.input)
    if values is not None and values.ndim != 1:
        raise CommandError(f"--input: draw colours the nodes by one sample, got shape "
                           f"{values.shape}")
    figure = plot.plot_network(network, values)
    _save_figure(args.output, figure)
    return 0


def _ascii_image(image: np.ndarray, width: int = 8) -> list[str]:
    """An 8x8 image in [0, 1] as text, darker characters for more ink."""
    shades = " .:-=+*#%@"
    levels = np.clip((image * (len(shades) - 1)).round().astype(int), 0, len(shades) - 1)
    return ["".join(shades[v] * 2 for v in row) for row in levels.reshape(-1, width)]


def add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="run the shipped digits network: accuracy and latency per image")
    add_repeat_argument(parser)
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
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
    start = benchmark.cpu_times()
    fast_one = 1e6 * benchmark.time_per_call(forward, network, one, repeat=args.repeat)
    numpy_one = 1e6 * benchmark.time_per_call(forward_numpy, network, one, repeat=args.repeat)
    fast_all = 1e6 * benchmark.time_per_call(forward, network, images, repeat=args.repeat)
    numpy_all = 1e6 * benchmark.time_per_call(forward_numpy, network, images, repeat=args.repeat)
    notice = benchmark.busy_notice(benchmark.others_busy(start, benchmark.cpu_times()))
    n = len(images)
    print(f"\nLatency per image (median of {args.repeat} runs):")
    print(f"  {'':<28}{'forward':>10}{'forward_numpy':>16}{'speed-up':>10}")
    for label, fast, slow in [("one image per call", fast_one, numpy_one),
                              (f"all {n} images in one call", fast_all / n, numpy_all / n)]:
        ratio = slow / fast
        print(f"  {label:<28}{fast:>8.2f}µs{slow:>14.2f}µs"
              f"{f'{ratio:.1f}' if ratio >= 1 else f'{ratio:.2f}':>9}x")
    if notice:
        print(f"\n{notice}")
    return 0


def add_info(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "info", help="versions, build and machine (as nnexposed.show_versions())")
    parser.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    show_versions()
    return 0


def _column_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict", help="score the rows of a .npy, .csv or .parquet file into another")
    parser.add_argument("model", type=_model_file, metavar="MODEL",
                        help="a model file written by nnexposed.save")
    parser.add_argument("input", metavar="INPUT",
                        help="rows to score: .npy (a 2-D array), .csv (with a header row) or "
                             ".parquet")
    parser.add_argument("-o", "--output", required=True, type=_output_file, metavar="OUTPUT",
                        help="where to write the outputs: .npy, .csv or .parquet, written "
                             "whole or not at all")
    parser.add_argument("--columns", type=_column_names, metavar="A,B,...",
                        help="the input's feature columns, in the network's order (default: "
                             "all columns)")
    parser.add_argument("--output-columns", type=_column_names, metavar="P,Q,...",
                        help="names of the output columns (default: output_0, output_1, ...)")
    parser.add_argument("--keep-columns", type=_column_names, metavar="ID,...",
                        help="input columns copied to the output before the outputs, e.g. a "
                             "key")
    parser.add_argument("--batch-size", type=_positive_int, default=_predict.DEFAULT_BATCH_SIZE,
                        metavar="N", help=f"rows per batch, which bound the memory used "
                                          f"(default: {_predict.DEFAULT_BATCH_SIZE})")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="threads per forward pass (default: all cores; 1 per task with "
                             "--scheduler)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="compute on the Dask cluster at ADDRESS, e.g. "
                             "tcp://scheduler:8786 (needs nnexposed[dask])")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar (shown on stderr when it is a terminal)")
    parser.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    network = _load_model(args.model)
    try:
        _predict.predict_file(
            network, args.input, args.output, columns=args.columns,
            output_columns=args.output_columns, keep_columns=args.keep_columns,
            batch_size=args.batch_size, threads=args.threads, scheduler=args.scheduler,
            progress=not args.quiet and sys.stderr.isatty())
    except (_predict.PredictError, OSError, ValueError, TypeError) as error:
        raise CommandError(_predict.one_line(error)) from None
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_bench, add_summary, add_draw, add_demo, add_predict, add_info]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nnexposed",
                     description="Multi-layer perceptron forward pass in typed Cython.")
    parser.add_argument("--version", action="version", version=f"nnexposed {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, MemoryError) as error:
        reason = "out of memory: " if isinstance(error, MemoryError) else ""
        print(f"nnexposed {args.command}: error: {reason}{error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nnexposed {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (as `nnexposed info | head -3`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
