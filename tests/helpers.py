"""Helpers of the reliability tests: subprocess isolation, activations' parameters.

Crash-prone cases run in a child interpreter, so that a segfault or an abort in compiled code
fails one test instead of killing the whole run.
"""

import inspect
import os
import subprocess
import sys
import textwrap

import nnexposed

# Errors the public API may raise for bad arguments. MemoryError only where a declared size
# cannot be allocated at all (NumPy refuses it before touching memory).
API_ERRORS = (ValueError, TypeError)


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


def run_tests_isolated(path, selector, *, env, timeout, extra_args=()):
    """Run the tests of ``path`` matching ``-k selector`` under pytest in a fresh interpreter
    (so a crash fails the calling test, not the run); return pytest's output."""
    args = ["-q", "-p", "no:cacheprovider", *extra_args, os.path.abspath(path), "-k", selector]
    return run_isolated(f"""
        import sys, pytest
        sys.exit(pytest.main({args!r}))
    """, env=env, timeout=timeout)


def public_activation(name):
    """The public function of an activation name (every name in nnexposed.ACTIVATIONS)."""
    return getattr(nnexposed, name)


def takes_alpha(name):
    """Whether the public function of an activation has an ``alpha`` parameter."""
    return "alpha" in inspect.signature(public_activation(name)).parameters

