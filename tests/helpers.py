"""Helpers shared by the tests: random networks, per-dtype tolerances, and child interpreters
for crash-prone cases (a segfault or an abort in compiled code then fails one test instead of
killing the whole run).
"""

import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np

import nnexposed
from nnexposed import Dense, Network, cli

TOLERANCES = {
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}
DTYPES = [np.float32, np.float64]
ALL_ACTIVATIONS = nnexposed.ACTIVATIONS

# Errors the public API may raise for bad arguments. MemoryError only where a declared size
# cannot be allocated at all (NumPy refuses it before touching memory).
API_ERRORS = (ValueError, TypeError)

# Under AddressSanitizer (tools/sanitize.sh preloads its runtime) some cases are too big or
# measure the sanitizer rather than the package.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

TESTS_FOLDER = os.path.dirname(os.path.abspath(__file__))


def assert_close(actual, expected, dtype):
    """Equal within the dtype's tolerance; NaN where the other has NaN; same dtype and shape."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    np.testing.assert_allclose(actual, expected, equal_nan=True, **TOLERANCES[np.dtype(dtype)])


def random_network(rng, sizes, activations, dtype, alpha=0.1):
    """Weights ~ N(0, 1/n_in) so values stay O(1) through deep stacks; random biases."""
    layers = []
    for n_in, n_out, activation in zip(sizes, sizes[1:], activations):
        weights = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        biases = rng.standard_normal(n_out) * 0.5
        layers.append(Dense(weights.astype(dtype), biases.astype(dtype), activation,
                            alpha=alpha))
    return Network(layers)


def run_isolated(code, *, timeout=300, env=None):
    """Run ``code`` in a fresh interpreter; return its stdout. Fails on a crash or timeout."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                                capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"child interpreter hung for {timeout} s (deadlock?)") from error
    assert result.returncode == 0, (
        f"child interpreter failed with return code {result.returncode}"
        f" (negative: killed by signal {-result.returncode})\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result.stdout


def run_tests_isolated(path, config, *, timeout, extra_args=()):
    """Run the tests of ``path`` marked ``isolated`` under pytest in a fresh interpreter (so a
    crash fails the calling test, not the run), with this run's ``--fuzz-examples``; return
    pytest's output."""
    args = ["-q", "-p", "no:cacheprovider", "--in-child",
            f"--rootdir={os.path.dirname(TESTS_FOLDER)}",
            f"--fuzz-examples={config.getoption('fuzz_examples')}",
            *extra_args, os.path.abspath(path)]
    return run_isolated(f"""
        import sys, pytest
        sys.exit(pytest.main({args!r}))
    """, timeout=timeout)


def public_activation(name):
    """The public function of an activation name (every name in nnexposed.ACTIVATIONS)."""
    return getattr(nnexposed, name)


def takes_alpha(name):
    """Whether the public function of an activation has an ``alpha`` parameter."""
    return "alpha" in inspect.signature(public_activation(name)).parameters


def cli_error(args, capsys):
    """(exit status, stderr) of a command line that must fail with one line, no traceback,
    and nothing on stdout."""
    try:
        status = cli.main(args)
    except SystemExit as exit_info:
        status = exit_info.code
    out, err = capsys.readouterr()
    assert status != 0
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return status, err
