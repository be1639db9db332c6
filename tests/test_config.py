"""The settings owner (nnexposed._config): get_config, set_config, config_context, the
thresholds that force each kernel path, and the path counters the tests rely on."""

import importlib
import threading

import numpy as np
import pytest

import nnexposed
from nnexposed import _config, _dispatch, _settings, config_context, get_config, set_config
from nnexposed._config import MAX_THREADS, counting_paths, path_counts, reset_path_counts
from nnexposed.reference import forward_numpy
from tests.helpers import DTYPES, assert_close, random_network

SETTING_NAMES = ("threads", "blas", "shared_panels", "parallel_min_macs", "row_split_min_macs",
                 "share_min_macs", "blas_min_weights", "blas_min_batch", "panel_max_weights")
# Small sizes at which each path runs (16-70-9: 1,750 multiply-adds per sample).
FORCE = {
    "one_sample": dict(threads=2),
    "row_split": dict(threads=2, parallel_min_macs=0, row_split_min_macs=0),
    "shared_panels": dict(threads=2, shared_panels="always", share_min_macs=0),
    "tiles": dict(threads=2, parallel_min_macs=0),
    "blas": dict(blas="always", blas_min_weights=0, blas_min_batch=0),
}


@pytest.fixture(autouse=True)
def restore_process_settings():
    before = get_config()
    yield
    set_config(**before)


def test_defaults():
    config = get_config()
    assert tuple(config) == SETTING_NAMES
    assert config["threads"] == "auto" and config["blas"] == config["shared_panels"] == "auto"
    assert config == {name: _config._decode(name, value)
                      for name, value in _settings.DEFAULTS.items()}
    assert nnexposed.get_config is get_config and nnexposed.set_config is set_config
    assert nnexposed.config_context is config_context


def test_set_config_is_process_wide():
    set_config(threads=3, blas="never", parallel_min_macs=5)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(get_config()))
    thread.start()
    thread.join()
    assert seen[0]["threads"] == 3 and seen[0]["blas"] == "never"
    assert seen[0]["parallel_min_macs"] == 5
    assert nnexposed.get_num_threads() == 3
    set_config(threads="auto")
    assert get_config()["threads"] == "auto"


def test_threads_are_capped_at_max_threads():
    set_config(threads=10**9)
    assert get_config()["threads"] == MAX_THREADS == nnexposed.get_num_threads()
    nnexposed.set_num_threads(2**40)
    assert nnexposed.get_num_threads() == MAX_THREADS
    with config_context(threads=2**70):
        assert get_config()["threads"] == MAX_THREADS


def test_num_threads_wrappers_are_the_threads_setting():
    nnexposed.set_num_threads(2)
    assert get_config()["threads"] == 2 == nnexposed.get_num_threads()
    with config_context(threads=1):
        assert nnexposed.get_num_threads() == 1
    nnexposed.set_num_threads(None)
    assert get_config()["threads"] == "auto"


def test_config_context_is_per_thread_and_nests():
    other = {}
    inside = threading.Event()
    release = threading.Event()

    def in_other_thread():
        inside.wait()
        other["during"] = get_config()
        release.set()

    thread = threading.Thread(target=in_other_thread)
    thread.start()
    with config_context(threads=1, blas="always"):
        with config_context(blas="never", share_min_macs=7):
            assert get_config()["threads"] == 1          # from the outer context
            assert get_config()["blas"] == "never"
            assert get_config()["share_min_macs"] == 7
            inside.set()
            release.wait(timeout=60)
        assert get_config()["blas"] == "always" and get_config()["share_min_macs"] != 7
    thread.join()
    assert other["during"] == get_config()      # the other thread saw the process settings
    assert get_config()["threads"] == "auto"


def test_config_context_restores_after_an_error():
    with pytest.raises(KeyError):
        with config_context(blas="never"):
            raise KeyError("inside")
    assert get_config()["blas"] == "auto"


def test_set_config_inside_a_context():
    with config_context(blas="never"):
        set_config(blas="always", parallel_min_macs=11)
        # The context's own values stay; the others follow the process settings.
        assert get_config()["blas"] == "never" and get_config()["parallel_min_macs"] == 11
    assert get_config()["blas"] == "always"


