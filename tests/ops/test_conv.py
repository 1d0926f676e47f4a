"""conv2d_forward / conv2d_backward against a naive loop reference, gradient checks, chunking and bad inputs."""

import math

import numpy
import pytest

import xpnet
import xpnet.ops.conv as conv_module
from tests.helpers import assert_blas_close, assert_close, gradcheck, host
from tests.optional import assume, given, settings, st
from tests.reference import conv as ref
from tests.strict_backend import strict
from xpnet.ops import conv2d_backward, conv2d_forward
from xpnet.ops._args import same_pads


class Case:
    def __init__(self, name, x, w, stride=1, padding=0, dilation=1, groups=1, bias=True):
        self.name, self.x, self.w, self.bias = name, x, w, bias
        self.kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def __repr__(self):
        return self.name

    def ref_pads(self):
        padding, (KH, KW) = self.kwargs["padding"], self.w[2:]
        (SH, SW), (DH, DW) = ref.pair(self.kwargs["stride"]), ref.pair(self.kwargs["dilation"])
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return (ref.same_pads_ref(self.x[2], KH, SH, DH), ref.same_pads_ref(self.x[3], KW, SW, DW))
        return ref.explicit_pads(padding)

    def arrays(self, rng, dtype=numpy.float64):
        x = rng.standard_normal(self.x).astype(dtype)
        w = rng.standard_normal(self.w).astype(dtype)
        b = rng.standard_normal(self.w[0]).astype(dtype) if self.bias else None
        return x, w, b

    def reference(self, x, w, b):
        return ref.conv2d(x, w, b, self.kwargs["stride"], self.ref_pads(), self.kwargs["dilation"],
                          self.kwargs["groups"])


