"""Pictures: network diagrams and the speed-up chart, rendered to files with Agg."""

import re

import numpy as np
import pytest

import nnexposed

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402

from nnexposed import cli  # noqa: E402
from nnexposed.plot import plot_network, speedup_chart  # noqa: E402
from tests.helpers import cli_error  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) in pixels from a PNG file's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_article_network_node_by_node(tmp_path, article_network):
    figure = article_network.plot()
    assert isinstance(figure, matplotlib.figure.Figure)
    (ax,) = figure.axes
    # One edge per weight, coloured by it; one node per input and neuron.
    edges = [c for c in ax.collections if isinstance(c, LineCollection)]
    weights = [layer.weights.ravel() for layer in article_network]
    np.testing.assert_array_equal(np.concatenate([c.get_array() for c in edges]),
                                  np.concatenate(weights))
    nodes = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in nodes] == list(article_network.sizes)
    texts = {t.get_text() for t in ax.texts}
    assert {"x0", "x1", "x2", "y0", "y1", "input"} <= texts
    figure.savefig(tmp_path / "net.png")
    width, height = png_size(tmp_path / "net.png")
    assert 400 <= width <= 3000 and 200 <= height <= 3000


def test_nodes_coloured_by_one_sample(tmp_path, article_network):
    x = np.array([0.5, -1.0, 2.0])
    figure = article_network.plot(x)
    ax = figure.axes[0]
    values = [c.get_array() for c in ax.collections if isinstance(c, PathCollection)]
    expected = [x.astype(np.float32)] + [v.output for v in article_network.trace(x)]
    assert len(values) == len(expected)
    for got, want in zip(values, expected):
        np.testing.assert_array_equal(got, want)
    assert len(figure.axes) == 2   # and its colour bar
    figure.savefig(tmp_path / "net.svg")
    assert (tmp_path / "net.svg").read_text().lstrip().startswith("<?xml")


def test_wide_network_drawn_as_weight_blocks(tmp_path):
    network = nnexposed.Network.from_sizes([784, 256, 256, 10], seed=0)
    x = np.random.default_rng(0).random(784)
    figure = plot_network(network, x)
    images = figure.axes[0].get_images()
    assert len(images) == 2 * len(network)          # a weight block and a value strip each
    assert images[0].get_array().shape == (256, 784)
    figure.savefig(tmp_path / "wide.png")
    width, height = png_size(tmp_path / "wide.png")
    assert width >= 400 and height >= 300


def test_draws_into_given_axes(article_network):
    figure = matplotlib.figure.Figure()
    ax = figure.add_subplot()
    assert article_network.plot(ax=ax) is figure


def test_bad_input_is_refused(article_network):
    with pytest.raises(ValueError, match=r"one sample: expected x of shape \(3,\), got shape "
                                         r"\(2, 3\)"):
        article_network.plot(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        article_network.plot(np.zeros(4))
    with pytest.raises(TypeError, match="Network"):
        plot_network([[1, 2]])


def test_speedup_chart(tmp_path):
    figure = speedup_chart(["3-5-5-5-2 batch 1", "784-256-256-10 batch 1000"],
                           {"nnexposed": [40.0, 2.1], "python": [0.5, None]}, title="run")
    ax = figure.axes[0]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [0.5, 2.1, 40.0]
    assert ax.get_yscale() == "log"
    figure.savefig(tmp_path / "speedup.png")
    png_size(tmp_path / "speedup.png")
    with pytest.raises(ValueError, match="expected 2 speed-ups for 'x', got 1"):
        speedup_chart(["a", "b"], {"x": [1.0]})


@pytest.mark.parametrize("name", ["net.png", "net.svg", "net.pdf"])
def test_draw_writes_the_picture(tmp_path, name):
    target = tmp_path / name
    assert cli.main(["draw", "3,5,5,5,2", "-o", str(target), "--input", "0.5,-1,2"]) == 0
    assert target.stat().st_size > 1000
    if name.endswith(".png"):
        png_size(target)
    assert [p.name for p in tmp_path.iterdir()] == [name]   # no temporary file left


def test_draw_a_saved_model(tmp_path):
    model = tmp_path / "digits.npz"
    nnexposed.save(nnexposed.examples.digits()[0], model)
    assert cli.main(["draw", str(model), "-o", str(tmp_path / "digits.png")]) == 0
    assert png_size(tmp_path / "digits.png")[0] >= 400


@pytest.mark.parametrize("args, message", [
    (["-o", "{tmp}/x.gif"], "ending in .png, .svg, .pdf, got"),
    (["-o", "{tmp}/missing/x.png"], "no folder"),
    (["-o", "{tmp}/x.png", "--input", "1,2"], r"expected 3 values per sample"),
    (["-o", "{tmp}/x.png", "--input", "1,a,2"], "comma-separated numbers"),
    (["-o", "{tmp}/x.png", "--input", "{tmp}/batch.npy"], "one sample, got shape"),
    (["-o", "{tmp}/x.png", "--activation", "tanh", "{tmp}/model.npz"], "not to a saved model"),
])
def test_draw_errors_are_one_line_and_leave_no_file(tmp_path, capsys, args, message):
    np.save(tmp_path / "batch.npy", np.zeros((4, 3)))
    nnexposed.save(nnexposed.Network.from_sizes([3, 2]), tmp_path / "model.npz")
    before = sorted(tmp_path.iterdir())
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    positional = [] if args[-1].endswith(".npz") else ["3,5,5,5,2"]
    status, err = cli_error(["draw", *positional, *args], capsys)
    assert re.search(message, err), err
    assert sorted(tmp_path.iterdir()) == before


def test_bench_plot_writes_the_chart(tmp_path):
    target = tmp_path / "speedup.png"
    assert cli.main(["bench", "--repeat", "1", "--batch", "1,8", "3,5,2",
                     "--plot", str(target)]) == 0
    width, height = png_size(target)
    assert width >= 400 and height >= 300
