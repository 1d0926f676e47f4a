"""Linear layer: gradients, y = x @ W.T + b, parameters, seeds and bad inputs."""

import numpy
import pytest

import xpnet
from tests.helpers import TOL, host, layer_gradcheck
from tests.layers.test_base import check_rejected, message_with
from xpnet import initializers
from xpnet.layers import Linear


@pytest.mark.parametrize("in_features, out_features, batch, bias", [
    (3, 2, 4, True), (5, 1, 1, True), (1, 4, 3, False), (7, 6, 2, True),
])
def test_gradcheck_wrt_input_weight_and_bias(xp, rng, in_features, out_features, batch, bias):
    layer = Linear(in_features, out_features, bias=bias, bias_init="ones", seed=0)
    layer_gradcheck(xp, layer, rng.standard_normal((batch, in_features)))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_is_x_times_weight_transposed_plus_bias(xp, rng, dtype, bias):
    layer = Linear(5, 3, bias=bias, seed=1, dtype=dtype)
    if bias:
        layer.bias.value = rng.standard_normal(3).astype(dtype)
    w, b = layer.weight.value.astype(numpy.float64), None if not bias else layer.bias.value.astype(numpy.float64)
    layer.apply(xp.asarray)
    x = rng.standard_normal((4, 5)).astype(dtype)
    expected = numpy.array([[sum(x[n, i] * w[o, i] for i in range(5)) + (b[o] if bias else 0) for o in range(3)]
                            for n in range(4)])
    y = host(layer(xp.asarray(x)))
    assert y.dtype == dtype
    numpy.testing.assert_allclose(y, expected, **TOL[numpy.dtype(dtype)])


def test_backward_gradients_have_pytorch_layout(rng):
    layer = Linear(4, 3, seed=0, dtype=numpy.float64)
    x, dy = rng.standard_normal((2, 4)), rng.standard_normal((2, 3))
    layer(x)
    dx = layer.backward(dy)
    numpy.testing.assert_allclose(dx, dy @ layer.weight.value, rtol=1e-12)
    numpy.testing.assert_allclose(layer.weight.grad, dy.T @ x, rtol=1e-12)
    numpy.testing.assert_allclose(layer.bias.grad, dy.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("args, expected", [((400, 120), 48120), ((120, 84), 10164), ((84, 10), 850),
                                            ((5, 3, False), 15)])
def test_num_parameters(args, expected):
    assert Linear(*args).num_parameters() == expected


def test_parameters_are_weight_then_bias_with_shape_out_in():
    layer = Linear(4, 3)
    assert [(p.name, p.shape, p.trainable) for p in layer.parameters()] == [
        ("weight", (3, 4), True), ("bias", (3,), True)]
    assert layer.buffers() == []
    assert [p.name for p in Linear(4, 3, bias=False).parameters()] == ["weight"]


@pytest.mark.parametrize("args", [(4, 3), (1, 1), (10, 2, False)])
def test_output_shape_matches_forward(rng, args):
    layer = Linear(*args)
    y = layer(rng.standard_normal((5, args[0])).astype(numpy.float32))
    assert y.shape == (5, *layer.output_shape((args[0],)))


def test_config_round_trips():
    layer = Linear(6, 2, bias=False)
    assert layer.config() == {"in_features": 6, "out_features": 2, "bias": False}
    assert Linear(**layer.config()).bias is None


def test_same_seed_gives_bit_identical_weights_and_different_seeds_differ():
    a, b, c = Linear(8, 4, seed=3), Linear(8, 4, seed=3), Linear(8, 4, seed=4)
    numpy.testing.assert_array_equal(a.weight.value, b.weight.value)
    assert not numpy.array_equal(a.weight.value, c.weight.value)


def test_weight_init_seed_and_dtype_are_used():
    layer = Linear(8, 4, weight_init="glorot_uniform", bias_init="ones", seed=2, dtype=numpy.float64)
    expected = initializers.glorot_uniform((4, 8), numpy.random.default_rng(2), numpy.float64)
    numpy.testing.assert_array_equal(layer.weight.value, expected)
    numpy.testing.assert_array_equal(layer.bias.value, numpy.ones(4))
    assert layer.dtype == numpy.float64


def test_reset_parameters_with_a_generator_is_reproducible():
    layer = Linear(8, 4, seed=0)
    layer.weight.value[...] = 0
    layer.reset_parameters(numpy.random.default_rng(11))
    numpy.testing.assert_array_equal(layer.weight.value, Linear(8, 4, seed=11).weight.value)


BAD_INPUTS = [
    ((2, 1, 2, 2), numpy.float32, xpnet.ShapeError, ["(N, 4)", "(2, 1, 2, 2)"]),
    ((4,), numpy.float32, xpnet.ShapeError, ["(N, 4)", "(4,)"]),
    ((2, 5), numpy.float32, xpnet.ShapeError, ["(N, 4)", "(2, 5)"]),
    ((2, 4), numpy.int64, xpnet.DTypeError, ["float32 or float64", "int64"]),
    ((2, 4), numpy.float64, xpnet.DTypeError, ["float32 parameters", "float64 input"]),
]


@pytest.mark.parametrize("shape, dtype, error, parts", BAD_INPUTS,
                         ids=["rank4", "rank1", "features", "int64", "float64"])
def test_bad_input_is_rejected_and_layer_is_unchanged(xp, rng, shape, dtype, error, parts):
    layer = Linear(4, 3, seed=0, name="fc1").apply(xp.asarray)
    check_rejected(xp, layer, rng.standard_normal((2, 4)).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, ["fc1", *parts])


@pytest.mark.parametrize("shape", [(5,), (2, 2), ()])
def test_output_shape_rejects_wrong_features(shape):
    with pytest.raises(xpnet.ShapeError, match=message_with("fc2", "(N, 4)", str(shape))):
        Linear(4, 3, name="fc2").output_shape(shape)


@pytest.mark.parametrize("kwargs, parts", [
    (dict(in_features=0), ["in_features must be a positive int", "in_features=0"]),
    (dict(out_features=-1), ["out_features must be a positive int", "out_features=-1"]),
    (dict(in_features=2.5), ["in_features", "2.5"]),
    (dict(out_features=True), ["out_features", "True"]),
    (dict(weight_init="uniform"), ["Unknown initializer 'uniform'", "glorot_uniform", "kaiming_normal"]),
    (dict(bias_init="one"), ["Unknown initializer 'one'", "ones", "zeros"]),
])
def test_constructor_rejects_bad_arguments(kwargs, parts):
    args = dict(in_features=4, out_features=3, name="fc_x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message_with(*parts)):
        Linear(**args)


@pytest.mark.parametrize("dtype", [numpy.int32, numpy.float16])
def test_constructor_rejects_non_float_dtype(dtype):
    with pytest.raises(xpnet.DTypeError, match=message_with("fc_d", numpy.dtype(dtype).name)):
        Linear(2, 2, dtype=dtype, name="fc_d")
