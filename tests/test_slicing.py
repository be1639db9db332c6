"""Networks as sequences of layers: len, indexing, slicing, iteration."""

import numpy as np
import pytest

from nnexposed import Network
from nnexposed.reference import forward_numpy
from tests.helpers import DTYPES, assert_close, random_network


@pytest.fixture(params=DTYPES)
def network(request, rng):
    return random_network(rng, [6, 9, 7, 5, 3], ["relu", "tanh", "leaky_relu", "softmax"],
                          request.param)


def test_len_iter_and_index(network):
    assert len(network) == 4
    assert list(network) == list(network.layers)
    assert network[0] is network.layers[0]
    assert network[-1] is network.layers[3]
    with pytest.raises(IndexError, match="layer index 4 out of range for a network of 4"):
        network[4]
    with pytest.raises(IndexError, match="-5"):
        network[-5]
    with pytest.raises(TypeError, match="integers or slices, got str"):
        network["0"]


@pytest.mark.parametrize("index", [slice(None, -1), slice(1, 3), slice(2, None),
                                   slice(0, 1), slice(-2, None)])
def test_slice_is_a_network_of_those_layers(network, index, rng):
    part = network[index]
    assert isinstance(part, Network)
    assert part.layers == network.layers[index]
    x = rng.standard_normal((17, part.n_in))
    assert_close(part(x), forward_numpy(part, x), network.dtype)
    assert_close(part(x[0]), forward_numpy(part, x[0]), network.dtype)


def test_penultimate_embedding_equals_trace(network, rng):
    x = rng.standard_normal((50, network.n_in))
    np.testing.assert_array_equal(network[:-1](x), network.trace(x)[-2].output)
    # Slices chain back into the whole network.
    np.testing.assert_array_equal(network[-1:](network[:-1](x)), network(x))


def test_slices_share_nothing_mutable(network):
    part = network[1:3]
    assert part is not network
    with pytest.raises(AttributeError):
        part.layers[0].weights = None
    assert not part.layers[0].weights.flags.writeable


def test_bad_slices_are_refused(network):
    with pytest.raises(IndexError, match="no layers"):
        network[3:1]
    with pytest.raises(ValueError, match="layer 1 expects"):
        network[::2]   # 6->9 then 7->5: not a chain
