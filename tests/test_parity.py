"""Parity: every op, optimizer and training run agrees on numpy and on `other` (cupy, else the strict device)."""

import functools
from pathlib import Path
from types import SimpleNamespace

import numpy
import pytest

import xpnet
from tests.helpers import host
from tests.strict_backend import STRICT_DEVICE, strict
from xpnet import layers as L
from xpnet import ops, optim

F32, F64 = numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)
# (rtol, atol per unit of max(1, max|expected|)), docs/reliability.md §B.3
TOL = {"fwd": {F32: (1e-4, 1e-5), F64: (1e-7, 1e-9)},
       "bwd": {F32: (1e-3, 1e-4), F64: (1e-7, 1e-9)}}
DTYPES = [pytest.param(F32, id="float32"), pytest.param(F64, id="float64")]


@pytest.fixture(scope="module")
def other():
    """The device compared with numpy: cupy when a GPU is usable, else the strict device-like backend."""
    if xpnet.gpu_available():
        device = xpnet.get_device("cuda", strict=True)
        return SimpleNamespace(xp=device.xp, device=device, name="cupy")
    return SimpleNamespace(xp=strict, device=STRICT_DEVICE, name="strict")


@functools.lru_cache(maxsize=1)
def mnist():
    return xpnet.datasets.load_mnist()


def assert_parity(ours, theirs, kind, what, other):
    """``theirs`` (on other) equals ``ours`` (numpy): same shape and dtype; exact or within TOL[kind]."""
    assert xpnet.device_of(theirs) == other.device, f"{what}: result is not on {other.device}"
    expected, actual = numpy.asarray(ours), host(theirs)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if kind == "exact" or expected.dtype.kind in "iu":  # counters (num_batches_tracked) are exact
        numpy.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    rtol, atol = TOL[kind][expected.dtype]
    scale = max(1.0, float(numpy.abs(expected).max())) if expected.size else 1.0
    numpy.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def check(case, other):
    """Run ``case(xp) -> {name: (array, kind)}`` on numpy and on other and compare every entry."""
    ours, theirs = case(numpy), case(other.xp)
    assert ours.keys() == theirs.keys()
    for name, (array, kind) in ours.items():
        assert_parity(array, theirs[name][0], kind, name, other)


def weighted(y, dx, dw, db, with_bias):
    """The entries of an op with a weight and an optional bias; db must be None without one."""
    out = {"y": (y, "fwd"), "dx": (dx, "bwd"), "dw": (dw, "bwd")}
    if with_bias:
        out["db"] = (db, "bwd")
    else:
        assert db is None
    return out


