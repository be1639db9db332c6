"""Model files: every input to ``nnexposed.load`` ends in a loaded model or a ValueError.

Hypothesis mutates saved models and random bytes (in a child interpreter, so a crash fails the
test); tests/reliability/load_corpus/ holds seeds and any input that once crashed.
tools/fuzz_load.py is the coverage-guided (atheris) fuzzer over the same target.
"""

import glob
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnexposed
from tests.helpers import run_tests_isolated

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "load_corpus")


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
    nnexposed.save(network, str(path))
    return path.read_bytes()


@pytest.mark.parametrize("path", [path for path in sorted(glob.glob(os.path.join(CORPUS, "*")))
                                  if not path.endswith(".md")])
def test_corpus_inputs(path, tmp_path):
    with open(path, "rb") as f:
        model = load_bytes(f.read(), tmp_path)
    if os.path.basename(path).startswith("seed_"):
        assert model is not None, "a saved model must load"


@pytest.mark.isolated
def test_fuzz_load_mutations(tmp_path_factory):
    seed = saved_model_bytes(tmp_path_factory.mktemp("seed"))
    fuzz_settings = settings.get_profile("fuzz")

    # A file is cheap to mutate and load: twice the examples of the other fuzz tests.
    @settings(fuzz_settings, max_examples=2 * fuzz_settings.max_examples)
    @given(st.one_of(
        st.binary(max_size=512),
        st.tuples(st.integers(0, max(len(seed) - 1, 0)), st.binary(min_size=1, max_size=8))
          .map(lambda t: seed[:t[0]] + t[1] + seed[t[0] + len(t[1]):]),
        st.integers(0, len(seed)).map(lambda n: seed[:n])))
    def fuzz(data):
        load_bytes(data, tmp_path_factory.mktemp("case"))

    fuzz()


def test_fuzz_load_in_child_interpreter(pytestconfig):
    output = run_tests_isolated(__file__, pytestconfig, timeout=900)
    assert " passed" in output and "failed" not in output, output[-3000:]