@pytest.mark.parametrize("settings, error, message", [
    (dict(thread=2), TypeError, "unknown setting 'thread'"),
    (dict(threads=0), ValueError, "threads must be >= 1, got 0"),
    (dict(threads=1.5), TypeError, "threads must be an integer"),
    (dict(blas=True), ValueError, "blas must be one of 'auto', 'always', 'never', got True"),
    (dict(shared_panels="sometimes"), ValueError, "shared_panels must be one of"),
    (dict(parallel_min_macs=-1), ValueError, "parallel_min_macs must be an int from 0"),
    (dict(blas_min_batch=2**63), ValueError, "blas_min_batch must be an int from 0"),
    (dict(panel_max_weights=True), ValueError, "panel_max_weights must be an int"),
    (dict(share_min_macs=1.0), ValueError, "share_min_macs must be an int"),
])
def test_bad_settings_are_rejected_and_change_nothing(settings, error, message):
    before = get_config()
    valid_first = {"threads": 1, **settings}   # checked before anything changes
    with pytest.raises(error, match=message):
        set_config(**valid_first)
    with pytest.raises(error, match=message):
        with config_context(**valid_first):
            pass
    assert get_config() == before


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path, batch", [
    # Batches of fewer than 4 samples run sample by sample, larger ones in blocks.
    (path, batch) for path in FORCE
    for batch in ([1, 3] if path in ("one_sample", "row_split", "shared_panels")
                  else [4, 40, 100])])
def test_thresholds_force_each_path(rng, dtype, path, batch):
    if path == "blas" and not nnexposed.kernels.blas_available():
        pytest.skip("SciPy's BLAS is not available")
    with config_context(**FORCE[path]):
        network = random_network(rng, [16, 70, 9], ["relu", "tanh"], dtype)
        x = rng.standard_normal((batch, 16)).astype(dtype)
        with counting_paths() as counts:
            result = network(x)
    assert counts[path] == 1 and sum(counts[name] for name in FORCE) == 1
    threaded = path in ("row_split", "shared_panels") or path == "tiles" and batch > 32
    if nnexposed.kernels.openmp_enabled() and threaded:
        assert counts["parallel_regions"] >= 1
    elif not threaded:
        assert counts["parallel_regions"] == 0
    assert_close(result, forward_numpy(network, x), dtype)


def test_panel_limit_is_read_when_a_network_is_built(rng):
    network = random_network(rng, [16, 70, 9], ["relu", "tanh"], np.float32)
    with config_context(panel_max_weights=100):
        small_panels = random_network(rng, [16, 70, 9], ["relu", "tanh"], np.float32)
    x = rng.standard_normal(16).astype(np.float32)
    with config_context(**FORCE["shared_panels"]), counting_paths() as counts:
        network(x)
        small_panels(x)
    assert counts["shared_panels"] == 1 and counts["one_sample"] == 1


def test_every_kernel_build_reads_the_same_settings(rng):
    network = random_network(rng, [16, 70, 9], ["relu", "tanh"], np.float64)
    weights = [layer.weights for layer in network.layers]
    biases = [layer.biases for layer in network.layers]
    x = rng.standard_normal((100, 16))
    runnable = [isa for isa in _dispatch.installed() if isa in _dispatch.supported()]
    for isa in runnable:
        build = importlib.import_module(_dispatch.MODULES[isa])
        compiled = build.CompiledNetwork(weights, biases, [1, 4], [0.0, 0.0])
        for threads in (1, 2):
            nnexposed.set_num_threads(threads)
            with config_context(parallel_min_macs=0), counting_paths() as counts:
                result = compiled.forward(x)
            parallel = threads > 1 and build.openmp_enabled()
            assert (isa, counts["tiles"], counts["parallel_regions"]) == (isa, 1, int(parallel))
            np.testing.assert_allclose(result, forward_numpy(network, x), rtol=1e-12)


def test_path_counts_count_only_while_counting(rng):
    network = random_network(rng, [4, 3], ["relu"], np.float32)
    reset_path_counts()
    network(np.ones(4, np.float32))
    assert sum(path_counts().values()) == 0
    with counting_paths() as counts:
        with counting_paths() as inner:
            network(np.ones(4, np.float32))
        network(np.ones((10, 4), np.float32))
    assert inner["one_sample"] == 1 and inner["tiles"] == 0
    assert counts["one_sample"] == 1 and counts["tiles"] == 1
    assert path_counts()["one_sample"] == 1
    reset_path_counts()
    assert sum(path_counts().values()) == 0


def test_counts_calls_from_every_thread(rng):
    network = random_network(rng, [4, 3], ["relu"], np.float32)
    with counting_paths() as counts:
        workers = [threading.Thread(target=lambda: [network(np.ones(4, np.float32))
                                                    for _ in range(100)]) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert counts["one_sample"] == 400
