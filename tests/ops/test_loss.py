"""Losses (softmax_cross_entropy, mse, binary_cross_entropy_with_logits) vs sample-by-sample references."""

import numpy
import pytest

import xpnet
from tests.helpers import TOL, assert_close, gradcheck, host
from tests.reference import elementwise as ref
from xpnet import ops

N, K = 5, 4
NO_FLOAT_WARNINGS = dict(over="raise", invalid="raise", divide="raise")


def _labels(rng, n=N, k=K):
    return rng.integers(0, k, size=n)


def _probabilities(rng, n=N, k=K):
    p = rng.uniform(0.05, 1.0, (n, k))
    return p / p.sum(axis=1, keepdims=True)


def _target(rng, kind, n=N, k=K):
    return _labels(rng, n, k) if kind == "labels" else _probabilities(rng, n, k)


def _sce_pair(xp, target, **kwargs):
    """(forward, backward) on logits for gradcheck, with the target fixed on the device."""
    t = xp.asarray(target)
    return (lambda z: ops.softmax_cross_entropy(z, t, **kwargs)[0],
            lambda dy, z: [dy * ops.softmax_cross_entropy(z, t, **kwargs)[1]])


# ---- softmax_cross_entropy -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["labels", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_cross_entropy_matches_reference(xp, rng, kind, reduction, smoothing, dtype):
    logits = (rng.standard_normal((N, K)) * 3).astype(dtype)
    target = _target(rng, kind)
    if kind == "probabilities":
        target = target.astype(dtype)
    originals = logits.copy(), target.copy()
    loss, grad = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(target), reduction=reduction,
                                           label_smoothing=smoothing)
    ref_loss, ref_grad = ref.softmax_cross_entropy(logits, target, reduction, smoothing)
    assert host(loss).shape == () and host(loss).dtype == dtype and host(grad).dtype == dtype
    assert_close(loss, ref_loss, **TOL[numpy.dtype(dtype)], what="loss")
    assert_close(grad, ref_grad, **TOL[numpy.dtype(dtype)], what="dlogits")
    numpy.testing.assert_array_equal(logits, originals[0])
    numpy.testing.assert_array_equal(target, originals[1])


