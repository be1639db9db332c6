"""Pictures of a network and of benchmark results (optional extra ``plot``: matplotlib).

``plot_network`` draws a network as the article does: layers as columns of nodes joined by
edges coloured by the weight's sign and drawn thicker for larger magnitudes, nodes coloured by
their values for one input sample. Networks with a layer wider than ``max_nodes`` are drawn as
one block per layer instead: a heat map of its weight matrix (n_out rows, n_in columns).
"""

import numpy as np

from nnexposed.network import LayerNorm

# Diverging colour maps: blue for negative, red for positive, white at zero.
WEIGHT_CMAP = "RdBu_r"
VALUE_CMAP = "RdBu_r"
MAX_NODES = 32


def _matplotlib():
    """matplotlib's Figure class and colour modules, or an ImportError naming the extra."""
    try:
        import matplotlib
        from matplotlib import colors
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError('drawing needs matplotlib: pip install "nnexposed[plot]"') from error
    return matplotlib, colors, LineCollection, Figure


def _axes(ax, figsize):
    """(figure, axes): ``ax`` and its figure, or a new figure of ``figsize`` inches."""
    _, _, _, Figure = _matplotlib()
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=figsize, dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _symmetric_norm(colors, values):
    limit = float(np.nanmax(np.abs(values))) if np.size(values) else 0.0
    if not np.isfinite(limit) or limit == 0:
        limit = 1.0
    return colors.Normalize(-limit, limit)


