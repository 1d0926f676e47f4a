"""Max, min, average and global average pooling ops against the loop references in tests/reference/pool.py."""

import numpy
import pytest

import xpnet
from tests.helpers import TOL, assert_close, gradcheck, host
from tests.optional import HealthCheck, given, settings, st
from tests.reference import pool as ref
from xpnet import ops

KINDS = ["max", "min", "avg", "avg_exclude_pad"]
WHO = {"max": "max_pool2d", "min": "min_pool2d", "avg": "avg_pool2d", "avg_exclude_pad": "avg_pool2d"}

# (x shape, kernel, stride, padding)
GRID = [
    pytest.param((2, 3, 4, 4), 2, 2, 0, id="2/2-on-4x4"),
    pytest.param((2, 3, 5, 5), 2, 2, 0, id="2/2-on-5x5-drops-last-row"),
    pytest.param((2, 2, 7, 7), 3, 2, 0, id="overlapping-3/2"),
    pytest.param((2, 2, 7, 8), 2, 3, 0, id="stride-gt-kernel"),
    pytest.param((2, 2, 5, 7), (2, 3), (1, 2), 0, id="kernel-2x3-stride-1x2"),
    pytest.param((2, 2, 5, 5), 2, 2, 1, id="pad1-kernel2"),
    pytest.param((2, 2, 5, 6), 3, 2, 1, id="pad1-kernel3"),
    pytest.param((2, 2, 6, 5), (3, 2), (2, 1), (1, 1), id="pad1-kernel-3x2"),
    pytest.param((1, 3, 4, 4), 2, 2, 0, id="batch1"),
    pytest.param((3, 1, 6, 6), 3, 3, 0, id="C1"),
    pytest.param((2, 2, 4, 4), 4, 1, 0, id="kernel-equals-input"),
    pytest.param((2, 2, 3, 3), 5, 1, 2, id="kernel-equals-padded-input"),
]


def forward(kind, x, kernel, stride, padding):
    if kind.startswith("avg"):
        return ops.avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=(kind == "avg"))
    return {"max": ops.max_pool2d_forward, "min": ops.min_pool2d_forward}[kind](x, kernel, stride, padding)


def backward(kind, dy, cache):
    if kind.startswith("avg"):
        return ops.avg_pool2d_backward(dy, cache)
    return {"max": ops.max_pool2d_backward, "min": ops.min_pool2d_backward}[kind](dy, cache)


def reference(kind, x, kernel, stride, padding):
    if kind.startswith("avg"):
        return ref.avg_pool(x, kernel, stride, padding, count_include_pad=(kind == "avg"))
    return ref.extreme_pool(x, kernel, stride, padding, largest=(kind == "max"))


def reference_backward(kind, x, dy, kernel, stride, padding):
    if kind.startswith("avg"):
        return ref.avg_pool_backward(x.shape, dy, kernel, stride, padding, count_include_pad=(kind == "avg"))
    return ref.extreme_pool_backward(x, dy, kernel, stride, padding, largest=(kind == "max"))


def distinct_values(rng, shape):
    """Shuffled, well separated values (gap ~1/size >> gradcheck eps) so no argmax can flip."""
    size = int(numpy.prod(shape))
    values = numpy.linspace(-2.0, 2.0, size) + rng.uniform(-0.1, 0.1, size) / size
    return rng.permutation(values).reshape(shape)


def test_reference_itself_on_a_hand_example():
    x = numpy.arange(16.0).reshape(1, 1, 4, 4)
    numpy.testing.assert_array_equal(ref.max_pool(x, 2), [[[[5, 7], [13, 15]]]])
    numpy.testing.assert_array_equal(ref.min_pool(x, 2), [[[[0, 2], [8, 10]]]])
    numpy.testing.assert_array_equal(ref.avg_pool(x, 2), [[[[2.5, 4.5], [10.5, 12.5]]]])
    numpy.testing.assert_array_equal(ref.avg_pool(x, 2, 2, 1)[0, 0, 0], [0 / 4, (1 + 2) / 4, 3 / 4])
    numpy.testing.assert_array_equal(ref.avg_pool(x, 2, 2, 1, count_include_pad=False)[0, 0, 0], [0, 1.5, 3])
    dx = ref.max_pool_backward(numpy.ones((1, 1, 2, 2)), numpy.full((1, 1, 1, 1), 3.0), 2)
    numpy.testing.assert_array_equal(dx, [[[[3, 0], [0, 0]]]])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape, kernel, stride, padding", GRID)