CASES = [
    Case("batch1", (1, 4, 5, 5), (3, 4, 3, 3)),
    Case("nonsquare_input_kernel", (2, 2, 5, 7), (3, 2, 2, 3), padding=1),
    Case("stride2", (2, 3, 6, 6), (2, 3, 3, 3), stride=(2, 2), padding=1),
    Case("stride32_pad21", (2, 2, 8, 7), (3, 2, 3, 3), stride=(3, 2), padding=(2, 1)),
    Case("stride_gt_kernel", (1, 2, 7, 7), (2, 2, 2, 2), stride=3),
    Case("asym_pad", (1, 2, 5, 6), (2, 2, 3, 3), padding=((1, 0), (0, 2))),
    Case("valid", (2, 2, 6, 5), (2, 2, 3, 2), padding="valid"),
    Case("same_s1_odd", (1, 2, 5, 6), (2, 2, 3, 3), padding="same"),
    Case("same_s1_even_kernel", (1, 2, 6, 5), (2, 2, 2, 4), padding="same"),
    Case("same_s2", (1, 2, 7, 8), (2, 2, 3, 3), stride=2, padding="same"),
    Case("same_s3", (1, 2, 7, 9), (2, 2, 2, 3), stride=3, padding="same"),
    Case("same_dilated", (1, 1, 6, 7), (2, 1, 3, 2), dilation=2, padding="same"),
    Case("dilation2", (1, 2, 7, 7), (2, 2, 3, 3), dilation=2, padding=1),
    Case("dilation21", (2, 2, 8, 6), (3, 2, 3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
    Case("groups2", (2, 4, 5, 5), (6, 2, 3, 3), padding=1, groups=2),
    Case("depthwise", (2, 3, 6, 5), (3, 1, 3, 3), stride=2, padding=1, groups=3),
    Case("depthwise_x2", (1, 3, 5, 5), (6, 1, 2, 2), groups=3),
    Case("dropped_last_row", (1, 1, 6, 6), (2, 1, 3, 3), stride=2),
    Case("kernel1x1", (2, 3, 4, 5), (4, 3, 1, 1)),
    Case("kernel1x1_stride2", (1, 2, 5, 4), (3, 2, 1, 1), stride=2),
    Case("kernel_eq_padded_input", (1, 2, 3, 3), (2, 2, 5, 5), padding=1),
    Case("torch_kernel_wider_than_input", (1, 2, 4, 3), (4, 2, 3, 4), stride=2, padding=1),
    Case("cin1_cout1", (2, 1, 5, 5), (1, 1, 3, 3)),
    Case("no_bias", (2, 2, 5, 5), (3, 2, 3, 3), padding=1, bias=False),
    Case("opinfo_dilation4", (2, 4, 8, 8), (3, 4, 3, 3), stride=(3, 2), padding=(2, 1), dilation=4),
]
GRAD_CASES = [c for c in CASES if c.name in {
    "batch1", "nonsquare_input_kernel", "stride32_pad21", "stride_gt_kernel", "asym_pad", "same_s2",
    "same_s1_even_kernel", "dilation21", "groups2", "depthwise", "dropped_last_row", "kernel1x1_stride2",
    "kernel_eq_padded_input", "torch_kernel_wider_than_input", "cin1_cout1", "no_bias"}]
SMALL = Case("small", (3, 2, 5, 4), (3, 2, 2, 3), stride=(2, 1), padding=((1, 0), (0, 1)))
SMALL_S1 = Case("small_s1", (3, 2, 5, 4), (3, 2, 2, 3), padding=((1, 0), (0, 1)))


def _run(xp, case, x, w, b, **extra):
    return conv2d_forward(xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b), **case.kwargs, **extra)


def _grads(xp, cache, dy, **kwargs):
    return [host(g) for g in conv2d_backward(xp.asarray(dy), cache, **kwargs)]


def _max_rel(actual, expected):
    return numpy.max(numpy.abs(actual - expected)) / max(numpy.max(numpy.abs(expected)), 1e-300)


# --- "same" padding sizes -------------------------------------------------------------------

@pytest.mark.parametrize("size, kernel, stride, dilation, expected", [
    (5, 3, 1, 1, (1, 1)), (6, 2, 1, 1, (0, 1)), (5, 4, 1, 1, (1, 2)), (5, 1, 1, 1, (0, 0)),
    (5, 3, 2, 1, (1, 1)), (6, 3, 2, 1, (0, 1)), (7, 3, 3, 1, (1, 1)), (8, 3, 3, 1, (0, 1)), (9, 3, 3, 1, (0, 0)),
    (4, 1, 3, 1, (0, 0)), (6, 3, 1, 2, (2, 2)), (2, 5, 2, 1, (1, 2)),
])
def test_same_pads_known_values(size, kernel, stride, dilation, expected):
    assert ref.same_pads_ref(size, kernel, stride, dilation) == expected
    assert same_pads(size, kernel, stride, dilation) == expected


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel, dilation", [(1, 1), (2, 1), (3, 1), (4, 1), (3, 2), (2, 3)])
def test_same_pads_match_reference_and_give_ceil_output(kernel, stride, dilation):
    for size in range(1, 12):
        pads = same_pads(size, kernel, stride, dilation)
        assert pads == ref.same_pads_ref(size, kernel, stride, dilation), size
        assert xpnet.ops.output_size(size, kernel, stride, pads, dilation) == math.ceil(size / stride)


# --- forward --------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_float64_matches_reference(xp, rng, case):
    x, w, b = case.arrays(rng)
    y, _ = _run(xp, case, x, w, b)
    assert y.dtype == numpy.float64
    assert_close(y, case.reference(x, w, b), rtol=1e-12, atol=1e-12, what=case.name)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_float32_matches_float64_reference(xp, rng, case):
    x, w, b = case.arrays(rng, numpy.float32)
    y, _ = _run(xp, case, x, w, b)
    assert y.dtype == numpy.float32
    assert_close(y, case.reference(x, w, b), rtol=1e-4, atol=1e-5, what=case.name)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("hw", [(5, 5), (6, 7), (8, 4)])
def test_same_padding_output_is_ceil_of_input_over_stride(xp, rng, stride, hw):
    x = rng.standard_normal((1, 2, *hw))
    w = rng.standard_normal((3, 2, 3, 2))
    y, _ = conv2d_forward(xp.asarray(x), xp.asarray(w), stride=stride, padding="same")
    assert y.shape == (1, 3, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
    pads = (ref.same_pads_ref(hw[0], 3, stride), ref.same_pads_ref(hw[1], 2, stride))
    assert_close(y, ref.conv2d(x, w, None, stride, pads), rtol=1e-12, atol=1e-12)


# --- backward -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", GRAD_CASES, ids=repr)
def test_backward_gradcheck(xp, rng, dx_layout, case):
    x, w, b = case.arrays(rng)

    def forward(*arrays):
        return conv2d_forward(*arrays, **case.kwargs)[0]

    def backward(dy, *arrays):
        return conv2d_backward(dy, conv2d_forward(*arrays, **case.kwargs)[1])

    gradcheck(xp, forward, backward, [x, w] if b is None else [x, w, b])


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_backward_shapes_and_dtypes(xp, rng, case):
    x, w, b = case.arrays(rng, numpy.float32)
    y, cache = _run(xp, case, x, w, b)
    dx, dw, db = conv2d_backward(xp.asarray(numpy.ones(y.shape, numpy.float32)), cache)
    assert dx.shape == x.shape and dw.shape == w.shape and dx.dtype == dw.dtype == numpy.float32
    assert (db is None) == (b is None)
    if b is not None:
        assert db.shape == b.shape and db.dtype == numpy.float32
        assert_close(db, numpy.full(b.shape, y.shape[0] * y.shape[2] * y.shape[3], numpy.float32))


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", [
    ((1, 1, 6, 6), (2, 1, 3, 3), 2, 0),         # (6 - 3) % 2 = 1: last row and column dropped
    ((1, 2, 7, 7), (2, 2, 2, 2), 3, 0),         # stride > kernel: rows 2, 5, 6 never read
    ((2, 1, 8, 6), (1, 1, 2, 3), (3, 2), 1),   # padded row 2, 5, 8, 9 never read
])
def test_pixels_no_window_reads_get_exactly_zero_gradient(xp, rng, x_shape, w_shape, stride, padding):
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), stride=stride, padding=padding)
    dx = host(conv2d_backward(xp.asarray(rng.standard_normal(y.shape)), cache)[0])
    pads = ref.explicit_pads(padding)
    OH, OW = y.shape[2:]
    coverage = ref.col2im(numpy.ones((*x_shape[:2], *w_shape[2:], OH, OW)), x_shape, ref.pair(stride), pads)
    assert (coverage == 0).any()
    assert numpy.all(dx[coverage == 0] == 0.0)  # exact: nothing is ever added there (or only w^T @ 0)
    assert numpy.all(dx[coverage > 0] != 0.0)


