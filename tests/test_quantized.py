"""Reduced-precision networks: Network.quantize, the int8/bfloat16/float16 kernels of every
kernel set this CPU runs against the NumPy reference, the accuracy contract, files."""

import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import nnexposed
from nnexposed import Dense, Network, _quantized
from nnexposed.examples import digits
from nnexposed.precision import (
    INT8_MAX_INPUTS,
    int8_matmul_reference,
    quantize_inputs,
    quantize_weights,
)
from nnexposed.reference import forward_numpy, forward_python
from tests.helpers import ALL_ACTIVATIONS, random_network

ml_dtypes = pytest.importorskip("ml_dtypes")

PRECISIONS = ["int8", "bfloat16", "float16"]
KERNEL_SETS = _quantized.supported_kernel_sets()
# Activations that the kernels and NumPy compute to the same bits; after the others (exp,
# tanh, erf: different implementations) a later int8 layer may quantize an input one level
# apart, so those are compared within the accuracy bound instead.
EXACT_ACTIVATIONS = ["linear", "relu", "leaky_relu"]
SHAPES = [(3, 5, 5, 5, 2), (1, 1), (7, 1, 9), (33, 70, 9), (64, 128, 128, 10), (130, 67, 200, 3),
          (2085, 40, 5)]
# (4133, 40, 5): a block of 128 samples takes the int8 inputs in 2 chunks of groups of 4
INT8_SHAPES = SHAPES + [(4133, 40, 5)]
BATCHES = [1, 2, 3, 4, 31, 33, 200]


@pytest.fixture(params=KERNEL_SETS)
def kernel_set(request):
    previous = _quantized.use_kernel_set(request.param)
    yield request.param
    _quantized.use_kernel_set(previous)


def relative_error(actual, expected):
    return np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30)


# --------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
def test_quantize_makes_a_new_network(precision):
    network = Network.from_sizes([20, 30, 4], seed=0)
    quantized = network.quantize(precision)
    assert quantized is not network and network.precision == "float32"
    assert quantized.precision == precision and quantized.dtype == np.float32
    assert quantized.sizes == network.sizes
    assert [layer.activation for layer in quantized.layers] == ["relu", "linear"]
    stored = {"int8": np.int8, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}[precision]
    for layer, original in zip(quantized.layers, network.layers):
        assert layer.weights.dtype == stored and layer.precision == precision
        assert layer.biases.dtype == np.float32
        assert not layer.weights.flags.writeable
        assert (layer.scales is not None) == (precision == "int8")
        np.testing.assert_array_equal(layer.biases, original.biases)
    weights = sum(layer.weights.size for layer in network.layers)
    biases = sum(layer.biases.size for layer in network.layers)
    scales = sum(layer.n_out for layer in network.layers) if precision == "int8" else 0
    itemsize = 1 if precision == "int8" else 2
    # the kernels' own copies: 20-30-4 -> int8 row sums; panels of 16 neurons (32 and 16)
    # where the CPU has the instructions that read them, else the weights padded to 20 and 32
    # inputs
    supported = _quantized.supported_kernel_sets()
    vnni = "avx512_vnni" in supported
    copies = {"int8": 4 * 34 + (32 * 20 + 16 * 32 if vnni else 30 * 20 + 4 * 32),
              "bfloat16": ("avx512_bf16" in supported) * 4 * (32 * 10 + 16 * 15),
              "float16": 0}[precision]
    assert quantized.nbytes == weights * itemsize + 4 * biases + 4 * scales + copies
    assert network.nbytes == 4 * (weights + biases)
    assert precision in repr(quantized) and precision in quantized.summary()
    assert f"{quantized.nbytes:,} bytes" in quantized.summary()


