"""batch_norm2d forward/backward and running statistics vs a channel-by-channel reference."""

import numpy
import pytest

import xpnet
from tests.helpers import TOL, assert_close, gradcheck, host
from tests.reference import elementwise as ref
from xpnet import ops

SHAPES = [(2, 3, 4, 5), (1, 2, 3, 3), (5, 1, 1, 1), (3, 4, 1, 2)]


def _inputs(rng, shape, dtype=numpy.float64):
    """x with per-channel offsets and scales, gamma, beta, running mean and (positive) running var."""
    C = shape[1]
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, (1, C, 1, 1)) + rng.uniform(-2, 2, (1, C, 1, 1))
    params = (rng.uniform(0.5, 2, C), rng.standard_normal(C), rng.standard_normal(C), rng.uniform(0.5, 2, C))
    return [a.astype(dtype) for a in (x, *params)]


def _forward(xp, arrays, train, eps=1e-5):
    return ops.batch_norm2d_forward(*[xp.asarray(a) for a in arrays], train=train, eps=eps)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_forward_matches_reference(xp, rng, shape, train, dtype):
    arrays = _inputs(rng, shape, dtype)
    originals = [a.copy() for a in arrays]
    y, _ = _forward(xp, arrays, train, eps=1e-3)
    assert host(y).dtype == dtype and host(y).shape == shape
    assert_close(y, ref.batch_norm2d(*arrays, train=train, eps=1e-3), **TOL[numpy.dtype(dtype)])
    for a, original in zip(arrays, originals, strict=True):
        numpy.testing.assert_array_equal(a, original)


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (1, 2, 5, 4)])
def test_train_output_has_zero_mean_unit_variance_per_channel(xp, rng, shape):
    x = rng.standard_normal(shape) * 5 + 3
    C = shape[1]
    y, _ = ops.batch_norm2d_forward(xp.asarray(x), xp.ones(C), xp.zeros(C), xp.zeros(C), xp.ones(C), train=True)
    y = host(y)
    numpy.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    numpy.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-5)


def test_eval_uses_running_statistics_not_the_batch(xp, rng):
    x, gamma, beta, rm, rv = _inputs(rng, (2, 3, 2, 2))
    y, _ = _forward(xp, [x, gamma, beta, rm, rv], train=False)
    expected = gamma[None, :, None, None] * (x - rm[None, :, None, None]) / numpy.sqrt(rv[None, :, None, None] + 1e-5)
    assert_close(y, expected + beta[None, :, None, None], rtol=1e-12)
    y_shifted, _ = _forward(xp, [x + 10, gamma, beta, rm, rv], train=False)
    assert_close(host(y_shifted) - host(y), numpy.broadcast_to(10 * gamma[None, :, None, None] / numpy.sqrt(
        rv[None, :, None, None] + 1e-5), x.shape), rtol=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_gradcheck(xp, rng, shape, train):
    x, gamma, beta, rm, rv = _inputs(rng, shape)
    rm_d, rv_d = xp.asarray(rm), xp.asarray(rv)

    def forward(a, g, b):
        return ops.batch_norm2d_forward(a, g, b, rm_d, rv_d, train=train)[0]

    def backward(dy, a, g, b):
        return ops.batch_norm2d_backward(dy, ops.batch_norm2d_forward(a, g, b, rm_d, rv_d, train=train)[1])

    gradcheck(xp, forward, backward, [x, gamma, beta])


def test_backward_batch_consistency_in_eval_mode(xp, rng):
    x, gamma, beta, rm, rv = _inputs(rng, (3, 2, 2, 2))
    dy = rng.standard_normal(x.shape)
    _, cache = _forward(xp, [x, gamma, beta, rm, rv], train=False)
    dx, dgamma, dbeta = (host(g) for g in ops.batch_norm2d_backward(xp.asarray(dy), cache))
    dgamma_sum, dbeta_sum = numpy.zeros(2), numpy.zeros(2)
    for n in range(3):
        _, cache_n = _forward(xp, [x[n:n + 1], gamma, beta, rm, rv], train=False)
        dx_n, dgamma_n, dbeta_n = (host(g) for g in ops.batch_norm2d_backward(xp.asarray(dy[n:n + 1]), cache_n))
        assert_close(dx_n, dx[n:n + 1], rtol=1e-12)
        dgamma_sum, dbeta_sum = dgamma_sum + dgamma_n, dbeta_sum + dbeta_n
    assert_close(dgamma, dgamma_sum, rtol=1e-12)
    assert_close(dbeta, dbeta_sum, rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 3), (2, 1, 1, 1)])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_update_running_stats_follows_pytorch_rule(xp, rng, shape, momentum):
    x, gamma, beta, rm, rv = _inputs(rng, shape)
    _, cache = _forward(xp, [x, gamma, beta, rm, rv], train=True)
    count = shape[0] * shape[2] * shape[3]
    new_mean, new_var = ops.update_running_stats(xp.asarray(rm), xp.asarray(rv), cache, count, momentum=momentum)
    ref_mean, ref_var = ref.running_stats(rm, rv, x, momentum)
    assert_close(new_mean, ref_mean, rtol=1e-12, atol=1e-14)
    assert_close(new_var, ref_var, rtol=1e-12)


