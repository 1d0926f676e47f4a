"""conv_transpose2d_forward / _backward against a naive scatter loop, gradient checks, the adjoint of conv2d,
chunking, edge geometry (output rows no input reaches) and bad inputs."""

import functools

import numpy
import pytest

import xpnet
from tests.helpers import assert_close, gradcheck, host
from tests.optional import assume, given, st
from tests.reference.conv_transpose import scatter_reference
from tests.strict_backend import strict
from xpnet.ops import conv2d_forward
from xpnet.ops.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward, transposed_size


class Case:
    def __init__(self, name, x, w, bias=True, **kwargs):
        self.name, self.x, self.w, self.bias, self.kwargs = name, x, w, bias, kwargs

    def __repr__(self):
        return self.name

    def arrays(self, rng, dtype=numpy.float64):
        x = rng.standard_normal(self.x).astype(dtype)
        w = rng.standard_normal(self.w).astype(dtype)
        b = rng.standard_normal(self.w[1] * self.kwargs.get("groups", 1)).astype(dtype) if self.bias else None
        return x, w, b

    def reference(self, x, w, b):
        return scatter_reference(x, w, b, **self.kwargs)


CASES = [
    Case("basic", (2, 3, 4, 5), (3, 2, 3, 3)),
    Case("stride2_pad1_outpad1", (2, 3, 4, 3), (3, 4, 3, 3), stride=2, padding=1, output_padding=1),
    Case("kernel_eq_stride", (1, 2, 3, 4), (2, 3, 2, 2), stride=2),
    Case("stride_gt_kernel", (2, 2, 3, 3), (2, 2, 2, 2), stride=3, output_padding=2),
    Case("asym", (1, 2, 4, 5), (2, 3, 3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0)),
    Case("groups2", (2, 4, 3, 4), (4, 3, 3, 3), stride=2, padding=1, output_padding=1, groups=2),
    Case("depthwise", (2, 3, 4, 4), (3, 1, 3, 3), stride=2, padding=1, groups=3),
    Case("dilation2", (2, 2, 4, 4), (2, 3, 3, 2), padding=1, dilation=2),
    Case("outpad_ge_stride_via_dilation", (1, 2, 3, 4), (2, 2, 2, 3), output_padding=(2, 1), dilation=3),
    Case("outpad_beyond_padding", (2, 2, 3, 3), (2, 2, 3, 3), stride=2, output_padding=1),
    Case("padding_eats_writes", (1, 1, 1, 2), (1, 2, 1, 1), stride=3, padding=1, output_padding=2),
    Case("kernel1x1", (2, 3, 4, 3), (3, 2, 1, 1)),
    Case("no_bias", (2, 2, 3, 3), (2, 3, 3, 3), stride=2, padding=1, bias=False),
    Case("big_padding", (1, 2, 5, 5), (2, 2, 3, 3), padding=2),
]


def _run(xp, case, x, w, b, **extra):
    return conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b),
                                    **case.kwargs, **extra)


def _grads(xp, cache, dy, **kwargs):
    return [host(g) for g in conv_transpose2d_backward(xp.asarray(dy), cache, **kwargs)]


# --- forward --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol", [(numpy.float64, dict(rtol=1e-12, atol=1e-12)),
                                        (numpy.float32, dict(rtol=1e-4, atol=1e-5))], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_matches_the_float64_scatter_loop(xp, rng, case, dtype, tol):
    x, w, b = case.arrays(rng, dtype)
    y, _ = _run(xp, case, x, w, b)
    assert y.dtype == dtype
    assert_close(y, case.reference(x, w, b), what=case.name, **tol)


def test_outputs_no_input_reaches_hold_only_the_bias_and_pass_no_gradient(rng):
    case = next(c for c in CASES if c.name == "padding_eats_writes")
    x, w, b = case.arrays(rng)
    y, cache = _run(numpy, case, x, w, b)
    assert y.shape == (1, 2, 1, 4)  # output row 0 is padded row 1; every write lands in row 0
    numpy.testing.assert_array_equal(y, numpy.broadcast_to(b.reshape(1, 2, 1, 1), y.shape))
    dx, dw, db = conv_transpose2d_backward(rng.standard_normal(y.shape), cache)
    assert not numpy.any(dx) and not numpy.any(dw) and dx.shape == x.shape and dw.shape == w.shape


