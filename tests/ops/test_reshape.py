"""flatten and nearest-neighbour upsample2d ops: shapes, values against loop references, gradients, bad inputs."""

import numpy
import pytest

import xpnet
from tests.helpers import gradcheck, host
from tests.reference import pool as ref
from xpnet import ops


def loop_flatten(x):
    """y[n, k] = the k-th element of x[n] in row-major order, one index at a time."""
    y = numpy.empty((x.shape[0], int(numpy.prod(x.shape[1:], dtype=int))), dtype=x.dtype)
    for n in range(x.shape[0]):
        for k, index in enumerate(numpy.ndindex(*x.shape[1:])):
            y[n, k] = x[(n,) + index]
    return y


@pytest.mark.parametrize("shape, flat", [
    ((2, 3, 4, 5), (2, 60)),
    ((1, 3, 2, 2), (1, 12)),
    ((3, 7), (3, 7)),
    ((4,), (4, 1)),
    ((2, 1, 1, 1), (2, 1)),
    ((0, 3, 4), (0, 12)),
])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_flatten_round_trip(xp, rng, shape, flat, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    y, cache = ops.flatten_forward(xp.asarray(x))
    assert host(y).shape == flat and host(y).dtype == dtype
    numpy.testing.assert_array_equal(host(y), loop_flatten(x))
    dy = rng.standard_normal(flat).astype(dtype)
    dx = ops.flatten_backward(xp.asarray(dy), cache)
    assert host(dx).shape == shape and host(dx).dtype == dtype
    numpy.testing.assert_array_equal(loop_flatten(host(dx)), dy)


def test_flatten_of_a_transposed_view_uses_logical_order(xp, rng):
    base = rng.standard_normal((2, 3, 4, 5))
    x_dev = xp.asarray(base).transpose(0, 1, 3, 2)
    y, cache = ops.flatten_forward(x_dev)
    numpy.testing.assert_array_equal(host(y), loop_flatten(base.transpose(0, 1, 3, 2)))
    dx = ops.flatten_backward(y, cache)
    numpy.testing.assert_array_equal(host(dx), base.transpose(0, 1, 3, 2))


def test_flatten_gradcheck(xp, rng):
    gradcheck(xp, lambda x: ops.flatten_forward(x)[0],
              lambda dy, x: [ops.flatten_backward(dy, ops.flatten_forward(x)[1])],
              [rng.standard_normal((2, 3, 2, 2))])


def test_flatten_rejects_a_scalar(xp):
    with pytest.raises(xpnet.ShapeError, match=r"flatten expects an input with a batch axis, got shape \(\)"):
        ops.flatten_forward(xp.asarray(numpy.array(1.0)))


UPSAMPLE = [  # x shape, scale_factor, output shape
    pytest.param((2, 3, 3, 4), 2, (2, 3, 6, 8), id="scale2"),
    pytest.param((2, 2, 3, 2), (2, 3), (2, 2, 6, 6), id="scale2x3"),
    pytest.param((1, 2, 3, 3), 1, (1, 2, 3, 3), id="scale1"),
    pytest.param((2, 1, 2, 3), (1, 2), (2, 1, 2, 6), id="scale1x2"),
    pytest.param((1, 1, 1, 1), 3, (1, 1, 3, 3), id="1x1-scale3"),
    pytest.param((0, 2, 2, 2), 2, (0, 2, 4, 4), id="empty-batch"),
]


@pytest.mark.parametrize("shape, scale, out_shape", UPSAMPLE)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_upsample_matches_reference(xp, rng, shape, scale, out_shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    y, cache = ops.upsample2d_forward(xp.asarray(x), scale)
    assert host(y).shape == out_shape and host(y).dtype == dtype
    numpy.testing.assert_array_equal(host(y), ref.upsample_nearest(x, scale).astype(dtype))
    dy = rng.integers(-4, 5, out_shape).astype(dtype)  # integer-valued: block sums are exact
    dx = ops.upsample2d_backward(xp.asarray(dy), cache)
    assert host(dx).shape == shape and host(dx).dtype == dtype
    numpy.testing.assert_array_equal(host(dx), ref.upsample_nearest_backward(dy, scale).astype(dtype))


def test_reference_upsample_on_a_hand_example():
    x = numpy.array([[[[1.0, 2.0]]]])
    numpy.testing.assert_array_equal(ref.upsample_nearest(x, (2, 2)), [[[[1, 1, 2, 2], [1, 1, 2, 2]]]])
    numpy.testing.assert_array_equal(ref.upsample_nearest_backward(numpy.arange(8.0).reshape(1, 1, 2, 4), 2),
                                     [[[[0 + 1 + 4 + 5, 2 + 3 + 6 + 7]]]])


@pytest.mark.parametrize("scale", [2, (2, 3), 1])
def test_upsample_gradcheck(xp, rng, scale):
    gradcheck(xp, lambda x: ops.upsample2d_forward(x, scale)[0],
              lambda dy, x: [ops.upsample2d_backward(dy, ops.upsample2d_forward(x, scale)[1])],
              [rng.standard_normal((2, 2, 3, 2))])


@pytest.mark.parametrize("scale", [1, 2])
def test_upsample_output_is_a_fresh_writable_array(xp, rng, scale):
    x = rng.standard_normal((1, 2, 2, 3))
    x_dev = xp.asarray(x)
    y, _ = ops.upsample2d_forward(x_dev, scale)
    y += 1.0
    numpy.testing.assert_array_equal(host(x_dev), x)
    numpy.testing.assert_array_equal(host(y), ref.upsample_nearest(x, scale) + 1.0)


def test_upsample_non_contiguous_input_gives_identical_results(xp, rng):
    base = rng.standard_normal((2, 3, 6, 4))
    x_view = xp.asarray(base)[:, :, ::2].transpose(0, 1, 3, 2)
    x_host = numpy.ascontiguousarray(base[:, :, ::2].transpose(0, 1, 3, 2))
    y_view, cache = ops.upsample2d_forward(x_view, (2, 3))
    y_copy, _ = ops.upsample2d_forward(xp.asarray(x_host), (2, 3))
    numpy.testing.assert_array_equal(host(y_view), host(y_copy))
    dy = rng.integers(-9, 10, host(y_copy).shape).astype(numpy.float64)  # exact whatever the summation order
    dx_view = ops.upsample2d_backward(xp.asarray(dy.transpose(0, 1, 3, 2).copy()).transpose(0, 1, 3, 2), cache)
    dx_copy = ops.upsample2d_backward(xp.asarray(dy), cache)
    numpy.testing.assert_array_equal(host(dx_view), host(dx_copy))


def test_upsample_inputs_are_not_modified(xp, rng):
    x, dy = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 6, 6))
    x_dev, dy_dev = xp.asarray(x), xp.asarray(dy)
    _, cache = ops.upsample2d_forward(x_dev, 2)
    ops.upsample2d_backward(dy_dev, cache)
    numpy.testing.assert_array_equal(host(x_dev), x)
    numpy.testing.assert_array_equal(host(dy_dev), dy)


@pytest.mark.parametrize("shape, dtype, scale, error, message", [
    ((1, 1, 2, 2), numpy.float64, 0, ValueError, r"scale_factor must be positive integers; received scale_factor=0"),
    ((1, 1, 2, 2), numpy.float64, (2, 0), ValueError, r"scale_factor must be positive .*=\(2, 0\)"),
    ((1, 1, 2, 2), numpy.float64, -1, ValueError, r"scale_factor must be positive integers"),
    ((1, 1, 2, 2), numpy.float64, (1, 2, 3), ValueError, r"scale_factor must be an int or a pair of ints"),
    ((2, 2, 2), numpy.float64, 2, xpnet.ShapeError, r"upsample2d expects 4-D input .* got shape \(2, 2, 2\)"),
    ((1, 1, 2, 2), numpy.int64, 2, xpnet.DTypeError, r"upsample2d input must be a float32 or float64 array; got int64"),
])
def test_bad_upsample_inputs_are_rejected(xp, shape, dtype, scale, error, message):
    x = numpy.ones(shape, dtype=dtype)
    x_dev = xp.asarray(x)
    with pytest.raises(error, match=message):
        ops.upsample2d_forward(x_dev, scale)
    numpy.testing.assert_array_equal(host(x_dev), x)
