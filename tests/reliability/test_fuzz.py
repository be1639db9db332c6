"""Property-based fuzzing of every public function with hostile and odd input.

Each call either matches the NumPy reference (within the error bound of the numerical
contract) or raises ValueError/TypeError; nothing crashes. Shapes include 0 and huge declared
sizes; dtypes ints, bools, float16, big-endian, longdouble, complex, object, strings, bytes,
datetimes; layouts strided, negative strides, Fortran, read-only, unaligned, zero-stride
broadcasts; ``out=`` aliasing (fully or partly) the input; values NaN, +-inf, subnormals,
+-3e38. The fuzz tests run in a child interpreter (test_fuzz_in_child_interpreter), so that a
segfault fails that test instead of killing the run; ``pytest --in-child`` runs them in the
current process, ``--fuzz-examples N`` sets the examples per test (default 150),
tools/fuzz_long.sh runs 5000 each.
"""

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import nnexposed
from nnexposed import config_context, kernels
from nnexposed._config import counting_paths
from nnexposed.reference import NUMPY_ACTIVATIONS, forward_numpy
from tests.helpers import API_ERRORS, run_tests_isolated, takes_alpha


def FUZZ(test):
    """A fuzz test: run only in the child interpreter that test_fuzz_in_child_interpreter
    starts (so that a crash fails that test instead of killing the run), with the examples of
    ``--fuzz-examples``."""
    return pytest.mark.isolated(settings(settings.get_profile("fuzz"))(test))

REAL_DTYPES = ["bool", "int8", "uint8", "int16", "int32", "int64", "uint64", "float16",
               "float32", "float64", "longdouble", ">f4", ">f8", ">i4", "<f4"]
BAD_DTYPES = ["complex64", "complex128", "object", "<U3", "S3", "datetime64[s]",
              "timedelta64[s]", "V4"]
FLOAT_VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-3, 100.0, -100.0,
                math.nan, math.inf, -math.inf, 3e38, -3e38, 1e-40, -1e-45, 5e-324, 1e-310,
                1e30, -1e30, 88.7, -103.9, 709.0, -745.0, 20.0, -20.0]
MODERATE_VALUES = [v for v in FLOAT_VALUES if math.isfinite(v) and abs(v) <= 1000]


def compute_dtype(dtype):
    dtype = np.dtype(dtype)
    return np.dtype(np.float32 if dtype.kind == "f" and dtype.itemsize <= 4 else np.float64)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