def test_dropped_last_row_and_column_gradient(xp, rng):
    x, w = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((3, 1, 3, 3))
    y, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), stride=2)
    assert y.shape == (2, 3, 2, 2)
    dx = host(conv2d_backward(xp.asarray(rng.standard_normal(y.shape)), cache)[0])
    assert numpy.all(dx[:, :, 5, :] == 0.0) and numpy.all(dx[:, :, :, 5] == 0.0)
    assert numpy.all(dx[:, :, :5, :5] != 0.0)


@pytest.mark.parametrize("case", [SMALL, SMALL_S1], ids=repr)
def test_need_input_grad_false_skips_dx_only(xp, rng, case, dx_layout):
    x, w, b = case.arrays(rng)
    y, cache = _run(xp, case, x, w, b)
    dy = rng.standard_normal(y.shape)
    dx_full, dw_full, db_full = _grads(xp, cache, dy)
    dx, dw, db = _grads(xp, cache, dy, need_input_grad=False)
    assert dx is None and dx_full is not None
    numpy.testing.assert_array_equal(dw, dw_full)  # bit-exact: the same GEMMs on the same shapes, dx or not
    numpy.testing.assert_array_equal(db, db_full)


def test_no_bias_gives_none_dbias_and_same_other_gradients(xp, rng):
    x, w, b = SMALL.arrays(rng)
    dy = rng.standard_normal(_run(numpy, SMALL, x, w, b)[0].shape)
    with_bias = _grads(xp, _run(xp, SMALL, x, w, b)[1], dy)
    dx, dw, db = _grads(xp, _run(xp, SMALL, x, w, None)[1], dy)
    assert db is None and with_bias[2] is not None
    assert_close(dx, with_bias[0], rtol=1e-12, atol=1e-12)
    assert_close(dw, with_bias[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [
    SMALL, Case("grouped", (3, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1, groups=2),
    Case("s1_grouped_dilated", (3, 4, 6, 5), (4, 2, 3, 2), padding=(2, 1), dilation=(2, 1), groups=2)], ids=repr)
def test_batch_gradients_are_sums_of_per_sample_gradients(xp, rng, case, dx_layout):
    x, w, b = case.arrays(rng)
    y, cache = _run(xp, case, x, w, b)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = _grads(xp, cache, dy)
    per_sample = [_grads(xp, _run(xp, case, x[n:n + 1], w, b)[1], dy[n:n + 1]) for n in range(x.shape[0])]
    assert_close(dx, numpy.concatenate([g[0] for g in per_sample]), rtol=1e-12, atol=1e-12)
    assert_close(dw, sum(g[1] for g in per_sample), rtol=1e-12, atol=1e-12)
    assert_close(db, sum(g[2] for g in per_sample), rtol=1e-12, atol=1e-12)
    assert_close(y[1:2], _run(xp, case, x[1:2], w, b)[0], rtol=1e-12, atol=1e-12)


# --- Hypothesis shapes ----------------------------------------------------------------------

@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 4))
    c_in = groups * draw(st.integers(1, 4 // groups))
    c_out = groups * draw(st.integers(1, 4 // groups))
    side, small = st.integers(1, 8), st.integers(1, 4)
    H, W, KH, KW = draw(side), draw(side), draw(small), draw(small)
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    assume(all(xpnet.ops.output_size(s, k, st_, (p, p), d) >= 1
               for s, k, st_, p, d in zip((H, W), (KH, KW), stride, padding, dilation)))
    return dict(x=(draw(st.integers(1, 2)), c_in, H, W), w=(c_out, c_in // groups, KH, KW),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
                kwargs=dict(stride=stride, padding=padding, dilation=dilation, groups=groups))


def _check_drawn_problem(xp, problem):
    gen = numpy.random.default_rng(problem["seed"])
    x, w = gen.standard_normal(problem["x"]), gen.standard_normal(problem["w"])
    b = gen.standard_normal(problem["w"][0]) if problem["bias"] else None
    kw = problem["kwargs"]
    y, _ = conv2d_forward(xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b), **kw)
    expected = ref.conv2d(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    assert_close(y, expected, rtol=1e-12, atol=1e-12, what=str(problem))


@given(problem=conv_problems())
def test_forward_on_drawn_shapes_numpy(problem):
    _check_drawn_problem(numpy, problem)


@settings(max_examples=8)
@given(problem=conv_problems())
def test_forward_on_drawn_shapes_strict(problem):
    _check_drawn_problem(strict, problem)


# --- inputs untouched, non-contiguous inputs ---------------------------------------------------

@pytest.mark.parametrize("case", [SMALL, SMALL_S1], ids=repr)
def test_forward_and_backward_leave_inputs_unchanged(xp, rng, case, dx_layout):
    x, w, b = case.arrays(rng)
    x_dev, w_dev, b_dev = xp.asarray(x), xp.asarray(w), xp.asarray(b)
    y, cache = conv2d_forward(x_dev, w_dev, b_dev, **case.kwargs)
    dy = rng.standard_normal(y.shape)
    dy_dev = xp.asarray(dy)
    conv2d_backward(dy_dev, cache)
    for name, dev, original in (("x", x_dev, x), ("w", w_dev, w), ("b", b_dev, b), ("dy", dy_dev, dy)):
        numpy.testing.assert_array_equal(host(dev), original, err_msg=name)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("stride", [(2, 1), 1])
def test_non_contiguous_inputs_match_contiguous(xp, rng, dtype, stride, dx_layout):
    case = Case("nc", (2, 4, 5, 6), (4, 2, 3, 2), stride=stride, padding=(1, 0), groups=2)
    x_big = rng.standard_normal((2, 4, 6, 10)).astype(dtype)            # x = x_big[:, :, ::2].T(h, w)
    w_big = rng.standard_normal((4, 2, 3, 4)).astype(dtype)             # w = w_big[..., ::2]
    x = numpy.ascontiguousarray(x_big[:, :, :, ::2].transpose(0, 1, 3, 2))
    w = numpy.ascontiguousarray(w_big[:, :, :, ::2])
    b = rng.standard_normal(4).astype(dtype)
    x_view = xp.asarray(x_big)[:, :, :, ::2].transpose(0, 1, 3, 2)
    w_view = xp.asarray(w_big)[:, :, :, ::2]
    assert not x_view.flags.c_contiguous and not w_view.flags.c_contiguous
    y_c, cache_c = _run(xp, case, x, w, b)
    y_nc, cache_nc = conv2d_forward(x_view, w_view, xp.asarray(b), **case.kwargs)
    dy_big = rng.standard_normal((y_c.shape[0], y_c.shape[1], y_c.shape[3], y_c.shape[2])).astype(dtype)
    dy_view = xp.asarray(dy_big).transpose(0, 1, 3, 2)
    grads_c = _grads(xp, cache_c, numpy.ascontiguousarray(dy_big.transpose(0, 1, 3, 2)))
    grads_nc = [host(g) for g in conv2d_backward(dy_view, cache_nc)]
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == numpy.float64 else dict(rtol=1e-6, atol=1e-6)
    assert_close(y_nc, y_c, **tol)
    assert_close(y_c, case.reference(x, w, b), **({"rtol": 1e-4, "atol": 1e-5} if dtype == numpy.float32 else tol))
    for got, want, name in zip(grads_nc, grads_c, ("dx", "dw", "db")):
        assert_close(got, want, what=name, **tol)


# --- chunking (reliability §F) --------------------------------------------------------------

CHUNK_CASE = Case("chunked", (7, 3, 6, 5), (4, 3, 3, 2), stride=(2, 1), padding=1)
CHUNK_CASE_S1 = Case("chunked_s1", (7, 3, 6, 5), (4, 3, 3, 2), padding=1)


def _per_sample_bytes(case, dtype):
    """C * KH * KW * OH * OW * itemsize: one sample's im2col matrix."""
    (SH, SW), (DH, DW), (ph, pw) = ref.pair(case.kwargs["stride"]), ref.pair(case.kwargs["dilation"]), case.ref_pads()
    OH = ref.out_len(case.x[2], case.w[2], SH, sum(ph), DH)
    OW = ref.out_len(case.x[3], case.w[3], SW, sum(pw), DW)
    return case.x[1] * case.w[2] * case.w[3] * OH * OW * numpy.dtype(dtype).itemsize


@pytest.mark.parametrize("dtype, limit", [(numpy.float64, 1e-12), (numpy.float32, 1e-6)])
@pytest.mark.parametrize("chunk", [1, 3, 7])
@pytest.mark.parametrize("case", [CHUNK_CASE, CHUNK_CASE_S1], ids=repr)
def test_chunked_batch_equals_unchunked(xp, rng, dtype, limit, chunk, case, dx_layout):
    x, w, b = case.arrays(rng, dtype)
    y_full, cache_full = _run(xp, case, x, w, b)
    budget = chunk * _per_sample_bytes(case, dtype) + 5
    y, cache = _run(xp, case, x, w, b, max_workspace_bytes=budget)
    assert cache.chunk == chunk and cache_full.chunk == 7
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert _max_rel(host(y), host(y_full)) <= limit
    for got, want in zip(_grads(xp, cache, dy), _grads(xp, cache_full, dy)):
        assert got.dtype == dtype
        assert _max_rel(got, want) <= limit
    assert_close(y_full, case.reference(x, w, b), **({"rtol": 1e-4, "atol": 1e-5} if dtype == numpy.float32
                                                             else {"rtol": 1e-12, "atol": 1e-12}))


@pytest.mark.parametrize("chunk", [1, 3])
def test_im2col_workspace_stays_within_budget(xp, rng, monkeypatch, chunk):
    sizes = []
    real_im2col = conv_module.im2col

    def spy(*args, **kwargs):
        cols = real_im2col(*args, **kwargs)
        sizes.append(cols.nbytes)
        return cols

    monkeypatch.setattr(conv_module, "im2col", spy)
    x, w, b = CHUNK_CASE.arrays(rng)
    per_sample = _per_sample_bytes(CHUNK_CASE, numpy.float64)
    budget = chunk * per_sample + per_sample // 2
    y, cache = _run(xp, CHUNK_CASE, x, w, b, max_workspace_bytes=budget)
    conv2d_backward(xp.asarray(numpy.ones(y.shape)), cache)
    assert len(sizes) == 2 * math.ceil(7 / chunk)
    assert max(sizes) <= budget
    assert max(sizes) == chunk * per_sample


def test_unchunked_backward_reuses_forward_columns(xp, rng, monkeypatch):
    calls = []
    real_im2col = conv_module.im2col
    monkeypatch.setattr(conv_module, "im2col", lambda *a, **k: calls.append(1) or real_im2col(*a, **k))
    x, w, b = SMALL.arrays(rng)
    y, cache = _run(xp, SMALL, x, w, b)
    conv2d_backward(xp.asarray(numpy.ones(y.shape)), cache)
    assert len(calls) == 1


@pytest.mark.parametrize("need_backward", [True, False])
def test_large_columns_are_built_in_cache_sized_chunks(xp, rng, monkeypatch, need_backward):
    per_sample = _per_sample_bytes(CHUNK_CASE, numpy.float64)
    monkeypatch.setattr(conv_module, "KEEP_COLUMNS_BYTES", 6 * per_sample)  # the 7-sample batch is "large"
    monkeypatch.setattr(conv_module, "CACHE_CHUNK_BYTES", 2 * per_sample + 1)
    x, w, b = CHUNK_CASE.arrays(rng)
    y, cache = _run(xp, CHUNK_CASE, x, w, b, need_backward=need_backward)
    if xp is not numpy:  # a device computes the whole batch at once when the budget allows
        assert cache.chunk == 7 and (cache.cols is not None) == need_backward
        return
    assert cache.chunk == 2 and cache.cols is None
    monkeypatch.setattr(conv_module, "KEEP_COLUMNS_BYTES", 7 * per_sample)  # now it is kept whole
    y_kept, cache_kept = _run(xp, CHUNK_CASE, x, w, b)
    assert cache_kept.chunk == 7 and cache_kept.cols is not None
    # GEMMs over 2 + 2 + 2 + 1 samples vs one over 7: equal to rounding, not bit for bit
    assert_blas_close(y, y_kept, reduction_length=3 * 3 * 2)  # C_in * KH * KW
    dy = rng.standard_normal(y.shape)
    for got, want in zip(_grads(xp, cache, dy), _grads(xp, cache_kept, dy)):
        assert_blas_close(got, want, reduction_length=y.shape[0] * y.shape[2] * y.shape[3])  # dw sums N*OH*OW


def test_inference_never_keeps_the_columns(xp, rng, monkeypatch):
    monkeypatch.setattr(conv_module, "CACHE_CHUNK_BYTES", 10**9)  # one chunk (on the CPU too), yet not kept
    x, w, b = CHUNK_CASE.arrays(rng)
    y, cache = _run(xp, CHUNK_CASE, x, w, b, need_backward=False)
    assert cache.chunk == 7 and cache.cols is None
    y_train, cache_train = _run(xp, CHUNK_CASE, x, w, b)
    assert cache_train.cols is not None
    numpy.testing.assert_array_equal(host(y), host(y_train))  # bit-exact: one chunk of 7 either way, same GEMM
    dy = rng.standard_normal(y.shape)
    for got, want in zip(_grads(xp, cache, dy), _grads(xp, cache_train, dy)):
        assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, expected", [
    ((128, 6, 14, 14), (16, 6, 5, 5), 1, 0, True),     # LeNet-5's second convolution: 196 / 100 grid
    ((32, 64, 32, 32), (64, 64, 3, 3), 1, 1, True),    # 34 x 34 grid for 32 x 32 outputs
    ((8, 3, 224, 224), (64, 3, 7, 7), 2, 3, False),    # stride 2: no grid
    ((8, 512, 7, 7), (512, 512, 3, 3), 1, 1, False),   # 81 / 49 grid: 512 channels of extra GEMM
])
def test_grid_gradient_pays_only_where_measured_faster(x_shape, w_shape, stride, padding, expected):
    stride, pads = (stride, stride), ((padding, padding), (padding, padding))
    out_hw = tuple(ref.out_len(x_shape[a], w_shape[a], stride[0], 2 * padding) for a in (2, 3))
    assert conv_module.grid_gradient_pays(x_shape, w_shape, stride, pads, out_hw, 1) is expected


def test_grid_gradient_only_on_the_cpu_and_within_the_workspace_budget(xp, rng, monkeypatch):
    x, w, b = SMALL_S1.arrays(rng)
    y, cache = _run(numpy, SMALL_S1, x, w, b)
    expected = _grads(numpy, cache, numpy.ones(y.shape))[0]
    used = []
    real = conv_module.col2im_grid
    monkeypatch.setattr(conv_module, "col2im_grid", lambda *a: used.append(a[0].nbytes) or real(*a))
    per_sample = _per_sample_bytes(SMALL_S1, numpy.float64)
    for budget in (conv_module.DEFAULT_WORKSPACE_BYTES, per_sample):  # a grid sample is larger than that
        y, cache = _run(xp, SMALL_S1, x, w, b, max_workspace_bytes=budget)
        assert_close(_grads(xp, cache, numpy.ones(y.shape))[0], expected, rtol=1e-12, atol=1e-12)
    assert len(used) == (1 if xp is numpy else 0)  # the default budget, on the CPU only
    assert used == [] or used[0] <= conv_module.DEFAULT_WORKSPACE_BYTES


def test_budget_smaller_than_one_sample_still_works_one_sample_at_a_time(xp, rng):
    x, w, b = SMALL.arrays(rng)
    y, cache = _run(xp, SMALL, x, w, b, max_workspace_bytes=1)
    assert cache.chunk == 1
    assert_close(y, SMALL.reference(x, w, b), rtol=1e-12, atol=1e-12)


# --- bad inputs -----------------------------------------------------------------------------

def _f64(*shape):
    return numpy.linspace(-1, 1, int(numpy.prod(shape))).reshape(shape)


BAD_INPUTS = [
    ("rank3_input", _f64(2, 5, 5), _f64(3, 2, 3, 3), None, {}, xpnet.ShapeError,
     r"expects 4-D input \(N, C, H, W\), got shape \(2, 5, 5\)"),
    ("wrong_channels", _f64(1, 3, 5, 5), _f64(2, 2, 3, 3), None, {}, xpnet.ShapeError,
     r"expects 2 input channels .*got input shape \(1, 3, 5, 5\)"),
    ("wrong_channels_groups", _f64(1, 3, 5, 5), _f64(4, 2, 3, 3), None, {"groups": 2}, xpnet.ShapeError,
     r"expects 4 input channels"),
    ("int_input", numpy.ones((1, 2, 5, 5), numpy.int64), numpy.ones((3, 2, 3, 3), numpy.int64), None, {},
     xpnet.DTypeError, r"float32 or float64.*int64"),
    ("int_input_float_weight", numpy.ones((1, 2, 5, 5), numpy.int32), _f64(3, 2, 3, 3), None, {},
     xpnet.DTypeError, r"int32"),
    ("dtype_mismatch", _f64(1, 2, 5, 5).astype(numpy.float32), _f64(3, 2, 3, 3), None, {}, xpnet.DTypeError,
     r"share one dtype; got input float32, weight float64"),
    ("bias_dtype_mismatch", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), _f64(3).astype(numpy.float32), {},
     xpnet.DTypeError, r"bias float32"),
    ("output_below_1", _f64(1, 1, 2, 3), _f64(1, 1, 3, 3), None, {}, xpnet.ShapeError,
     r"padded input 2x3 is smaller than the kernel 3x3"),
    ("output_below_1_dilated", _f64(1, 1, 4, 4), _f64(1, 1, 3, 3), None, {"dilation": 2, "padding": (0, 1)},
     xpnet.ShapeError, r"padded input 4x6 is smaller than the dilated kernel 5x5"),
    ("stride0", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), None, {"stride": 0}, ValueError,
     r"stride must be positive.*stride=0"),
    ("stride_pair0", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), None, {"stride": (1, 0)}, ValueError,
     r"stride must be positive.*\(1, 0\)"),
    ("negative_padding", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), None, {"padding": -1}, ValueError,
     r"padding must be non-negative"),
    ("negative_side_padding", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), None, {"padding": ((1, 0), (0, -1))},
     ValueError, r"padding must be non-negative"),
    ("dilation0", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), None, {"dilation": 0}, ValueError,
     r"dilation must be positive"),
    ("bad_padding_string", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), None, {"padding": "full"}, ValueError,
     r"'valid' or 'same'; received 'full'"),
    ("groups_not_dividing_cout", _f64(1, 2, 5, 5), _f64(3, 1, 3, 3), None, {"groups": 2}, ValueError,
     r"groups must be a positive int dividing C_out=3; received groups=2"),
    ("groups0", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), None, {"groups": 0}, ValueError, r"received groups=0"),
    ("bias_wrong_shape", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), _f64(2), {}, xpnet.ShapeError,
     r"bias must have shape \(3,\), got \(2,\)"),
    ("bias_2d", _f64(1, 2, 5, 5), _f64(3, 2, 3, 3), _f64(3, 1), {}, xpnet.ShapeError, r"got \(3, 1\)"),
    ("weight_3d", _f64(1, 2, 5, 5), _f64(3, 2, 3), None, {}, xpnet.ShapeError, r"weight must be 4-D"),
]


