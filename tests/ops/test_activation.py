"""Activation ops (relu, leaky_relu, sigmoid, tanh, gelu, softmax, log_softmax): values, gradients, stability."""

import math

import numpy
import pytest

import xpnet
from tests.helpers import TOL, assert_close, gradcheck, host
from tests.reference import elementwise as ref
from xpnet import ops

ELEMENTWISE = {
    "relu": (ops.relu_forward, ops.relu_backward, {}, ref.relu),
    "leaky_relu_0.01": (ops.leaky_relu_forward, ops.leaky_relu_backward, {"negative_slope": 0.01},
                        lambda x: ref.leaky_relu(x, 0.01)),
    "leaky_relu_0.2": (ops.leaky_relu_forward, ops.leaky_relu_backward, {"negative_slope": 0.2},
                       lambda x: ref.leaky_relu(x, 0.2)),
    "sigmoid": (ops.sigmoid_forward, ops.sigmoid_backward, {}, ref.sigmoid),
    "tanh": (ops.tanh_forward, ops.tanh_backward, {}, ref.tanh),
    "gelu_none": (ops.gelu_forward, ops.gelu_backward, {"approximate": "none"}, ref.gelu),
    "gelu_tanh": (ops.gelu_forward, ops.gelu_backward, {"approximate": "tanh"},
                  lambda x: ref.gelu(x, "tanh")),
}
ROWWISE = {
    "softmax": (ops.softmax_forward, ops.softmax_backward, ref.softmax),
    "log_softmax": (ops.log_softmax_forward, ops.log_softmax_backward, ref.log_softmax),
}
ROW_SHAPES = [((4, 5), 1), ((1, 7), 1), ((2, 3, 4, 5), 1), ((2, 3, 2, 4), -1)]
GELU_ERFC_BOUND = 2e-7  # the erfc fit used by gelu 'none' vs math.erf
LARGE = [-1e4, -1e3, -88.0, -30.0, -1.0, -1e-3, 1e-3, 1.0, 30.0, 88.0, 1e3, 1e4]


def _away_from_zero(rng, shape, scale=2.0):
    """Standard normal values kept at least 1e-3 from 0 (ReLU kinks)."""
    s = rng.standard_normal(shape) * scale
    return numpy.where(s >= 0, 1.0, -1.0) * (numpy.abs(s) + 1e-3)


def _elementwise_atol(name, dtype):
    return max(TOL[numpy.dtype(dtype)]["atol"], GELU_ERFC_BOUND if name == "gelu_none" else 0.0)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_elementwise_forward_matches_reference(xp, rng, name, dtype):
    forward, _, kwargs, reference = ELEMENTWISE[name]
    x = _away_from_zero(rng, (3, 4, 5)).astype(dtype)
    original = x.copy()
    y, _ = forward(xp.asarray(x), **kwargs)
    assert host(y).dtype == dtype
    assert_close(y, reference(x), rtol=TOL[numpy.dtype(dtype)]["rtol"], atol=_elementwise_atol(name, dtype), what=name)
    numpy.testing.assert_array_equal(x, original)


def test_gelu_none_is_within_erfc_bound_of_exact_gelu(xp):
    x = numpy.linspace(-12, 12, 4801)
    y, _ = ops.gelu_forward(xp.asarray(x), approximate="none")
    err = numpy.abs(host(y) - ref.gelu(x))
    assert err.max() <= GELU_ERFC_BOUND, f"max |gelu - exact| = {err.max():.3g} at x={x[err.argmax()]}"


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_gradcheck(xp, rng, name):
    forward, backward, kwargs, _ = ELEMENTWISE[name]
    x = _away_from_zero(rng, (3, 4, 5))
    gradcheck(xp, lambda a: forward(a, **kwargs)[0], lambda dy, a: [backward(dy, forward(a, **kwargs)[1])], [x])