def normal(shape, dtype, seed=0, scale=1.0):
    return (numpy.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def integers(shape, dtype, seed=0, low=-8, high=9):
    """Integer-valued floats: every sum of a few of them is exact, in any order."""
    return numpy.random.default_rng(seed).integers(low, high, shape).astype(dtype)


# --- convolution and im2col ---------------------------------------------------------------------
CONV = [  # x shape, weight shape, stride, padding, dilation, groups
    pytest.param((2, 3, 7, 7), (4, 3, 3, 3), 1, 1, 1, 1, id="3x3-pad1"),
    pytest.param((2, 4, 8, 9), (6, 2, 3, 3), 2, (2, 1), 1, 2, id="stride2-pad2x1-groups2"),
    pytest.param((1, 2, 9, 9), (3, 2, 3, 2), (2, 1), 0, 2, 1, id="dilation2-kernel3x2"),
    pytest.param((2, 4, 5, 5), (4, 1, 3, 3), 1, "same", 1, 4, id="depthwise-same"),
    pytest.param((3, 1, 6, 6), (2, 1, 1, 1), 1, "valid", 1, 1, id="1x1"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV)
def test_conv2d(other, dtype, x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = normal(x_shape, dtype, 1), normal(w_shape, dtype, 2), normal(w_shape[:1], dtype, 3)
    y_shape = ops.conv2d_forward(x, w, b, stride, padding, dilation, groups)[0].shape
    dy = normal(y_shape, dtype, 4)

    def case(xp):
        y, cache = ops.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), stride, padding, dilation, groups)
        dx, dw, db = ops.conv2d_backward(xp.asarray(dy), cache)
        return {"y": (y, "fwd"), "dx": (dx, "bwd"), "dw": (dw, "bwd"), "db": (db, "bwd")}
    check(case, other)


def test_conv2d_in_batch_chunks(other):
    x, w, dy = normal((5, 3, 6, 6), F32, 1), normal((4, 3, 3, 3), F32, 2), normal((5, 4, 4, 4), F32, 3)
    budget = 3 * 9 * 16 * 4 * 2  # two samples per im2col pass

    def case(xp):
        y, cache = ops.conv2d_forward(xp.asarray(x), xp.asarray(w), None, max_workspace_bytes=budget)
        assert cache.chunk == 2
        dx, dw, db = ops.conv2d_backward(xp.asarray(dy), cache)
        assert db is None
        return {"y": (y, "fwd"), "dx": (dx, "bwd"), "dw": (dw, "bwd")}
    check(case, other)


@pytest.mark.parametrize("batch_last", [False, True])
@pytest.mark.parametrize("kernel, stride, pads, dilation", [
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)), ((2, 3), (2, 1), ((0, 1), (2, 0)), (2, 1)),
])
def test_im2col_and_col2im_are_exact(other, batch_last, kernel, stride, pads, dilation):
    x = integers((2, 3, 7, 6), F32)

    def case(xp):
        cols = ops.im2col(xp.asarray(x), kernel, stride, pads, dilation, batch_last=batch_last)
        back = ops.col2im(cols, x.shape, stride, pads, dilation, batch_last=batch_last)
        return {"cols": (cols, "exact"), "col2im": (back, "exact")}
    check(case, other)


CONV_TRANSPOSE = [  # x shape, weight shape, with bias, stride, padding, output_padding, groups, dilation
    pytest.param((2, 4, 4, 5), (4, 3, 3, 3), True, 2, 1, 1, 2, 1, id="stride2-pad1-outpad1-groups2"),
    pytest.param((2, 3, 5, 5), (3, 2, 3, 3), True, 1, 0, 0, 1, 1, id="3x3"),
    pytest.param((1, 2, 4, 3), (2, 3, 2, 3), False, (2, 3), 0, (1, 2), 1, 1, id="outpad-past-padding-no-bias"),
    pytest.param((2, 2, 5, 4), (2, 2, 3, 2), True, 1, (1, 2), 1, 1, 2, id="dilation2-pad1x2-outpad1"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, with_bias, stride, padding, output_padding, groups, dilation",
                         CONV_TRANSPOSE)
def test_conv_transpose2d(other, dtype, x_shape, w_shape, with_bias, stride, padding, output_padding, groups,
                          dilation):
    x, w = normal(x_shape, dtype, 1), normal(w_shape, dtype, 2)
    b = normal(w_shape[1] * groups, dtype, 3) if with_bias else None
    geometry = (stride, padding, output_padding, groups, dilation)
    dy = normal(ops.conv_transpose2d_forward(x, w, b, *geometry)[0].shape, dtype, 4)

    def case(xp):
        y, cache = ops.conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b),
                                                *geometry)
        return weighted(y, *ops.conv_transpose2d_backward(xp.asarray(dy), cache), with_bias)
    check(case, other)


def test_conv_transpose2d_in_batch_chunks(other):
    x, w, b = normal((5, 3, 4, 4), F32, 1), normal((3, 2, 3, 3), F32, 2), normal(2, F32, 3)
    dy = normal((5, 2, 9, 9), F32, 4)
    budget = 2 * 9 * 16 * 4 * 2  # two samples per GEMM + col2im pass

    def case(xp):
        y, cache = ops.conv_transpose2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), 2,
                                                max_workspace_bytes=budget)
        assert cache.chunk == 2
        return weighted(y, *ops.conv_transpose2d_backward(xp.asarray(dy), cache), True)
    check(case, other)