@st.composite
def real_values(draw, shape, dtype, moderate=False):
    """A C-order ndarray of ``shape`` and ``dtype`` filled from the hostile value pool."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    pool = MODERATE_VALUES if moderate else FLOAT_VALUES
    values = draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        array = np.array(values, np.float64).reshape(shape)
        if dtype.kind in "iub":
            info = np.iinfo(dtype) if dtype.kind != "b" else None
            array = np.nan_to_num(array, nan=0.0, posinf=1e9, neginf=-1e9)
            if info is not None:
                array = np.clip(array, info.min, info.max)
        return array.astype(dtype)


def _unaligned_copy(array):
    buffer = bytearray(array.nbytes + 1)
    result = np.frombuffer(buffer, array.dtype, count=array.size, offset=1)
    result = result.reshape(array.shape)
    result[...] = array
    return result


LAYOUTS = ["c", "fortran", "strided", "negative", "read_only", "broadcast", "unaligned",
           "list", "subclass"]


class _Sub(np.ndarray):
    pass


def apply_layout(array, layout):
    """The same values as ``array`` in another memory layout (or a nested list)."""
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "strided":
        padded = np.zeros(array.shape[:-1] + (2 * array.shape[-1],) if array.ndim else (),
                          array.dtype)
        if array.ndim == 0:
            return array
        padded[..., ::2] = array
        return padded[..., ::2]
    if layout == "negative":
        if array.ndim == 0:
            return array
        return np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    if layout == "read_only":
        copy = array.copy()
        copy.setflags(write=False)
        return copy
    if layout == "broadcast":
        # A zero-stride array of the same shape whose rows all equal the first row.
        if array.ndim < 2 or array.shape[0] == 0:
            return array
        return np.broadcast_to(array[:1], array.shape)
    if layout == "unaligned":
        if array.dtype.itemsize < 2 or array.dtype.kind not in "biuf":
            return array
        return _unaligned_copy(array)
    if layout == "list":
        return array.tolist()
    if layout == "subclass":
        return array.view(_Sub)
    return array


@st.composite
def hostile_arrays(draw, shape, real_only=False, moderate=False):
    """(given, values): an argument of ``shape`` in any dtype/layout, and its ndarray."""
    kinds = REAL_DTYPES if real_only else 3 * REAL_DTYPES + BAD_DTYPES
    dtype = draw(st.sampled_from(kinds))
    if dtype in BAD_DTYPES:
        base = draw(real_values(shape, "float64", moderate=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dtype == "object":
                array = base.astype(object)
            elif dtype in ("<U3", "S3"):
                array = base.astype(dtype)
            elif dtype == "V4":
                array = np.zeros(shape, "V4")
            elif dtype.startswith(("datetime", "timedelta")):
                array = np.nan_to_num(base).astype(np.int64).astype(dtype)
            else:
                array = base.astype(dtype)
    else:
        array = draw(real_values(shape, dtype, moderate=moderate))
    layout = draw(st.sampled_from(LAYOUTS))
    given = apply_layout(array, layout)
    return given, array


ACTIVATION = st.sampled_from(nnexposed.ACTIVATIONS)
ALPHA = st.sampled_from([0.01, 0.0, 0.2, 0.5, 1.0])


def mostly(good, bad_values):
    """Three draws in four from ``good``, the rest from the list of bad values."""
    return st.integers(0, 99).flatmap(
        lambda i: st.sampled_from(bad_values) if i >= 75 else good)


@st.composite
def networks(draw, dtype=None):
    dtype = draw(st.sampled_from([np.float32, np.float64])) if dtype is None else dtype
    depth = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 9), min_size=depth + 1, max_size=depth + 1))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        weights = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        biases = rng.standard_normal(n_out) * 0.5
        layers.append(nnexposed.Dense(weights.astype(dtype), biases.astype(dtype),
                                      draw(ACTIVATION), alpha=draw(ALPHA)))
    return nnexposed.Network(layers)


# --------------------------------------------------------------------------------------------
# The oracle: an error bound from a float64 evaluation
# --------------------------------------------------------------------------------------------

LIPSCHITZ = {"linear": 1.0, "relu": 1.0, "sigmoid": 0.25, "tanh": 1.0, "softmax": 1.0}


def reference_with_bound(layers, x):
    """(expected, tolerance, checkable) per sample of x (2-D, already in the compute dtype).

    Evaluates in float64 and bounds the difference of an evaluation in ``x.dtype`` from it:
    per layer ``eps ((n_in + 2) max(|a| @ |W|.T + |b|) L + 8 max|activation|)`` (the
    classical bound of a sum's rounding errors, times the activation's Lipschitz constant L,
    plus a few ulp of the activation), carried through the later layers by ``L * max row sum
    of |W|``. Samples whose magnitudes could overflow in some summation order, or with
    non-finite values anywhere, are not checkable (their result depends on that order).
    """
    dtype = x.dtype
    eps = float(np.finfo(dtype).eps)
    limit = float(np.finfo(dtype).max) / 4
    a = x.astype(np.float64)
    checkable = np.all(np.isfinite(a), axis=1)
    tolerance = np.zeros(len(x))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for weights, biases, activation, alpha in layers:
            w = weights.astype(np.float64)
            b = biases.astype(np.float64)
            z = a @ w.T + b
            magnitude = np.abs(a) @ np.abs(w).T + np.abs(b)
            checkable &= np.all(np.isfinite(magnitude) & (magnitude < limit), axis=1)
            a = NUMPY_ACTIVATIONS[activation](z, alpha)
            checkable &= np.all(np.isfinite(a), axis=1)
            lipschitz = LIPSCHITZ.get(activation, 2.0) * (max(1.0, abs(alpha))
                                                         if activation == "leaky_relu" else 1)
            row_norm = np.abs(w).sum(axis=1).max()
            # Rounding of the sums (n_in + 2 roundings of terms bounded by the magnitude) and
            # a few ulp of the activation (softmax: its sum of n_out terms as well).
            sums = (w.shape[0] + 2) if activation == "softmax" else 0
            local = eps * ((w.shape[1] + 2) * magnitude.max(axis=1, initial=0) * lipschitz
                           + (8 + sums) * np.abs(a).max(axis=1, initial=0))
            tolerance = tolerance * row_norm * lipschitz + local
    return a, tolerance + np.finfo(dtype).tiny, checkable


def check_against_reference(result, layers, x, dtype):
    """result of the compiled path for x (2-D, compute dtype): values and NaN propagation."""
    assert result.dtype == dtype and result.shape == (x.shape[0], layers[-1][0].shape[0])
    expected, tolerance, checkable = reference_with_bound(layers, x)
    event(f"computed: {'some' if checkable.any() else 'no'} samples within the error bound")
    if checkable.any():
        error = np.abs(result[checkable].astype(np.float64) - expected[checkable])
        assert np.all(error <= tolerance[checkable, None]), (
            f"error {error.max()} above bound {tolerance[checkable].min()}")
    # A NaN in a sample's input makes its whole output NaN, as in the NumPy reference.
    nan_rows = np.any(np.isnan(x), axis=1)
    if nan_rows.any():
        assert np.all(np.isnan(result[nan_rows]))


def layer_tuples(network):
    return [(layer.weights, layer.biases, layer.activation, layer.alpha)
            for layer in network.layers]


def input_is_valid(values, n_in):
    return values.dtype.kind in "biuf" and values.ndim in (1, 2) and values.shape[-1] == n_in


# --------------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------------

OUT_KINDS = ["none", "good", "alias", "partial_alias", "wrong_dtype", "big_endian",
             "wrong_shape", "fortran", "strided", "read_only", "list", "unaligned",
             "broadcast"]


def make_out(kind, shape, dtype, x_given):
    """(out, valid): an out= argument of the given kind for a result of shape and dtype."""
    dtype = np.dtype(dtype)
    if kind == "none":
        return None, True
    if kind == "good":
        return np.full(shape, np.nan, dtype), True
    if kind == "alias":
        if (isinstance(x_given, np.ndarray) and x_given.dtype == dtype
                and x_given.shape == tuple(shape) and x_given.flags.c_contiguous
                and x_given.flags.writeable and x_given.flags.aligned):
            return x_given, True
        return np.zeros(shape, dtype), True
    if kind == "partial_alias":
        return None, True       # built by the caller, which owns the shared buffer
    if kind == "wrong_dtype":
        other = np.float64 if dtype == np.float32 else np.float32
        return np.zeros(shape, other), False
    if kind == "big_endian":
        return np.zeros(shape, dtype.newbyteorder(">")), False
    if kind == "wrong_shape":
        return np.zeros(tuple(shape) + (1,), dtype), False
    if kind == "fortran":
        out = np.zeros(tuple(shape[::-1]), dtype).T
        return out, out.flags.c_contiguous
    if kind == "strided":
        if not shape or shape[-1] < 1:
            return np.zeros(shape, dtype), True
        out = np.zeros(tuple(shape[:-1]) + (2 * shape[-1],), dtype)[..., ::2]
        return out, out.flags.c_contiguous
    if kind == "read_only":
        out = np.zeros(shape, dtype)
        out.setflags(write=False)
        return out, False
    if kind == "list":
        return np.zeros(shape, dtype).tolist(), False
    if kind == "unaligned":
        out = _unaligned_copy(np.zeros(shape, dtype))
        return out, out.flags.aligned
    if kind == "broadcast":
        if not shape or 0 in shape:
            return np.zeros(shape, dtype), True
        out = np.broadcast_to(np.zeros(shape[-1:], dtype), shape)
        return out, False
    raise AssertionError(kind)


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


@st.composite
def forward_cases(draw):
    network = draw(networks())
    n_in = network.n_in
    shape_kind = draw(st.sampled_from(["one", "batch", "batch", "empty", "wrong_width",
                                       "3d", "scalar", "ragged"]))
    if shape_kind == "one":
        shape = (n_in,)
    elif shape_kind == "batch":
        shape = (draw(st.integers(1, 70)), n_in)
    elif shape_kind == "empty":
        shape = (0, n_in)
    elif shape_kind == "wrong_width":
        shape = (draw(st.integers(0, 5)), n_in + draw(st.sampled_from([-1, 1, 5])))
        shape = (shape[0], max(shape[1], 0))
    elif shape_kind == "3d":
        shape = (2, draw(st.integers(0, 3)), n_in)
    else:
        shape = ()
    if shape_kind == "ragged":
        return network, [[1.0] * n_in, [1.0] * (n_in + 1)], "none"
    given, _ = draw(hostile_arrays(shape))
    return network, given, draw(st.sampled_from(
        OUT_KINDS + ["none", "good", "alias", "partial_alias"] * 2))


def _forward_and_check(network, given, out_kind):
    values = None
    try:
        values = np.asarray(given)
    except ValueError:
        pass
    valid_x = values is not None and input_is_valid(values, network.n_in)
    dtype = network.dtype
    result_shape = (values.shape[:-1] + (network.n_out,)) if valid_x else (1, network.n_out)
    if out_kind == "partial_alias" and valid_x and values.ndim == 2:
        # x and out are overlapping windows of one buffer.
        batch = values.shape[0]
        buffer = np.zeros(batch * (network.n_in + network.n_out) + 3, dtype)
        x_view = buffer[: batch * network.n_in].reshape(batch, network.n_in)
        x_view[...] = values.astype(dtype)
        start = min(3, batch * network.n_in)
        out = buffer[start: start + batch * network.n_out].reshape(batch, network.n_out)
        given, values, out_valid = x_view, x_view.copy(), True
    else:
        out, out_valid = make_out(out_kind if out_kind != "partial_alias" else "none",
                                  result_shape, dtype, given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not (valid_x and out_valid):
            with pytest.raises(API_ERRORS) as error:
                nnexposed.forward(network, given, out=out)
            event(f"forward: raised {error.type.__name__}")
            return
        x = np.array(values, dtype=dtype)   # a copy: out= may alias the input
        result = nnexposed.forward(network, given, out=out)
    if out is not None:
        assert result is out
    assert type(result) is np.ndarray or isinstance(result, np.ndarray)
    assert result.shape == result_shape and result.dtype == dtype
    x2 = x.reshape(-1, network.n_in)
    check_against_reference(result.reshape(-1, network.n_out), layer_tuples(network), x2, dtype)


@FUZZ
@given(forward_cases())
def test_fuzz_forward(case):
    network, given, out_kind = case
    _forward_and_check(network, given, out_kind)


# The kernels' paths, each forced at small sizes by the settings (nnexposed._config) and
# checked by the path counters. name: (settings, batch sizes, threads)
KERNEL_PATHS = {
    "one_sample": ({"shared_panels": "never", "parallel_min_macs": 1 << 62}, (1, 3), 1),
    "shared_panels": ({"shared_panels": "always", "share_min_macs": 0}, (1, 3), 2),
    "row_split": ({"shared_panels": "never", "parallel_min_macs": 0, "row_split_min_macs": 0},
                  (1, 3), 2),
    "tiles": ({"blas": "never", "parallel_min_macs": 1 << 62}, (4, 100), 1),
    "tiles_on_threads": ({"blas": "never", "parallel_min_macs": 0}, (33, 100), 2),
    "blas": ({"blas": "always", "blas_min_weights": 0, "blas_min_batch": 0}, (4, 100), 1),
}
# The counter each path's forward passes increment; paths that start threads also count
# parallel regions.
COUNTER = {"one_sample": "one_sample", "shared_panels": "shared_panels",
           "row_split": "row_split", "tiles": "tiles", "tiles_on_threads": "tiles",
           "blas": "blas"}
ON_THREADS = {"shared_panels", "row_split", "tiles_on_threads"}
# Paths that compute every value with the same operations in the same order as another:
# their results must be bit-identical to it. (Rows split over threads use the row kernel,
# not the panels: the network is built without panels for that comparison.)
SAME_BITS_AS = {"shared_panels": "one_sample", "row_split": "one_sample",
                "tiles_on_threads": "tiles"}


@st.composite
def path_cases(draw):
    """(path, network, x): a drawn kernel path, a network and input of at most 150 wide."""
    path = draw(st.sampled_from(sorted(KERNEL_PATHS)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    depth = draw(st.integers(1, 3))
    # Widths past 64 (panels of 64 neurons) and 128 (chunks of rows) now and then.
    width = st.one_of(st.integers(1, 9), st.integers(10, 150))
    sizes = draw(st.lists(width, min_size=depth + 1, max_size=depth + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    layers = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        weights = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        biases = rng.standard_normal(n_out) * 0.5
        layers.append(nnexposed.Dense(weights.astype(dtype), biases.astype(dtype),
                                      draw(ACTIVATION), alpha=draw(ALPHA)))
    with config_context(panel_max_weights=0 if path == "row_split" else 1 << 20):
        network = nnexposed.Network(layers)
    # Random inputs with up to 16 of the pool's moderate values (0, -0, subnormals, +-709,
    # ...) placed anywhere: a drawn list of every input would be too big to generate.
    x = rng.standard_normal((draw(st.integers(*KERNEL_PATHS[path][1])), sizes[0]))
    for _ in range(draw(st.integers(0, 16))):
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(MODERATE_VALUES))
    return path, network, x.astype(dtype)


def forward_on_path(network, x, path):
    """forward of x (2-D) forced onto ``path``, one sample at a time on the one-sample paths;
    asserts the path ran."""
    settings, _, threads = KERNEL_PATHS[path]
    with config_context(**settings), counting_paths() as counts:
        if x.shape[0] < 4:
            result = np.stack([network(sample, threads=threads) for sample in x])
        else:
            result = network(x, threads=threads)
    calls = x.shape[0] if x.shape[0] < 4 else 1
    assert counts[COUNTER[path]] == calls, (path, counts)
    assert (counts["parallel_regions"] > 0) == (path in ON_THREADS), (path, counts)
    return result


@FUZZ
@given(path_cases())
def test_fuzz_forward_threads_and_kernels(case):
    # Every path of the kernels (one sample, shared panels, rows split over threads, tiles,
    # tiles on threads, BLAS), forced and checked by the path counters, against the
    # reference; and bit-identical to the path that computes the same sums on one thread.
    path, network, x = case
    event(f"path: {path}")
    if path == "blas" and not kernels.blas_available():
        return
    result = forward_on_path(network, x, path)
    check_against_reference(result, layer_tuples(network), x, network.dtype)
    if path in SAME_BITS_AS:
        np.testing.assert_array_equal(result, forward_on_path(network, x, SAME_BITS_AS[path]))
    threads = KERNEL_PATHS[path][2]
    np.testing.assert_array_equal(network(x[0], threads=threads),
                                  network(x[:1], threads=threads)[0])


# --------------------------------------------------------------------------------------------
# dense and layer_output
# --------------------------------------------------------------------------------------------


CORRUPTIONS = ["x_dtype", "w_dtype", "b_dtype", "x_shape", "w_shape", "b_shape", "n_zero",
               "activation", "alpha", "out"]


@st.composite
def dense_cases(draw):
    """Valid arguments with at most one of them corrupted (none in about half the cases)."""
    corrupt = draw(st.sampled_from(["none"] * len(CORRUPTIONS) + CORRUPTIONS))
    n_in = draw(st.integers(1, 6))
    n_out = draw(st.integers(1, 6))
    if corrupt == "n_zero":
        n_in, n_out = draw(st.sampled_from([(0, n_out), (n_in, 0), (0, 0)]))
    batch = draw(st.sampled_from([None, 0, 1, 3, 5, 33]))
    x_shape = (n_in,) if batch is None else (batch, n_in)
    if corrupt == "x_shape":
        x_shape = draw(st.sampled_from([(), (n_in + 1,), (1, 1, n_in), (2, n_in + 2)]))
    w_shape = (n_out, n_in)
    if corrupt == "w_shape":
        w_shape = draw(st.sampled_from([(n_in,), (n_out, n_in, 1), (), (n_out, n_in + 1)]))
    b_shape = draw(st.sampled_from([(n_out,), (n_out,), None]))
    if corrupt == "b_shape":
        b_shape = draw(st.sampled_from([(n_out + 1,), (), (1, n_out)]))
    x, _ = draw(hostile_arrays(x_shape, real_only=corrupt != "x_dtype"))
    w, _ = draw(hostile_arrays(w_shape, real_only=corrupt != "w_dtype"))
    if corrupt == "b_dtype" and b_shape is None:
        b_shape = (n_out,)
    b = None if b_shape is None else draw(hostile_arrays(
        b_shape, real_only=corrupt != "b_dtype"))[0]
    activation = draw(ACTIVATION if corrupt != "activation"
                      else st.sampled_from(["nope", "", None, 3, "RELU"]))
    alpha = draw(ALPHA if corrupt != "alpha"
                 else st.sampled_from([math.nan, -1.0, 1e300, True, "x", 1j, None]))
    out_kind = draw(st.sampled_from(OUT_KINDS if corrupt == "out"
                                    else ["none", "good", "alias", "partial_alias"]))
    return x, w, b, activation, alpha, out_kind


def _dense_dtype(*arrays):
    return compute_dtype(np.result_type(*(a.dtype for a in arrays if a is not None)))


@FUZZ
@given(dense_cases())
def test_fuzz_dense(case):
    x_given, w_given, b_given, activation, alpha, out_kind = case
    x, w = np.asarray(x_given), np.asarray(w_given)
    b = None if b_given is None else np.asarray(b_given)
    arrays = [a for a in (x, w, b) if a is not None]
    valid = (all(a.dtype.kind in "biuf" for a in arrays)
             and w.ndim == 2 and 0 not in w.shape
             and (b is None or b.shape == (w.shape[0],))
             and x.ndim in (1, 2) and x.shape[-1] == w.shape[1]
             and activation in nnexposed.ACTIVATIONS
             and isinstance(alpha, (int, float)) and not isinstance(alpha, bool))
    dtype = _dense_dtype(*arrays) if all(a.dtype.kind in "biuf" for a in arrays) else np.float64
    result_shape = x.shape[:-1] + (w.shape[0],) if valid else (1,)
    out, out_valid = make_out(out_kind if out_kind != "partial_alias" else "alias",
                              result_shape, dtype, x_given)
    if out_kind == "alias" and valid and isinstance(w_given, np.ndarray) \
            and w_given.shape == result_shape and w_given.dtype == dtype \
            and w_given.flags.writeable and w_given.flags.c_contiguous:
        out, out_valid = w_given, True          # out= aliasing the weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not (valid and out_valid):
            with pytest.raises(API_ERRORS) as error:
                nnexposed.dense(x_given, w_given, b_given, activation, alpha=alpha, out=out)
            event(f"dense: raised {error.type.__name__}")
            return
        xc = x.astype(dtype)
        wc = w.astype(dtype)
        bc = np.zeros(w.shape[0], dtype) if b is None else b.astype(dtype)
        result = nnexposed.dense(x_given, w_given, b_given, activation, alpha=alpha, out=out)
    if out is not None:
        assert result is out
    assert result.shape == result_shape and result.dtype == dtype
    check_against_reference(result.reshape(-1, w.shape[0]),
                            [(wc, bc, activation, float(alpha))], xc.reshape(-1, w.shape[1]),
                            dtype)
    if activation == "linear" and out is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = nnexposed.layer_output(x_given, w_given, b_given)
        np.testing.assert_array_equal(again, result)


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------

ULP_BOUND = 4   # compiled vs NumPy's own result in the same dtype, element-wise activations
# Activations whose ULP_BOUND was measured (tools/measure_numerics.py); others are held to
# 16 eps * max(1, |y|) until they get a row in the README's table.
MEASURED = {"linear", "relu", "leaky_relu", "sigmoid", "tanh"}


def assert_activation_matches(name, result, values, alpha):
    """result vs NumPy's reference in the same dtype: same NaN/inf, finite within ULP_BOUND."""
    dtype = result.dtype
    with np.errstate(all="ignore"):
        expected = NUMPY_ACTIVATIONS[name](values.astype(dtype), dtype.type(alpha))
    expected = np.asarray(expected, dtype)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(result[~finite & ~np.isnan(expected)],
                                  expected[~finite & ~np.isnan(expected)])
    difference = np.abs(result[finite].astype(np.float64) - expected[finite])
    if name not in MEASURED:
        eps = float(np.finfo(dtype).eps)
        scale = np.maximum(1.0, np.abs(expected[finite].astype(np.float64)))
        assert np.all(difference <= 16 * eps * scale), (name, dtype)
        return
    ulps = difference / np.spacing(np.abs(expected[finite])).astype(np.float64)
    assert np.all(ulps <= ULP_BOUND), (name, dtype, ulps.max())