def test_relu_gradient_is_zero_for_negative_and_dy_for_positive(xp):
    x = numpy.array([-2.0, -1e-3, 1e-3, 3.0])
    dy = numpy.array([5.0, 6.0, 7.0, 8.0])
    _, cache = ops.relu_forward(xp.asarray(x))
    numpy.testing.assert_array_equal(host(ops.relu_backward(xp.asarray(dy), cache)), [0.0, 0.0, 7.0, 8.0])


@pytest.mark.parametrize("name", ROWWISE)
@pytest.mark.parametrize("shape, axis", ROW_SHAPES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_rowwise_forward_matches_reference(xp, rng, name, shape, axis, dtype):
    forward, _, reference = ROWWISE[name]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    original = x.copy()
    y, _ = forward(xp.asarray(x), axis=axis)
    assert host(y).dtype == dtype
    assert_close(y, reference(x, axis=axis), **TOL[numpy.dtype(dtype)], what=name)
    numpy.testing.assert_array_equal(x, original)


@pytest.mark.parametrize("name", ROWWISE)
@pytest.mark.parametrize("shape, axis", ROW_SHAPES)
def test_rowwise_gradcheck(xp, rng, name, shape, axis):
    forward, backward, _ = ROWWISE[name]
    x = rng.standard_normal(shape) * 2
    gradcheck(xp, lambda a: forward(a, axis=axis)[0], lambda dy, a: [backward(dy, forward(a, axis=axis)[1])], [x])


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_large_inputs_are_finite_and_correct(xp, name, dtype):
    forward, backward, kwargs, reference = ELEMENTWISE[name]
    x = numpy.array([LARGE, LARGE[::-1]], dtype=dtype)
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        y, cache = forward(xp.asarray(x), **kwargs)
        dx = host(backward(xp.asarray(numpy.ones_like(x)), cache))
    assert numpy.isfinite(host(y)).all() and numpy.isfinite(dx).all()
    assert_close(y, reference(x), rtol=TOL[numpy.dtype(dtype)]["rtol"], atol=_elementwise_atol(name, dtype), what=name)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("name", ROWWISE)
def test_rowwise_large_inputs_are_finite_and_correct(xp, name, dtype):
    forward, backward, reference = ROWWISE[name]
    x = numpy.array([LARGE, LARGE[::-1], [1e4] * 6 + [-1e4] * 6], dtype=dtype)
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        y, cache = forward(xp.asarray(x))
        dx = host(backward(xp.asarray(numpy.linspace(-1, 1, x.size).reshape(x.shape).astype(dtype)), cache))
    assert numpy.isfinite(host(y)).all() and numpy.isfinite(dx).all()
    assert_close(y, reference(x), **TOL[numpy.dtype(dtype)], what=name)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("logits, probs, logprobs", [
    ([[1000.0, 0.0, -1000.0]], [[1.0, 0.0, 0.0]], [[0.0, -1000.0, -2000.0]]),
    ([[-1000.0, 1.0]], [[0.0, 1.0]], [[-1001.0, 0.0]]),
])
def test_softmax_of_extreme_logits(xp, dtype, logits, probs, logprobs):
    x = xp.asarray(numpy.array(logits, dtype=dtype))
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        p, _ = ops.softmax_forward(x)
        logp, _ = ops.log_softmax_forward(x)
    assert_close(p, numpy.array(probs), rtol=0, atol=1e-30)
    assert_close(logp, numpy.array(logprobs), rtol=1e-7)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_log_softmax_of_1e4_and_0_is_exact(xp, dtype):
    y, _ = ops.log_softmax_forward(xp.asarray(numpy.array([[1e4, 0.0]], dtype=dtype)))
    numpy.testing.assert_array_equal(host(y), numpy.array([[0.0, -1e4]], dtype=dtype))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_equal_logits_give_uniform_distribution(xp, dtype):
    x = xp.asarray(numpy.full((3, 4), 7.5, dtype=dtype))
    assert_close(ops.softmax_forward(x)[0], numpy.full((3, 4), 0.25), rtol=1e-7)
    assert_close(ops.log_softmax_forward(x)[0], numpy.full((3, 4), -math.log(4)), rtol=1e-7)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_minus_inf_logit_gets_probability_zero_without_nan(xp, dtype):
    x = numpy.array([[0.0, -numpy.inf, 1.0], [-numpy.inf, 2.0, 2.0]], dtype=dtype)
    dy = xp.asarray(numpy.array([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]], dtype=dtype))
    with numpy.errstate(invalid="raise"):
        p, p_cache = ops.softmax_forward(xp.asarray(x))
        logp, logp_cache = ops.log_softmax_forward(xp.asarray(x))
        dp = host(ops.softmax_backward(dy, p_cache))
        dlogp = host(ops.log_softmax_backward(dy, logp_cache))
    p, logp = host(p), host(logp)
    assert p[0, 1] == 0 and p[1, 0] == 0
    assert_close(p, ref.softmax(x), **TOL[numpy.dtype(dtype)])
    assert logp[0, 1] == -numpy.inf and logp[1, 0] == -numpy.inf
    assert not numpy.isnan(logp).any()
    assert numpy.isfinite(dp).all() and numpy.isfinite(dlogp).all()


