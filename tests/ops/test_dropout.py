"""Inverted dropout: identity in evaluation, scaling, masks (passed, host, seeded), keep rate, gradients, errors."""

import math
import re

import numpy
import pytest

import xpnet
from tests import strict_backend
from tests.helpers import gradcheck, host
from xpnet import ops


def _nonzero(rng, shape):
    """Inputs with no zeros, so a zero output always means a dropped value."""
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("p, train", [(0.5, False), (0.0, True), (0.0, False), (0, True)])
def test_eval_mode_and_zero_rate_are_identity(xp, rng, p, train):
    x, dy = _nonzero(rng, (3, 4)), rng.standard_normal((3, 4))
    y, cache = ops.dropout_forward(xp.asarray(x), p, rng=numpy.random.default_rng(0), train=train)
    numpy.testing.assert_array_equal(host(y), x)
    numpy.testing.assert_array_equal(host(ops.dropout_backward(xp.asarray(dy), cache)), dy)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_kept_values_are_scaled_and_dropped_are_zero(xp, rng, p, dtype):
    x = _nonzero(rng, (8, 50)).astype(dtype)
    original = x.copy()
    y, _ = ops.dropout_forward(xp.asarray(x), p, rng=numpy.random.default_rng(3))
    y = host(y)
    assert y.dtype == dtype
    kept = y != 0
    assert 0 < kept.sum() < x.size
    rtol = 1e-6 if dtype == numpy.float32 else 1e-15
    numpy.testing.assert_allclose(y[kept], x[kept].astype(numpy.float64) / (1 - p), rtol=rtol)
    numpy.testing.assert_array_equal(x, original)


@pytest.mark.parametrize("mask_dtype", [bool, numpy.float32, numpy.float64])
@pytest.mark.parametrize("on_device", [True, False])
def test_passed_mask_is_used_exactly_and_reused_identically(xp, rng, mask_dtype, on_device):
    x, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    mask = rng.random((4, 6)) >= 0.3
    passed = xp.asarray(mask.astype(mask_dtype)) if on_device else mask.astype(mask_dtype)
    expected = numpy.where(mask, x / 0.7, 0.0)
    y1, cache1 = ops.dropout_forward(xp.asarray(x), 0.3, mask=passed)
    y2, cache2 = ops.dropout_forward(xp.asarray(x), 0.3, mask=passed)
    numpy.testing.assert_allclose(host(y1), expected, rtol=1e-15)
    numpy.testing.assert_array_equal(host(y1), host(y2))
    numpy.testing.assert_allclose(host(ops.dropout_backward(xp.asarray(dy), cache1)), numpy.where(mask, dy / 0.7, 0.0),
                                  rtol=1e-15)
    numpy.testing.assert_array_equal(host(ops.dropout_backward(xp.asarray(dy), cache1)),
                                     host(ops.dropout_backward(xp.asarray(dy), cache2)))


def test_host_mask_is_transferred_once_on_the_strict_backend(rng):
    strict = strict_backend.strict
    x = strict.asarray(rng.standard_normal((3, 5)))
    mask = rng.random((3, 5)) >= 0.5
    before = dict(strict_backend.TRANSFERS)
    y, _ = ops.dropout_forward(x, 0.5, mask=mask)
    assert strict_backend.TRANSFERS["to_device"] - before["to_device"] == 1
    assert strict_backend.TRANSFERS["to_host"] == before["to_host"]
    assert isinstance(y, strict.ndarray)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_same_seed_gives_the_same_mask_on_every_backend(xp, rng, p):
    x = _nonzero(rng, (6, 7, 5))
    y_backend, _ = ops.dropout_forward(xp.asarray(x), p, rng=numpy.random.default_rng(42))
    y_numpy, _ = ops.dropout_forward(x, p, rng=numpy.random.default_rng(42))
    y_other_seed, _ = ops.dropout_forward(x, p, rng=numpy.random.default_rng(43))
    numpy.testing.assert_array_equal(host(y_backend) != 0, y_numpy != 0)
    numpy.testing.assert_array_equal(host(y_backend), y_numpy)
    assert ((y_other_seed != 0) != (y_numpy != 0)).any()


def test_mask_helper_is_deterministic_per_seed():
    a = ops.dropout_mask((50, 40), 0.5, numpy.random.default_rng(9))
    b = ops.dropout_mask((50, 40), 0.5, numpy.random.default_rng(9))
    assert isinstance(a, numpy.ndarray) and a.dtype == bool and a.shape == (50, 40)
    numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_keep_rate_is_close_to_one_minus_p(xp, p):
    n = 200_000
    y, _ = ops.dropout_forward(xp.asarray(numpy.ones((400, 500), numpy.float32)), p,
                               rng=numpy.random.default_rng(2024))
    kept = float((host(y) != 0).mean())
    assert abs(kept - (1 - p)) <= 5 * math.sqrt(p * (1 - p) / n), f"keep rate {kept} for p={p}"
    assert abs(float(host(y).astype(numpy.float64).mean()) - 1.0) <= 5 * math.sqrt(p / ((1 - p) * n))


@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout_gradcheck_with_fixed_mask(xp, rng, p):
    x = rng.standard_normal((3, 4, 5))
    mask = xp.asarray(rng.random((3, 4, 5)) >= p)
    gradcheck(xp, lambda a: ops.dropout_forward(a, p, mask=mask)[0],
              lambda dy, a: [ops.dropout_backward(dy, ops.dropout_forward(a, p, mask=mask)[1])], [x])


def test_non_contiguous_input_gives_identical_results(xp, rng):
    wide = rng.standard_normal((4, 10))
    mask = rng.random((4, 5)) >= 0.4
    strided = xp.asarray(wide)[:, ::2]
    assert not strided.flags.c_contiguous
    a, _ = ops.dropout_forward(strided, 0.4, mask=mask)
    b, _ = ops.dropout_forward(xp.asarray(numpy.ascontiguousarray(wide[:, ::2])), 0.4, mask=mask)
    numpy.testing.assert_array_equal(host(a), host(b))
    numpy.testing.assert_array_equal(host(strided), wide[:, ::2])


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, True, "0.5", None, float("nan")])
def test_invalid_rate_raises(xp, p):
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\); received p="):
        ops.dropout_forward(xp.asarray(numpy.ones(3)), p, rng=numpy.random.default_rng(0))


def test_missing_mask_and_rng_raises(xp):
    with pytest.raises(ValueError, match=r"needs a mask or a numpy.random.Generator"):
        ops.dropout_forward(xp.asarray(numpy.ones((2, 3))), 0.5)


@pytest.mark.parametrize("mask_shape", [(3, 2), (2, 3, 1), (6,)])
def test_wrong_mask_shape_raises(xp, mask_shape):
    x = numpy.ones((2, 3))
    with pytest.raises(xpnet.ShapeError, match=re.escape(f"mask shape {mask_shape} does not match input shape (2, 3)")):
        ops.dropout_forward(xp.asarray(x), 0.5, mask=numpy.ones(mask_shape, bool))
    assert (x == 1).all()


def test_non_float_input_raises(xp):
    with pytest.raises(xpnet.DTypeError, match=r"dropout input must be a float32 or float64 array; got int64"):
        ops.dropout_forward(xp.asarray(numpy.ones(3, numpy.int64)), 0.5, rng=numpy.random.default_rng(0))
