"""Network.trace: every layer's pre-activation and output, against the NumPy reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnexposed
from nnexposed import Dense, Network
from nnexposed.network import LayerValues
from nnexposed.reference import forward_numpy, trace_numpy
from tests.helpers import ALL_ACTIVATIONS, DTYPES, assert_close, random_network


def assert_trace_matches_reference(network, x):
    traced = network.trace(x)
    expected = trace_numpy(network, x)
    assert len(traced) == len(network.layers)
    for k, (got, want) in enumerate(zip(traced, expected)):
        assert isinstance(got, LayerValues)
        for name in ("pre_activation", "output"):
            actual = getattr(got, name)
            assert actual.flags.c_contiguous and actual.flags.writeable, (k, name)
            assert_close(actual, getattr(want, name), network.dtype)
    return traced


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 70), min_size=2, max_size=5),
       batch=st.sampled_from([None, 0, 1, 2, 3, 4, 31, 32, 33, 65]),
       dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_trace_equals_reference_layer_by_layer(sizes, batch, dtype, seed, data):
    rng = np.random.default_rng(seed)
    activations = data.draw(st.lists(st.sampled_from(ALL_ACTIVATIONS),
                                     min_size=len(sizes) - 1, max_size=len(sizes) - 1))
    network = random_network(rng, sizes, activations, dtype)
    shape = (sizes[0],) if batch is None else (batch, sizes[0])
    x = rng.standard_normal(shape)
    traced = assert_trace_matches_reference(network, x)
    out_shape = (sizes[-1],) if batch is None else (batch, sizes[-1])
    assert traced[-1].output.shape == out_shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [None, 1, 3, 4, 100])
def test_last_output_is_the_forward_pass_bit_for_bit(rng, dtype, batch):
    """Same kernels, same order of operations: trace's last output is forward's result.
    (Widths below BLAS's threshold, so no build hands layers to BLAS.)"""
    network = random_network(rng, [20, 70, 64, 9], ["relu", "tanh", "softmax"], dtype)
    x = rng.standard_normal((20,) if batch is None else (batch, 20))
    traced = network.trace(x)
    np.testing.assert_array_equal(traced[-1].output, network(x))
    for k in range(len(network)):
        np.testing.assert_array_equal(traced[k].output, network[:k + 1](x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_give_the_same_values(rng, dtype):
    """Batch 256 through 256-256-256 layers: 33 million multiply-adds, shared among threads
    when threads allows, each tile the same arithmetic whichever thread computes it."""
    network = random_network(rng, [256, 256, 256, 8], ["relu", "gelu", "linear"], dtype)
    x = rng.standard_normal((256, 256))
    one = network.trace(x, threads=1)
    two = network.trace(x, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.pre_activation, b.pre_activation)
        np.testing.assert_array_equal(a.output, b.output)
    assert_trace_matches_reference(network, x)


def test_pre_activation_and_output_of_the_article_network(article_network):
    x = np.array([0.5, -1.0, 2.0])
    traced = nnexposed.trace(article_network, x)
    values = x.astype(np.float32)
    for layer, (pre, out) in zip(article_network.layers, traced):
        np.testing.assert_allclose(pre, layer.weights @ values + layer.biases, rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_array_equal(out, np.maximum(pre, 0) if layer.activation == "relu"
                                      else pre)
        values = out


def test_nan_and_inf_propagate_as_in_the_reference(rng):
    network = random_network(rng, [4, 6, 3], ["relu", "softmax"], np.float64)
    x = rng.standard_normal((40, 4))
    x[3, 1] = np.nan
    x[7, 0] = np.inf
    x[9, 2] = -np.inf
    traced = network.trace(x)
    with np.errstate(invalid="ignore"):
        expected = trace_numpy(network, x)
    for got, want in zip(traced, expected):
        np.testing.assert_array_equal(np.isnan(got.output), np.isnan(want.output))
        np.testing.assert_array_equal(np.isnan(got.pre_activation),
                                      np.isnan(want.pre_activation))
    assert np.isnan(traced[-1].output[3]).all()


def test_input_is_cast_and_checked(rng):
    network = random_network(rng, [3, 4, 2], ["relu", "linear"], np.float32)
    x = np.asfortranarray(rng.standard_normal((10, 3)))[::-1]   # float64, odd layout
    traced = network.trace(x)
    assert traced[0].output.dtype == np.float32
    assert_close(traced[-1].output, forward_numpy(network, x), np.float32)
    assert_close(network.trace(x.tolist())[-1].output, forward_numpy(network, x), np.float32)
    with pytest.raises(ValueError, match=r"expected x of shape \(3,\) or \(batch, 3\), "
                                         r"got shape \(10, 4\)"):
        network.trace(np.zeros((10, 4)))
    with pytest.raises(TypeError):
        network.trace(np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="threads"):
        network.trace(np.zeros(3), threads=0)
    with pytest.raises(TypeError, match="Network"):
        nnexposed.trace("not a network", np.zeros(3))


def test_empty_batch_gives_empty_layers(rng):
    network = random_network(rng, [3, 4, 2], ["relu", "linear"], np.float64)
    traced = network.trace(np.zeros((0, 3)))
    assert [v.output.shape for v in traced] == [(0, 4), (0, 2)]
    assert [v.pre_activation.shape for v in traced] == [(0, 4), (0, 2)]


def test_layer_values_unpack_as_pairs(rng):
    network = Network([Dense(np.eye(2), [1.0, -5.0], "relu")])
    ((pre, out),) = network.trace([1.0, 2.0])
    np.testing.assert_array_equal(pre, [2.0, -3.0])
    np.testing.assert_array_equal(out, [2.0, 0.0])


def test_summary_with_inputs_shows_ranges_and_dead_units():
    # Layer 0: unit 0 always positive, unit 1 always zero (dead), unit 2 zero for x < 0.
    network = Network([Dense([[0.0], [0.0], [1.0]], [1.0, -1.0, 0.0], "relu"),
                       Dense([[1.0, 1.0, 1.0]], [0.0], "sigmoid")])
    x = np.array([[-2.0], [-1.0], [1.0], [3.0]])
    rows = {line.split()[0]: line for line in network.summary(x).splitlines()
            if line.startswith("dense_")}
    assert rows["dense_0"].split()[-4:] == ["..", "3", "50.0%", "1/3"]   # 6 of 12 zero
    assert rows["dense_0"].split()[-5] == "0"
    assert rows["dense_1"].split()[-2:] == ["-", "-"]
    assert "Output range" in network.summary(x) and "Output range" not in network.summary()