# --- pooling, reshapes, dropout: exact on integer-valued inputs ---------------------------------------
POOLS = [  # kernel, stride, padding
    pytest.param(2, None, 0, id="2"), pytest.param(3, 2, 1, id="3/2-pad1"),
    pytest.param((2, 3), (1, 2), (1, 1), id="2x3/1x2-pad1"),
]


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("kernel, stride, padding", POOLS)
def test_max_and_min_pool_are_exact_including_ties(other, kind, kernel, stride, padding):
    x = integers((2, 3, 7, 8), F32, low=-2, high=3)  # many ties: the first one must win on both
    forward = ops.max_pool2d_forward if kind == "max" else ops.min_pool2d_forward
    backward = ops.max_pool2d_backward if kind == "max" else ops.min_pool2d_backward
    dy = integers(forward(x, kernel, stride, padding)[0].shape, F32, 5)

    def case(xp):
        y, cache = forward(xp.asarray(x), kernel, stride, padding)
        column_index, row_index = cache.index
        return {"y": (y, "exact"), "column index": (column_index, "exact"), "row index": (row_index, "exact"),
                "dx": (backward(xp.asarray(dy), cache), "exact")}
    check(case, other)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel, stride, padding", POOLS)
def test_avg_pool(other, kernel, stride, padding, count_include_pad):
    x = integers((2, 3, 7, 8), F32)
    y0 = ops.avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)[0]
    dy = integers(y0.shape, F32, 5)
    exact = kernel == 2 and padding == 0  # divisor 4: every value is exact

    def case(xp):
        y, cache = ops.avg_pool2d_forward(xp.asarray(x), kernel, stride, padding, count_include_pad)
        dx = ops.avg_pool2d_backward(xp.asarray(dy), cache)
        return {"y": (y, "exact" if exact else "fwd"), "dx": (dx, "exact" if exact else "bwd")}
    check(case, other)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_avg_pool_is_exact(other, keepdims):
    x = integers((2, 3, 4, 4), F32)  # 16 pixels: the mean of integers is exact
    dy = integers((2, 3, 1, 1) if keepdims else (2, 3), F32, 5)

    def case(xp):
        y, cache = ops.global_avg_pool2d_forward(xp.asarray(x), keepdims)
        return {"y": (y, "exact"), "dx": (ops.global_avg_pool2d_backward(xp.asarray(dy), cache), "exact")}
    check(case, other)


@pytest.mark.parametrize("output_size", [pytest.param((4, 3), id="2x2-tiles"), pytest.param((None, 3), id="keep-H"),
                                         pytest.param((2, 3), id="4x2-tiles")])
def test_adaptive_avg_pool_uniform_bins_are_exact(other, output_size):
    x = integers((2, 3, 8, 6), F32)  # tiles of 2, 4 or 8 pixels: every mean of integers is exact
    dy = integers(ops.adaptive_avg_pool2d_forward(x, output_size)[0].shape, F32, 5)

    def case(xp):
        y, cache = ops.adaptive_avg_pool2d_forward(xp.asarray(x), output_size)
        return {"y": (y, "exact"), "dx": (ops.adaptive_avg_pool2d_backward(xp.asarray(dy), cache), "exact")}
    check(case, other)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", [pytest.param((3, 4), id="non-uniform"), pytest.param(1, id="global"),
                                         pytest.param((11, 4), id="overlapping-bins-taller"),
                                         pytest.param((5, None), id="non-uniform-keep-W")])
def test_adaptive_avg_pool(other, dtype, output_size):
    x = normal((2, 3, 7, 6), dtype, 1)
    dy = normal(ops.adaptive_avg_pool2d_forward(x, output_size)[0].shape, dtype, 5)

    def case(xp):
        y, cache = ops.adaptive_avg_pool2d_forward(xp.asarray(x), output_size)
        return {"y": (y, "fwd"), "dx": (ops.adaptive_avg_pool2d_backward(xp.asarray(dy), cache), "bwd")}
    check(case, other)