@pytest.mark.parametrize("kind", ["labels", "probabilities"])
@pytest.mark.parametrize("reduction, scale", [("mean", 1 / N), ("sum", 1.0)])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_gradient_is_softmax_minus_target(xp, rng, kind, reduction, scale, smoothing):
    logits = rng.standard_normal((N, K)) * 2
    target = _target(rng, kind)
    q = ref.target_distribution(target, K, smoothing)
    _, grad = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(target), reduction=reduction,
                                        label_smoothing=smoothing)
    assert_close(grad, (ref.softmax(logits) - q) * scale, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["labels", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_gradcheck(xp, rng, kind, reduction, smoothing):
    logits = rng.standard_normal((N, K)) * 2
    forward, backward = _sce_pair(xp, _target(rng, kind), reduction=reduction, label_smoothing=smoothing)
    gradcheck(xp, forward, backward, [logits])


def test_cross_entropy_batch_gradient_is_per_sample_gradient_over_n(xp, rng):
    logits, labels = rng.standard_normal((N, K)), _labels(rng)
    loss, grad = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    singles = [ops.softmax_cross_entropy(xp.asarray(logits[n:n + 1]), xp.asarray(labels[n:n + 1]), reduction="sum")
               for n in range(N)]
    assert_close(grad, numpy.concatenate([host(g) for _, g in singles]) / N, rtol=1e-12, atol=1e-15)
    assert_close(loss, sum(float(host(s)) for s, _ in singles) / N, rtol=1e-12)


def test_cross_entropy_batch_of_one(xp):
    loss, grad = ops.softmax_cross_entropy(xp.asarray(numpy.array([[2.0, 0.0, -1.0]])), xp.asarray(numpy.array([1])))
    ref_loss, ref_grad = ref.softmax_cross_entropy([[2.0, 0.0, -1.0]], numpy.array([1]))
    assert_close(loss, ref_loss)
    assert_close(grad, ref_grad, atol=1e-15)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_probability_target_with_zero_for_true_class_is_finite(xp, dtype):
    logits = numpy.array([[5.0, 0.0, -2.0], [0.0, -numpy.inf, 1.0]], dtype=dtype)
    target = numpy.array([[0.0, 0.5, 0.5], [0.25, 0.0, 0.75]], dtype=dtype)
    with numpy.errstate(**NO_FLOAT_WARNINGS):
        loss, grad = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(target))
    ref_loss, ref_grad = ref.softmax_cross_entropy(logits, target)
    assert numpy.isfinite(host(loss)) and numpy.isfinite(host(grad)).all()
    assert_close(loss, ref_loss, **TOL[numpy.dtype(dtype)])
    assert_close(grad, ref_grad, **TOL[numpy.dtype(dtype)])


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_minus_inf_logit_of_a_wrong_class_gives_finite_loss(xp, dtype):
    logits = numpy.array([[0.0, -numpy.inf, 1.0]], dtype=dtype)
    with numpy.errstate(**NO_FLOAT_WARNINGS):
        loss, grad = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(numpy.array([2])))
    assert_close(loss, ref.softmax_cross_entropy(logits, numpy.array([2]))[0], **TOL[numpy.dtype(dtype)])
    assert numpy.isfinite(host(grad)).all() and host(grad)[0, 1] == 0


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("logits, labels, expected", [
    ([[1000.0, 0.0, -1000.0]], [0], 0.0),
    ([[1000.0, 0.0, -1000.0]], [2], 2000.0),
    ([[-1000.0, 1.0]], [0], 1001.0),
    ([[-1000.0, 1.0]], [1], 0.0),
    ([[1e4, -1e4], [-1e4, 1e4]], [1, 1], 1e4),
])
def test_cross_entropy_of_extreme_logits(xp, dtype, logits, labels, expected):
    with numpy.errstate(**NO_FLOAT_WARNINGS):
        loss, grad = ops.softmax_cross_entropy(xp.asarray(numpy.array(logits, dtype=dtype)),
                                               xp.asarray(numpy.array(labels)))
    assert_close(loss, expected, rtol=1e-7)
    assert numpy.isfinite(host(grad)).all()
    assert_close(grad, ref.softmax_cross_entropy(logits, numpy.array(labels))[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_cross_entropy_is_finite_for_logits_up_to_1e4(xp, rng, dtype, kind):
    logits = (rng.choice([-1.0, 1.0], (N, K)) * rng.uniform(1e3, 1e4, (N, K))).astype(dtype)
    target = _target(rng, kind)
    with numpy.errstate(**NO_FLOAT_WARNINGS):
        loss, grad = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(target), label_smoothing=0.1)
    assert numpy.isfinite(host(loss)) and numpy.isfinite(host(grad)).all()
    assert_close(loss, ref.softmax_cross_entropy(logits, target, label_smoothing=0.1)[0], rtol=1e-6)


@pytest.mark.parametrize("labels, bad", [
    ([0, 3, 1, 2, 1], r"\[3\]"),
    ([-1, 0, 2, 1, 1], r"\[-1\]"),
    ([2, 7, -2, 7, 0], r"\[-2, 7\]"),
])
def test_labels_out_of_range_raise_with_values_and_range(xp, rng, labels, bad):
    logits, labels = rng.standard_normal((N, K - 1)), numpy.array(labels)
    originals = logits.copy(), labels.copy()
    with pytest.raises(ValueError, match=rf"labels must be integers in \[0, 3\); got values {bad}"):
        ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    numpy.testing.assert_array_equal(logits, originals[0])
    numpy.testing.assert_array_equal(labels, originals[1])


def test_labels_error_names_first_bad_index(xp, rng):
    with pytest.raises(ValueError, match=r"first at index 2\)"):
        ops.softmax_cross_entropy(xp.asarray(rng.standard_normal((4, 3))), xp.asarray(numpy.array([0, 1, 3, -1])))


def test_validate_false_skips_the_label_check(xp, rng):
    logits = rng.standard_normal((3, K))
    loss, grad = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(numpy.array([0, K, 1])), validate=False)
    assert host(grad).shape == (3, K)


@pytest.mark.parametrize("label_dtype", [numpy.int32, numpy.int64, numpy.uint8])
def test_integer_label_dtypes_are_accepted(xp, rng, label_dtype):
    logits, labels = rng.standard_normal((N, K)), _labels(rng).astype(label_dtype)
    loss, _ = ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    assert_close(loss, ref.softmax_cross_entropy(logits, labels)[0])