@pytest.mark.parametrize("case", [c for c in CASES if c.kwargs.get("output_padding", 0) in (0, (1, 0))
                                  and c.name != "padding_eats_writes"], ids=repr)
def test_it_is_the_adjoint_of_conv2d(xp, rng, case):
    """<conv_transpose(x), v> = <x, conv2d(v)> with the same weight, stride, padding, dilation and groups."""
    x, w, _ = case.arrays(rng)
    y, _ = _run(xp, case, x, w, None)
    v = rng.standard_normal(y.shape)
    kw = {k: case.kwargs[k] for k in ("stride", "padding", "dilation", "groups") if k in case.kwargs}
    conv_v, _ = conv2d_forward(xp.asarray(v), xp.asarray(w), **kw)
    assert conv_v.shape == x.shape
    numpy.testing.assert_allclose(numpy.sum(host(y) * v), numpy.sum(x * host(conv_v)), rtol=1e-11)


@pytest.mark.parametrize("H, K, S, P, OP, D", [(4, 3, 2, 1, 1, 1), (5, 1, 1, 0, 0, 1), (3, 2, 3, 0, 2, 1),
                                               (4, 3, 1, 0, 2, 3), (1, 1, 3, 1, 2, 1)])
def test_output_size_is_pytorchs_formula(H, K, S, P, OP, D):
    assert transposed_size(H, K, S, P, OP, D) == (H - 1) * S - 2 * P + D * (K - 1) + OP + 1


# --- backward -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=repr)
def test_backward_gradcheck(xp, rng, case):
    run = functools.partial(conv_transpose2d_forward, **case.kwargs)
    gradcheck(xp, lambda *arrays: run(*arrays)[0], lambda dy, *arrays: conv_transpose2d_backward(dy, run(*arrays)[1]),
              [a for a in case.arrays(rng) if a is not None])


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_float32_gradients_keep_their_dtype_and_match_float64(xp, rng, case):
    arrays = case.arrays(rng)
    dy = rng.standard_normal(_run(numpy, case, *arrays)[0].shape)
    grads = {}
    for dtype in (numpy.float32, numpy.float64):
        x, w, b = (None if a is None else a.astype(dtype) for a in arrays)
        grads[dtype] = _grads(xp, _run(xp, case, x, w, b)[1], dy.astype(dtype))
    for name, g32, g64, a in zip(("dx", "dw", "db"), grads[numpy.float32], grads[numpy.float64], arrays):
        assert (g32 is None) == (a is None), name
        if a is not None:
            assert g32.dtype == numpy.float32 and g32.shape == a.shape, name
            assert_close(g32, g64, rtol=1e-4, atol=1e-5 * numpy.abs(g64).max(), what=name)


def test_need_input_grad_false_skips_dx_only(xp, rng):
    x, w, b = CASES[1].arrays(rng)
    y, cache = _run(xp, CASES[1], x, w, b)
    dy = rng.standard_normal(y.shape)
    full, without_dx = _grads(xp, cache, dy), _grads(xp, cache, dy, need_input_grad=False)
    assert without_dx[0] is None and full[0] is not None
    for got, want in zip(without_dx[1:], full[1:]):
        numpy.testing.assert_array_equal(got, want)  # bit-exact: the same GEMMs on the same shapes


def test_forward_and_backward_leave_inputs_unchanged(xp, rng):
    case = CASES[5]
    x, w, b = case.arrays(rng)
    devs = [xp.asarray(a) for a in (x, w, b)]
    y, cache = conv_transpose2d_forward(*devs, **case.kwargs)
    dy = rng.standard_normal(y.shape)
    dy_dev = xp.asarray(dy)
    conv_transpose2d_backward(dy_dev, cache)
    for name, dev, original in zip(("x", "w", "b", "dy"), (*devs, dy_dev), (x, w, b, dy)):
        numpy.testing.assert_array_equal(host(dev), original, err_msg=name)