def test_forward_matches_reference_float64(xp, rng, kind, shape, kernel, stride, padding):
    x = rng.standard_normal(shape)
    y, _ = forward(kind, xp.asarray(x), kernel, stride, padding)
    expected = reference(kind, x, kernel, stride, padding)
    assert host(y).dtype == numpy.float64
    if kind in ("max", "min"):
        numpy.testing.assert_array_equal(host(y), expected)
    else:
        assert_close(y, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape, kernel, stride, padding", GRID)
def test_forward_matches_reference_float32(xp, rng, kind, shape, kernel, stride, padding):
    x = rng.standard_normal(shape).astype(numpy.float32)
    y, _ = forward(kind, xp.asarray(x), kernel, stride, padding)
    expected = reference(kind, x.astype(numpy.float64), kernel, stride, padding)
    assert host(y).dtype == numpy.float32
    if kind in ("max", "min"):
        numpy.testing.assert_array_equal(host(y), expected.astype(numpy.float32))
    else:
        assert_close(y, expected, **TOL[numpy.dtype(numpy.float32)])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape, kernel, stride, padding", GRID)
def test_backward_matches_reference(xp, rng, kind, shape, kernel, stride, padding):
    x = distinct_values(rng, shape)
    y, cache = forward(kind, xp.asarray(x), kernel, stride, padding)
    dy = rng.standard_normal(host(y).shape)
    dx = backward(kind, xp.asarray(dy), cache)
    assert host(dx).dtype == numpy.float64
    assert_close(dx, reference_backward(kind, x, dy, kernel, stride, padding), rtol=1e-12, atol=1e-14)


GRAD_GEOMETRIES = [
    pytest.param((1, 2, 5, 5), 3, 2, 1, id="overlap-pad"),
    pytest.param((2, 1, 4, 5), (2, 3), (1, 2), 0, id="nonsquare"),
    pytest.param((1, 2, 5, 5), 2, 2, 0, id="dropped-row"),
    pytest.param((1, 1, 7, 7), 2, 3, 1, id="stride-gt-kernel-pad"),
]


@pytest.mark.parametrize("kind", ["max", "min", "avg", "avg_exclude_pad"])
@pytest.mark.parametrize("shape, kernel, stride, padding", GRAD_GEOMETRIES)
def test_pool_gradcheck(xp, rng, kind, shape, kernel, stride, padding):
    """Distinct, well-separated inputs: eps cannot flip a max/min window's winner."""
    def fwd(x):
        return forward(kind, x, kernel, stride, padding)[0]

    def bwd(dy, x):
        return [backward(kind, dy, forward(kind, x, kernel, stride, padding)[1])]

    gradcheck(xp, fwd, bwd, [distinct_values(rng, shape)])


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("shape, kernel, stride, padding", GRID + [pytest.param((2, 2, 3, 4), 1, 1, 0, id="kernel1")])
def test_inference_forward_skips_the_winners_yet_backward_routes_exactly(xp, rng, kind, shape, kernel, stride,
                                                                         padding):
    x = rng.integers(-2, 3, shape).astype(numpy.float64)  # many ties
    op = ops.max_pool2d_forward if kind == "max" else ops.min_pool2d_forward
    y_train, cache_train = op(xp.asarray(x), kernel, stride, padding)
    y, cache = op(xp.asarray(x), kernel, stride, padding, need_backward=False)
    assert cache.index is None and cache_train.index is not None
    numpy.testing.assert_array_equal(host(y), host(y_train))
    dy = rng.integers(-5, 6, y.shape).astype(numpy.float64)  # integer sums: exact in any order
    dx = host(backward(kind, xp.asarray(dy), cache))
    numpy.testing.assert_array_equal(dx, host(backward(kind, xp.asarray(dy), cache_train)))
    numpy.testing.assert_array_equal(dx, reference_backward(kind, x, dy, kernel, stride, padding))


@pytest.mark.parametrize("need_backward", [True, False])
@pytest.mark.parametrize("kind", ["max", "min"])
def test_windows_wider_than_128_positions(xp, rng, kind, need_backward):
    x = rng.integers(-3, 4, (2, 2, 3, 300)).astype(numpy.float64)  # one window row of 200, ties
    kernel, stride = (1, 200), (1, 100)
    op = ops.max_pool2d_forward if kind == "max" else ops.min_pool2d_forward
    y, cache = op(xp.asarray(x), kernel, stride, 0, need_backward=need_backward)
    numpy.testing.assert_array_equal(host(y), reference(kind, x, kernel, stride, 0))
    dy = rng.integers(-5, 6, y.shape).astype(numpy.float64)
    numpy.testing.assert_array_equal(host(backward(kind, xp.asarray(dy), cache)),
                                     reference_backward(kind, x, dy, kernel, stride, 0))


@pytest.mark.parametrize("kind", ["max", "min"])
def test_all_equal_windows_route_to_the_first_element(xp, kind):
    x = numpy.full((1, 1, 4, 4), 7.0)
    dy = numpy.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y, cache = forward(kind, xp.asarray(x), 2, 2, 0)
    numpy.testing.assert_array_equal(host(y), numpy.full((1, 1, 2, 2), 7.0))
    dx = host(backward(kind, xp.asarray(dy), cache))
    expected = numpy.zeros((1, 1, 4, 4))
    expected[0, 0, ::2, ::2] = dy[0, 0]
    numpy.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("kind, window, winner", [
    ("max", [[0.0, 5.0], [5.0, 1.0]], (0, 1)),
    ("max", [[0.0, 1.0], [5.0, 5.0]], (1, 0)),
    ("min", [[3.0, 1.0], [1.0, 2.0]], (0, 1)),
    ("min", [[3.0, 4.0], [-1.0, -1.0]], (1, 0)),
])
def test_tie_goes_to_first_in_row_major_window_order(xp, kind, window, winner):
    x = numpy.array(window).reshape(1, 1, 2, 2)
    _, cache = forward(kind, xp.asarray(x), 2, 2, 0)
    dx = host(backward(kind, xp.asarray(numpy.full((1, 1, 1, 1), 2.5)), cache))
    expected = numpy.zeros((1, 1, 2, 2))
    expected[(0, 0) + winner] = 2.5
    numpy.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("kind", ["max", "min"])
def test_overlapping_all_equal_windows_each_route_to_their_own_first(xp, kind):
    dy = numpy.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    _, cache = forward(kind, xp.asarray(numpy.zeros((1, 1, 3, 3))), 2, 1, 0)
    expected = numpy.zeros((1, 1, 3, 3))
    expected[0, 0, :2, :2] = dy[0, 0]
    numpy.testing.assert_array_equal(host(backward(kind, xp.asarray(dy), cache)), expected)


@pytest.mark.parametrize("kind, centre", [("max", 9.0), ("min", -9.0)])
def test_overlapping_windows_accumulate_on_a_shared_winner(xp, kind, centre):
    x = numpy.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = centre
    dy = numpy.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    y, cache = forward(kind, xp.asarray(x), 2, 1, 0)
    numpy.testing.assert_array_equal(host(y), numpy.full((1, 1, 2, 2), centre))
    expected = numpy.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 1111.0
    numpy.testing.assert_array_equal(host(backward(kind, xp.asarray(dy), cache)), expected)


@pytest.mark.parametrize("kind, sign", [("max", -1.0), ("min", 1.0)])
def test_padding_never_wins_and_never_receives_gradient(xp, rng, kind, sign):
    x = sign * (1.0 + distinct_values(rng, (2, 2, 3, 3)) ** 2)  # all negative for max, positive for min
    y, cache = forward(kind, xp.asarray(x), 2, 2, 1)
    y = host(y)
    assert y.shape == (2, 2, 2, 2)
    numpy.testing.assert_array_equal(y[:, :, 0, 0], x[:, :, 0, 0])  # window of 3 pad cells + x[0, 0]
    numpy.testing.assert_array_equal(y, reference(kind, x, 2, 2, 1))
    dy = rng.standard_normal(y.shape)
    dx = host(backward(kind, xp.asarray(dy), cache))
    assert dx.shape == x.shape
    numpy.testing.assert_allclose(dx.sum(axis=(2, 3)), dy.sum(axis=(2, 3)), rtol=1e-12)


def test_avg_pool_padding_counts_only_in_the_divisor(xp):
    x = numpy.full((1, 1, 2, 2), 4.0)
    y_incl, cache_incl = ops.avg_pool2d_forward(xp.asarray(x), 2, 1, 1, count_include_pad=True)
    y_excl, cache_excl = ops.avg_pool2d_forward(xp.asarray(x), 2, 1, 1, count_include_pad=False)
    numpy.testing.assert_array_equal(host(y_incl)[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    numpy.testing.assert_array_equal(host(y_excl)[0, 0], numpy.full((3, 3), 4.0))
    dy = xp.asarray(numpy.ones((1, 1, 3, 3)))
    numpy.testing.assert_array_equal(host(ops.avg_pool2d_backward(dy, cache_incl))[0, 0], numpy.full((2, 2), 1.0))
    numpy.testing.assert_array_equal(host(ops.avg_pool2d_backward(dy, cache_excl))[0, 0],
                                     numpy.full((2, 2), 1 / 4 + 2 * (1 / 2) + 1))


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("shape, kernel, stride, padding", [
    pytest.param((2, 3, 6, 6), 2, 2, 0, id="tiling"),
    pytest.param((2, 3, 7, 6), 3, 2, 1, id="overlap-pad"),
    pytest.param((2, 2, 5, 7), (2, 3), (1, 2), (1, 0), id="nonsquare"),
])
def test_integer_valued_float32_is_exact_on_every_backend(xp, rng, kind, shape, kernel, stride, padding):
    x = rng.integers(-3, 4, shape).astype(numpy.float32)  # many ties
    y_np, cache_np = forward(kind, x, kernel, stride, padding)
    y_xp, cache_xp = forward(kind, xp.asarray(x), kernel, stride, padding)
    dy = rng.integers(-5, 6, y_np.shape).astype(numpy.float32)
    dx_np = backward(kind, dy, cache_np)
    dx_xp = backward(kind, xp.asarray(dy), cache_xp)
    assert host(y_xp).dtype == numpy.float32 and host(dx_xp).dtype == numpy.float32
    numpy.testing.assert_array_equal(host(y_xp), y_np)
    for index_xp, index_np in zip(cache_xp.index, cache_np.index):  # column winners, row winners
        numpy.testing.assert_array_equal(host(index_xp), index_np)
    numpy.testing.assert_array_equal(host(dx_xp), dx_np)
    numpy.testing.assert_array_equal(dx_np, reference_backward(kind, x, dy, kernel, stride, padding))
    numpy.testing.assert_array_equal(y_np, reference(kind, x, kernel, stride, padding))


@pytest.mark.parametrize("keepdims, out_shape", [(False, (2, 3)), (True, (2, 3, 1, 1))])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_global_avg_pool_shapes_and_values(xp, rng, keepdims, out_shape, dtype):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    y, cache = ops.global_avg_pool2d_forward(xp.asarray(x), keepdims=keepdims)
    assert host(y).shape == out_shape and host(y).dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == numpy.float64 else TOL[numpy.dtype(dtype)]
    assert_close(y, ref.global_avg_pool(x, keepdims=keepdims), **tol)
    dy = rng.standard_normal(out_shape).astype(dtype)
    dx = ops.global_avg_pool2d_backward(xp.asarray(dy), cache)
    assert host(dx).shape == x.shape and host(dx).dtype == dtype
    assert_close(dx, ref.global_avg_pool_backward(x.shape, dy), **tol)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_avg_pool_gradcheck(xp, rng, keepdims):
    gradcheck(xp, lambda x: ops.global_avg_pool2d_forward(x, keepdims)[0],
              lambda dy, x: [ops.global_avg_pool2d_backward(dy, ops.global_avg_pool2d_forward(x, keepdims)[1])],
              [rng.standard_normal((2, 2, 3, 4))])


def test_global_avg_pool_on_1x1_is_identity(xp, rng):
    x = rng.standard_normal((3, 2, 1, 1))
    y, _ = ops.global_avg_pool2d_forward(xp.asarray(x))
    numpy.testing.assert_array_equal(host(y), x[:, :, 0, 0])


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 8))
    w = draw(st.integers(max(1, kw - 2 * pw), 8))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return draw(st.sampled_from(KINDS)), (n, c, h, w), (kh, kw), (sh, sw), (ph, pw)


def check_against_reference(xp, case, seed):
    kind, shape, kernel, stride, padding = case
    gen = numpy.random.default_rng(seed)
    x = distinct_values(gen, shape)
    y, cache = forward(kind, xp.asarray(x), kernel, stride, padding)
    assert_close(y, reference(kind, x, kernel, stride, padding), rtol=1e-12, atol=1e-14)
    dy = gen.standard_normal(host(y).shape)
    assert_close(backward(kind, xp.asarray(dy), cache), reference_backward(kind, x, dy, kernel, stride, padding),
                 rtol=1e-12, atol=1e-14)


@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_drawn_shapes_match_reference_numpy(case, seed):
    check_against_reference(numpy, case, seed)


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_drawn_shapes_match_reference_every_backend(xp, case, seed):
    check_against_reference(xp, case, seed)


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_not_modified(xp, rng, kind):
    x, dy = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 2, 3, 3))
    x_dev, dy_dev = xp.asarray(x), xp.asarray(dy)
    _, cache = forward(kind, x_dev, 3, 2, 1)
    backward(kind, dy_dev, cache)
    numpy.testing.assert_array_equal(host(x_dev), x)
    numpy.testing.assert_array_equal(host(dy_dev), dy)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("view", ["strided", "transposed"])