def test_int8_weights_are_symmetric_per_output_neuron(rng):
    weights = rng.standard_normal((40, 30)) * rng.uniform(0.01, 10, (40, 1))
    weights[3] = 0
    q, scales = quantize_weights(weights, "int8")
    assert q.dtype == np.int8 and scales.dtype == np.float32 and scales.shape == (40,)
    assert np.abs(q).max() == 127 and q.min() >= -127
    np.testing.assert_allclose(scales[np.arange(40) != 3],
                               np.abs(weights).max(axis=1)[np.arange(40) != 3] / 127,
                               rtol=1e-7)
    assert scales[3] == 1 and not q[3].any()
    error = np.abs(q * scales.astype(np.float64)[:, None] - weights)
    assert np.all(error <= scales[:, None] / 2 * (1 + 1e-6))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_astype_dequantizes_and_requantizing_is_stable(precision):
    quantized = Network.from_sizes([9, 12, 3], seed=1).quantize(precision)
    restored = quantized.astype("float32")
    assert restored.precision == "float32"
    for layer, back in zip(quantized.layers, restored.layers):
        scales = 1 if layer.scales is None else layer.scales[:, None]
        np.testing.assert_array_equal(back.weights, layer.weights.astype(np.float32) * scales)
    again = restored.quantize(precision)
    for a, b in zip(again.layers, quantized.layers):
        np.testing.assert_array_equal(a.weights.view(np.uint8), b.weights.view(np.uint8))