def test_batch_of_one_with_several_pixels_works_in_training(xp, rng):
    arrays = _inputs(rng, (1, 3, 2, 2))
    y, cache = _forward(xp, arrays, train=True)
    assert numpy.isfinite(host(y)).all()
    assert_close(y, ref.batch_norm2d(*arrays), rtol=1e-10, atol=1e-12)
    new_mean, new_var = ops.update_running_stats(xp.asarray(arrays[3]), xp.asarray(arrays[4]), cache, 4)
    assert_close(new_var, ref.running_stats(arrays[3], arrays[4], arrays[0], 0.1)[1], rtol=1e-12)


def test_single_value_per_channel_in_training_raises(xp, rng):
    x, gamma, beta, rm, rv = _inputs(rng, (1, 3, 1, 1))
    with pytest.raises(xpnet.ShapeError, match=r"more than one value per channel.*\(1, 3, 1, 1\)"):
        _forward(xp, [x, gamma, beta, rm, rv], train=True)
    y, _ = _forward(xp, [x, gamma, beta, rm, rv], train=False)
    assert_close(y, ref.batch_norm2d(x, gamma, beta, rm, rv, train=False), rtol=1e-12)


@pytest.mark.parametrize("x_shape, message", [
    ((2, 4, 3, 3), r"expects input \(N, 3, H, W\), got shape \(2, 4, 3, 3\)"),
    ((2, 3, 3), r"expects input \(N, 3, H, W\), got shape \(2, 3, 3\)"),
    ((2, 3, 3, 3, 1), r"got shape \(2, 3, 3, 3, 1\)"),
])
def test_wrong_shape_raises(xp, rng, x_shape, message):
    _, gamma, beta, rm, rv = _inputs(rng, (2, 3, 3, 3))
    x = rng.standard_normal(x_shape)
    original = x.copy()
    with pytest.raises(xpnet.ShapeError, match=message):
        _forward(xp, [x, gamma, beta, rm, rv], train=True)
    numpy.testing.assert_array_equal(x, original)


@pytest.mark.parametrize("which", [0, 1, 2, 3, 4])
def test_dtype_mismatch_raises(xp, rng, which):
    arrays = _inputs(rng, (2, 3, 2, 2))
    arrays[which] = arrays[which].astype(numpy.float32)
    with pytest.raises(xpnet.DTypeError, match=r"must share one dtype|must be a float32 or float64"):
        _forward(xp, arrays, train=True)


def test_integer_input_raises(xp, rng):
    _, gamma, beta, rm, rv = _inputs(rng, (2, 3, 2, 2))
    with pytest.raises(xpnet.DTypeError, match=r"batch_norm2d input must be a float32 or float64 array; got int64"):
        _forward(xp, [numpy.ones((2, 3, 2, 2), numpy.int64), gamma, beta, rm, rv], train=True)


@pytest.mark.parametrize("train", [True, False])
def test_non_contiguous_input_gives_identical_results(xp, rng, train):
    wide, gamma, beta, rm, rv = _inputs(rng, (2, 3, 4, 6))
    dy = rng.standard_normal((2, 3, 4, 3))
    params = [xp.asarray(a) for a in (gamma, beta, rm, rv)]
    strided = xp.asarray(wide)[..., ::2]
    assert not strided.flags.c_contiguous
    y_s, cache_s = ops.batch_norm2d_forward(strided, *params, train=train)
    y_c, cache_c = ops.batch_norm2d_forward(xp.asarray(numpy.ascontiguousarray(wide[..., ::2])), *params, train=train)
    assert_close(y_s, host(y_c), rtol=1e-13, atol=1e-14)
    grads_s = ops.batch_norm2d_backward(xp.asarray(dy), cache_s)
    grads_c = ops.batch_norm2d_backward(xp.asarray(dy), cache_c)
    for g_s, g_c in zip(grads_s, grads_c, strict=True):
        assert_close(g_s, host(g_c), rtol=1e-13, atol=1e-14)
    numpy.testing.assert_array_equal(host(strided), wide[..., ::2])