@st.composite
def activation_cases(draw):
    shape = draw(st.sampled_from([(), (0,), (1,), (7,), (3, 4), (2, 0), (2, 3, 5), (40,)]))
    given, values = draw(hostile_arrays(shape))
    return draw(ACTIVATION), given, values, draw(st.sampled_from(OUT_KINDS)), draw(ALPHA)


@FUZZ
@given(activation_cases())
def test_fuzz_activations(case):
    name, given, values, out_kind, alpha = case
    function = getattr(nnexposed, name)
    values = np.asarray(given)
    valid = values.dtype.kind in "biuf" and not (name == "softmax" and values.ndim == 0)
    dtype = compute_dtype(values.dtype) if values.dtype.kind in "biuf" else np.float64
    out, out_valid = make_out(out_kind if out_kind != "partial_alias" else "alias",
                              values.shape, dtype, given)
    kwargs = {"alpha": alpha} if takes_alpha(name) else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not (valid and out_valid):
            with pytest.raises(API_ERRORS) as error:
                function(given, out=out, **kwargs)
            event(f"activation: raised {error.type.__name__}")
            return
        event("activation: computed")
        source = values.astype(dtype)
        result = function(given, out=out, **kwargs)
    if out is not None:
        assert result is out
    assert isinstance(result, np.ndarray)
    assert result.shape == values.shape and result.dtype == dtype
    if name == "softmax":
        with np.errstate(all="ignore"):
            expected = (NUMPY_ACTIVATIONS[name](source, alpha) if source.size else source)
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        np.testing.assert_allclose(result, expected, equal_nan=True,
                                   rtol=(source.shape[-1] + 8) * np.finfo(dtype).eps,
                                   atol=(source.shape[-1] + 8) * np.finfo(dtype).eps)
    else:
        assert_activation_matches(name, result, source, alpha)