SCE_ERRORS = [
    ("logits 1-D", (K,), numpy.array([1]), {}, xpnet.ShapeError, r"logits of shape \(N, K\), got \(4,\)"),
    ("logits 3-D", (N, K, 1), numpy.zeros(N, int), {}, xpnet.ShapeError, r"logits of shape \(N, K\), got \(5, 4, 1\)"),
    ("int labels 2-D", (N, K), numpy.zeros((N, 1), int), {}, xpnet.ShapeError,
     r"integer labels must have shape \(5,\), got \(5, 1\)"),
    ("float labels 1-D", (N, K), numpy.zeros(N), {}, xpnet.ShapeError,
     r"probability targets must have shape \(5, 4\) like the logits, got \(5,\)"),
    ("float target too wide", (N, K), numpy.zeros((N, K + 1)), {}, xpnet.ShapeError, r"got \(5, 5\)"),
    ("no samples", (0, K), numpy.zeros(0, int), {}, xpnet.ShapeError, r"0 samples"),
    ("bad reduction", (N, K), numpy.zeros(N, int), {"reduction": "avg"}, ValueError,
     r"reduction must be 'mean' or 'sum'; received 'avg'"),
    ("bool target", (N, K), numpy.zeros(N, bool), {}, xpnet.DTypeError,
     r"integer labels or float probabilities, got bool"),
    ("complex target", (N, K), numpy.zeros((N, K), complex), {}, xpnet.DTypeError, r"got complex128"),
    ("smoothing 1", (N, K), numpy.zeros(N, int), {"label_smoothing": 1.0}, ValueError,
     r"label_smoothing must be in \[0, 1\); received 1.0"),
    ("smoothing negative", (N, K), numpy.zeros(N, int), {"label_smoothing": -0.1}, ValueError,
     r"received -0.1"),
]


@pytest.mark.parametrize("logits_shape, target, kwargs, error, message",
                         [case[1:] for case in SCE_ERRORS], ids=[case[0] for case in SCE_ERRORS])
def test_cross_entropy_rejects_bad_inputs(xp, logits_shape, target, kwargs, error, message):
    logits = numpy.zeros(logits_shape)
    original = target.copy()
    with pytest.raises(error, match=message):
        ops.softmax_cross_entropy(xp.asarray(logits), xp.asarray(target), **kwargs)
    numpy.testing.assert_array_equal(target, original)


def test_cross_entropy_rejects_integer_logits(xp):
    with pytest.raises(xpnet.DTypeError, match=r"logits must be a float32 or float64 array; got int64"):
        ops.softmax_cross_entropy(xp.asarray(numpy.zeros((2, 3), numpy.int64)), xp.asarray(numpy.array([0, 1])))


def test_cross_entropy_non_contiguous_logits_give_identical_results(xp, rng):
    wide, labels = rng.standard_normal((N, 2 * K)), _labels(rng)
    strided = xp.asarray(wide)[:, ::2]
    assert not strided.flags.c_contiguous
    a = ops.softmax_cross_entropy(strided, xp.asarray(labels))
    b = ops.softmax_cross_entropy(xp.asarray(numpy.ascontiguousarray(wide[:, ::2])), xp.asarray(labels))
    assert_close(a[0], host(b[0]), rtol=1e-15)
    assert_close(a[1], host(b[1]), rtol=1e-15)


# ---- mse and binary_cross_entropy_with_logits ------------------------------------------------

def _bce_inputs(rng, shape):
    return rng.standard_normal(shape) * 3, rng.uniform(0, 1, shape)


def _mse_inputs(rng, shape):
    return rng.standard_normal(shape), rng.standard_normal(shape)


PAIR_LOSSES = {
    "mse": (ops.mse, ref.mse, _mse_inputs),
    "bce": (ops.binary_cross_entropy_with_logits, ref.binary_cross_entropy_with_logits, _bce_inputs),
}