def test_flatten_and_upsample_are_exact(other):
    x, dy_up = integers((2, 3, 4, 5), F32), integers((2, 3, 8, 15), F32, 5)

    def case(xp):
        flat, shape = ops.flatten_forward(xp.asarray(x))
        up, factors = ops.upsample2d_forward(xp.asarray(x), (2, 3))
        return {"flat": (flat, "exact"), "dflat": (ops.flatten_backward(flat * 2, shape), "exact"),
                "up": (up, "exact"), "dup": (ops.upsample2d_backward(xp.asarray(dy_up), factors), "exact")}
    check(case, other)


@pytest.mark.parametrize("p, kind", [(0.5, "exact"), (0.3, "fwd")])
def test_dropout_with_a_host_mask(other, p, kind):
    x, dy = integers((4, 6), F32), integers((4, 6), F32, 5)
    mask = ops.dropout_mask(x.shape, p, numpy.random.default_rng(3))

    def case(xp):
        y, cache = ops.dropout_forward(xp.asarray(x), p, mask=mask)
        drawn, _ = ops.dropout_forward(xp.asarray(x), p, rng=numpy.random.default_rng(3))  # same seed, same mask
        return {"y": (y, kind), "drawn": (drawn, kind), "dx": (ops.dropout_backward(xp.asarray(dy), cache), kind)}
    check(case, other)


@pytest.mark.parametrize("p, kind", [(0.5, "exact"), (0.3, "fwd")])
def test_dropout2d_with_a_host_mask(other, p, kind):
    x, dy = integers((3, 4, 2, 5), F32), integers((3, 4, 2, 5), F32, 5)
    mask = ops.dropout_mask((3, 4), p, numpy.random.default_rng(3))  # one per (sample, channel)

    def case(xp):
        y, cache = ops.dropout2d_forward(xp.asarray(x), p, mask=mask)
        drawn, _ = ops.dropout2d_forward(xp.asarray(x), p, rng=numpy.random.default_rng(3))  # same seed, same mask
        same, none = ops.dropout2d_forward(xp.asarray(x), p, mask=mask, train=False)  # identity in evaluation
        assert none is None
        return {"y": (y, kind), "drawn": (drawn, kind), "dx": (ops.dropout2d_backward(xp.asarray(dy), cache), kind),
                "eval": (same, "exact"), "eval dx": (ops.dropout2d_backward(xp.asarray(dy), none), "exact")}
    check(case, other)


def test_relu_is_exact(other):
    x, dy = normal((3, 4, 5), F32, scale=3), normal((3, 4, 5), F32, 5)

    def case(xp):
        y, cache = ops.relu_forward(xp.asarray(x))
        return {"y": (y, "exact"), "dx": (ops.relu_backward(xp.asarray(dy), cache), "exact")}
    check(case, other)


# --- activations, linear, batch norm, losses: float tolerances ---------------------------------------
ACTIVATIONS = {
    "leaky_relu": (lambda x: ops.leaky_relu_forward(x, 0.1), ops.leaky_relu_backward),
    "sigmoid": (ops.sigmoid_forward, ops.sigmoid_backward),
    "tanh": (ops.tanh_forward, ops.tanh_backward),
    "gelu": (ops.gelu_forward, ops.gelu_backward),
    "gelu_tanh": (lambda x: ops.gelu_forward(x, "tanh"), ops.gelu_backward),
    "softmax": (ops.softmax_forward, ops.softmax_backward),
    "log_softmax": (ops.log_softmax_forward, ops.log_softmax_backward),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation(other, name, dtype):
    forward, backward = ACTIVATIONS[name]
    x, dy = normal((4, 10), dtype, scale=3), normal((4, 10), dtype, 5)

    def case(xp):
        y, cache = forward(xp.asarray(x))
        return {"y": (y, "fwd"), "dx": (backward(xp.asarray(dy), cache), "bwd")}
    check(case, other)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(other, dtype, with_bias):
    x, w, b, dy = normal((5, 7), dtype, 1), normal((3, 7), dtype, 2), normal(3, dtype, 3), normal((5, 3), dtype, 4)

    def case(xp):
        y, cache = ops.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b) if with_bias else None)
        return weighted(y, *ops.linear_backward(xp.asarray(dy), cache), with_bias)
    check(case, other)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm2d(other, dtype, train):
    x, dy = normal((4, 3, 5, 5), dtype, 1, scale=2) + 1, normal((4, 3, 5, 5), dtype, 2)
    gamma, beta = normal(3, dtype, 3), normal(3, dtype, 4)
    mean, var = normal(3, dtype, 5), (numpy.abs(normal(3, dtype, 6)) + 0.5).astype(dtype)

    def case(xp):
        y, cache = ops.batch_norm2d_forward(xp.asarray(x), xp.asarray(gamma), xp.asarray(beta), xp.asarray(mean),
                                            xp.asarray(var), train=train)
        dx, dgamma, dbeta = ops.batch_norm2d_backward(xp.asarray(dy), cache)
        out = {"y": (y, "fwd"), "dx": (dx, "bwd"), "dgamma": (dgamma, "bwd"), "dbeta": (dbeta, "bwd")}
        if train:
            new_mean, new_var = ops.update_running_stats(xp.asarray(mean), xp.asarray(var), cache, 100)
            out.update(running_mean=(new_mean, "fwd"), running_var=(new_var, "fwd"))
        return out
    check(case, other)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalized_shape", [pytest.param(5, id="last-axis"), pytest.param((3, 5), id="last-two")])
