"""adaptive_avg_pool2d_forward / _backward: PyTorch's bins by a naive loop, both routes (uniform tiles and
averaging matrices), gradient checks and bad inputs; dropout2d_forward / _backward with fixed masks."""

import math

import numpy
import pytest

import xpnet
import xpnet.ops.adaptive_pool as adaptive
from tests.helpers import assert_close, gradcheck, host
from tests.reference.adaptive_pool import adaptive_reference
from xpnet.ops.adaptive_pool import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward, bins
from xpnet.ops.dropout2d import dropout2d_backward, dropout2d_forward

# (input shape, output_size, uniform bins)
SIZES = [
    ((2, 3, 6, 8), (3, 4), True),
    ((2, 3, 6, 8), 1, True),
    ((1, 2, 5, 7), (3, 2), False),       # overlapping bins
    ((1, 2, 5, 7), 3, False),
    ((2, 2, 3, 4), (5, 6), False),       # output larger than input: rows repeat
    ((2, 2, 7, 6), (None, 4), False),    # None keeps H; 6 % 4 != 0
    ((2, 2, 7, 6), (7, None), True),
    ((1, 1, 1, 1), (2, 3), False),
]
IDS = ["uniform", "global", "overlap", "int3", "upsizing", "none_h", "none_w", "one_pixel"]


def _pair(size):
    return (size, size) if isinstance(size, int) else size


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("shape, size, uniform", SIZES, ids=IDS)
def test_forward_matches_the_bin_loop(xp, rng, shape, size, uniform, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    y, cache = adaptive_avg_pool2d_forward(xp.asarray(x), size)
    assert (cache.rows is None) == uniform
    assert host(y).dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == numpy.float64 else dict(rtol=1e-5, atol=1e-6)
    assert_close(y, adaptive_reference(x.astype(numpy.float64), _pair(size)), **tol)


@pytest.mark.parametrize("shape, size, uniform", SIZES, ids=IDS)
def test_backward_gradcheck(xp, rng, shape, size, uniform):
    gradcheck(xp, lambda x: adaptive_avg_pool2d_forward(x, size)[0],
              lambda dy, x: [adaptive_avg_pool2d_backward(dy, adaptive_avg_pool2d_forward(x, size)[1])],
              [rng.standard_normal(shape)])


@pytest.mark.parametrize("shape, size", [((2, 3, 6, 8), (3, 4)), ((2, 2, 4, 4), 1), ((1, 2, 6, 6), (2, None))])
def test_uniform_route_equals_the_matrix_route(xp, rng, monkeypatch, shape, size):
    x = xp.asarray(rng.standard_normal(shape))
    y, cache = adaptive_avg_pool2d_forward(x, size)
    dy = xp.asarray(rng.standard_normal(host(y).shape))
    dx = adaptive_avg_pool2d_backward(dy, cache)
    monkeypatch.setattr(adaptive, "uniform_bins", lambda *_: False)
    y_m, cache_m = adaptive_avg_pool2d_forward(x, size)
    assert cache.rows is None and cache_m.rows is not None
    assert_close(y_m, y, rtol=1e-12, atol=1e-12)
    assert_close(adaptive_avg_pool2d_backward(dy, cache_m), dx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, out", [(10, 3), (5, 3), (3, 5), (7, 7), (6, 4)])
def test_bins_are_pytorchs_and_cover_every_pixel(size, out):
    edges = bins(size, out)
    assert edges == [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]
    assert edges[0][0] == 0 and edges[-1][1] == size and all(e > s for s, e in edges)
    assert all(edges[i + 1][0] <= edges[i][1] for i in range(out - 1))  # no pixel skipped


def test_empty_batch(xp):
    y, cache = adaptive_avg_pool2d_forward(xp.asarray(numpy.zeros((0, 2, 5, 7))), (2, 3))
    assert y.shape == (0, 2, 2, 3)
    assert adaptive_avg_pool2d_backward(xp.asarray(numpy.zeros((0, 2, 2, 3))), cache).shape == (0, 2, 5, 7)


@pytest.mark.parametrize("x, size, error, pattern", [
    (numpy.ones((2, 5, 5)), 2, xpnet.ShapeError, r"expects 4-D input \(N, C, H, W\), got shape \(2, 5, 5\)"),
    (numpy.ones((1, 2, 0, 5)), 2, xpnet.ShapeError, r"needs H, W >= 1, got input shape \(1, 2, 0, 5\)"),
    (numpy.ones((1, 2, 5, 5), numpy.int64), 2, xpnet.DTypeError, r"float32 or float64.*int64"),
    (numpy.ones((1, 2, 5, 5)), 0, ValueError, r"positive int, None or a pair of them; received output_size=0"),
    (numpy.ones((1, 2, 5, 5)), (2, 3, 4), ValueError, r"received output_size=\(2, 3, 4\)"),
    (numpy.ones((1, 2, 5, 5)), 2.5, ValueError, r"received output_size=2.5"),
])
def test_bad_inputs_raise_clear_errors(xp, x, size, error, pattern):
    with pytest.raises(error, match=pattern):
        adaptive_avg_pool2d_forward(xp.asarray(x), size)


def test_backward_refuses_dy_of_another_shape(xp):
    _, cache = adaptive_avg_pool2d_forward(xp.asarray(numpy.ones((1, 2, 5, 5))), 3)
    with pytest.raises(xpnet.ShapeError, match=r"dy of the forward output's shape \(1, 2, 3, 3\), got \(1, 2, 3, 2\)"):
        adaptive_avg_pool2d_backward(xp.asarray(numpy.ones((1, 2, 3, 2))), cache)


# --- dropout2d ------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.0, 0.3, 0.75])
def test_dropout2d_gradcheck_with_a_fixed_mask(xp, rng, p):
    mask = rng.random((3, 4)) >= p
    gradcheck(xp, lambda x: dropout2d_forward(x, p, mask=mask)[0],
              lambda dy, x: [dropout2d_backward(dy, dropout2d_forward(x, p, mask=mask)[1])],
              [rng.standard_normal((3, 4, 2, 3))])


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest(xp, rng):
    p = 0.25
    x = rng.standard_normal((4, 5, 3, 2))
    keep = rng.random((4, 5)) >= p
    y = host(dropout2d_forward(xp.asarray(x), p, mask=keep)[0])
    numpy.testing.assert_allclose(y, numpy.where(keep[:, :, None, None], x / (1 - p), 0.0), rtol=1e-15)


@pytest.mark.parametrize("x, mask, pattern", [
    (numpy.ones((2, 3, 4)), None, r"expects 4-D input \(N, C, H, W\), got shape \(2, 3, 4\)"),
    (numpy.ones((2, 3, 4, 4)), numpy.ones((2, 4), bool), r"mask shape \(2, 4\) does not match \(N, C\) = \(2, 3\)"),
    (numpy.ones((2, 3, 4, 4)), numpy.ones((2, 3, 4, 4), bool), r"mask shape \(2, 3, 4, 4\)"),
])
def test_dropout2d_refuses_bad_shapes(xp, x, mask, pattern):
    with pytest.raises(xpnet.ShapeError, match=pattern):
        dropout2d_forward(xp.asarray(x), 0.5, mask=mask, rng=numpy.random.default_rng(0))
