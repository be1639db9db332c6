"""The public activation functions against closed forms and the NumPy references."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnexposed
from nnexposed.activations import DEFAULT_ALPHAS
from nnexposed.reference import NUMPY_ACTIVATIONS, PYTHON_ACTIVATIONS, _gelu_numpy
from tests.helpers import DTYPES, assert_close

FUNCTIONS = {name: getattr(nnexposed, name) for name in nnexposed.ACTIVATIONS}
ELEMENTWISE = [name for name in nnexposed.ACTIVATIONS if name != "softmax"]


def default_alpha(name):
    return DEFAULT_ALPHAS.get(name, 0.01)


def closed_form(name, v, alpha=None):
    """Each activation written from its definition, in Python floats (float64)."""
    alpha = default_alpha(name) if alpha is None else alpha
    if math.isnan(v):
        return math.nan
    if name == "linear":
        return v
    if name == "relu":
        return max(v, 0.0)
    if name == "leaky_relu":
        return v if v >= 0 else alpha * v
    if name == "sigmoid":
        return 1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0
    if name == "tanh":
        return math.tanh(v)
    if name == "gelu":
        return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
    if name == "silu":
        return v / (1 + math.exp(-v)) if v > -700 else 0.0
    if name == "elu":
        return v if v > 0 else alpha * (math.exp(v) - 1)
    if name == "softplus":
        return math.log(1 + math.exp(v)) if v < 700 else v
    raise AssertionError(name)


def test_activation_names():
    assert nnexposed.ACTIVATIONS == ("linear", "relu", "leaky_relu", "sigmoid", "tanh",
                                     "softmax", "gelu", "gelu_tanh", "silu", "elu", "softplus")
    assert set(nnexposed.ACTIVATIONS) == set(NUMPY_ACTIVATIONS) == set(PYTHON_ACTIVATIONS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_closed_forms(rng, dtype, name):
    x = (rng.standard_normal(200) * 5).astype(dtype)
    expected = np.array([closed_form(name, float(v)) for v in x])
    assert_close(FUNCTIONS[name](x), expected.astype(dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_alpha(dtype):
    x = np.array([-2.0, -0.5, 0.0, 3.0], dtype)
    assert_close(nnexposed.leaky_relu(x, 0.2), np.array([-0.4, -0.1, 0.0, 3.0], dtype), dtype)
    assert_close(nnexposed.leaky_relu(x, alpha=0.0), nnexposed.relu(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_closed_form(rng, dtype):
    x = rng.standard_normal((7, 5)).astype(dtype)
    e = np.exp(x.astype(np.float64))
    expected = e / e.sum(axis=1, keepdims=True)
    result = nnexposed.softmax(x)
    assert_close(result, expected.astype(dtype), dtype)
    assert_close(result.sum(axis=1), np.ones(7, dtype), dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_softmax_axis(rng, axis):
    x = rng.standard_normal((3, 4, 5))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    assert_close(nnexposed.softmax(x, axis=axis), e / e.sum(axis=axis, keepdims=True),
                 np.float64)


def test_softmax_bad_axis():
    with pytest.raises(np.exceptions.AxisError):
        nnexposed.softmax(np.ones((2, 3)), axis=2)
    with pytest.raises(TypeError, match="axis must be an integer"):
        nnexposed.softmax(np.ones((2, 3)), axis=1.0)
    with pytest.raises(ValueError, match="0-d"):
        nnexposed.softmax(3.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", nnexposed.ACTIVATIONS)
def test_stable_at_extremes_without_warnings(dtype, name):
    x = np.array([[-1000.0, -89.0, 0.0, 89.0, 1000.0]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = FUNCTIONS[name](x)
    assert np.all(np.isfinite(result))
    if name == "sigmoid":
        assert_close(result, np.array([[0, 0, 0.5, 1, 1]], dtype), dtype)
    if name == "tanh":
        assert_close(result, np.array([[-1, -1, 0, 1, 1]], dtype), dtype)
    if name in ("relu", "gelu", "gelu_tanh", "silu"):
        assert_close(result, np.array([[0, 0, 0, 89, 1000]], dtype), dtype)
    if name == "softplus":
        assert_close(result, np.array([[0, 0, np.log(2), 89, 1000]], dtype), dtype)
    if name == "elu":
        assert_close(result, np.array([[-1, -1, 0, 89, 1000]], dtype), dtype)
    if name == "softmax":
        assert_close(result, np.array([[0, 0, 0, 0, 1]], dtype), dtype)
        assert_close(FUNCTIONS[name](-x), np.array([[1, 0, 0, 0, 0]], dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", nnexposed.ACTIVATIONS)
def test_nan_and_inf_match_numpy_reference(dtype, name):
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 0.0, -1.0], [-np.inf, 3.0, 0.5],
                  [1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = NUMPY_ACTIVATIONS[name](x, default_alpha(name))
    result = FUNCTIONS[name](x)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    assert_close(result, expected, dtype)


def test_relu_of_nan_is_nan():
    assert np.isnan(nnexposed.relu(np.nan))
    assert np.isnan(nnexposed.leaky_relu(np.nan))
    assert np.isnan(nnexposed.sigmoid(np.nan))


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(nnexposed.ACTIVATIONS),
    x=hnp.arrays(st.sampled_from([np.float32, np.float64]),
                 hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6),
                 elements={"allow_nan": True, "allow_infinity": True}),
)
def test_activations_match_numpy_reference(name, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = FUNCTIONS[name](x)
        if name == "softmax" and x.shape[-1] == 0:
            # NumPy's max has no identity for an empty axis; ours returns the empty array.
            assert result.shape == x.shape
            return
        expected = NUMPY_ACTIVATIONS[name](x, default_alpha(name))
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    assert_close(result, expected, x.dtype)


@pytest.mark.parametrize("name", nnexposed.ACTIVATIONS)
def test_python_reference_agrees(rng, name):
    x = rng.standard_normal(9) * 3
    expected = PYTHON_ACTIVATIONS[name](x.tolist(), default_alpha(name))
    assert_close(FUNCTIONS[name](x), np.array(expected), np.float64)


@pytest.mark.parametrize("given, expected", [
    (np.float32, np.float32), (np.float16, np.float32), (np.float64, np.float64),
    (np.int32, np.float64), (np.int64, np.float64), (np.bool_, np.float64),
    (np.dtype(">f4"), np.float32), (np.dtype(">f8"), np.float64),
])
@pytest.mark.parametrize("name", nnexposed.ACTIVATIONS)
def test_result_dtype(name, given, expected):
    x = np.arange(6).reshape(2, 3).astype(given)
    result = FUNCTIONS[name](x)
    assert result.dtype == expected
    assert result.shape == (2, 3)
    assert result.flags.c_contiguous


@pytest.mark.parametrize("name", nnexposed.ACTIVATIONS)
def test_input_not_modified_and_views_work(rng, name):
    base = rng.standard_normal((6, 8))
    before = base.copy()
    view = base[::2, ::-3]
    result = FUNCTIONS[name](view)
    np.testing.assert_array_equal(base, before)
    assert_close(result, NUMPY_ACTIVATIONS[name](view.copy(), default_alpha(name)), np.float64)


@pytest.mark.parametrize("name", nnexposed.ACTIVATIONS)
def test_out(rng, name):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    out = np.empty_like(x)
    assert FUNCTIONS[name](x, out=out) is out
    assert_close(out, NUMPY_ACTIVATIONS[name](x, default_alpha(name)), np.float32)
    expected = FUNCTIONS[name](x)
    assert FUNCTIONS[name](x, out=x) is x        # in place
    assert_close(x, expected, np.float32)
    with pytest.raises(TypeError, match="dtype float32"):
        FUNCTIONS[name](x, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        FUNCTIONS[name](x, out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        FUNCTIONS[name](x, out=np.empty((3, 4), np.float32).T)


@pytest.mark.parametrize("name", nnexposed.ACTIVATIONS)
@pytest.mark.parametrize("bad, error", [
    (np.ones(3, complex), TypeError), (np.array(["a"]), TypeError),
    (np.array([None]), TypeError), ([[1.0], [1.0, 2.0]], ValueError),
])
def test_bad_input(name, bad, error):
    with pytest.raises(error):
        FUNCTIONS[name](bad)


def test_empty_and_scalar_inputs():
    assert nnexposed.relu(np.empty((0, 3))).shape == (0, 3)
    assert nnexposed.softmax(np.empty((0, 3))).shape == (0, 3)
    assert nnexposed.sigmoid(0.0).shape == ()
    assert float(nnexposed.sigmoid(0.0)) == 0.5


def test_leaky_relu_alpha_must_be_real():
    with pytest.raises(TypeError, match="alpha"):
        nnexposed.leaky_relu([1.0], alpha="0.1")


@pytest.mark.parametrize("dtype", DTYPES)
def test_elu_alpha(dtype):
    x = np.array([-np.inf, -1.0, 0.0, 2.0], dtype)
    assert_close(nnexposed.elu(x, 0.5),
                 np.array([-0.5, 0.5 * math.expm1(-1.0), 0.0, 2.0], dtype), dtype)
    assert_close(nnexposed.elu(x), np.array([-1.0, math.expm1(-1.0), 0.0, 2.0], dtype), dtype)
    with pytest.raises(TypeError, match="alpha"):
        nnexposed.elu(x, alpha="1")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, limit_minus, limit_plus", [
    ("gelu", 0.0, np.inf), ("gelu_tanh", 0.0, np.inf), ("silu", 0.0, np.inf),
    ("elu", -1.0, np.inf), ("softplus", 0.0, np.inf),
])
def test_new_activations_limits(dtype, name, limit_minus, limit_plus):
    result = FUNCTIONS[name](np.array([-np.inf, np.inf, np.nan], dtype))
    np.testing.assert_array_equal(result, np.array([limit_minus, limit_plus, np.nan], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_keeps_precision_for_negative_inputs(dtype):
    # 1 + erf(x / sqrt 2) cancels to 0 near x = -9 in float64; erfc does not.
    x = np.array([-9.0, -6.0, -3.0], dtype)
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.tolist()])
    assert np.all(nnexposed.gelu(x) < 0)
    np.testing.assert_allclose(nnexposed.gelu(x), expected.astype(dtype), rtol=1e-5)


def test_numpy_gelu_with_math_erfc_matches(rng):
    # The reference with math.erfc element by element instead of SciPy's: same results.
    def erfc_math(z):
        return np.frompyfunc(math.erfc, 1, 1)(z).astype(z.dtype)

    x = np.concatenate([rng.standard_normal(50) * 4, [np.nan, np.inf, -np.inf]])
    for dtype in DTYPES:
        z = x.astype(dtype)
        assert_close(_gelu_numpy(z, erfc=erfc_math), nnexposed.gelu(z), dtype)
