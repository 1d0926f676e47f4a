"""layer_norm and group_norm forward/backward against naive loop references, gradchecks, edge cases and bad inputs."""

import math

import numpy
import pytest

import xpnet
from tests.helpers import TOL, assert_close, gradcheck, host
from xpnet.ops.norm import group_norm_backward, group_norm_forward, layer_norm_backward, layer_norm_forward


# --- naive references: Python floats and math.fsum, one sample (and group) at a time -----------------
def _normalise_values(values, eps):
    """(x - mean) / sqrt(var + eps) of a list of floats, biased variance, two passes with fsum."""
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / len(values)
    return [(v - mean) / math.sqrt(var + eps) for v in values]


def layer_norm_reference(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise x over its last len(normalized_shape) axes, one leading index at a time."""
    x = numpy.asarray(x, dtype=numpy.float64)
    k = len(normalized_shape)
    y = numpy.empty(x.shape)
    for lead in numpy.ndindex(x.shape[:x.ndim - k]):
        block = x[lead]
        normed = _normalise_values([float(v) for v in block.ravel()], eps)
        for flat, idx in enumerate(numpy.ndindex(block.shape)):
            w = 1.0 if weight is None else float(weight[idx])
            b = 0.0 if bias is None else float(bias[idx])
            y[lead + idx] = w * normed[flat] + b
    return y


def group_norm_reference(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise each group of C / G channels of each sample over its channels and positions."""
    x = numpy.asarray(x, dtype=numpy.float64)
    N, C = x.shape[:2]
    size = C // num_groups
    y = numpy.empty(x.shape)
    for n in range(N):
        for g in range(num_groups):
            block = x[n, g * size:(g + 1) * size]
            normed = _normalise_values([float(v) for v in block.ravel()], eps)
            for flat, (c, *pos) in enumerate(numpy.ndindex(block.shape)):
                channel = g * size + c
                w = 1.0 if weight is None else float(weight[channel])
                b = 0.0 if bias is None else float(bias[channel])
                y[(n, channel, *pos)] = w * normed[flat] + b
    return y


def _params(rng, shape, affine, dtype=numpy.float64):
    """(weight, bias) of ``shape``: both, weight only, or neither."""
    weight = rng.uniform(0.5, 2, shape).astype(dtype) if affine in ("both", "weight") else None
    bias = rng.standard_normal(shape).astype(dtype) if affine == "both" else None
    return weight, bias


def _data(rng, shape, dtype=numpy.float64):
    """Values with an offset and a spread that differ along every axis."""
    return (rng.standard_normal(shape) * rng.uniform(0.5, 3, shape) + rng.uniform(-2, 2, shape)).astype(dtype)


def _device(xp, *arrays):
    return [None if a is None else xp.asarray(a) for a in arrays]


LAYER_CASES = [((4, 5), (5,)), ((2, 3, 4), (3, 4)), ((3, 2, 2, 3), (2, 3)), ((2, 6), (2, 6)), ((1, 7), 7)]
GROUP_CASES = [((2, 6), 3), ((3, 4, 5), 2), ((2, 6, 3, 2), 3), ((2, 4, 2, 2), 1), ((2, 4, 2, 3), 4),
               ((1, 4, 2, 1, 3), 2)]
AFFINE = ["both", "weight", "none"]


# --- forward against the references ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape, normalized_shape", LAYER_CASES)
def test_layer_norm_forward_matches_reference(xp, rng, shape, normalized_shape, affine, dtype):
    S = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    x = _data(rng, shape, dtype)
    weight, bias = _params(rng, S, affine, dtype)
    originals = [None if a is None else a.copy() for a in (x, weight, bias)]
    y, _ = layer_norm_forward(*_device(xp, x), normalized_shape, *_device(xp, weight, bias), eps=1e-3)
    assert host(y).dtype == dtype and host(y).shape == shape
    assert_close(y, layer_norm_reference(x, S, weight, bias, eps=1e-3), **TOL[numpy.dtype(dtype)])
    for a, original in zip((x, weight, bias), originals, strict=True):
        if a is not None:
            numpy.testing.assert_array_equal(a, original)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape, groups", GROUP_CASES)
def test_group_norm_forward_matches_reference(xp, rng, shape, groups, affine, dtype):
    x = _data(rng, shape, dtype)
    weight, bias = _params(rng, (shape[1],), affine, dtype)
    y, _ = group_norm_forward(*_device(xp, x), groups, *_device(xp, weight, bias), eps=1e-3)
    assert host(y).dtype == dtype and host(y).shape == shape
    assert_close(y, group_norm_reference(x, groups, weight, bias, eps=1e-3), **TOL[numpy.dtype(dtype)])


def test_the_references_can_fail(rng):
    """The references are not the op again: mixing up the axes or groups moves them."""
    x = _data(rng, (2, 4, 3))
    assert not numpy.allclose(layer_norm_reference(x, (3,)), layer_norm_reference(x, (4, 3)))
    assert not numpy.allclose(group_norm_reference(x, 2), group_norm_reference(x, 4))
    y = group_norm_reference(x, 2)
    numpy.testing.assert_allclose(y.reshape(2, 2, 6).mean(axis=2), 0, atol=1e-12)


# --- gradients ---------------------------------------------------------------------------------------
def _with_params(forward, backward, affine, *leading):
    """forward(x, *params) and backward(dy, x, *params) over the parameters ``affine`` gives."""
    count = {"both": 2, "weight": 1, "none": 0}[affine]

    def split(params):
        padded = list(params) + [None] * (2 - count)
        return padded[0], padded[1]

    def f(x, *params):
        return forward(x, *leading, *split(params))[0]

    def b(dy, x, *params):
        dx, dweight, dbias = backward(dy, forward(x, *leading, *split(params))[1])
        return [dx, dweight, dbias][:1 + count]

    return f, b


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape, normalized_shape", LAYER_CASES)
def test_layer_norm_gradcheck(xp, rng, shape, normalized_shape, affine):
    S = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    weight, bias = _params(rng, S, affine)
    forward, backward = _with_params(layer_norm_forward, layer_norm_backward, affine, normalized_shape)
    gradcheck(xp, forward, backward, [_data(rng, shape)] + [p for p in (weight, bias) if p is not None])


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape, groups", GROUP_CASES)
def test_group_norm_gradcheck(xp, rng, shape, groups, affine):
    weight, bias = _params(rng, (shape[1],), affine)
    forward, backward = _with_params(group_norm_forward, group_norm_backward, affine, groups)
    gradcheck(xp, forward, backward, [_data(rng, shape)] + [p for p in (weight, bias) if p is not None])


def test_missing_parameters_get_no_gradient(xp, rng):
    x = xp.asarray(_data(rng, (2, 4, 3)))
    dy = xp.asarray(rng.standard_normal((2, 4, 3)))
    _, dweight, dbias = layer_norm_backward(dy, layer_norm_forward(x, 3)[1])
    assert dweight is None and dbias is None
    _, dweight, dbias = group_norm_backward(dy, group_norm_forward(x, 2, xp.asarray(numpy.ones(4)))[1])
    assert host(dweight).shape == (4,) and dbias is None


# --- per-sample statistics ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["layer", "group"])
def test_each_sample_is_normalised_on_its_own(xp, rng, op):
    """The outputs and input gradients of a batch are those of its samples one at a time (no batch
    statistics), and the parameter gradients are their sums."""
    x, dy = _data(rng, (3, 4, 2, 3)), rng.standard_normal((3, 4, 2, 3))
    weight, bias = (xp.asarray(a) for a in _params(rng, (4,) if op == "group" else (2, 3), "both"))
    forward, backward = ((lambda a: group_norm_forward(a, 2, weight, bias)), group_norm_backward) \
        if op == "group" else ((lambda a: layer_norm_forward(a, (2, 3), weight, bias)), layer_norm_backward)
    y, cache = forward(xp.asarray(x))
    dx, dweight, dbias = (host(g) for g in backward(xp.asarray(dy), cache))
    sums = [numpy.zeros_like(dweight), numpy.zeros_like(dbias)]
    for n in range(3):
        y_n, cache_n = forward(xp.asarray(x[n:n + 1]))
        assert_close(y_n, host(y)[n:n + 1], rtol=1e-12, atol=1e-14)
        dx_n, dweight_n, dbias_n = (host(g) for g in backward(xp.asarray(dy[n:n + 1]), cache_n))
        assert_close(dx_n, dx[n:n + 1], rtol=1e-12, atol=1e-14)
        sums = [sums[0] + dweight_n, sums[1] + dbias_n]
    assert_close(dweight, sums[0], rtol=1e-12, atol=1e-14)
    assert_close(dbias, sums[1], rtol=1e-12, atol=1e-14)


def test_group_norm_with_one_group_is_a_layer_norm_and_with_c_groups_an_instance_norm(xp, rng):
    x = xp.asarray(_data(rng, (2, 4, 3, 2)))
    assert_close(group_norm_forward(x, 1)[0], host(layer_norm_forward(x, (4, 3, 2))[0]), rtol=1e-12, atol=1e-14)
    instance = layer_norm_forward(x, (3, 2))[0]  # each (sample, channel) over H, W
    assert_close(group_norm_forward(x, 4)[0], host(instance), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("op", ["layer", "group"])
def test_output_is_normalised_and_float32_stays_float32(xp, rng, op):
    x = xp.asarray((_data(rng, (3, 6, 5)) * 4 + 2).astype(numpy.float32))
    y, cache = group_norm_forward(x, 3) if op == "group" else layer_norm_forward(x, (6, 5))
    y = host(y)
    assert y.dtype == numpy.float32
    rows = y.reshape(3, 3, 10) if op == "group" else y.reshape(3, 30)
    numpy.testing.assert_allclose(rows.mean(axis=-1), 0, atol=1e-5)
    numpy.testing.assert_allclose(rows.var(axis=-1), 1, rtol=1e-3)
    backward = group_norm_backward if op == "group" else layer_norm_backward
    dx, _, _ = backward(xp.asarray(numpy.ones((3, 6, 5), numpy.float32)), cache)
    assert host(dx).dtype == numpy.float32
    numpy.testing.assert_allclose(host(dx), 0, atol=1e-5)  # a constant dy does not change a normalised output


@pytest.mark.parametrize("op", ["layer", "group"])
def test_a_large_offset_costs_no_precision_in_float32(xp, rng, op):
    """Two-pass variance: values of 1000 +- 1 in float32 normalise to within 1e-3 of the float64 result
    (the one-pass mean(x^2) - mean^2 loses the variance entirely: it is 1 against 1e6)."""
    x = (1000 + rng.standard_normal((2, 4, 64))).astype(numpy.float32)
    if op == "group":
        y = group_norm_forward(xp.asarray(x), 2)[0]
        expected = group_norm_reference(x, 2)
    else:
        y = layer_norm_forward(xp.asarray(x), (4, 64))[0]
        expected = layer_norm_reference(x, (4, 64))
    assert_close(y, expected, rtol=0, atol=1e-3)


def test_a_constant_row_normalises_to_zero_with_finite_gradients(xp):
    x = xp.asarray(numpy.full((2, 4, 3), 7.0))
    for forward, backward in ((lambda a: layer_norm_forward(a, 3), layer_norm_backward),
                              (lambda a: group_norm_forward(a, 2), group_norm_backward)):
        y, cache = forward(x)
        numpy.testing.assert_array_equal(host(y), 0)
        dx, _, _ = backward(xp.asarray(numpy.arange(24.0).reshape(2, 4, 3)), cache)
        assert numpy.isfinite(host(dx)).all()


def test_output_without_parameters_is_not_a_view_of_the_cache(xp, rng):
    """A container may add into a layer's output in place; the backward pass must not see it."""
    x, dy = _data(rng, (2, 4, 3)), rng.standard_normal((2, 4, 3))
    for forward, backward in ((lambda a: layer_norm_forward(a, (4, 3)), layer_norm_backward),
                              (lambda a: group_norm_forward(a, 2), group_norm_backward)):
        expected = host(backward(xp.asarray(dy), forward(xp.asarray(x))[1])[0])
        y, cache = forward(xp.asarray(x))
        y += 100
        assert_close(backward(xp.asarray(dy), cache)[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("op", ["layer", "group"])
def test_non_contiguous_input_gives_identical_results(xp, rng, op):
    wide, dy = _data(rng, (2, 4, 6)), rng.standard_normal((2, 4, 3))
    weight, bias = (xp.asarray(a) for a in _params(rng, (4,) if op == "group" else (4, 3), "both"))
    forward, backward = ((lambda a: group_norm_forward(a, 2, weight, bias)), group_norm_backward) \
        if op == "group" else ((lambda a: layer_norm_forward(a, (4, 3), weight, bias)), layer_norm_backward)
    strided = xp.asarray(wide)[..., ::2]
    assert not strided.flags.c_contiguous
    y_s, cache_s = forward(strided)
    y_c, cache_c = forward(xp.asarray(numpy.ascontiguousarray(wide[..., ::2])))
    assert_close(y_s, host(y_c), rtol=1e-13, atol=1e-14)
    dy_strided = xp.asarray(numpy.repeat(dy, 2, axis=2))[..., ::2]  # a non-contiguous dy as well
    for g_s, g_c in zip(backward(dy_strided, cache_s), backward(xp.asarray(dy), cache_c), strict=True):
        assert_close(g_s, host(g_c), rtol=1e-13, atol=1e-14)
    numpy.testing.assert_array_equal(host(strided), wide[..., ::2])


# --- bad inputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, normalized_shape, message", [
    ((2, 4, 5), (4,), r"layer_norm expects input \(\*, 4\), got shape \(2, 4, 5\)"),
    ((5,), (2, 5), r"layer_norm expects input \(\*, 2, 5\), got shape \(5,\)"),
    ((2, 3, 5), (2, 5), r"expects input \(\*, 2, 5\), got shape \(2, 3, 5\)"),
])
def test_layer_norm_wrong_shape_raises(xp, rng, x_shape, normalized_shape, message):
    with pytest.raises(xpnet.ShapeError, match=message):
        layer_norm_forward(xp.asarray(rng.standard_normal(x_shape)), normalized_shape)


@pytest.mark.parametrize("normalized_shape", [0, (), (3, 0), (2.0,), "3", None, (True,)])
def test_layer_norm_rejects_a_bad_normalized_shape(xp, normalized_shape):
    with pytest.raises(ValueError, match=r"normalized_shape must be a positive int or a non-empty sequence"):
        layer_norm_forward(xp.asarray(numpy.ones((2, 3))), normalized_shape)


@pytest.mark.parametrize("x_shape, groups, message", [
    ((2, 6, 3), 4, r"the 6 channels of input shape \(2, 6, 3\) cannot be split into 4 groups"),
    ((6,), 3, r"group_norm expects input \(N, C, \*\), got shape \(6,\)"),
])
def test_group_norm_wrong_shape_raises(xp, rng, x_shape, groups, message):
    with pytest.raises(xpnet.ShapeError, match=message):
        group_norm_forward(xp.asarray(rng.standard_normal(x_shape)), groups)


@pytest.mark.parametrize("groups", [0, -2, 1.5, True, None])
def test_group_norm_rejects_a_bad_group_count(xp, groups):
    with pytest.raises(ValueError, match=r"num_groups must be a positive int"):
        group_norm_forward(xp.asarray(numpy.ones((2, 4))), groups)


@pytest.mark.parametrize("which, shape, message", [
    ("weight", (3,), r"layer_norm weight must have shape \(4,\), got \(3,\)"),
    ("bias", (1, 4), r"layer_norm bias must have shape \(4,\), got \(1, 4\)"),
])
def test_layer_norm_parameters_of_the_wrong_shape_raise(xp, which, shape, message):
    params = {which: xp.asarray(numpy.ones(shape))}
    with pytest.raises(xpnet.ShapeError, match=message):
        layer_norm_forward(xp.asarray(numpy.ones((2, 4))), 4, **params)


def test_group_norm_parameters_of_the_wrong_shape_raise(xp):
    with pytest.raises(xpnet.ShapeError, match=r"group_norm weight must have shape \(4,\), got \(2,\)"):
        group_norm_forward(xp.asarray(numpy.ones((2, 4))), 2, xp.asarray(numpy.ones(2)))


@pytest.mark.parametrize("which", ["weight", "bias"])
@pytest.mark.parametrize("op", ["layer", "group"])
def test_dtype_mismatch_raises(xp, op, which):
    x = xp.asarray(numpy.ones((2, 4), numpy.float32))
    params = {which: xp.asarray(numpy.ones(4))}
    with pytest.raises(xpnet.DTypeError, match=rf"must share one dtype; got input float32, {which} float64"):
        group_norm_forward(x, 2, **params) if op == "group" else layer_norm_forward(x, 4, **params)


@pytest.mark.parametrize("op", ["layer", "group"])
def test_integer_input_raises(xp, op):
    x = xp.asarray(numpy.ones((2, 4), numpy.int64))
    with pytest.raises(xpnet.DTypeError, match=rf"{op}_norm input must be a float32 or float64 array; got int64"):
        group_norm_forward(x, 2) if op == "group" else layer_norm_forward(x, 4)