@pytest.mark.parametrize("name, x, w, b, kwargs, error, pattern", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(xp, name, x, w, b, kwargs, error, pattern):
    originals = [a.copy() for a in (x, w, b) if a is not None]
    devs = [xp.asarray(a) for a in (x, w, b) if a is not None]
    x_dev, w_dev, b_dev = devs[0], devs[1], devs[2] if b is not None else None
    with pytest.raises(error, match=pattern):
        conv2d_forward(x_dev, w_dev, b_dev, **kwargs)
    for dev, original in zip(devs, originals):
        numpy.testing.assert_array_equal(host(dev), original)


def test_mixing_host_and_device_arrays_raises_type_error(xp, rng):
    if xp is numpy:
        pytest.skip("needs a non-numpy backend")
    x, w, b = SMALL.arrays(rng)
    for args in ((xp.asarray(x), w, None), (xp.asarray(x), xp.asarray(w), b), (x, xp.asarray(w), None)):
        with pytest.raises(TypeError, match="two backends"):
            conv2d_forward(*args, **SMALL.kwargs)
    y, cache = _run(xp, SMALL, x, w, b)
    with pytest.raises(TypeError, match="two backends"):
        conv2d_backward(numpy.ones(y.shape), cache)
    numpy.testing.assert_array_equal(host(cache.x), x)


# --- edge cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [conv_module.DEFAULT_WORKSPACE_BYTES, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_empty_batch(xp, budget, bias):
    x = xp.asarray(numpy.zeros((0, 2, 5, 4)))
    w = xp.asarray(_f64(3, 2, 3, 2))
    b = xp.asarray(_f64(3)) if bias else None
    y, cache = conv2d_forward(x, w, b, stride=(2, 1), padding=1, max_workspace_bytes=budget)
    assert y.shape == (0, 3, 3, 5) and y.dtype == numpy.float64
    dx, dw, db = conv2d_backward(xp.asarray(numpy.zeros(y.shape)), cache)
    assert dx.shape == (0, 2, 5, 4)
    numpy.testing.assert_array_equal(host(dw), numpy.zeros((3, 2, 3, 2)))  # exact: an empty sum is 0
    if bias:
        numpy.testing.assert_array_equal(host(db), numpy.zeros(3))
    else:
        assert db is None


def test_large_magnitude_inputs_stay_finite_and_relative(xp, rng):
    x, w, b = SMALL.arrays(rng, numpy.float32)
    scale = numpy.float32(1e15)
    y, _ = _run(xp, SMALL, x * scale, w, b * scale)
    assert numpy.all(numpy.isfinite(host(y)))
    assert_close(host(y) / scale, SMALL.reference(x, w, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dy_shape", [(2, 3, 3, 3), (3, 3, 3, 4), (3, 2, 3, 3), (3, 3, 9)])
@pytest.mark.parametrize("budget", [conv_module.DEFAULT_WORKSPACE_BYTES, 1])
def test_backward_rejects_dy_of_the_wrong_shape(xp, rng, dy_shape, budget):
    x, w, b = SMALL.arrays(rng)
    y, cache = _run(xp, SMALL, x, w, b, max_workspace_bytes=budget)
    assert y.shape == (3, 3, 3, 3)
    dy = rng.standard_normal(dy_shape)
    dy_dev = xp.asarray(dy)
    with pytest.raises(xpnet.ShapeError, match=r"expects dy of the forward output's shape \(3, 3, 3, 3\), got"):
        conv2d_backward(dy_dev, cache)
    numpy.testing.assert_array_equal(host(dy_dev), dy)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_tiny_weight_gradient_summed_in_blocks_equals_one_product(xp, rng, dtype):
    """LeNet's first layer (6 x 25 weights, 31,360 columns: 30 blocks and a tail) goes through
    the blocked weight gradient on the CPU; it must equal the one-product reference."""
    x = rng.standard_normal((40, 1, 28, 28)).astype(dtype)
    w = rng.standard_normal((6, 1, 5, 5)).astype(dtype)
    dy = rng.standard_normal((40, 6, 28, 28)).astype(dtype)
    _, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), None, 1, 2)
    _, dweight, _ = conv2d_backward(xp.asarray(dy), cache, need_input_grad=False)
    cols = conv_module._grouped_cols(x, ((1, 1), ((2, 2), (2, 2)), (1, 1), 1), (5, 5))  # (1, 25, N*28*28)
    dy_g = dy.transpose(1, 0, 2, 3).reshape(1, 6, -1)  # (N, 6, 28, 28) -> (1, 6, N*28*28)
    expected = numpy.matmul(dy_g, cols.swapaxes(1, 2)).reshape(w.shape)
    assert conv_module.SPLIT_WEIGHT_GRAD_MAX >= 6 * 25 and cols.shape[2] // conv_module.SPLIT_WEIGHT_GRAD_BLOCK >= 8
    assert_blas_close(dweight, expected, reduction_length=cols.shape[2])
