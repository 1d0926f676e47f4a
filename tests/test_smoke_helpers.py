"""The test helpers themselves must be able to fail."""

import numpy
import pytest

from tests.helpers import gradcheck, layer_gradcheck
from xpnet import layers


def test_gradcheck_catches_a_wrong_gradient(xp):
    x = numpy.linspace(-1, 1, 7)
    with pytest.raises(AssertionError):
        gradcheck(xp, lambda a: a * a, lambda dy, a: [dy * a], [x])  # true gradient is 2a


def test_gradcheck_catches_a_modified_input(xp):
    x = numpy.linspace(-1, 1, 7)

    def forward(a):
        a *= 1.0001
        return a
    with pytest.raises(AssertionError, match="modified"):
        gradcheck(xp, forward, lambda dy, a: [dy], [x])


def test_gradcheck_refuses_float32(xp):
    with pytest.raises(TypeError, match="float64"):
        gradcheck(xp, lambda a: a, lambda dy, a: [dy], [numpy.ones(3, numpy.float32)])


def test_directional_mode_catches_a_wrong_gradient(xp):
    x = numpy.random.default_rng(0).standard_normal(1000)
    with pytest.raises(AssertionError):
        gradcheck(xp, lambda a: a * a, lambda dy, a: [dy * a * 1.01 * 2], [x], max_full=10)


def test_layer_gradcheck_passes_on_linear(xp, rng):
    layer_gradcheck(xp, layers.Linear(3, 2, seed=0), rng.standard_normal((4, 3)))
