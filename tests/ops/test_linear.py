"""linear_forward / linear_backward against explicit loops, gradient checks and bad inputs."""

import numpy
import pytest

import xpnet
from tests.helpers import TOL, assert_close, gradcheck, host
from xpnet import ops


def loop_linear(x, weight, bias=None):
    """y[n, o] = sum_i x[n, i] * weight[o, i] + bias[o]."""
    n_batch, n_in = x.shape
    n_out = weight.shape[0]
    y = numpy.zeros((n_batch, n_out))
    for n in range(n_batch):
        for o in range(n_out):
            total = 0.0 if bias is None else float(bias[o])
            for i in range(n_in):
                total += float(x[n, i]) * float(weight[o, i])
            y[n, o] = total
    return y


def loop_linear_backward(x, weight, dy):
    """(dx, dweight, dbias) by the chain rule, one term at a time."""
    n_batch, n_in = x.shape
    n_out = weight.shape[0]
    dx, dweight, dbias = numpy.zeros((n_batch, n_in)), numpy.zeros((n_out, n_in)), numpy.zeros(n_out)
    for n in range(n_batch):
        for o in range(n_out):
            dbias[o] += dy[n, o]
            for i in range(n_in):
                dx[n, i] += dy[n, o] * weight[o, i]
                dweight[o, i] += dy[n, o] * x[n, i]
    return dx, dweight, dbias


SHAPES = [  # (N, IN, OUT)
    pytest.param(4, 5, 3, id="4x5->3"),
    pytest.param(1, 7, 2, id="batch1"),
    pytest.param(3, 1, 1, id="in1-out1"),
    pytest.param(3, 3, 3, id="square-N-equals-OUT"),
    pytest.param(2, 16, 9, id="2x16->9"),
]


def make(rng, n, n_in, n_out, dtype=numpy.float64):
    return (rng.standard_normal((n, n_in)).astype(dtype), rng.standard_normal((n_out, n_in)).astype(dtype),
            rng.standard_normal(n_out).astype(dtype))


@pytest.mark.parametrize("n, n_in, n_out", SHAPES)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_forward_matches_loops(xp, rng, n, n_in, n_out, dtype):
    x, w, b = make(rng, n, n_in, n_out, dtype)
    y, _ = ops.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    assert host(y).dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == numpy.float64 else TOL[numpy.dtype(dtype)]
    assert_close(y, loop_linear(x, w, b), **tol)


@pytest.mark.parametrize("n, n_in, n_out", SHAPES)
def test_backward_matches_loops(xp, rng, n, n_in, n_out):
    x, w, b = make(rng, n, n_in, n_out)
    dy = rng.standard_normal((n, n_out))
    _, cache = ops.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    dx, dw, db = ops.linear_backward(xp.asarray(dy), cache)
    for got, want, what in zip((dx, dw, db), loop_linear_backward(x, w, dy), ("dx", "dweight", "dbias"), strict=True):
        assert_close(got, want, rtol=1e-12, atol=1e-12, what=what)


def _forward(x, w, b=None):
    return ops.linear_forward(x, w, b)[0]


def _backward(dy, x, w, b=None):
    return ops.linear_backward(dy, ops.linear_forward(x, w, b)[1])


@pytest.mark.parametrize("n, n_in, n_out", [(3, 4, 2), (1, 5, 3)])
def test_gradcheck_x_weight_bias(xp, rng, n, n_in, n_out):
    gradcheck(xp, _forward, _backward, list(make(rng, n, n_in, n_out)))


def test_gradcheck_without_bias(xp, rng):
    x, w, _ = make(rng, 3, 4, 2)
    gradcheck(xp, _forward, lambda dy, x, w: _backward(dy, x, w)[:2], [x, w])


def test_gradcheck_directional_on_a_larger_layer(xp, rng):
    gradcheck(xp, _forward, _backward, list(make(rng, 8, 30, 20)))  # weight has 600 > 400 elements


def test_without_bias(xp, rng):
    x, w, _ = make(rng, 3, 4, 2)
    dy = rng.standard_normal((3, 2))
    y, cache = ops.linear_forward(xp.asarray(x), xp.asarray(w))
    assert_close(y, loop_linear(x, w), rtol=1e-12, atol=1e-12)
    dx, dw, db = ops.linear_backward(xp.asarray(dy), cache)
    assert db is None
    want_dx, want_dw, _ = loop_linear_backward(x, w, dy)
    assert_close(dx, want_dx, rtol=1e-12, atol=1e-12)
    assert_close(dw, want_dw, rtol=1e-12, atol=1e-12)