@pytest.mark.parametrize("name", PAIR_LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(6,), (3, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_pair_loss_matches_reference(xp, rng, name, reduction, shape, dtype):
    loss_fn, reference, make = PAIR_LOSSES[name]
    pred, target = (a.astype(dtype) for a in make(rng, shape))
    originals = pred.copy(), target.copy()
    loss, grad = loss_fn(xp.asarray(pred), xp.asarray(target), reduction=reduction)
    ref_loss, ref_grad = reference(pred, target, reduction)
    assert host(loss).shape == () and host(grad).shape == shape and host(grad).dtype == dtype
    assert_close(loss, ref_loss, **TOL[numpy.dtype(dtype)], what="loss")
    assert_close(grad, ref_grad, **TOL[numpy.dtype(dtype)], what="gradient")
    numpy.testing.assert_array_equal(pred, originals[0])
    numpy.testing.assert_array_equal(target, originals[1])


@pytest.mark.parametrize("name", PAIR_LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_pair_loss_gradcheck(xp, rng, name, reduction):
    loss_fn, _, make = PAIR_LOSSES[name]
    pred, target = make(rng, (3, 5))
    t = xp.asarray(target)
    gradcheck(xp, lambda p: loss_fn(p, t, reduction=reduction)[0],
              lambda dy, p: [dy * loss_fn(p, t, reduction=reduction)[1]], [pred])


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_pair_loss_sum_is_mean_times_count(xp, rng, name):
    loss_fn, _, make = PAIR_LOSSES[name]
    pred, target = (xp.asarray(a) for a in make(rng, (4, 5)))
    mean, dmean = loss_fn(pred, target, reduction="mean")
    total, dtotal = loss_fn(pred, target, reduction="sum")
    assert_close(total, float(host(mean)) * 20, rtol=1e-12)
    assert_close(dtotal, host(dmean) * 20, rtol=1e-12)


def test_mse_is_zero_at_the_target(xp, rng):
    x = rng.standard_normal((3, 3))
    loss, grad = ops.mse(xp.asarray(x), xp.asarray(x.copy()))
    assert float(host(loss)) == 0.0 and not host(grad).any()


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_bce_is_finite_for_logits_up_to_1e4(xp, dtype):
    logits = numpy.array([-1e4, -1e3, -50.0, 0.0, 50.0, 1e3, 1e4, 1e4, -1e4], dtype=dtype)
    target = numpy.array([0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=dtype)
    with numpy.errstate(**NO_FLOAT_WARNINGS):
        loss, grad = ops.binary_cross_entropy_with_logits(xp.asarray(logits), xp.asarray(target), reduction="sum")
    ref_loss, ref_grad = ref.binary_cross_entropy_with_logits(logits, target, "sum")
    assert numpy.isfinite(host(loss)) and numpy.isfinite(host(grad)).all()
    assert_close(loss, ref_loss, rtol=1e-6)
    assert_close(grad, ref_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", PAIR_LOSSES)
@pytest.mark.parametrize("pred_shape, target_shape, error, message", [
    ((3, 4), (4, 3), xpnet.ShapeError, r"prediction shape \(3, 4\) and target shape \(4, 3\) must match"),
    ((6,), (6, 1), xpnet.ShapeError, r"prediction shape \(6,\) and target shape \(6, 1\) must match"),
    ((0, 4), (0, 4), xpnet.ShapeError, r"empty prediction"),
])
def test_pair_loss_rejects_bad_shapes(xp, name, pred_shape, target_shape, error, message):
    loss_fn = PAIR_LOSSES[name][0]
    pred, target = numpy.ones(pred_shape), numpy.zeros(target_shape)
    with pytest.raises(error, match=message):
        loss_fn(xp.asarray(pred), xp.asarray(target))
    assert (pred == 1).all() and (target == 0).all()


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_pair_loss_rejects_bad_reduction_and_dtype(xp, name):
    loss_fn = PAIR_LOSSES[name][0]
    with pytest.raises(ValueError, match=r"reduction must be 'mean' or 'sum'; received 'none'"):
        loss_fn(xp.asarray(numpy.ones(3)), xp.asarray(numpy.ones(3)), reduction="none")
    with pytest.raises(xpnet.DTypeError, match=r"prediction must be a float32 or float64 array; got int64"):
        loss_fn(xp.asarray(numpy.ones(3, numpy.int64)), xp.asarray(numpy.ones(3)))


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_pair_loss_non_contiguous_inputs_give_identical_results(xp, rng, name):
    loss_fn, _, make = PAIR_LOSSES[name]
    pred, target = make(rng, (4, 6))
    a = loss_fn(xp.asarray(pred)[:, ::2], xp.asarray(target)[:, ::2])
    b = loss_fn(xp.asarray(numpy.ascontiguousarray(pred[:, ::2])), xp.asarray(numpy.ascontiguousarray(target[:, ::2])))
    assert_close(a[0], host(b[0]), rtol=1e-15)
    assert_close(a[1], host(b[1]), rtol=1e-15)