def test_non_contiguous_inputs_match_contiguous(xp, rng):
    case = CASES[5]
    x_big = rng.standard_normal((2, 4, 4, 6))  # x = x_big[..., ::2] transposed (H, W)
    x = numpy.ascontiguousarray(x_big[:, :, :, ::2].transpose(0, 1, 3, 2))
    _, w, b = case.arrays(rng)
    x_view = xp.asarray(x_big)[:, :, :, ::2].transpose(0, 1, 3, 2)
    assert not x_view.flags.c_contiguous
    y_c, cache_c = _run(xp, case, x, w, b)
    y_nc, cache_nc = conv_transpose2d_forward(x_view, xp.asarray(w), xp.asarray(b), **case.kwargs)
    assert_close(y_nc, y_c, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y_c.shape)
    dy_view = xp.asarray(numpy.ascontiguousarray(dy.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    for got, want in zip([host(g) for g in conv_transpose2d_backward(dy_view, cache_nc)], _grads(xp, cache_c, dy)):
        assert_close(got, want, rtol=1e-12, atol=1e-12)


# --- chunking -------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_chunked_batch_equals_unchunked(xp, rng, chunk):
    """Chunks of one sample: the batch's gradients are the sums of the per-sample ones."""
    case = Case("chunked", (5, 4, 3, 4), (4, 3, 3, 3), stride=2, padding=1, output_padding=1, groups=2)
    x, w, b = case.arrays(rng)
    y_full, cache_full = _run(xp, case, x, w, b)
    per_sample = 6 * 3 * 3 * 3 * 4 * 8  # C_out * KH * KW * H * W * itemsize: one sample's columns
    y, cache = _run(xp, case, x, w, b, max_workspace_bytes=chunk * per_sample + 7)
    assert cache.chunk == chunk and cache_full.chunk == 5
    assert_close(y, y_full, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    for got, want in zip(_grads(xp, cache, dy), _grads(xp, cache_full, dy)):
        assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_empty_batch(xp, rng, bias):
    w = rng.standard_normal((2, 3, 3, 3))
    b = xp.asarray(rng.standard_normal(3)) if bias else None
    y, cache = conv_transpose2d_forward(xp.asarray(numpy.zeros((0, 2, 4, 4))), xp.asarray(w), b, stride=2)
    assert y.shape == (0, 3, 9, 9)
    dx, dw, db = conv_transpose2d_backward(xp.asarray(numpy.zeros(y.shape)), cache)
    assert dx.shape == (0, 2, 4, 4) and not numpy.any(host(dw))
    assert db is None if not bias else not numpy.any(host(db))


# --- Hypothesis shapes ----------------------------------------------------------------------

@st.composite
def problems(draw):
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    H, W, KH, KW = (draw(st.integers(1, 4)) for _ in range(4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    assume(all(transposed_size(*args) >= 1 for args in zip((H, W), (KH, KW), stride, padding, output_padding,
                                                           dilation)))
    return dict(x=(draw(st.integers(1, 2)), c_in, H, W), w=(c_in, c_out // groups, KH, KW),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
                kwargs=dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                            dilation=dilation))


def _check_drawn_problem(xp, problem):
    gen = numpy.random.default_rng(problem["seed"])
    x, w = gen.standard_normal(problem["x"]), gen.standard_normal(problem["w"])
    b = gen.standard_normal(problem["w"][1] * problem["kwargs"]["groups"]) if problem["bias"] else None
    y, cache = conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b),
                                        **problem["kwargs"])
    assert_close(y, scatter_reference(x, w, b, **problem["kwargs"]), rtol=1e-12, atol=1e-12, what=str(problem))
    v = gen.standard_normal(y.shape)  # dx is the adjoint: <y(x), v> is linear in x with gradient dx
    dx = host(conv_transpose2d_backward(xp.asarray(v), cache)[0])
    assert_close(numpy.sum((scatter_reference(x + 1.0, w, b, **problem["kwargs"]) - host(y)) * v), numpy.sum(dx),
                 rtol=1e-9, atol=1e-9, what=str(problem))


@given(problem=problems(), backend=st.sampled_from(["numpy", "strict"]))
def test_forward_and_input_gradient_on_drawn_shapes(problem, backend):
    _check_drawn_problem(strict if backend == "strict" else numpy, problem)


# --- bad inputs -----------------------------------------------------------------------------

# (name, x shape and dtype, weight shape and dtype, bias shape or None, kwargs, error, message pattern)
F64, F32, I64 = numpy.float64, numpy.float32, numpy.int64
BAD_INPUTS = [
    ("rank3_input", ((2, 5, 5), F64), ((2, 3, 3, 3), F64), None, {}, xpnet.ShapeError,
     r"expects 4-D input \(N, C, H, W\), got shape \(2, 5, 5\)"),
    ("wrong_channels", ((1, 3, 5, 5), F64), ((2, 2, 3, 3), F64), None, {}, xpnet.ShapeError,
     r"expects 2 input channels \(weight shape \(2, 2, 3, 3\), groups=1\), got input shape \(1, 3, 5, 5\)"),
    ("int_input", ((1, 2, 5, 5), I64), ((2, 3, 3, 3), I64), None, {}, xpnet.DTypeError, r"float32 or float64.*int64"),
    ("dtype_mismatch", ((1, 2, 5, 5), F32), ((2, 3, 3, 3), F64), None, {}, xpnet.DTypeError,
     r"share one dtype; got input float32, weight float64$"),
    ("output_below_1", ((1, 1, 1, 2), F64), ((1, 1, 1, 1), F64), None, {"padding": 1}, xpnet.ShapeError,
     r"input H x W 1x2 gives output -1x0"),
    ("output_padding_too_large", ((1, 2, 3, 3), F64), ((2, 3, 3, 3), F64), None, {"stride": 2, "output_padding": 2},
     ValueError, r"output_padding must be smaller than either stride or dilation; received output_padding=\(2, 2\)"),
    ("stride0", ((1, 2, 5, 5), F64), ((2, 3, 3, 3), F64), None, {"stride": 0}, ValueError, r"stride must be positive"),
    ("negative_padding", ((1, 2, 5, 5), F64), ((2, 3, 3, 3), F64), None, {"padding": -1}, ValueError,
     r"padding must be non-negative"),
    ("string_padding", ((1, 2, 5, 5), F64), ((2, 3, 3, 3), F64), None, {"padding": "same"}, ValueError,
     r"padding must be an int or a pair of ints; received padding='same'"),
    ("groups_not_dividing_cin", ((1, 3, 5, 5), F64), ((3, 1, 3, 3), F64), None, {"groups": 2}, ValueError,
     r"groups must be a positive int dividing C_in=3; received groups=2"),
    ("bias_wrong_shape", ((1, 2, 5, 5), F64), ((2, 3, 3, 3), F64), (2,), {}, xpnet.ShapeError,
     r"bias must have shape \(3,\), got \(2,\)"),
    ("weight_3d", ((1, 2, 5, 5), F64), ((2, 3, 3), F64), None, {}, xpnet.ShapeError,
     r"weight must be 4-D \(C_in, C_out/groups, KH, KW\)"),
]


@pytest.mark.parametrize("name, x, w, b, kwargs, error, pattern", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(xp, name, x, w, b, kwargs, error, pattern):
    x_dev, w_dev = (xp.asarray(numpy.ones(shape, dtype)) for shape, dtype in (x, w))
    b_dev = None if b is None else xp.asarray(numpy.ones(b))
    with pytest.raises(error, match=pattern):
        conv_transpose2d_forward(x_dev, w_dev, b_dev, **kwargs)


def test_backward_refuses_dy_of_another_shape(xp, rng):
    x, w, b = CASES[1].arrays(rng)
    y, cache = _run(xp, CASES[1], x, w, b)
    with pytest.raises(xpnet.ShapeError, match=r"expects dy of the forward output's shape \(2, 4, 8, 6\), got "
                                                r"\(2, 4, 7, 6\)"):
        conv_transpose2d_backward(xp.asarray(numpy.ones((2, 4, 7, 6))), cache)
