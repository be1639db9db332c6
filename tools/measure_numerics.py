"""Measure the numerical contract: error of the compiled path against exact references.

For every activation in nnexposed.ACTIVATIONS and both dtypes, the maximum error in ulps of
the result's dtype against an mpmath reference (50 digits) on a grid covering the whole range
(linear, log-spaced from subnormals to overflow thresholds, the special values), and against
NumPy's own result in the same dtype. Softmax: vectors of widths 1 to 1000, max error in ulps
of each element. Dense layers: max |error| / (eps * (|W| |x| + |b|)) of forward against an
exact (mpmath) dot product, for the one-sample, tiled and BLAS kernels.

    python tools/measure_numerics.py [--points 20000] [--json FILE]

Prints a Markdown table (the README's "Numerical contract" table comes from it).
"""

import argparse
import inspect
import json
import sys
import time
import warnings

import mpmath
import numpy as np

import nnexposed
from nnexposed import kernels
from nnexposed.reference import NUMPY_ACTIVATIONS

mpmath.mp.dps = 50
ALPHA = 0.01


def mp_reference(name, value, alpha):
    """Exact (50-digit) activation of a float value; None for names without a formula here."""
    x = mpmath.mpf(float(value))
    if name == "linear":
        return x
    if name == "relu":
        return x if x > 0 else mpmath.mpf(0)
    if name == "leaky_relu":
        return x if x >= 0 else mpmath.mpf(alpha) * x
    if name == "sigmoid":
        return 1 / (1 + mpmath.exp(-x))
    if name == "tanh":
        return mpmath.tanh(x)
    # The activations of model files and importers, where this package has them.
    if name == "gelu":
        if abs(x) > 40:    # erfc(40 / sqrt 2) < 1e-340: below any float, and mpmath chokes
            return x if x > 0 else mpmath.mpf(0)
        return x / 2 * mpmath.erfc(-x / mpmath.sqrt(2))
    if name == "gelu_tanh":
        # x/2 (1 + tanh u) = x / (1 + exp(-2u)): 1 + tanh u cancels for u << 0.
        inner = mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf("0.044715") * x**3)
        return x / (1 + mpmath.exp(-2 * inner))
    if name == "silu":
        return x / (1 + mpmath.exp(-x))
    if name == "elu":
        return x if x > 0 else mpmath.mpf(alpha) * mpmath.expm1(x)
    if name == "softplus":
        return mpmath.log1p(mpmath.exp(x))
    return None


