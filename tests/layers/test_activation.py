"""Activation layers: gradients, values against closed forms, arguments passed through, bad inputs."""

import math

import numpy
import pytest

import xpnet
from tests.helpers import TOL, host, layer_gradcheck
from tests.layers.test_base import check_rejected, message_with
from xpnet.layers import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh


def away_from_zero(shape, rng, gap=1e-3):
    """Normal values pushed at least ``gap`` from 0 (the kink of ReLU-like functions)."""
    x = rng.standard_normal(shape)
    return numpy.where(x >= 0, x + gap, x - gap)


def _gelu(x):
    return x * 0.5 * (1 + numpy.vectorize(math.erf)(x / math.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + numpy.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _softmax(x, axis):
    e = numpy.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# (layer factory, closed form on float64 host arrays)
FORMS = {
    "relu": (lambda: ReLU(), lambda x: numpy.maximum(x, 0)),
    "leaky_relu": (lambda: LeakyReLU(0.2), lambda x: numpy.where(x > 0, x, 0.2 * x)),
    "leaky_relu_default": (lambda: LeakyReLU(), lambda x: numpy.where(x > 0, x, 0.01 * x)),
    "leaky_relu_steep": (lambda: LeakyReLU(-1.5), lambda x: numpy.where(x > 0, x, -1.5 * x)),
    "sigmoid": (lambda: Sigmoid(), lambda x: 1 / (1 + numpy.exp(-x))),
    "tanh": (lambda: Tanh(), numpy.tanh),
    "gelu": (lambda: GELU(), _gelu),
    "gelu_tanh": (lambda: GELU(approximate="tanh"), _gelu_tanh),
    "softmax": (lambda: Softmax(), lambda x: _softmax(x, 1)),
    "softmax_last": (lambda: Softmax(axis=-1), lambda x: _softmax(x, -1)),
    "softmax_0": (lambda: Softmax(axis=0), lambda x: _softmax(x, 0)),
}
SHAPES = [(3, 4), (2, 3, 2, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", sorted(FORMS))
def test_gradcheck(xp, rng, kind, shape):
    layer_gradcheck(xp, FORMS[kind][0](), away_from_zero(shape, rng) * 2)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", sorted(FORMS))
def test_forward_matches_the_closed_form(xp, rng, kind, shape, dtype):
    factory, form = FORMS[kind]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = host(factory()(xp.asarray(x)))
    assert y.dtype == dtype and y.shape == shape
    numpy.testing.assert_allclose(y, form(x.astype(numpy.float64)), **TOL[numpy.dtype(dtype)])


@pytest.mark.parametrize("kind", sorted(FORMS))
def test_forward_and_backward_leave_inputs_unchanged(xp, rng, kind):
    x = rng.standard_normal((3, 4))
    dy = rng.standard_normal((3, 4))
    x_dev, dy_dev = xp.asarray(x), xp.asarray(dy)
    layer = FORMS[kind][0]()
    layer.forward(x_dev)
    layer.backward(dy_dev)
    numpy.testing.assert_array_equal(host(x_dev), x)
    numpy.testing.assert_array_equal(host(dy_dev), dy)


def test_relu_backward_routes_by_sign():
    layer = ReLU()
    layer(numpy.array([[-2.0, 3.0, -0.5, 0.25]]))
    numpy.testing.assert_array_equal(layer.backward(numpy.array([[1.0, 2.0, 3.0, 4.0]])), [[0, 2, 0, 4]])


def test_softmax_sums_to_one_along_its_axis(rng):
    x = rng.standard_normal((2, 3, 4)).astype(numpy.float32)
    numpy.testing.assert_allclose(Softmax(axis=2)(x).sum(axis=2), 1, rtol=1e-6)
    numpy.testing.assert_allclose(Softmax()(x).sum(axis=1), 1, rtol=1e-6)


def test_softmax_is_stable_for_huge_logits():
    y = Softmax()(numpy.array([[1000.0, 0.0, -1000.0]], numpy.float32))
    assert numpy.all(numpy.isfinite(y))
    numpy.testing.assert_allclose(y, [[1, 0, 0]], atol=1e-7)


@pytest.mark.parametrize("layer, config", [
    (ReLU(), {}), (Sigmoid(), {}), (Tanh(), {}), (LeakyReLU(0.3), {"negative_slope": 0.3}),
    (GELU("tanh"), {"approximate": "tanh"}), (Softmax(-1), {"axis": -1}),
], ids=repr)
def test_config_round_trips_and_there_are_no_parameters(layer, config):
    assert layer.config() == config
    assert type(layer)(**config).config() == config
    assert layer.parameters() == [] and layer.num_parameters() == 0
    assert layer.output_shape((3, 5, 2)) == (3, 5, 2)


@pytest.mark.parametrize("kind", sorted(FORMS))
@pytest.mark.parametrize("dtype", [numpy.int64, numpy.int8, numpy.bool_, numpy.float16])
def test_non_float_input_is_rejected_and_layer_is_unchanged(xp, rng, kind, dtype):
    layer = FORMS[kind][0]()
    layer.name = "act1"
    check_rejected(xp, layer, rng.standard_normal((3, 4)).astype(numpy.float32), numpy.ones((3, 4), dtype),
                   xpnet.DTypeError, ["act1", "float32 or float64", numpy.dtype(dtype).name])


@pytest.mark.parametrize("axis, good, bad", [(2, (2, 3, 4), (3, 4)), (-3, (2, 3, 4), (3, 4)),
                                            (4, (1, 2, 3, 4, 5), (1, 2, 3, 4))])
def test_softmax_axis_out_of_range_is_rejected(xp, rng, axis, good, bad):
    layer = Softmax(axis=axis, name="sm")
    check_rejected(xp, layer, rng.standard_normal(good), rng.standard_normal(bad), xpnet.ShapeError,
                   ["sm", f"axis {axis}", str(bad)])
    assert layer.output_shape(good[1:]) == good[1:]
    with pytest.raises(xpnet.ShapeError, match=message_with("sm", f"axis {axis}", str(bad[1:]))):
        layer.output_shape(bad[1:])


@pytest.mark.parametrize("factory, parts", [
    (lambda: LeakyReLU("a", name="act_x"), ["negative_slope must be a finite number", "'a'"]),
    (lambda: LeakyReLU(None, name="act_x"), ["negative_slope", "None"]),
    (lambda: LeakyReLU(True, name="act_x"), ["negative_slope", "True"]),
    (lambda: LeakyReLU(float("nan"), name="act_x"), ["negative_slope", "nan"]),
    (lambda: GELU("x", name="act_x"), ["approximate must be 'none' or 'tanh'", "'x'"]),
    (lambda: GELU(None, name="act_x"), ["approximate", "None"]),
    (lambda: Softmax("1", name="act_x"), ["axis must be an int", "'1'"]),
    (lambda: Softmax(1.0, name="act_x"), ["axis must be an int", "1.0"]),
])
def test_constructor_rejects_bad_arguments(factory, parts):
    with pytest.raises(ValueError, match=message_with("act_x", *parts)):
        factory()