@FUZZ
@given(st.sampled_from([(5,), (2, 3), (3, 1, 4), (0, 3), (2, 0)]), st.data())
def test_fuzz_softmax_axis(shape, data):
    given, values = data.draw(hostile_arrays(shape, real_only=True))
    axis = data.draw(st.one_of(st.integers(-5, 5), st.sampled_from([np.int64(1), 1.0, None,
                                                                     True, "0", 2**70])))
    values = np.asarray(given)
    ndim = values.ndim
    valid_axis = (isinstance(axis, (int, np.integer)) and not isinstance(axis, bool)
                  and -ndim <= axis < ndim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not valid_axis:
            with pytest.raises(API_ERRORS):
                nnexposed.softmax(given, axis=axis)
            return
        result = nnexposed.softmax(given, axis=axis)
        dtype = compute_dtype(values.dtype)
        moved = np.moveaxis(values.astype(dtype), axis, -1)
        with np.errstate(all="ignore"):
            expected = np.moveaxis(NUMPY_ACTIVATIONS["softmax"](moved, 0.0)
                                   if moved.size else moved, -1, axis)
    assert result.shape == values.shape and result.flags.c_contiguous
    tolerance = (values.shape[axis] + 8) * np.finfo(dtype).eps
    np.testing.assert_allclose(result, expected, equal_nan=True, rtol=tolerance,
                               atol=tolerance)


# --------------------------------------------------------------------------------------------
# Construction: Dense, Network, Network.from_sizes
# --------------------------------------------------------------------------------------------

# Beyond the 2**47-byte user address space of x86-64 even at one element per row, so that
# NumPy's allocation fails at once on any machine, overcommit or not.
HUGE = [2**47, 2**50 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 10**30]


@FUZZ
@given(st.data())
def test_fuzz_dense_construction(data):
    n_out, n_in = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    w_shape = data.draw(st.sampled_from([(n_out, n_in), (n_out, n_in), (n_in,), ()]))
    w, _ = data.draw(hostile_arrays(w_shape))
    b = data.draw(st.one_of(st.none(), hostile_arrays(
        data.draw(st.sampled_from([(n_out,), (n_out,), (n_out + 1,)]))).map(lambda t: t[0])))
    activation = data.draw(st.one_of(ACTIVATION, st.sampled_from(["bad", None, 0, b"relu"])))
    alpha = data.draw(st.one_of(ALPHA, st.sampled_from([None, "0.1", 1j, np.float32(0.3)])))
    wv = np.asarray(w)
    bv = None if b is None else np.asarray(b)
    valid = (wv.dtype.kind in "biuf" and wv.ndim == 2 and 0 not in wv.shape
             and (bv is None or (bv.dtype.kind in "biuf" and bv.shape == (wv.shape[0],)))
             and activation in nnexposed.ACTIVATIONS
             and isinstance(alpha, (int, float, np.floating)) and not isinstance(alpha, bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not valid:
            with pytest.raises(API_ERRORS):
                nnexposed.Dense(w, b, activation, alpha=alpha)
            return
        layer = nnexposed.Dense(w, b, activation, alpha=alpha)
    assert layer.weights.shape == wv.shape and not layer.weights.flags.writeable
    assert layer.weights.dtype == compute_dtype(wv.dtype)
    network = nnexposed.Network([layer])
    x = np.ones((2, layer.n_in), layer.dtype)
    assert network(x).shape == (2, layer.n_out)


@FUZZ
@given(st.lists(st.one_of(st.integers(-3, 6), st.sampled_from(HUGE + [1.5, "3", None, True])),
                min_size=0, max_size=5),
       st.sampled_from(["float32", "float64", "float16", "int32", None, "f4"]))
def test_fuzz_from_sizes(sizes, dtype):
    valid_entries = all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                        for s in sizes)
    huge = valid_entries and any(s >= 2**47 for s in sizes)
    valid = (valid_entries and len(sizes) >= 2 and dtype in ("float32", "float64", "f4", None))
    if huge and valid:
        # Declared sizes beyond any memory: refused before allocating (ValueError from the
        # size check in NumPy, or MemoryError when the request is merely unsatisfiable).
        with pytest.raises((ValueError, MemoryError)):
            nnexposed.Network.from_sizes(sizes, dtype=dtype, seed=0)
        return
    if not valid:
        with pytest.raises(API_ERRORS):
            nnexposed.Network.from_sizes(sizes, dtype=dtype, seed=0)
        return
    network = nnexposed.Network.from_sizes(sizes, dtype=dtype, seed=0)
    assert network.sizes == tuple(sizes)
    x = np.zeros((3, sizes[0]), network.dtype)
    np.testing.assert_allclose(network(x), forward_numpy(network, x), rtol=1e-5, atol=1e-6)


@FUZZ
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=0, max_size=4),
       st.sampled_from(["layers", "dense_alone", "with_junk", "generator"]))