def test_softmax_rows_sum_to_one_in_float32(xp, rng):
    x = (rng.standard_normal((64, 10)) * 30).astype(numpy.float32)
    p, _ = ops.softmax_forward(xp.asarray(x))
    sums = host(p).astype(numpy.float64).sum(axis=1)
    assert numpy.abs(sums - 1).max() <= 1e-6


@pytest.mark.parametrize("name", ROWWISE)
@pytest.mark.parametrize("dtype, shift, rtol, atol", [
    (numpy.float64, 1e4, 1e-10, 1e-12),
    (numpy.float32, 100.0, 1e-4, 1e-5),
])
def test_softmax_is_shift_invariant(xp, rng, name, dtype, shift, rtol, atol):
    forward, _, reference = ROWWISE[name]
    x = rng.uniform(-3, 3, (5, 6))
    y, _ = forward(xp.asarray((x + shift).astype(dtype)))
    assert_close(y, reference(x), rtol=rtol, atol=atol, what=f"{name}(x + {shift})")


@pytest.mark.parametrize("name", list(ELEMENTWISE) + list(ROWWISE))
def test_non_contiguous_input_gives_identical_results(xp, rng, name):
    if name in ELEMENTWISE:
        forward, backward, kwargs, _ = ELEMENTWISE[name]
    else:
        (forward, backward, _), kwargs = ROWWISE[name], {}
    wide = _away_from_zero(rng, (4, 10, 3))
    dy = rng.standard_normal((4, 5, 3))
    strided = xp.asarray(wide)[:, ::2]
    assert not strided.flags.c_contiguous
    contiguous = xp.asarray(numpy.ascontiguousarray(wide[:, ::2]))
    y_s, cache_s = forward(strided, **kwargs)
    y_c, cache_c = forward(contiguous, **kwargs)
    numpy.testing.assert_array_equal(host(y_s), host(y_c))
    numpy.testing.assert_array_equal(host(backward(xp.asarray(dy), cache_s)), host(backward(xp.asarray(dy), cache_c)))
    numpy.testing.assert_array_equal(host(strided), wide[:, ::2])


ALL_FORWARDS = [ops.relu_forward, ops.leaky_relu_forward, ops.sigmoid_forward, ops.tanh_forward,
                ops.gelu_forward, ops.softmax_forward, ops.log_softmax_forward]


@pytest.mark.parametrize("forward", ALL_FORWARDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [numpy.int64, numpy.float16, numpy.bool_])
def test_non_float_input_raises_dtype_error(xp, forward, dtype):
    x = numpy.ones((2, 3), dtype=dtype)
    with pytest.raises(xpnet.DTypeError, match=f"must be a float32 or float64 array; got {numpy.dtype(dtype)}"):
        forward(xp.asarray(x))
    numpy.testing.assert_array_equal(x, numpy.ones((2, 3), dtype=dtype))


def test_gelu_unknown_approximation_raises(xp):
    with pytest.raises(ValueError, match=r"approximate must be 'none' or 'tanh'; received 'erf'"):
        ops.gelu_forward(xp.asarray(numpy.ones(3)), approximate="erf")