def test_layer_norm(other, dtype, normalized_shape):
    x, dy = normal((4, 3, 5), dtype, 1, scale=2) + 1, normal((4, 3, 5), dtype, 2)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    weight, bias = normal(shape, dtype, 3), normal(shape, dtype, 4)

    def case(xp):
        y, cache = ops.layer_norm_forward(xp.asarray(x), normalized_shape, xp.asarray(weight), xp.asarray(bias))
        dx, dweight, dbias = ops.layer_norm_backward(xp.asarray(dy), cache)
        return {"y": (y, "fwd"), "dx": (dx, "bwd"), "dweight": (dweight, "bwd"), "dbias": (dbias, "bwd")}
    check(case, other)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_groups", [1, 3, 6])
def test_group_norm(other, dtype, num_groups):
    x, dy = normal((2, 6, 4, 3), dtype, 1, scale=2) + 1, normal((2, 6, 4, 3), dtype, 2)
    weight, bias = normal(6, dtype, 3), normal(6, dtype, 4)

    def case(xp):
        y, cache = ops.group_norm_forward(xp.asarray(x), num_groups, xp.asarray(weight), xp.asarray(bias))
        dx, dweight, dbias = ops.group_norm_backward(xp.asarray(dy), cache)
        return {"y": (y, "fwd"), "dx": (dx, "bwd"), "dweight": (dweight, "bwd"), "dbias": (dbias, "bwd")}
    check(case, other)