def grid(dtype, points):
    info = np.finfo(dtype)
    rng = np.random.default_rng(0)
    top = float(np.log10(info.max))
    parts = [
        np.linspace(-25, 25, points // 2),
        np.logspace(np.log10(float(info.smallest_subnormal)), top, points // 4),
        rng.standard_normal(points // 4) * 5,
        np.array([0.0, -0.0, 1.0, -1.0, 0.5, 88.7, -88.7, 103.0, -103.9, 709.7, -745.1,
                  20.0, -20.0, 9.0, -9.0, 19.06, 44.36, float(info.tiny), float(info.max)]),
    ]
    values = np.concatenate(parts)
    values = np.concatenate([values, -values])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = values.astype(dtype)
    return np.unique(values[np.isfinite(values)])


def ulps(computed, exact, dtype):
    """|computed - exact| in ulps of dtype at exact (exact given as float64/longdouble)."""
    exact_in_dtype = np.asarray(exact).astype(dtype)
    spacing = np.spacing(np.abs(exact_in_dtype)).astype(np.longdouble)
    return np.abs(computed.astype(np.longdouble) - np.asarray(exact, np.longdouble)) / spacing


def measure_elementwise(name, dtype, points):
    x = grid(dtype, points)
    function = getattr(nnexposed, name)
    kwargs = ({"alpha": ALPHA}
              if "alpha" in inspect.signature(function).parameters else {})
    computed = function(x, **kwargs)
    with np.errstate(all="ignore"):
        numpy_same = np.asarray(NUMPY_ACTIVATIONS[name](x, dtype(ALPHA)), dtype)
    exact = [mp_reference(name, v, float(dtype(ALPHA))) for v in x]
    if exact[0] is None:   # an activation without a formula here: a higher-precision NumPy
        source = "NumPy float64" if dtype == np.float32 else "NumPy longdouble"
        wide = np.float64 if dtype == np.float32 else np.longdouble
        try:
            with np.errstate(all="ignore"):
                exact = np.asarray(NUMPY_ACTIVATIONS[name](x.astype(wide), wide(ALPHA)),
                                   np.longdouble)
        except TypeError:   # no long double loop (SciPy's special functions)
            source = "NumPy float64"
            with np.errstate(all="ignore"):
                exact = np.asarray(NUMPY_ACTIVATIONS[name](x.astype(np.float64), ALPHA),
                                   np.longdouble)
    else:
        source = "mpmath"
        exact = np.array([mpmath.nstr(e, 40) for e in exact], dtype=np.longdouble)
    # Ulps where the exact result is a normal number: subnormal results carry fewer bits by
    # definition (their absolute error is reported separately, in units of the smallest one).
    normal = np.abs(exact) >= np.finfo(dtype).tiny
    zero_or_subnormal = ~normal & np.isfinite(exact)
    subnormal_error = (float(np.abs(computed[zero_or_subnormal].astype(np.longdouble)
                                    - exact[zero_or_subnormal]).max(initial=0))
                       / float(np.finfo(dtype).smallest_subnormal))
    versus_exact = np.where(normal, ulps(computed, exact, dtype), 0)
    with np.errstate(all="ignore"):
        versus_numpy = np.abs(computed.astype(np.float64) - numpy_same) \
            / np.spacing(np.abs(numpy_same)).astype(np.float64)
    worst = int(np.argmax(versus_exact))
    return {"activation": name, "dtype": np.dtype(dtype).name, "points": int(x.size),
            "reference": source, "max_ulp_exact": float(versus_exact.max()),
            "worst_input": float(x[worst]),
            "max_ulp_numpy": float(np.nanmax(versus_numpy)),
            "subnormal_abs_error": subnormal_error}


def measure_softmax(dtype, trials=200):
    """Softmax: exp(x_i - max) is as well conditioned as x_i - max is large, so the error of
    element i is reported in ulps divided by (1 + |x_i - max x|), next to the absolute error
    (outputs lie in [0, 1]) in units of eps and the ulps against NumPy in the same dtype."""
    rng = np.random.default_rng(1)
    worst_conditioned = worst_abs = worst_numpy = 0.0
    eps = float(np.finfo(dtype).eps)
    for _ in range(trials):
        width = int(rng.choice([1, 2, 3, 10, 100, 1000]))
        scale = float(rng.choice([0.1, 1.0, 10.0, 50.0]))
        x = (rng.standard_normal((1, width)) * scale).astype(dtype)
        computed = nnexposed.softmax(x)[0]
        with np.errstate(all="ignore"):
            numpy_same = np.asarray(NUMPY_ACTIVATIONS["softmax"](x, 0.0), dtype)[0]
        values = [mpmath.mpf(float(v)) for v in x[0]]
        largest = max(values)
        exps = [mpmath.exp(v - largest) for v in values]
        total = mpmath.fsum(exps)
        exact = np.array([mpmath.nstr(e / total, 40) for e in exps], dtype=np.longdouble)
        distance = np.abs(x[0].astype(np.float64) - float(x[0].max()))
        worst_conditioned = max(worst_conditioned,
                                float((ulps(computed, exact, dtype) / (1 + distance)).max()))
        worst_abs = max(worst_abs, float(np.abs(computed.astype(np.longdouble) - exact).max())
                        / eps)
        worst_numpy = max(worst_numpy, float((np.abs(computed.astype(np.float64) - numpy_same)
                                              / np.spacing(numpy_same)).max()))
    return {"activation": "softmax", "dtype": np.dtype(dtype).name, "points": trials,
            "reference": "mpmath", "max_ulp_exact": worst_conditioned,
            "max_abs_error_eps": worst_abs, "max_ulp_numpy": worst_numpy}


def measure_dense(dtype, n_in, batch, blas):
    """max |forward - exact| / (eps * (|W||x| + |b|)) over a layer n_in -> 64."""
    rng = np.random.default_rng(2)
    n_out = 64
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    with nnexposed.config_context(blas="always" if blas else "never"):
        y = nnexposed.dense(x, w, b)
    rows = min(batch, 8)
    worst = 0.0
    eps = float(np.finfo(dtype).eps)
    for t in range(rows):
        for j in range(0, n_out, 7):
            exact = mpmath.fsum([mpmath.mpf(float(a)) * mpmath.mpf(float(c))
                                 for a, c in zip(w[j], x[t])]) + mpmath.mpf(float(b[j]))
            bound = float(np.abs(w[j].astype(np.float64)) @ np.abs(x[t].astype(np.float64))
                          + abs(float(b[j])))
            worst = max(worst, abs(float(mpmath.mpf(float(y[t, j])) - exact)) / (eps * bound))
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for dtype in (np.float32, np.float64):
        for name in nnexposed.ACTIVATIONS:
            if name == "softmax":
                rows.append(measure_softmax(dtype))
            else:
                rows.append(measure_elementwise(name, dtype, args.points))
    print("| activation | dtype | reference | inputs | max error vs reference (ulp) "
          "| max difference vs NumPy same dtype (ulp) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        numpy_ulp = row.get("max_ulp_numpy")
        numpy_text = "—" if numpy_ulp is None else f"{numpy_ulp:.2f}"
        inputs = (f"{row['points']} vectors, widths 1–1000" if row["activation"] == "softmax"
                  else f"{row['points']} values")
        exact_text = f"{row['max_ulp_exact']:.2f}"
        if row.get("subnormal_abs_error", 0) > 1:
            exact_text += (f" (results below the normal range: "
                           f"{row['subnormal_abs_error']:.0f} × the smallest subnormal)")
        if row["activation"] == "softmax":
            exact_text += (f" × (1 + \\|x_i − max x\\|); absolute "
                           f"{row['max_abs_error_eps']:.2f} eps")
        print(f"| {row['activation']} | {row['dtype']} | {row['reference']} | {inputs} "
              f"| {exact_text} | {numpy_text} |")
    dense_rows = []
    print()
    print("| dense layer n_in -> 64 | dtype | kernel | max error / (eps * (|W||x| + |b|)) |")
    print("|---|---|---|---|")
    for dtype in (np.float32, np.float64):
        for n_in, batch, blas, kernel in [(3, 1, False, "one sample"),
                                          (1024, 1, False, "one sample"),
                                          (3, 100, False, "tiles"),
                                          (1024, 100, False, "tiles"),
                                          (1024, 512, True, "BLAS")]:
            if blas and not kernels.blas_available():
                continue
            error = measure_dense(dtype, n_in, batch, blas)
            dense_rows.append({"dtype": np.dtype(dtype).name, "n_in": n_in, "kernel": kernel,
                               "normalised_error": error})
            print(f"| {n_in} -> 64 | {np.dtype(dtype).name} | {kernel} | {error:.3f} |")
    print(f"\n({time.perf_counter() - start:.1f} s; numpy {np.__version__}, "
          f"mpmath {mpmath.__version__}, python {sys.version.split()[0]})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"activations": rows, "dense": dense_rows}, f, indent=2)


if __name__ == "__main__":
    main()
