"""Flatten and Upsample layers: gradients, values, shapes and bad inputs."""

import numpy
import pytest

import xpnet
from tests.helpers import host, layer_gradcheck
from tests.layers.test_base import check_rejected, message_with
from xpnet.layers import Flatten, Upsample


@pytest.mark.parametrize("shape", [(2, 3), (2, 2, 3), (1, 2, 3, 4), (3, 1, 1, 1, 2)])
def test_flatten_gradcheck(xp, rng, shape):
    layer_gradcheck(xp, Flatten(), rng.standard_normal(shape))


@pytest.mark.parametrize("scale", [1, 2, (2, 3), (3, 1)])
def test_upsample_gradcheck(xp, rng, scale):
    layer_gradcheck(xp, Upsample(scale), rng.standard_normal((2, 2, 2, 3)))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_flatten_keeps_c_order_per_sample(xp, rng, dtype):
    x = rng.standard_normal((2, 3, 2, 2)).astype(dtype)
    y = host(Flatten()(xp.asarray(x)))
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(y, numpy.stack([x[n].ravel() for n in range(2)]))


def test_flatten_of_a_non_contiguous_input(xp, rng):
    x = rng.standard_normal((3, 4, 5)).transpose(0, 2, 1)
    numpy.testing.assert_array_equal(host(Flatten()(xp.asarray(x))), x.reshape(3, 20))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("scale", [2, (2, 3), (1, 2)])
def test_upsample_repeats_each_pixel(xp, rng, scale, dtype):
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    x = rng.standard_normal((2, 2, 3, 2)).astype(dtype)
    expected = numpy.zeros((2, 2, 3 * sh, 2 * sw), dtype)
    for h in range(3 * sh):
        for w in range(2 * sw):
            expected[:, :, h, w] = x[:, :, h // sh, w // sw]
    y = host(Upsample(scale)(xp.asarray(x)))
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(y, expected)


def test_upsample_backward_sums_each_block():
    layer = Upsample((2, 3))
    layer(numpy.zeros((1, 1, 1, 2)))
    dy = numpy.arange(12, dtype=numpy.float64).reshape(1, 1, 2, 6)
    numpy.testing.assert_array_equal(layer.backward(dy), [[[[0 + 1 + 2 + 6 + 7 + 8, 3 + 4 + 5 + 9 + 10 + 11]]]])


@pytest.mark.parametrize("layer", [Flatten(), Upsample(2), Upsample((1, 3))], ids=repr)
@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 1, 1), (2, 7, 3)])
def test_output_shape_matches_forward(rng, layer, shape):
    y = layer(rng.standard_normal((2, *shape)).astype(numpy.float32))
    assert y.shape == (2, *layer.output_shape(shape))


def test_flatten_output_shape_of_other_ranks():
    assert Flatten().output_shape((6,)) == (6,)
    assert Flatten().output_shape((2, 3, 4, 5)) == (120,)


def test_flatten_output_shape_rejects_what_forward_rejects():
    layer = Flatten(name="flat")
    with pytest.raises(xpnet.ShapeError, match="flat"):
        layer(numpy.ones(3))
    with pytest.raises(xpnet.ShapeError, match=message_with("flat", "()")):
        layer.output_shape(())


def test_configs_are_plain_data():
    assert Flatten().config() == {}
    assert Upsample((2, 3)).config() == {"scale_factor": [2, 3], "mode": "nearest"}
    assert Upsample(**Upsample(3).config()).scale_factor == (3, 3)


@pytest.mark.parametrize("shape, dtype, error, parts", [
    ((3,), numpy.float32, xpnet.ShapeError, ["at least 2 axes", "(3,)"]),
    ((2, 3), numpy.int64, xpnet.DTypeError, ["float32 or float64", "int64"]),
    ((2, 3), numpy.complex128, xpnet.DTypeError, ["float32 or float64", "complex128"]),
], ids=["rank1", "int64", "complex"])
def test_flatten_rejects_bad_input(xp, rng, shape, dtype, error, parts):
    check_rejected(xp, Flatten(name="flat"), rng.standard_normal((2, 3)).astype(numpy.float32),
                   numpy.ones(shape, dtype), error, ["flat", *parts])


@pytest.mark.parametrize("shape, dtype, error, parts", [
    ((2, 3, 3), numpy.float32, xpnet.ShapeError, ["4-D input (N, C, H, W)", "(2, 3, 3)"]),
    ((1, 1, 2, 3, 3), numpy.float32, xpnet.ShapeError, ["4-D input", "(1, 1, 2, 3, 3)"]),
    ((1, 2, 3, 3), numpy.int32, xpnet.DTypeError, ["float32 or float64", "int32"]),
], ids=["rank3", "rank5", "int32"])
def test_upsample_rejects_bad_input(xp, rng, shape, dtype, error, parts):
    check_rejected(xp, Upsample(2, name="up"), rng.standard_normal((1, 2, 3, 3)).astype(numpy.float32),
                   numpy.ones(shape, dtype), error, ["up", *parts])


def test_upsample_output_shape_rejects_wrong_rank():
    with pytest.raises(xpnet.ShapeError, match=message_with("up", "4-D input", "(3, 4)")):
        Upsample(name="up").output_shape((3, 4))


@pytest.mark.parametrize("kwargs, parts", [
    (dict(mode="bilinear"), ["mode='nearest'", "'bilinear'"]),
    (dict(scale_factor=0), ["scale_factor", "positive", "scale_factor=0"]),
    (dict(scale_factor=(2, 0)), ["scale_factor", "(2, 0)"]),
    (dict(scale_factor=(1, 2, 3)), ["scale_factor", "(1, 2, 3)"]),
])
def test_upsample_constructor_rejects_bad_arguments(kwargs, parts):
    with pytest.raises(ValueError, match=message_with("up_x", *parts)):
        Upsample(name="up_x", **kwargs)