def test_non_contiguous_inputs_give_identical_results(xp, rng, kind, view):
    big = distinct_values(rng, (2, 3, 10, 12))
    if view == "strided":
        x_view = xp.asarray(big)[:, :, ::2, 1::2]
        x_host = big[:, :, ::2, 1::2]
    else:
        x_view = xp.asarray(big).transpose(0, 1, 3, 2)
        x_host = big.transpose(0, 1, 3, 2)
    if xp is numpy:
        assert not x_view.flags.c_contiguous
    y_view, cache_view = forward(kind, x_view, 3, 2, 1)
    y_copy, cache_copy = forward(kind, xp.asarray(numpy.ascontiguousarray(x_host)), 3, 2, 1)
    numpy.testing.assert_array_equal(host(y_view), host(y_copy))
    dy = rng.standard_normal(host(y_copy).shape + (2,))
    dy_view = xp.asarray(dy)[..., 0]
    dx_view = backward(kind, dy_view, cache_view)
    dx_copy = backward(kind, xp.asarray(numpy.ascontiguousarray(dy[..., 0])), cache_copy)
    numpy.testing.assert_array_equal(host(dx_view), host(dx_copy))


BAD_POOL = [
    # x shape, dtype, kwargs, error, message
    pytest.param((4, 4), numpy.float64, dict(kernel_size=2), xpnet.ShapeError,
                 r"{who} expects 4-D input \(N, C, H, W\), got shape \(4, 4\)", id="rank-2"),
    pytest.param((1, 1, 1, 4, 4), numpy.float64, dict(kernel_size=2), xpnet.ShapeError,
                 r"{who} expects 4-D input .* got shape \(1, 1, 1, 4, 4\)", id="rank-5"),
    pytest.param((1, 1, 4, 4), numpy.int64, dict(kernel_size=2), xpnet.DTypeError,
                 r"{who} input must be a float32 or float64 array; got int64", id="int-dtype"),
    pytest.param((1, 1, 4, 4), numpy.float16, dict(kernel_size=2), xpnet.DTypeError,
                 r"float32 or float64 array; got float16", id="float16"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=0), ValueError,
                 r"kernel_size must be positive integers; received kernel_size=0", id="kernel-0"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=(2, 0)), ValueError,
                 r"kernel_size must be positive integers; received kernel_size=\(2, 0\)", id="kernel-(2,0)"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=2.0), ValueError,
                 r"kernel_size must be an int or a pair of ints; received kernel_size=2\.0", id="kernel-float"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=2, stride=0), ValueError,
                 r"stride must be positive integers; received stride=0", id="stride-0"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=2, stride=(1, -1)), ValueError,
                 r"stride must be positive integers; received stride=\(1, -1\)", id="stride-negative"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=2, padding=-1), ValueError,
                 r"padding must be non-negative integers; received padding=-1", id="padding-negative"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=3, padding=2), ValueError,
                 r"{who}: padding must be at most half the kernel; received padding=2 with kernel_size=3",
                 id="padding-gt-half"),
    pytest.param((1, 1, 4, 4), numpy.float64, dict(kernel_size=(3, 3), padding=(0, 2)), ValueError,
                 r"at most half the kernel; received padding=\(0, 2\)", id="padding-gt-half-w"),
    pytest.param((1, 1, 2, 2), numpy.float64, dict(kernel_size=3), xpnet.ShapeError,
                 r"{who}: padded input 2x2 is smaller than the kernel 3x3 \(output would be 0x0\)",
                 id="kernel-gt-input"),
    pytest.param((1, 1, 1, 3), numpy.float64, dict(kernel_size=(4, 2), padding=(1, 1)), xpnet.ShapeError,
                 r"{who}: padded input 3x5 is smaller than the kernel 4x2", id="kernel-gt-padded-input"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape, dtype, kwargs, error, message", BAD_POOL)
def test_bad_pool_inputs_are_rejected(xp, rng, kind, shape, dtype, kwargs, error, message):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x_dev = xp.asarray(x)
    kwargs = dict(kwargs)
    args = (kwargs.pop("kernel_size"), kwargs.pop("stride", None), kwargs.pop("padding", 0))
    with pytest.raises(error, match=message.format(who=WHO[kind])):
        forward(kind, x_dev, *args)
    numpy.testing.assert_array_equal(host(x_dev), x)


def test_numpy_integer_kernel_size_is_accepted(xp, rng):
    x = rng.standard_normal((1, 1, 4, 4))
    y, _ = ops.max_pool2d_forward(xp.asarray(x), numpy.int64(2))
    numpy.testing.assert_array_equal(host(y), ref.max_pool(x, 2))


@pytest.mark.parametrize("shape, dtype, error, message", [
    ((2, 3), numpy.float64, xpnet.ShapeError, r"global_avg_pool2d expects 4-D input .* got shape \(2, 3\)"),
    ((2, 3, 4, 4), numpy.int32, xpnet.DTypeError, r"global_avg_pool2d input must be a float32 or float64"),
    ((2, 3, 0, 4), numpy.float64, xpnet.ShapeError, r"needs H, W >= 1, got input shape \(2, 3, 0, 4\)"),
])
def test_bad_global_avg_pool_inputs_are_rejected(xp, shape, dtype, error, message):
    x = numpy.ones(shape, dtype=dtype)
    x_dev = xp.asarray(x)
    with pytest.raises(error, match=message):
        ops.global_avg_pool2d_forward(x_dev)
    numpy.testing.assert_array_equal(host(x_dev), x)
