"""Options, markers and fixtures of the test suite (helpers shared by tests: tests/helpers.py).

Registered here rather than in pyproject.toml, so that they also hold where the suite runs
from a copy of tests/ alone (the wheel builds' test runs).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from nnexposed import Network, kernels


def pytest_addoption(parser):
    group = parser.getgroup("nnexposed")
    group.addoption("--slow", action="store_true",
                    help="also run the tests marked slow (minutes, GBs of memory)")
    group.addoption("--in-child", action="store_true",
                    help="run only the tests marked isolated, in this process (their parent "
                         "tests start a child interpreter with this option)")
    group.addoption("--fuzz-examples", type=int, default=150, metavar="N",
                    help="Hypothesis examples per fuzz test (default: 150)")
    group.addoption("--stress-seconds", type=float, default=3.0, metavar="S",
                    help="duration of each thread stress (default: 3)")
    group.addoption("--expect-openmp", action="store_true",
                    help="fail unless the installed kernels have OpenMP (wheel builds)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long or memory-hungry; runs only with --slow")
    config.addinivalue_line(
        "markers", "isolated: crash-prone; runs only in the child interpreter that its "
                   "parent test starts (--in-child)")
    settings.register_profile("fuzz", max_examples=config.getoption("fuzz_examples"),
                              deadline=None, suppress_health_check=list(HealthCheck))


def pytest_collection_modifyitems(config, items):
    in_child = config.getoption("in_child")
    selected, deselected = [], []
    for item in items:
        isolated = item.get_closest_marker("isolated") is not None
        (selected if isolated == in_child else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
    if not config.getoption("slow"):
        skip = pytest.mark.skip(reason="slow: runs with --slow")
        for item in items:
            if item.get_closest_marker("slow") is not None:
                item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def article_network():
    return Network.from_sizes([3, 5, 5, 5, 2], seed=7)


@pytest.fixture(autouse=True, scope="session")
def threads_never_back_off():
    """Parallel paths stay parallel whatever the machine's load: the back-off to one thread
    (which a busy test machine would trigger) is switched off except where a test turns it on."""
    previous = kernels.allow_backoff(False)
    yield
    kernels.allow_backoff(previous)