def test_need_input_grad_false_skips_dx_only(xp, rng):
    x, w, b = make(rng, 3, 4, 2)
    dy = rng.standard_normal((3, 2))
    _, cache = ops.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    dx, dw, db = ops.linear_backward(xp.asarray(dy), cache, need_input_grad=False)
    assert dx is None
    _, want_dw, want_db = loop_linear_backward(x, w, dy)
    assert_close(dw, want_dw, rtol=1e-12, atol=1e-12)
    assert_close(db, want_db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_empty_batch(xp, rng, dtype):
    x, w, b = make(rng, 0, 4, 3, dtype)
    y, cache = ops.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    assert host(y).shape == (0, 3) and host(y).dtype == dtype
    dx, dw, db = ops.linear_backward(xp.asarray(numpy.zeros((0, 3), dtype)), cache)
    assert host(dx).shape == (0, 4)
    numpy.testing.assert_array_equal(host(dw), numpy.zeros((3, 4), dtype))
    numpy.testing.assert_array_equal(host(db), numpy.zeros(3, dtype))


def test_batch_rows_are_independent(xp, rng):
    x, w, b = make(rng, 5, 4, 3)
    y_all, _ = ops.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    y_one, _ = ops.linear_forward(xp.asarray(x[2:3]), xp.asarray(w), xp.asarray(b))
    assert_close(y_one, host(y_all)[2:3], rtol=1e-12, atol=1e-12)


def test_non_contiguous_x_and_weight(xp, rng):
    x_big = rng.standard_normal((4, 10))
    w_t = rng.standard_normal((5, 3))  # stored (IN, OUT); its transpose is the (OUT, IN) weight
    b = rng.standard_normal(3)
    x_dev, w_dev = xp.asarray(x_big)[:, ::2], xp.asarray(w_t).T
    if xp is numpy:
        assert not x_dev.flags.c_contiguous and not w_dev.flags.c_contiguous
    x, w = x_big[:, ::2], w_t.T
    y, cache = ops.linear_forward(x_dev, w_dev, xp.asarray(b))
    assert_close(y, loop_linear(x, w, b), rtol=1e-12, atol=1e-12)
    dy_big = rng.standard_normal((3, 4))
    dx, dw, db = ops.linear_backward(xp.asarray(dy_big).T, cache)
    for got, want in zip((dx, dw, db), loop_linear_backward(x, w, dy_big.T), strict=True):
        assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_inputs_are_not_modified(xp, rng):
    x, w, b = make(rng, 3, 4, 2)
    dy = rng.standard_normal((3, 2))
    devs = [xp.asarray(a) for a in (x, w, b, dy)]
    _, cache = ops.linear_forward(*devs[:3])
    ops.linear_backward(devs[3], cache)
    for dev, original in zip(devs, (x, w, b, dy), strict=True):
        numpy.testing.assert_array_equal(host(dev), original)


BAD_LINEAR = [
    # x shape, weight shape, bias shape, (x, weight, bias dtypes), error, message
    pytest.param((2, 4), (3, 5), (3,), None, xpnet.ShapeError,
                 r"linear expects input of shape \(N, 5\), got shape \(2, 4\)", id="wrong-in-features"),
    pytest.param((4,), (3, 4), (3,), None, xpnet.ShapeError,
                 r"expects input of shape \(N, 4\), got shape \(4,\)", id="x-1d"),
    pytest.param((2, 1, 4), (3, 4), (3,), None, xpnet.ShapeError,
                 r"expects input of shape \(N, 4\), got shape \(2, 1, 4\)", id="x-3d"),
    pytest.param((2, 4), (4,), (3,), None, xpnet.ShapeError,
                 r"linear weight must be 2-D \(out, in\), got shape \(4,\)", id="weight-1d"),
    pytest.param((3, 4), (3, 4), (3, 1), None, xpnet.ShapeError,
                 r"bias must have shape \(3,\) to match weight shape \(3, 4\), got shape \(3, 1\)",
                 id="bias-column"),
    pytest.param((2, 4), (3, 4), (1,), None, xpnet.ShapeError,
                 r"bias must have shape \(3,\) .* got shape \(1,\)", id="bias-broadcastable"),
    pytest.param((2, 4), (3, 4), (3,), ("int64", "int64", "int64"), xpnet.DTypeError,
                 r"linear input must be a float32 or float64 array; got int64", id="int-dtype"),
    pytest.param((2, 4), (3, 4), (3,), ("float64", "float32", "float64"), xpnet.DTypeError,
                 r"share one dtype; got input float64, weight float32, bias float64", id="weight-dtype"),
    pytest.param((2, 4), (3, 4), (3,), ("float32", "float32", "float64"), xpnet.DTypeError,
                 r"got input float32, weight float32, bias float64", id="bias-dtype"),
]


@pytest.mark.parametrize("x_shape, w_shape, b_shape, dtypes, error, message", BAD_LINEAR)
def test_bad_linear_inputs_are_rejected(xp, rng, x_shape, w_shape, b_shape, dtypes, error, message):
    dtypes = dtypes or ("float64",) * 3
    hosts = [(rng.standard_normal(s) * 4).astype(d) for s, d in zip((x_shape, w_shape, b_shape), dtypes, strict=True)]
    devs = [xp.asarray(a) for a in hosts]
    with pytest.raises(error, match=message):
        ops.linear_forward(*devs)
    for dev, original in zip(devs, hosts, strict=True):
        numpy.testing.assert_array_equal(host(dev), original)


@pytest.mark.parametrize("host_arg", ["weight", "bias"])
def test_numpy_array_mixed_with_device_input_is_refused(xp, rng, host_arg):
    if xp is numpy:
        pytest.skip("mixing needs a non-numpy backend")
    x, w, b = make(rng, 2, 4, 3)
    args = {"weight": xp.asarray(w), "bias": xp.asarray(b)}
    args[host_arg] = {"weight": w, "bias": b}[host_arg]
    with pytest.raises(TypeError, match="two backends were mixed"):
        ops.linear_forward(xp.asarray(x), args["weight"], args["bias"])