def test_fuzz_network_construction(shapes, how):
    layers = [nnexposed.Dense(np.ones(shape), None) for shape in shapes]
    chained = all(a.n_out == b.n_in for a, b in zip(layers, layers[1:]))
    if how == "dense_alone" and layers:
        with pytest.raises(API_ERRORS):
            nnexposed.Network(layers[0])
        return
    if how == "with_junk":
        with pytest.raises(API_ERRORS):
            nnexposed.Network(layers + [np.ones((2, 2))])
        return
    argument = (layer for layer in layers) if how == "generator" else layers
    if not layers or not chained:
        with pytest.raises(API_ERRORS):
            nnexposed.Network(argument)
        return
    network = nnexposed.Network(argument)
    assert network.sizes[0] == layers[0].n_in


@pytest.mark.parametrize("size", [2**46, 2**62 // 8, 2**63 - 1])
def test_huge_declared_sizes_are_refused_before_allocating(size):
    # Zero-stride broadcasts declare sizes far beyond memory without owning them.
    network = nnexposed.Network.from_sizes([3, 2], seed=0)
    with pytest.raises((ValueError, MemoryError)):
        nnexposed.forward(network, np.broadcast_to(np.ones(3), (size, 3)))
    with pytest.raises((ValueError, MemoryError)):
        nnexposed.dense(np.ones(3), np.broadcast_to(1.0, (size, 3)), None)
    with pytest.raises((ValueError, MemoryError)):
        nnexposed.relu(np.broadcast_to(1.0, (size, 3)))
    with pytest.raises((ValueError, MemoryError)):
        nnexposed.Dense(np.broadcast_to(1.0, (size, 3)), None)


# --------------------------------------------------------------------------------------------
# The same fuzzing in a child interpreter: a crash fails this test, not the run
# --------------------------------------------------------------------------------------------


def test_fuzz_in_child_interpreter(pytestconfig):
    output = run_tests_isolated(__file__, pytestconfig, timeout=1800,
                                extra_args=["--hypothesis-show-statistics"])
    assert not re.search(r"\d+ (failed|errors?)\b", output), output[-3000:]
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) == 8, output[-3000:]   # every fuzz test ran
