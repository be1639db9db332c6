"""Model files: every input to ``nnexposed.load`` ends in a loaded model or a ValueError.

Runs only when the package has ``load`` (model files are another piece of work); until then
every test here skips. Hypothesis mutates saved models and random bytes (in a child
interpreter, so a crash fails the test); tests/load_corpus/ holds seeds and any input that
once crashed. tools/fuzz_load.py is the coverage-guided (atheris) fuzzer over the same target.
"""

import glob
import os

import numpy as np
import pytest
from reliability_support import run_tests_isolated

import nnexposed

pytestmark = pytest.mark.skipif(not hasattr(nnexposed, "load"),
                                reason="nnexposed.load does not exist (yet)")
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "load_corpus")
IN_CHILD = os.environ.get("NNEXPOSED_FUZZ_CHILD") == "1"


def load_bytes(data, tmp_path):
    """load() on a file holding ``data``: the model, or None after a ValueError."""
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    try:
        model = nnexposed.load(str(path))
    except ValueError:
        return None
    assert isinstance(model, nnexposed.Network)
    x = np.zeros((2, model.n_in), model.dtype)
    assert model(x).shape == (2, model.n_out)
    return model


def saved_model_bytes(tmp_path):
    network = nnexposed.Network.from_sizes([3, 5, 2], seed=0)
    path = tmp_path / "seed.bin"
    nnexposed.save(network, str(path)) if hasattr(nnexposed, "save") else network.save(path)
    return path.read_bytes()


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CORPUS, "*"))))
def test_corpus_inputs(path, tmp_path):
    if path.endswith("README.md"):
        pytest.skip("not an input")
    with open(path, "rb") as f:
        model = load_bytes(f.read(), tmp_path)
    if os.path.basename(path).startswith("seed_"):
        assert model is not None, "a saved model must load"


@pytest.mark.skipif(not IN_CHILD, reason="fuzzed in a child interpreter")
def test_fuzz_load_mutations(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    seed = saved_model_bytes(tmp_path_factory.mktemp("seed"))

    @settings(max_examples=int(os.environ.get("NNEXPOSED_FUZZ_EXAMPLES", "300")),
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(max_size=512),
        st.tuples(st.integers(0, max(len(seed) - 1, 0)), st.binary(min_size=1, max_size=8))
          .map(lambda t: seed[:t[0]] + t[1] + seed[t[0] + len(t[1]):]),
        st.integers(0, len(seed)).map(lambda n: seed[:n])))
    def fuzz(data):
        load_bytes(data, tmp_path_factory.mktemp("case"))

    fuzz()


@pytest.mark.skipif(IN_CHILD, reason="already the child")
def test_fuzz_load_in_child_interpreter():
    output = run_tests_isolated(__file__, "mutations", env={"NNEXPOSED_FUZZ_CHILD": "1"},
                                timeout=900)
    assert " passed" in output and "failed" not in output, output[-3000:]
