"""Error of reduced-precision networks against float32, nnexposed and its peers side by side.

    python bench/accuracy.py [--peers]

For random networks (ReLU hidden, linear output, the benchmark's N2-N4 with standard normal
inputs) and the shipped digits network (its 300 held-out images): the largest absolute error
of the outputs against the float32 network's, relative to the largest float32 output
(max |y - y32| / max |y32|), and for digits the top-1 accuracy. With --peers, the same for
ONNX Runtime's quantize_dynamic (QInt8), torch.ao.quantization.quantize_dynamic (qint8) and
torch bfloat16 (``pip install '.[bench]'``). Prints a Markdown table (docs/quantization.md).
"""

import argparse
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import peers  # noqa: E402

from nnexposed import Network  # noqa: E402
from nnexposed.examples import digits  # noqa: E402

PRECISIONS = ["int8", "bfloat16", "float16"]
RANDOM = {"N2 64-128-128-10": (64, 128, 128, 10), "N3 784-256-256-10": (784, 256, 256, 10),
          "N4 4096-4096": (4096, 4096)}
BATCH = 1024


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def peer_outputs(network, x):
    """{peer name: output} of the quantized peers on float32 ``network`` and inputs x."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        plain, quantized = f"{folder}/model.onnx", f"{folder}/int8.onnx"
        onnx.save(peers.onnx_model(network), plain)
        quantize_dynamic(plain, quantized, weight_type=QuantType.QInt8)
        session = ort.InferenceSession(quantized, providers=["CPUExecutionProvider"])
        results["ORT int8"] = session.run(["y"], {"x": x})[0]
    model = peers.build_torch(network, x).call
    with torch.inference_mode():
        int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                      dtype=torch.qint8)
        results["torch int8"] = int8(torch.from_numpy(x)).numpy()
        results["torch bf16"] = model.to(torch.bfloat16)(
            torch.from_numpy(x).to(torch.bfloat16)).float().numpy()
    return results


def rows(with_peers):
    rng = np.random.default_rng(0)
    cases = []
    for name, sizes in RANDOM.items():
        network = Network.from_sizes(list(sizes), seed=0)
        x = rng.standard_normal((BATCH, sizes[0])).astype(np.float32)
        cases.append((name, network, x, None))
    network, images, labels = digits()
    cases.append(("digits 64-64-32-10 (trained)", network, images, labels))
    for name, network, x, labels in cases:
        expected = network(x)
        outputs = {f"nnexposed {p}": network.quantize(p)(x) for p in PRECISIONS}
        if with_peers:
            try:
                outputs.update(peer_outputs(network, x))
            except (ImportError, peers.Unavailable) as error:
                print(f"peers skipped: {error}", file=sys.stderr)
        cells = {key: f"{100 * relative_error(y, expected):.2f}%" for key, y in outputs.items()}
        if labels is not None:
            accuracy = {key: np.mean(y.argmax(axis=1) == labels) for key, y in outputs.items()}
            cells = {key: f"{cells[key]} (acc. {100 * accuracy[key]:.1f}%)" for key in cells}
            name += f", float32 acc. {100 * np.mean(expected.argmax(axis=1) == labels):.1f}%"
        yield name, cells


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", action="store_true", help="also ORT and torch")
    args = parser.parse_args(argv)
    table = list(rows(args.peers))
    columns = list(dict.fromkeys(key for _, cells in table for key in cells))
    print("| network | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, cells in table:
        print(f"| {name} | " + " | ".join(cells.get(c, "—") for c in columns) + " |")


if __name__ == "__main__":
    main()