def _one_sample(network, x):
    """The node values of every column (input, then each layer's output) for one sample."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"plot draws one sample: expected x of shape ({network.n_in},), "
                         f"got shape {x.shape}")
    values = network.trace(x)
    return [np.asarray(x, dtype=network.dtype)] + [layer.output for layer in values]


def plot_network(network, x=None, *, ax=None, max_nodes=MAX_NODES):
    """Draw ``network``: node by node, or as weight-matrix blocks when a layer is wide.

    Parameters
    ----------
    network : Network
        The network to draw.
    x : array_like, shape (n_in,), optional
        One input sample: nodes are then coloured by their values (the input, then each
        layer's output).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    max_nodes : int
        Widest layer drawn node by node; wider networks are drawn as blocks.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into (``ax.figure`` when ``ax`` is given).
    """
    from nnexposed.network import Network

    if not isinstance(network, Network):
        raise TypeError(f"expected a nnexposed.Network, got {type(network).__name__}")
    columns = None if x is None else _one_sample(network, x)
    if max(network.sizes) <= max_nodes:
        return _draw_nodes(network, columns, ax)
    return _draw_blocks(network, columns, ax)


def _node_positions(sizes):
    """(x, y) of every node, column by column, each column centred on y = 0."""
    return [np.column_stack([np.full(n, float(k)), (n - 1) / 2 - np.arange(n, dtype=float)])
            for k, n in enumerate(sizes)]


def _weight_matrix(layer):
    """A layer's (n_out, n_in) weights in float64; a LayerNorm's per-feature weight as the
    diagonal matrix it multiplies the normalised features by."""
    if isinstance(layer, LayerNorm):
        return np.diag(layer.weight.astype(np.float64))
    return layer.weights.astype(np.float64)


def _layer_titles(network):
    return ["input"] + [f"{layer.activation}" for layer in network.layers]


def _draw_nodes(network, columns, ax):
    _, colors, LineCollection, _ = _matplotlib()
    sizes = network.sizes
    height = max(sizes)
    figure, ax = _axes(ax, (1.6 * len(sizes) + 1.5, 0.45 * height + 1.8))
    positions = _node_positions(sizes)
    for k, layer in enumerate(network.layers):
        weights = _weight_matrix(layer)
        norm = _symmetric_norm(colors, weights)
        starts = np.repeat(positions[k][None, :, :], layer.n_out, axis=0).reshape(-1, 2)
        ends = np.repeat(positions[k + 1], layer.n_in, axis=0)
        magnitude = np.abs(weights).ravel() / norm.vmax
        edges = LineCollection(np.stack([starts, ends], axis=1), cmap=WEIGHT_CMAP, norm=norm,
                               linewidths=0.3 + 2.7 * magnitude, alpha=0.8, zorder=1)
        edges.set_array(weights.ravel())
        ax.add_collection(edges)
    if columns is None:
        for position in positions:
            ax.scatter(position[:, 0], position[:, 1], s=260, c="white", edgecolors="black",
                       linewidths=1.0, zorder=2)
    else:
        norm = _symmetric_norm(colors, np.concatenate(columns))
        for position, values in zip(positions, columns):
            points = ax.scatter(position[:, 0], position[:, 1], s=260, c=values,
                                cmap=VALUE_CMAP, norm=norm, edgecolors="black",
                                linewidths=1.0, zorder=2)
        figure.colorbar(points, ax=ax, label="node value", shrink=0.6)
    for k, title in enumerate(_layer_titles(network)):
        ax.text(k, (height - 1) / 2 + 0.9, title, ha="center", va="bottom", fontsize=9)
    for i, (x_pos, y_pos) in enumerate(positions[0]):
        ax.text(x_pos - 0.18, y_pos, f"x{i}", ha="right", va="center", fontsize=8)
    for j, (x_pos, y_pos) in enumerate(positions[-1]):
        ax.text(x_pos + 0.18, y_pos, f"y{j}", ha="left", va="center", fontsize=8)
    ax.set_xlim(-0.7, len(sizes) - 0.3)
    ax.set_ylim(-(height - 1) / 2 - 0.7, (height - 1) / 2 + 1.6)
    ax.set_axis_off()
    ax.set_title(f"Network {'-'.join(map(str, sizes))}, {network.n_params:,} parameters "
                 "(edges: red positive, blue negative weights)", fontsize=10)
    return figure


def _draw_blocks(network, columns, ax):
    _, colors, _, _ = _matplotlib()
    sizes = network.sizes
    n_layers = len(network.layers)
    figure, ax = _axes(ax, (2.6 * n_layers + 2.0, 5.2))
    tallest = max(layer.n_out for layer in network.layers)
    step = 3.0  # block k spans x in [step * k, step * k + 1.2]
    for k, layer in enumerate(network.layers):
        # The block's height follows the layer's width (n_out).
        half = 0.3 + 1.7 * layer.n_out / tallest
        left = step * k
        weights = _weight_matrix(layer)
        ax.imshow(weights, cmap=WEIGHT_CMAP, norm=_symmetric_norm(colors, weights),
                  extent=(left, left + 1.2, -half, half), aspect="auto",
                  interpolation="nearest")
        ax.text(left + 0.6, half + 0.12, f"{layer.n_in} -> {layer.n_out}\n{layer.activation}",
                ha="center", va="bottom", fontsize=9)
        if columns is not None:
            values = columns[k + 1].astype(np.float64)[:, None]
            ax.imshow(values, cmap=VALUE_CMAP, norm=_symmetric_norm(colors, values),
                      extent=(left + 1.35, left + 1.55, -half, half), aspect="auto",
                      interpolation="nearest")
        ax.annotate("", xy=(left - 0.1, 0), xytext=(left - 1.25, 0),
                    arrowprops={"arrowstyle": "->", "color": "gray"})
    end = step * (n_layers - 1) + 1.75
    ax.annotate("", xy=(end + 0.9, 0), xytext=(end, 0),
                arrowprops={"arrowstyle": "->", "color": "gray"})
    ax.text(-1.35, 0, f"input\n{sizes[0]}", ha="right", va="center", fontsize=9)
    ax.text(end + 1.0, 0, f"output\n{sizes[-1]}", ha="left", va="center", fontsize=9)
    ax.set_xlim(-2.6, end + 2.2)
    ax.set_ylim(-2.2, 2.8)
    ax.set_axis_off()
    note = "; strips: layer outputs" if columns is not None else ""
    ax.set_title(f"Network {'-'.join(map(str, sizes))}, {network.n_params:,} parameters\n"
                 f"(weight matrices, rows = output neurons; red positive, blue negative{note})",
                 fontsize=9)
    return figure


def speedup_chart(cases, speedups, *, title="", ax=None):
    """A bar chart of speed-ups against NumPy by case, one bar per implementation (log scale).

    Parameters
    ----------
    cases : sequence of str, length n_cases
        The label of each case (e.g. "784-256-256-10 batch 1").
    speedups : dict of str to sequence of float or None, each of length n_cases
        Per implementation, NumPy's time divided by its time for each case (None: not run).
    title : str
        The chart's title.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, ax = _axes(ax, (max(6.0, 1.1 * len(cases) + 2), 4.8))
    width = 0.8 / max(1, len(speedups))
    for k, (label, values) in enumerate(speedups.items()):
        if len(values) != len(cases):
            raise ValueError(f"expected {len(cases)} speed-ups for {label!r}, got {len(values)}")
        points = [(i + (k - (len(speedups) - 1) / 2) * width, value)
                  for i, value in enumerate(values) if value]
        if points:
            xs, heights = zip(*points)
            ax.bar(xs, heights, width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([case.replace(" batch ", "\nbatch ") for case in cases], fontsize=8)
    ax.set_ylabel("speed-up vs NumPy (NumPy time / time)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=max(1, len(speedups)), loc="upper center",
              bbox_to_anchor=(0.5, -0.15), frameon=False)
    return figure