def test_quantize_bad_arguments():
    network = Network.from_sizes([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="unknown precision 'int4'; expected one of"):
        network.quantize("int4")
    with pytest.raises(TypeError, match="precision must be a name"):
        network.quantize(8)
    assert network.quantize("float64").dtype == np.float64
    bad = Network([Dense(np.array([[np.inf, 1.0]]), [0.0])])
    with pytest.raises(ValueError, match="cannot quantize non-finite weights to int8"):
        bad.quantize("int8")
    huge = Network([Dense(np.array([[1e6, 1.0]]), [0.0])])
    with pytest.raises(ValueError, match="overflow float16"):
        huge.quantize("float16")


def test_dense_of_stored_weights():
    q = np.array([[1, -127, 5], [0, 2, 127]], np.int8)
    layer = Dense(q, [0.5, -1], "relu", scales=[0.1, 0.2])
    assert layer.precision == "int8" and layer.scales.dtype == np.float32
    half = Dense(np.ones((2, 3), np.float16), None, precision="float16")
    assert half.precision == "float16" and half.weights.dtype == np.float16
    assert Dense(np.ones((2, 3), np.float16), None).precision == "float32"   # as before
    assert Dense(np.ones((2, 3), np.int8), None).precision == "float64"      # plain integers
    brain = Dense(np.ones((2, 3), ml_dtypes.bfloat16), None)
    assert brain.precision == "bfloat16" and brain.weights.dtype == ml_dtypes.bfloat16
    with pytest.raises(ValueError, match=r"expected scales of shape \(2,\)"):
        Dense(q, None, scales=[1.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        Dense(q, None, scales=[1.0, -1.0])
    with pytest.raises(TypeError, match="int8 layers take weights of dtype int8, got float64"):
        Dense(np.ones((2, 3)), None, scales=[1.0, 1.0])
    with pytest.raises(ValueError, match="scales are for int8 layers"):
        Dense(np.ones((2, 3), np.float16), None, scales=[1.0, 1.0], precision="float16")
    with pytest.raises(ValueError, match=f"at most {INT8_MAX_INPUTS} inputs"):
        Dense(np.zeros((1, INT8_MAX_INPUTS + 1), np.int8), None, scales=[1.0])


def test_layers_of_one_precision_only():
    int8 = Network.from_sizes([3, 4], seed=0).quantize("int8").layers[0]
    half = Network.from_sizes([4, 2], seed=0).quantize("float16").layers[0]
    with pytest.raises(ValueError, match="must share its precision, got int8, float16"):
        Network([int8, half])
    with pytest.raises(ValueError, match="must share its precision, got int8, float32"):
        Network([int8, Dense(np.ones((2, 4), np.float32), None)])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_pickle_round_trip(precision):
    quantized = Network.from_sizes([5, 6, 2], seed=3).quantize(precision)
    copy = pickle.loads(pickle.dumps(quantized))
    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    assert copy.precision == precision
    np.testing.assert_array_equal(copy(x), quantized(x))


# --------------------------------------------------------------------------------------------
# The kernels against the reference
# --------------------------------------------------------------------------------------------


def test_quantize_inputs_per_sample():
    x = np.array([[0.0, 1.0, -0.5, 0.25], [0, 0, 0, 0], [2, 3, 4, 5], [np.nan, 1, 2, 3],
                  [-np.inf, 1, 2, 3]], np.float32)
    q, scale, zero_point = quantize_inputs(x)
    assert q.dtype == np.uint8 and scale.dtype == np.float32 and zero_point.dtype == np.int32
    assert scale[0] == np.float32(1.5) / 255 and zero_point[0] == 85
    np.testing.assert_allclose((q[0] - 85.0) * scale[0], x[0], atol=scale[0] / 2)
    assert scale[1] == 0 and not q[1].any()
    assert zero_point[2] == 0 and q[2, -1] == 255            # the range always holds 0
    assert np.isnan(scale[3]) and np.isnan(scale[4])


@pytest.mark.parametrize("sizes", INT8_SHAPES)
@pytest.mark.parametrize("activation", EXACT_ACTIVATIONS)
def test_int8_kernels_match_the_reference_bit_for_bit(kernel_set, rng, sizes, activation):
    network = random_network(rng, sizes, [activation] * (len(sizes) - 2) + ["linear"],
                             np.float32).quantize("int8")
    for batch in BATCHES:
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32) * 3
        np.testing.assert_array_equal(network(x), forward_numpy(network, x))
        np.testing.assert_array_equal(network(x[0]), forward_numpy(network, x[0]))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_every_activation_of_a_last_layer(kernel_set, rng, precision, activation):
    """One layer: no later quantization, so every activation matches the reference."""
    sizes = (45, 70)
    network = random_network(rng, sizes, [activation], np.float32).quantize(precision)
    for batch in (1, 5, 70):
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        np.testing.assert_allclose(network(x), forward_numpy(network, x), rtol=2e-5,
                                   atol=2e-5 * np.abs(forward_numpy(network, x)).max())


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
@pytest.mark.parametrize("sizes", SHAPES)
def test_half_kernels_match_the_reference(kernel_set, rng, precision, sizes):
    network = random_network(rng, sizes, ["relu"] * (len(sizes) - 2) + ["softmax"],
                             np.float32).quantize(precision)
    for batch in BATCHES:
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        expected = forward_numpy(network, x)
        np.testing.assert_allclose(network(x), expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(network(x[-1]), expected[-1], rtol=1e-4, atol=1e-6)


# (2085, 40, 5): a block of 128 samples takes the 1,043 input pairs in chunks of 1,024
BF16_SHAPES = [(1, 1), (2, 16), (3, 17), (31, 33), (32, 15), (33, 16, 47), (64, 65),
               (129, 48, 300, 7), (2085, 40, 5)]


@pytest.mark.skipif("avx512_bf16" not in KERNEL_SETS, reason="this CPU has no AVX-512 BF16")
@pytest.mark.parametrize("sizes", BF16_SHAPES)
def test_bfloat16_dot_kernels_round_inputs_and_give_one_sample_the_batch_bits(rng, sizes):
    previous = _quantized.use_kernel_set("avx512_bf16")
    try:
        assert _quantized.rounds_bfloat16_inputs()
        network = random_network(rng, sizes, ["relu"] * (len(sizes) - 2) + ["linear"],
                                 np.float32).quantize("bfloat16")
        for batch in (1, 2, 15, 16, 17, 33, 129, 300):
            x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
            y = network(x)
            for threads in (1, 2):
                np.testing.assert_array_equal(network.forward(x, threads=threads), y)
            np.testing.assert_array_equal(np.array([network(row) for row in x]), y)
            expected = forward_numpy(network, x, bfloat16_inputs=True)
            np.testing.assert_allclose(y, expected, rtol=1e-4,
                                       atol=1e-5 * max(np.abs(expected).max(), 1))
    finally:
        _quantized.use_kernel_set(previous)


@pytest.mark.skipif("avx512_bf16" not in KERNEL_SETS, reason="this CPU has no AVX-512 BF16")
def test_bfloat16_dot_kernels_within_the_rounding_bound_of_their_inputs(rng):
    """Against float32 inputs: each input rounds by at most 2**-8 of itself, and n_in float32
    additions add at most n_in * 2**-24 of the sum of |products| each (doubled for margin)."""
    previous = _quantized.use_kernel_set("avx512_bf16")
    try:
        worst = 0.0
        for n_in, n_out in [(1, 3), (17, 40), (300, 33), (1024, 16)]:
            network = random_network(rng, (n_in, n_out), ["linear"], np.float32)
            network = network.quantize("bfloat16")
            x = rng.standard_normal((70, n_in)).astype(np.float32) * 10
            weights = network.layers[0].weights.astype(np.float64)
            magnitude = np.abs(x.astype(np.float64)) @ np.abs(weights).T
            bound = (2.0**-8 + n_in * 2.0**-23) * magnitude + 2.0**-23 * np.abs(
                network.layers[0].biases)
            error = np.abs(network(x) - forward_numpy(network, x, bfloat16_inputs=False))
            assert np.all(error <= bound), (error / bound).max()
            worst = max(worst, (error / bound).max())
        assert worst > 0.01      # the inputs are rounded: the bound is not vacuous
    finally:
        _quantized.use_kernel_set(previous)


def test_forward_python_of_half_networks(rng):
    """forward_python widens the weights and keeps float32 inputs: so do the kernel sets
    other than avx512_bf16."""
    network = random_network(rng, (6, 5, 3), ["tanh", "sigmoid"], np.float32)
    previous = _quantized.use_kernel_set(KERNEL_SETS[0] if KERNEL_SETS[0] != "avx512_bf16"
                                         else KERNEL_SETS[1])
    try:
        for precision in ("bfloat16", "float16"):
            x = rng.standard_normal((4, 6))
            quantized = network.quantize(precision)
            np.testing.assert_allclose(forward_python(quantized, x), quantized(x), rtol=1e-5)
    finally:
        _quantized.use_kernel_set(previous)
    with pytest.raises(ValueError, match="forward_numpy is the reference of int8"):
        forward_python(network.quantize("int8"), x)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_out_threads_and_input_conversion(kernel_set, rng, precision):
    network = Network.from_sizes([300, 400, 300, 20], seed=2).quantize(precision)
    x = rng.standard_normal((300, 300))
    expected = network(x.astype(np.float32))
    out = np.empty((300, 20), np.float32)
    assert network.forward(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    for threads in (1, 2, 5):
        np.testing.assert_array_equal(network.forward(x, threads=threads), expected)
        one = nnexposed.forward(network, x[:1], threads=threads)
        if precision == "int8":
            np.testing.assert_array_equal(one, expected[:1])
        else:   # one sample sums in another order than a batch
            np.testing.assert_allclose(one, expected[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(network(np.asfortranarray(x)[::-1][::-1]), expected)
    np.testing.assert_array_equal(network(x.tolist()[:8]), network(x[:8]))
    assert network(np.empty((0, 300))).shape == (0, 20)
    with pytest.raises(ValueError, match=r"expected x of shape \(300,\) or \(batch, 300\)"):
        network(x[:, :20])
    with pytest.raises(TypeError, match="out must have dtype float32, got float64"):
        network.forward(x, out=np.empty((300, 20)))
    with pytest.raises(ValueError, match=r"out must have shape \(300, 20\)"):
        network.forward(x, out=np.empty((299, 20), np.float32))
    with pytest.raises(TypeError, match="expected x of real numbers"):
        network(np.ones((2, 300), complex))


def test_one_sample_layers_shared_among_threads(rng):
    network = Network.from_sizes([1100, 1000, 10], seed=4)
    x = rng.standard_normal(1100).astype(np.float32)
    for precision in PRECISIONS:
        quantized = network.quantize(precision)
        np.testing.assert_array_equal(quantized.forward(x, threads=2),
                                      quantized.forward(x, threads=1))
        np.testing.assert_allclose(quantized(x), forward_numpy(quantized, x), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_workspace_is_kept_between_calls_and_shared_by_python_threads(kernel_set, rng,
                                                                      precision):
    network = Network.from_sizes([70, 130, 9], seed=6).quantize(precision)
    batches = [rng.standard_normal((n, 70)).astype(np.float32) for n in (300, 1, 40)]
    # each from a network of its own, whose workspace never held another call's blocks
    expected = [Network(network.layers)(x, threads=2) for x in batches]
    assert network._compiled.workspace_nbytes == 0
    np.testing.assert_array_equal(network(batches[0], threads=2), expected[0])
    kept = network._compiled.workspace_nbytes
    assert kept > 0
    for _ in range(2):
        for x, y in zip(batches, expected):
            np.testing.assert_array_equal(network(x, threads=2), y)
            assert network._compiled.workspace_nbytes == kept
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: network(batches[k % 3], threads=2), range(24)))
    for k, y in enumerate(results):
        np.testing.assert_array_equal(y, expected[k % 3])
    assert network._compiled.workspace_nbytes == kept


@pytest.mark.parametrize("precision", PRECISIONS)
def test_nan_and_inf_inputs_poison_their_sample_only(kernel_set, precision):
    network = Network.from_sizes([8, 16, 3], seed=5).quantize(precision)
    x = np.ones((40, 8), np.float32)
    x[3, 2] = np.nan
    x[7, 0] = np.inf
    for batch in (x, x[3:4]):
        y = network(batch)
        bad = np.isnan(batch).any(axis=1) | np.isinf(batch).any(axis=1)
        assert np.isfinite(y[~bad]).all()
        if precision == "int8":      # the sample has no scale: all its outputs are NaN
            assert np.isnan(y[bad]).all()
        else:                        # as float32 arithmetic propagates them
            with np.errstate(invalid="ignore"):
                np.testing.assert_array_equal(y, forward_numpy(network, batch))


def test_zero_input_gives_the_biases_effect(kernel_set):
    layer = Dense(np.ones((3, 4), np.float32), [1.0, -2.0, 0.5])
    network = Network([layer]).quantize("int8")
    np.testing.assert_array_equal(network(np.zeros((5, 4))), np.tile([1.0, -2.0, 0.5], (5, 1)))


def test_kernel_sets():
    assert KERNEL_SETS[-1] == "baseline"
    assert _quantized.kernel_set() in KERNEL_SETS
    with pytest.raises(ValueError, match="unknown kernel set 'sse'"):
        _quantized.use_kernel_set("sse")
    assert _quantized.default_kernel_set("baseline") == "baseline"
    assert _quantized.default_kernel_set("avx2") in ("avx2", "baseline")


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_nnexposed_isa_chooses_the_kernel_set(isa):
    env = {**os.environ, "NNEXPOSED_ISA": isa}
    code = ("import warnings; warnings.simplefilter('ignore'); "
            "from nnexposed import _dispatch, _quantized; "
            "print(_dispatch.ISA, _quantized.kernel_set())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    float_isa, kernels = result.stdout.split()
    assert kernels == _quantized.default_kernel_set(float_isa)
    if float_isa == "avx512":
        assert kernels in ("avx512_bf16", "avx512_vnni", "avx512")


# --------------------------------------------------------------------------------------------
# Accuracy contract
# --------------------------------------------------------------------------------------------


def int8_layer_bound(x, layer, float_weights):
    """|int8 layer - float32 layer| per output, before the activation: inputs off by at most
    one level (scale_x) each, weights by half a level (scale_j / 2), both together, plus
    float32 rounding of the sums."""
    _, x_scale, _ = quantize_inputs(x)
    abs_x = np.abs(x).astype(np.float64)
    abs_w = np.abs(float_weights).astype(np.float64)
    half_level = layer.scales.astype(np.float64)[None, :] / 2
    bound = (x_scale[:, None] * abs_w.sum(axis=1)[None, :] + half_level * abs_x.sum(axis=1)[:, None]
             + x_scale[:, None] * half_level * layer.n_in)
    rounding = 1e-5 * (abs_x @ abs_w.T + np.abs(layer.biases))
    return bound + rounding


@pytest.mark.parametrize("sizes", [(64, 64, 32, 10), (784, 256, 256, 10), (20, 500, 7)])
def test_int8_layers_within_the_bound_from_their_scales(rng, sizes):
    network = random_network(rng, sizes, ["relu"] * (len(sizes) - 2) + ["linear"], np.float32)
    quantized = network.quantize("int8")
    x = rng.standard_normal((64, sizes[0])).astype(np.float32)
    for layer, q_layer in zip(network.layers, quantized.layers):
        exact = x.astype(np.float64) @ layer.weights.T.astype(np.float64) + layer.biases
        single = Network([Dense(q_layer.weights, q_layer.biases, "linear",
                                scales=q_layer.scales)])
        error = np.abs(single(x) - exact)
        bound = int8_layer_bound(x, q_layer, layer.weights)
        assert np.all(error <= bound), (error / bound).max()
        # ... and not vacuous: the worst case adds every error up with the same sign, so
        # random errors reach a few percent of it
        assert (error / bound).max() > 0.02
        x = np.maximum(exact, 0).astype(np.float32)


def test_digits_int8_accuracy_within_half_a_point():
    network, images, labels = digits()
    accuracy = {precision: np.mean(network.quantize(precision)(images).argmax(axis=1) == labels)
                for precision in PRECISIONS}
    float_accuracy = np.mean(network(images).argmax(axis=1) == labels)
    for precision, value in accuracy.items():
        assert abs(value - float_accuracy) <= 0.005, (precision, value, float_accuracy)


@pytest.mark.parametrize("precision, limit", [("int8", 0.05), ("bfloat16", 0.02),
                                              ("float16", 0.002)])
def test_error_against_float32_on_random_networks(rng, precision, limit):
    for sizes in [(64, 128, 128, 10), (784, 256, 256, 10)]:
        network = Network.from_sizes(list(sizes), seed=11)
        x = rng.standard_normal((256, sizes[0])).astype(np.float32)
        assert relative_error(network.quantize(precision)(x), network(x)) < limit


def test_int8_matmul_reference_is_exact_integer_arithmetic(rng):
    q = rng.integers(-127, 128, (5, 9)).astype(np.int8)
    x = rng.standard_normal((3, 9)).astype(np.float32)
    result = int8_matmul_reference(x, q, np.ones(5, np.float32), np.zeros(5, np.float32))
    xq, scale, zero_point = quantize_inputs(x)
    manual = np.array([[sum((int(xq[s, i]) - int(zero_point[s])) * int(q[j, i])
                            for i in range(9)) for j in range(5)] for s in range(3)])
    np.testing.assert_array_equal(result, (manual.astype(np.float32) * scale[:, None]))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
def test_save_and_load_keep_the_precision(tmp_path, rng, precision):
    network = random_network(rng, (6, 8, 3), ["elu", "softmax"], np.float32).quantize(precision)
    path = tmp_path / "model.npz"
    nnexposed.save(network, path)
    loaded = nnexposed.load(path)
    assert loaded.precision == precision
    for a, b in zip(loaded.layers, network.layers):
        assert a.weights.dtype == b.weights.dtype and a.activation == b.activation
        np.testing.assert_array_equal(a.weights.view(np.uint8), b.weights.view(np.uint8))
        np.testing.assert_array_equal(a.biases, b.biases)
        if precision == "int8":
            np.testing.assert_array_equal(a.scales, b.scales)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), network(x))
    with np.load(path) as data:     # readable without nnexposed or ml_dtypes
        stored = {"int8": np.int8, "bfloat16": np.uint16, "float16": np.float16}[precision]
        assert data["weights_0"].dtype == stored
        assert ("scales_0" in data.files) == (precision == "int8")


def test_float_networks_are_still_written_as_version_1(tmp_path):
    import json
    path = tmp_path / "model.npz"
    nnexposed.save(Network.from_sizes([3, 2], seed=0), path)
    with np.load(path) as data:
        assert json.loads(data["header"].tobytes())["version"] == 1
    nnexposed.save(Network.from_sizes([3, 2], seed=0).quantize("int8"), path)
    with np.load(path) as data:
        header = json.loads(data["header"].tobytes())
        assert header["version"] == 2 and header["precision"] == "int8"


def test_bad_version_2_files(tmp_path):
    import json
    header = {"format": "nnexposed-model", "version": 2, "dtype": "float32",
              "precision": "int8",
              "layers": [{"n_in": 3, "n_out": 2, "activation": "relu", "alpha": 0.01}]}
    good = {"weights_0": np.ones((2, 3), np.int8), "biases_0": np.zeros(2, np.float32),
            "scales_0": np.ones(2, np.float32)}

    def write(header, arrays):
        path = tmp_path / "m.npz"
        np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
        return path

    assert nnexposed.load(write(header, good)).precision == "int8"
    cases = [
        ({**header, "precision": "int4"}, good, "expected precision 'int8', 'float16', 'bfloat16'"),
        ({**header, "dtype": "float64"}, good, "int8 networks compute in float32"),
        (header, {k: v for k, v in good.items() if k != "scales_0"}, "missing 'scales_0'"),
        (header, {**good, "weights_0": np.ones((2, 3), np.int16)}, "expected dtype int8"),
        (header, {**good, "scales_0": -np.ones(2, np.float32)}, "layer 0: int8 scales must be"),
        ({**header, "precision": "float16"}, good, "unexpected 'scales_0'"),
    ]
    for bad_header, arrays, message in cases:
        with pytest.raises(ValueError, match=message):
            nnexposed.load(write(bad_header, arrays))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_trace_of_reduced_precision_networks(rng, precision):
    from nnexposed.reference import trace_numpy

    network = random_network(rng, (7, 9, 4), ["relu", "softmax"], np.float32).quantize(precision)
    x = rng.standard_normal((6, 7)).astype(np.float32)
    values = network.trace(x)
    expected = trace_numpy(network, x)
    assert len(values) == 2
    for got, want in zip(values, expected):
        np.testing.assert_allclose(got.pre_activation, want.pre_activation, rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(got.output, want.output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[-1].output, network(x), rtol=1e-6, atol=1e-7)


def test_layer_norm_networks_are_not_quantized(tmp_path):
    """One version 2 schema for both: reduced-precision Dense layers or LayerNorm layers."""
    import json

    from nnexposed import Dense, LayerNorm
    network = Network([Dense(np.ones((3, 2)), None), LayerNorm(np.ones(3))])
    with pytest.raises(ValueError, match="LayerNorm layers cannot be quantized to int8"):
        network.quantize("int8")
    with pytest.raises(ValueError, match="hold Dense layers only, not LayerNorm layers"):
        Network([Dense(np.ones((3, 2), np.float32), None).quantize("float16"),
                 LayerNorm(np.ones(3, np.float32))])
    assert network.quantize("float32").precision == "float32"
    path = tmp_path / "m.npz"
    nnexposed.save(network, path)
    with np.load(path) as data:
        header = json.loads(data["header"].tobytes())
    assert header["version"] == 2 and header["precision"] == "float64"
    assert [layer["kind"] for layer in header["layers"]] == ["dense", "layer_norm"]
    assert nnexposed.load(path).layers[1].eps == 1e-5
    # Version 2 files without "precision" or the Dense layers' "kind" load too.
    del header["precision"]
    del header["layers"][0]["kind"]
    arrays = {"weights_0": np.ones((3, 2)), "biases_0": np.zeros(3),
              "weights_1": np.ones(3), "biases_1": np.zeros(3)}
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    assert [type(layer) for layer in nnexposed.load(path).layers] == [Dense, LayerNorm]
    # A reduced precision with a layer_norm layer is refused.
    header = {**header, "dtype": "float32", "precision": "float16"}
    arrays = {k: v.astype(np.float16 if k == "weights_0" else np.float32)
              for k, v in arrays.items()}
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    with pytest.raises(ValueError, match="float16 networks hold Dense layers only"):
        nnexposed.load(path)