LOSSES = {
    "cross_entropy": lambda xp, z, t, p: ops.softmax_cross_entropy(z, xp.asarray(t)),
    "cross_entropy_sum": lambda xp, z, t, p: ops.softmax_cross_entropy(z, xp.asarray(t), reduction="sum"),
    "cross_entropy_soft_smoothed": lambda xp, z, t, p: ops.softmax_cross_entropy(z, xp.asarray(p),
                                                                                  label_smoothing=0.1),
    "mse": lambda xp, z, t, p: ops.mse(z, xp.asarray(p)),
    "binary_cross_entropy": lambda xp, z, t, p: ops.binary_cross_entropy_with_logits(z, xp.asarray(p)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss(other, name, dtype):
    logits = normal((6, 5), dtype, 1, scale=4)
    labels = numpy.random.default_rng(2).integers(0, 5, 6)
    probabilities = numpy.random.default_rng(3).dirichlet(numpy.ones(5), 6).astype(dtype)

    def case(xp):
        loss, dlogits = LOSSES[name](xp, xp.asarray(logits), labels, probabilities)
        return {"loss": (loss, "fwd"), "dlogits": (dlogits, "bwd")}
    check(case, other)


# --- optimizers ------------------------------------------------------------------------------
OPTIMIZERS = {
    "sgd_momentum": lambda: optim.SGD(lr=0.1, momentum=0.9),
    "sgd_nesterov_decay": lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "sgd_clipped": lambda: optim.SGD(lr=0.1, clip_norm=0.5),
    "adam": lambda: optim.Adam(lr=1e-2, weight_decay=1e-3),
    "adamw": lambda: optim.AdamW(lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda: optim.RMSprop(lr=1e-2, momentum=0.5, weight_decay=1e-3),
    "adam_cosine": lambda: optim.Adam(lr=optim.CosineDecay(1e-2, total_steps=5, warmup_steps=2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_steps(other, name, dtype):
    values = [normal((4, 3), dtype, 1), normal(3, dtype, 2)]
    grads = [[normal(v.shape, dtype, 10 * step + i) for i, v in enumerate(values)] for step in range(5)]

    def case(xp):
        params = [xpnet.Parameter(xp.asarray(v.copy()), f"p{i}") for i, v in enumerate(values)]  # updated in place
        optimizer = OPTIMIZERS[name]().bind(params)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad[...] = xp.asarray(g)
            optimizer.step()
        out = {f"p{i}": (p.value, "fwd") for i, p in enumerate(params)}
        out.update({f"state{i}/{k}": (a, "fwd") for i, state in enumerate(optimizer.state) for k, a in state.items()})
        return out
    check(case, other)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_norm_and_clipping(other, dtype):
    grads = [normal((5, 4), dtype, 1, scale=3), normal(4, dtype, 2)]

    def case(xp):
        device_grads = [xp.asarray(g.copy()) for g in grads]  # clipped in place
        norm = optim.global_norm(device_grads)
        before = optim.clip_by_global_norm(device_grads, 1.0)
        return {"norm": (norm, "fwd"), "before": (before, "fwd"),
                **{f"g{i}": (g, "fwd") for i, g in enumerate(device_grads)}}
    check(case, other)


def test_every_op_has_a_parity_test():
    source = Path(__file__).read_text()
    untested = [name for name in ops.__all__ if f"ops.{name}" not in source]
    assert untested == ["DEFAULT_WORKSPACE_BYTES", "output_size"]  # a constant and integer arithmetic


# --- layers -------------------------------------------------------------------------------------
LAYERS = {  # constructor, per-sample input shape, kind of the forward output (exact on integer inputs)
    "conv2d": (lambda: L.Conv2d(3, 4, 3, stride=2, padding=1, groups=1), (3, 7, 7), "fwd"),
    "linear": (lambda: L.Linear(6, 5), (6,), "fwd"),
    "batch_norm2d": (lambda: L.BatchNorm2d(3), (3, 4, 4), "fwd"),
    "dropout": (lambda: L.Dropout(0.5), (3, 4), "exact"),
    "max_pool2d": (lambda: L.MaxPool2d(3, 2, 1), (2, 7, 7), "exact"),
    "min_pool2d": (lambda: L.MinPool2d(2), (2, 6, 6), "exact"),
    "avg_pool2d": (lambda: L.AvgPool2d(2), (2, 6, 6), "exact"),
    "global_avg_pool2d": (lambda: L.GlobalAvgPool2d(), (2, 4, 4), "exact"),
    "flatten": (lambda: L.Flatten(), (2, 3, 3), "exact"),
    "upsample": (lambda: L.Upsample((2, 1)), (2, 3, 3), "exact"),
    "relu": (lambda: L.ReLU(), (5,), "exact"),
    "leaky_relu": (lambda: L.LeakyReLU(0.25), (5,), "exact"),
    "sigmoid": (lambda: L.Sigmoid(), (5,), "fwd"),
    "tanh": (lambda: L.Tanh(), (5,), "fwd"),
    "softmax": (lambda: L.Softmax(), (5,), "fwd"),
    "gelu": (lambda: L.GELU(), (5,), "fwd"),
    "conv_transpose2d": (lambda: L.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
                         (4, 4, 5), "fwd"),
    "adaptive_avg_pool2d": (lambda: L.AdaptiveAvgPool2d((3, 4)), (2, 7, 6), "fwd"),
    "adaptive_avg_pool2d_uniform": (lambda: L.AdaptiveAvgPool2d((3, 2)), (2, 6, 8), "exact"),
    "identity": (lambda: L.Identity(), (3, 4), "exact"),
    "dropout2d": (lambda: L.Dropout2d(0.5), (3, 4, 4), "exact"),
    "batch_norm1d": (lambda: L.BatchNorm1d(3), (3, 5), "fwd"),
    "layer_norm": (lambda: L.LayerNorm((3, 4)), (2, 3, 4), "fwd"),
    "group_norm": (lambda: L.GroupNorm(2, 4), (4, 3, 3), "fwd"),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_in_a_model(other, name):
    make, shape, kind = LAYERS[name]
    x = integers((4, *shape), F32, 1, low=-3, high=4)
    dy_shape = (4, *make().output_shape(shape))
    dy = integers(dy_shape, F32, 2, low=-3, high=4)
    results = []
    for device in (xpnet.get_device("cpu"), other.device):
        model = xpnet.Sequential(make(), seed=5, device=device)  # weights drawn on the host from the seed
        model.layers[0].need_input_grad = True
        y = model.forward(device.asarray(x), train=True)
        dx = model.backward(device.asarray(dy))
        results.append({"y": (y, kind), "dx": (dx, "exact" if kind == "exact" else "bwd"),
                        **{f"d{p.name}": (p.grad, "bwd") for p in model.parameters()},
                        **{v.name: (v.value, "fwd") for v in model.layers[0].buffers()}})
    ours, theirs = results
    assert ours.keys() == theirs.keys()
    for key, (array, kind_) in ours.items():
        assert_parity(array, theirs[key][0], kind_, f"{name} {key}", other)


# --- whole training runs -----------------------------------------------------------------------------
def smooth_cnn(seed=0):
    """A small conv model without kinks (tanh, average pooling), so no tie is ever broken
    differently and 100 steps stay within float rounding of each other."""
    return xpnet.Sequential(L.Conv2d(1, 4, 3, padding=1), L.Tanh(), L.AvgPool2d(2), L.Conv2d(4, 8, 3, stride=2),
                            L.Tanh(), L.Flatten(), L.Linear(8 * 6 * 6, 10), seed=seed)


def sgd_steps(device, steps=100, batch=8):
    (x, y), _ = mnist()
    model = smooth_cnn().to(device)
    model.compile(optim.SGD(lr=0.02, momentum=0.9), "cross_entropy")
    losses = []
    for step in range(steps):
        xb = device.asarray(x[step * batch:(step + 1) * batch])
        yb = device.asarray(y[step * batch:(step + 1) * batch])
        out = model.forward(xb, train=True)
        loss, dout = ops.softmax_cross_entropy(out, yb)
        model.optimizer.zero_grad()
        model.backward(dout)
        model.optimizer.step()
        losses.append(loss)
    return host(device.xp.stack(losses)), [host(p.value) for p in model.parameters()]


def test_100_sgd_steps_agree_across_devices(other):
    losses, weights = sgd_steps(xpnet.get_device("cpu"))
    other_losses, other_weights = sgd_steps(other.device)
    assert losses.shape == (100,) and losses[-10:].mean() < 0.7 * losses[:10].mean()
    numpy.testing.assert_allclose(other_losses, losses, rtol=0, atol=1e-5)
    for w, v in zip(other_weights, weights):
        assert w.dtype == v.dtype == F32
        numpy.testing.assert_allclose(w, v, rtol=0, atol=1e-4)


def adam_fit(device):
    (x, y), (xt, yt) = mnist()
    model = smooth_cnn().to(device)
    model.compile(optim.Adam(lr=2e-3), "cross_entropy", ["accuracy"])
    history = model.fit(x[:400], y[:400], epochs=4, batch_size=16, verbose=0)  # 4 x 25 = 100 steps
    return (numpy.array(history.history["loss"]), model.predict(xt[:200]), model.evaluate(xt[:200], yt[:200]),
            [host(p.value) for p in model.parameters()])


def test_100_adam_steps_through_fit_agree_across_devices(other):
    losses, predictions, scores, weights = adam_fit(xpnet.get_device("cpu"))
    other_losses, other_predictions, other_scores, other_weights = adam_fit(other.device)
    assert isinstance(other_predictions, numpy.ndarray) and other_predictions.dtype == F32
    numpy.testing.assert_allclose(other_losses, losses, rtol=0, atol=1e-3)
    numpy.testing.assert_allclose(other_predictions, predictions, rtol=0, atol=1e-3)
    assert numpy.mean(other_predictions.argmax(1) == predictions.argmax(1)) >= 0.99
    assert other_scores["loss"] == pytest.approx(scores["loss"], abs=1e-3)
    for w, v in zip(other_weights, weights):
        numpy.testing.assert_allclose(w, v, rtol=0, atol=1e-3)


# --- same seed, same computation -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lenet5_device_round_trip_is_bit_identical(other, dtype):
    model = xpnet.models.lenet5(seed=0, dtype=dtype)
    model.compile(optim.Adam(), "cross_entropy")
    (x, y), _ = mnist()
    model.fit(x[:16], y[:16], batch_size=16, verbose=0)  # optimizer state exists
    before = {name: host(v.value).copy() for name, v in model.variables()}
    state = [{k: host(a).copy() for k, a in s.items()} for s in model.optimizer.state]
    model.to(other.device)
    assert model.device == other.device
    assert all(xpnet.device_of(v.value) == other.device for _, v in model.variables())
    assert all(xpnet.device_of(a) == other.device for s in model.optimizer.state for a in s.values())
    model.to("cpu")
    for name, v in model.variables():
        assert isinstance(v.value, numpy.ndarray) and v.value.dtype == numpy.dtype(dtype)
        numpy.testing.assert_array_equal(v.value, before[name], err_msg=name)
    for s, saved in zip(model.optimizer.state, state):
        for k, a in s.items():
            numpy.testing.assert_array_equal(a, saved[k])


def test_same_seed_gives_the_same_initial_weights_on_both(other):
    ours, theirs = xpnet.models.lenet5(seed=4), xpnet.models.lenet5(seed=4, device=other.device)
    for (name, p), (_, q) in zip(ours.variables(), theirs.variables()):
        assert xpnet.device_of(q.value) == other.device
        numpy.testing.assert_array_equal(host(q.value), p.value, err_msg=name)


def test_same_seed_gives_the_same_dropout_masks_on_both(other):
    x = numpy.ones((6, 40), F32)
    outputs = {}
    for device in (xpnet.get_device("cpu"), other.device):
        model = xpnet.Sequential(L.Dropout(0.4), L.Flatten(), seed=7, device=device)
        outputs[device] = [host(model.forward(device.asarray(x), train=True)) for _ in range(3)]
    ours, theirs = outputs.values()
    for a, b in zip(ours, theirs):
        assert b.dtype == a.dtype == F32
        numpy.testing.assert_array_equal(b, a)
    assert not numpy.array_equal(ours[0], ours[1])  # a fresh mask per call
    assert 0.3 < numpy.mean(ours[0] == 0) < 0.5  # p = 0.4 of 240 values


def test_same_seed_gives_the_same_shuffling_on_both(other):
    (x, y), _ = mnist()
    batches = {}
    for device in (xpnet.get_device("cpu"), other.device):
        seen = []

        def record(images, rng, seen=seen):
            seen.append(images.reshape(len(images), -1).sum(axis=1))
            return images
        model = smooth_cnn(seed=3).to(device)
        model.compile(optim.SGD(lr=0.01), "cross_entropy")
        model.fit(x[:96], y[:96], epochs=2, batch_size=32, verbose=0, augment=record)
        batches[device] = numpy.concatenate(seen)
    ours, theirs = batches.values()
    assert len(ours) == 192
    numpy.testing.assert_array_equal(theirs, ours)
    assert not numpy.array_equal(ours[:96], x[:96].reshape(96, -1).sum(axis=1))  # shuffled
    assert not numpy.array_equal(ours[:96], ours[96:])  # a new order every epoch
