"""Many Python threads calling the kernels at once (the GIL is released, and free-threaded
CPython runs them truly in parallel): every result must equal the serial one."""

import os
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import nnexposed
from nnexposed import _dispatch
from nnexposed.reference import forward_numpy
from tests.helpers import assert_close, random_network


def test_import_keeps_the_gil_off_on_free_threaded_python():
    # A free-threaded interpreter turns the GIL back on (with a RuntimeWarning) when it imports
    # an extension module not declared free-threading compatible; all kernels are declared so.
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("not a free-threaded CPython")
    modules = ", ".join(_dispatch.MODULES[isa] for isa in _dispatch.installed())
    code = ("import sys, numpy; assert not sys._is_gil_enabled(); "
            f"import nnexposed, nnexposed._cpu, {modules}; assert not sys._is_gil_enabled()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_concurrent_forward_and_activations(rng):
    networks = [random_network(rng, [40, 64, 64, 5], ["relu", "tanh", "softmax"], dtype)
                for dtype in (np.float32, np.float64)]
    # Small batches run one sample at a time, large ones in OpenMP tiles: mix both.
    inputs = [rng.standard_normal((batch, 40)) for batch in (1, 3, 40, 300, 2_000)] * 6
    jobs = [(net, x) for net in networks for x in inputs]
    expected = [forward_numpy(net, x) for net, x in jobs]

    def work(job):
        net, x = job
        out = np.empty((x.shape[0], net.n_out), net.dtype)
        net.forward(x, out=out)
        acts = nnexposed.sigmoid(x), nnexposed.softmax(x)
        return out, nnexposed.forward(net, x), acts

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, jobs))
    for (net, x), want, (out, again, (sig, soft)) in zip(jobs, expected, results):
        assert_close(out, want, net.dtype)
        assert_close(again, want, net.dtype)
        np.testing.assert_allclose(sig, 1 / (1 + np.exp(-x)), rtol=1e-12)
        np.testing.assert_allclose(soft.sum(axis=-1), 1.0, rtol=1e-12)
