"""BatchNorm1d, LayerNorm and GroupNorm: gradients, loop references, variables, files, bad inputs, torch.nn."""

import inspect

import numpy
import pytest

import xpnet
from tests.helpers import TOL, host, layer_gradcheck, to_layer_backend
from tests.layers import test_base
from tests.layers.test_base import check_rejected, message_with
from tests.ops.test_norm import group_norm_reference, layer_norm_reference
from tests.reference import elementwise as ref
from xpnet import io
from xpnet import layers as L
from xpnet.layers.norm import BatchNorm1d, GroupNorm, LayerNorm

NEW = {"BatchNorm1d": BatchNorm1d, "LayerNorm": LayerNorm, "GroupNorm": GroupNorm}


@pytest.fixture
def registered(monkeypatch):
    """Model files know the new layers (until xpnet.layers exports them, which xpnet.io's registry reads)."""
    for kind, cls in NEW.items():
        monkeypatch.setitem(io.LAYER_REGISTRY, kind, cls)


def _randomise(layer, rng):
    """Non-trivial weight, bias and running statistics, where the layer has them (float64 on the host)."""
    layer.cast(numpy.float64)
    for v in layer.variables():
        if v.name == "weight" or v.name == "running_var":
            v.value = rng.uniform(0.5, 2, v.shape)
        elif v.name in ("bias", "running_mean"):
            v.value = rng.standard_normal(v.shape)
    return layer


def _data(rng, shape):
    """Values whose offset and spread differ along every axis."""
    return rng.standard_normal(shape) * rng.uniform(0.5, 3, shape) + rng.uniform(-2, 2, shape)


def _value(layer, name):
    """A variable's host value, or None where the layer has no such variable."""
    variable = getattr(layer, name, None)
    return None if variable is None else host(variable.value)


# --- BatchNorm1d ---------------------------------------------------------------------------------------
def batch_norm1d_reference(x, weight, bias, mean, var, eps):
    """y[n, c(, l)] = weight[c] (x - mean[c]) / sqrt(var[c] + eps) + bias[c], value by value."""
    y = numpy.empty(x.shape)
    for idx in numpy.ndindex(x.shape):
        c = idx[1]
        w = 1.0 if weight is None else float(weight[c])
        b = 0.0 if bias is None else float(bias[c])
        y[idx] = w * (float(x[idx]) - float(mean[c])) / numpy.sqrt(float(var[c]) + eps) + b
    return y


BN_OPTIONS = [dict(), dict(affine=False), dict(track_running_stats=False),
              dict(affine=False, track_running_stats=False)]
BN_IDS = ["default", "no_affine", "no_tracking", "neither"]


@pytest.mark.parametrize("options", BN_OPTIONS, ids=BN_IDS)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (1, 3, 4), (2, 1, 1)])
def test_batch_norm1d_gradcheck(xp, rng, shape, train, options):
    layer = _randomise(BatchNorm1d(shape[1], **options), rng)
    layer_gradcheck(xp, layer, _data(rng, shape), train=train)


@pytest.mark.parametrize("options", BN_OPTIONS, ids=BN_IDS)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6)])
def test_batch_norm1d_forward_matches_reference(xp, rng, shape, dtype, train, options):
    layer = _randomise(BatchNorm1d(3, eps=1e-3, **options), rng)
    x = _data(rng, shape)
    batch_mean, batch_var, _ = ref.channel_stats(x)
    use_batch = train or not layer.track_running_stats
    mean, var = (batch_mean, batch_var) if use_batch else (_value(layer, "running_mean"), _value(layer, "running_var"))
    expected = batch_norm1d_reference(x, _value(layer, "weight"), _value(layer, "bias"), mean, var, 1e-3)
    layer.cast(dtype).apply(xp.asarray)
    y = host(layer.forward(xp.asarray(x.astype(dtype)), train=train))
    assert y.dtype == dtype and y.shape == shape
    numpy.testing.assert_allclose(y, expected, **TOL[numpy.dtype(dtype)])


@pytest.mark.parametrize("shape", [(5, 2), (3, 2, 4)])
def test_batch_norm1d_running_statistics_update_in_training_only(xp, rng, shape):
    layer = to_layer_backend(BatchNorm1d(2, momentum=0.25), xp)
    rm, rv = numpy.zeros(2), numpy.ones(2)
    for step in range(1, 4):
        x = _data(rng, shape) + step
        layer.forward(xp.asarray(x), train=True)
        rm, rv = ref.running_stats(rm, rv, x, 0.25)  # unbiased variance over N (* L) values
        numpy.testing.assert_allclose(host(layer.running_mean.value), rm, rtol=1e-12, atol=1e-14)
        numpy.testing.assert_allclose(host(layer.running_var.value), rv, rtol=1e-12)
        assert int(host(layer.num_batches_tracked.value)) == step
    after_training = [host(b.value).copy() for b in layer.buffers()]
    layer.forward(xp.asarray(x + 100), train=False)
    for b, before in zip(layer.buffers(), after_training, strict=True):
        numpy.testing.assert_array_equal(host(b.value), before)


def test_batch_norm1d_without_running_statistics_normalises_with_the_batch_in_evaluation(rng):
    layer = BatchNorm1d(3, track_running_stats=False, dtype=numpy.float64)
    assert layer.buffers() == [] and layer.running_mean is None
    x = _data(rng, (6, 3, 2))
    numpy.testing.assert_array_equal(layer.forward(x, train=False), layer.forward(x, train=True))
    y = layer.forward(x, train=False)
    numpy.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-12)
    with pytest.raises(xpnet.ShapeError, match=message_with("BatchNorm1d", "more than one value per channel",
                                                            "(1, 3)")):
        layer.forward(x[:1, :, 0], train=False)


def test_batch_norm1d_evaluation_takes_a_single_sample_when_it_tracks_statistics(rng):
    layer = BatchNorm1d(3)
    assert layer.forward(rng.standard_normal((1, 3)).astype(numpy.float32), train=False).shape == (1, 3)


@pytest.mark.parametrize("options, parameters, buffers", [
    (dict(), ["weight", "bias"], ["running_mean", "running_var", "num_batches_tracked"]),
    (dict(affine=False), [], ["running_mean", "running_var", "num_batches_tracked"]),
    (dict(track_running_stats=False), ["weight", "bias"], []),
    (dict(affine=False, track_running_stats=False), [], []),
], ids=BN_IDS)
def test_batch_norm1d_variables_are_torchs(options, parameters, buffers):
    layer = BatchNorm1d(4, **options)
    assert [p.name for p in layer.parameters()] == parameters
    assert [b.name for b in layer.buffers()] == buffers
    assert [v.name for v in layer.variables()] == parameters + buffers
    assert layer.num_parameters() == 4 * len(parameters)
    initial = {"weight": 1, "bias": 0, "running_mean": 0, "running_var": 1, "num_batches_tracked": 0}
    for v in layer.variables():
        want = (numpy.int64, ()) if v.name == "num_batches_tracked" else (numpy.float32, (4,))
        assert (v.value.dtype, v.shape) == want, v.name
        numpy.testing.assert_array_equal(v.value, initial[v.name])
    if layer.affine:
        assert layer.gamma is layer.weight and layer.beta is layer.bias


def test_batch_norm1d_backward_never_touches_the_buffers(rng):
    layer = BatchNorm1d(2, dtype=numpy.float64)
    layer.forward(rng.standard_normal((3, 2, 2)), train=True)
    stats = [b.value.copy() for b in layer.buffers()]
    layer.backward(rng.standard_normal((3, 2, 2)))
    layer.zero_grad()
    for b, s in zip(layer.buffers(), stats, strict=True):
        numpy.testing.assert_array_equal(b.value, s)
        assert not numpy.any(b.grad)


BN_BAD_INPUTS = [
    ((2, 3, 4, 4), numpy.float32, xpnet.ShapeError, ["(N, 3) or (N, 3, L)", "(2, 3, 4, 4)"]),
    ((3,), numpy.float32, xpnet.ShapeError, ["(N, 3) or (N, 3, L)", "(3,)"]),
    ((2, 4, 5), numpy.float32, xpnet.ShapeError, ["(N, 3) or (N, 3, L)", "(2, 4, 5)"]),
    ((2, 3, 5), numpy.int64, xpnet.DTypeError, ["float32 or float64", "int64"]),
    ((2, 3, 5), numpy.float64, xpnet.DTypeError, ["float32 parameters", "float64 input"]),
    ((1, 3), numpy.float32, xpnet.ShapeError, ["more than one value per channel", "(1, 3)"]),
    ((1, 3, 1), numpy.float32, xpnet.ShapeError, ["more than one value per channel", "(1, 3, 1)"]),
]


@pytest.mark.parametrize("shape, dtype, error, parts", BN_BAD_INPUTS,
                         ids=["rank4", "rank1", "channels", "int64", "float64", "one_value", "one_value_3d"])
def test_batch_norm1d_bad_input_is_rejected_and_layer_is_unchanged(xp, rng, shape, dtype, error, parts):
    layer = BatchNorm1d(3, name="bn1").apply(xp.asarray)
    check_rejected(xp, layer, rng.standard_normal((2, 3, 2)).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, ["bn1", *parts])


@pytest.mark.parametrize("shape", [(3, 4, 4), (4,), (2, 3), ()])
def test_batch_norm1d_output_shape_rejects_wrong_rank_or_channels(shape):
    with pytest.raises(xpnet.ShapeError, match=message_with("bn2", "(N, 3) or (N, 3, L)", str(shape))):
        BatchNorm1d(3, name="bn2").output_shape(shape)


# --- LayerNorm -----------------------------------------------------------------------------------------
LN_OPTIONS = [dict(), dict(bias=False), dict(elementwise_affine=False)]
LN_IDS = ["affine", "no_bias", "no_affine"]
LN_CASES = [((3, 4), 4), ((2, 3, 4), (3, 4)), ((2, 2, 3, 2), (2,)), ((1, 5), (5,))]


@pytest.mark.parametrize("options", LN_OPTIONS, ids=LN_IDS)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape, normalized_shape", LN_CASES)
def test_layer_norm_gradcheck(xp, rng, shape, normalized_shape, train, options):
    layer = _randomise(LayerNorm(normalized_shape, **options), rng)
    layer_gradcheck(xp, layer, _data(rng, shape), train=train)


@pytest.mark.parametrize("options", LN_OPTIONS, ids=LN_IDS)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("shape, normalized_shape", LN_CASES)
def test_layer_norm_forward_matches_reference_in_both_modes(xp, rng, shape, normalized_shape, dtype, options):
    layer = _randomise(LayerNorm(normalized_shape, eps=1e-3, **options), rng)
    x = _data(rng, shape)
    expected = layer_norm_reference(x, layer.normalized_shape, _value(layer, "weight"), _value(layer, "bias"), 1e-3)
    layer.cast(dtype).apply(xp.asarray)
    for train in (True, False):
        y = host(layer.forward(xp.asarray(x.astype(dtype)), train=train))
        assert y.dtype == dtype and y.shape == shape
        numpy.testing.assert_allclose(y, expected, **TOL[numpy.dtype(dtype)])


@pytest.mark.parametrize("options, names", [(dict(), ["weight", "bias"]), (dict(bias=False), ["weight"]),
                                            (dict(elementwise_affine=False), [])], ids=LN_IDS)
def test_layer_norm_variables_are_torchs(options, names):
    layer = LayerNorm([2, 3], **options)
    assert layer.normalized_shape == (2, 3)
    assert [(p.name, p.shape, p.value.dtype) for p in layer.parameters()] == [(n, (2, 3), numpy.float32) for n in names]
    assert layer.buffers() == [] and layer.num_parameters() == 6 * len(names)
    for p in layer.parameters():
        numpy.testing.assert_array_equal(p.value, 1 if p.name == "weight" else 0)


LN_BAD_INPUTS = [
    ((2, 4, 3), numpy.float32, xpnet.ShapeError, ["(N, *, 3, 4)", "(2, 4, 3)"]),
    ((3, 4), numpy.float32, xpnet.ShapeError, ["(N, *, 3, 4)", "(3, 4)"]),
    ((2, 3, 5), numpy.float32, xpnet.ShapeError, ["(N, *, 3, 4)", "(2, 3, 5)"]),
    ((2, 3, 4), numpy.int64, xpnet.DTypeError, ["float32 or float64", "int64"]),
    ((2, 3, 4), numpy.float64, xpnet.DTypeError, ["float32 parameters", "float64 input"]),
]


@pytest.mark.parametrize("shape, dtype, error, parts", LN_BAD_INPUTS,
                         ids=["swapped", "no_batch_axis", "last_axis", "int64", "float64"])
def test_layer_norm_bad_input_is_rejected_and_layer_is_unchanged(xp, rng, shape, dtype, error, parts):
    layer = LayerNorm((3, 4), name="ln1").apply(xp.asarray)
    check_rejected(xp, layer, rng.standard_normal((2, 5, 3, 4)).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, ["ln1", *parts])


@pytest.mark.parametrize("shape", [(4,), (4, 3), (5, 3, 5)])
def test_layer_norm_output_shape_rejects_other_trailing_axes(shape):
    with pytest.raises(xpnet.ShapeError, match=message_with("ln2", "(N, *, 3, 4)", str(shape))):
        LayerNorm((3, 4), name="ln2").output_shape(shape)


def test_layer_norm_takes_leading_axes_and_reports_the_smallest_sample():
    layer = LayerNorm((3, 4))
    assert layer.output_shape((3, 4)) == (3, 4) and layer.output_shape((7, 2, 3, 4)) == (7, 2, 3, 4)
    assert layer.sample_shape() == (3, 4)


# --- GroupNorm -----------------------------------------------------------------------------------------
GN_CASES = [((2, 4), 2), ((3, 6, 4), 3), ((2, 4, 3, 3), 2), ((2, 4, 2, 2), 1), ((1, 4, 3, 2), 4)]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape, groups", GN_CASES)
def test_group_norm_gradcheck(xp, rng, shape, groups, train, affine):
    layer = _randomise(GroupNorm(groups, shape[1], affine=affine), rng)
    layer_gradcheck(xp, layer, _data(rng, shape), train=train)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("shape, groups", GN_CASES)
def test_group_norm_forward_matches_reference_in_both_modes(xp, rng, shape, groups, dtype, affine):
    layer = _randomise(GroupNorm(groups, shape[1], eps=1e-3, affine=affine), rng)
    x = _data(rng, shape)
    expected = group_norm_reference(x, groups, _value(layer, "weight"), _value(layer, "bias"), 1e-3)
    layer.cast(dtype).apply(xp.asarray)
    for train in (True, False):
        y = host(layer.forward(xp.asarray(x.astype(dtype)), train=train))
        assert y.dtype == dtype and y.shape == shape
        numpy.testing.assert_allclose(y, expected, **TOL[numpy.dtype(dtype)])


@pytest.mark.parametrize("affine, names", [(True, ["weight", "bias"]), (False, [])])
def test_group_norm_variables_are_torchs(affine, names):
    layer = GroupNorm(2, 6, affine=affine)
    assert [(p.name, p.shape, p.value.dtype) for p in layer.parameters()] == [(n, (6,), numpy.float32) for n in names]
    assert layer.buffers() == [] and layer.num_parameters() == 6 * len(names)
    for p in layer.parameters():
        numpy.testing.assert_array_equal(p.value, 1 if p.name == "weight" else 0)


GN_BAD_INPUTS = [
    ((2, 4, 3, 3), numpy.float32, xpnet.ShapeError, ["(N, 6, *)", "(2, 4, 3, 3)"]),
    ((6,), numpy.float32, xpnet.ShapeError, ["(N, 6, *)", "(6,)"]),
    ((2, 6, 3), numpy.int64, xpnet.DTypeError, ["float32 or float64", "int64"]),
    ((2, 6, 3), numpy.float64, xpnet.DTypeError, ["float32 parameters", "float64 input"]),
]


@pytest.mark.parametrize("shape, dtype, error, parts", GN_BAD_INPUTS, ids=["channels", "rank1", "int64", "float64"])
def test_group_norm_bad_input_is_rejected_and_layer_is_unchanged(xp, rng, shape, dtype, error, parts):
    layer = GroupNorm(3, 6, name="gn1").apply(xp.asarray)
    check_rejected(xp, layer, rng.standard_normal((2, 6, 2, 2)).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, ["gn1", *parts])


@pytest.mark.parametrize("shape", [(4, 3, 3), (), (3, 6)])
def test_group_norm_output_shape_rejects_wrong_channels(shape):
    with pytest.raises(xpnet.ShapeError, match=message_with("gn2", "(N, 6, *)", str(shape))):
        GroupNorm(3, 6, name="gn2").output_shape(shape)


def test_group_norm_takes_any_number_of_positions():
    layer = GroupNorm(3, 6)
    for shape in [(6,), (6, 5), (6, 2, 3), (6, 2, 2, 2)]:
        assert layer.output_shape(shape) == shape


# --- constructors and configs --------------------------------------------------------------------------
@pytest.mark.parametrize("cls, kwargs, error, parts", [
    (BatchNorm1d, dict(num_features=0), ValueError, ["num_features must be a positive int", "num_features=0"]),
    (BatchNorm1d, dict(eps=0), ValueError, ["eps must be positive", "eps=0"]),
    (BatchNorm1d, dict(momentum=None), ValueError, ["momentum must be in [0, 1]", "momentum=None"]),
    (BatchNorm1d, dict(momentum=1.5), ValueError, ["momentum must be in [0, 1]", "momentum=1.5"]),
    (BatchNorm1d, dict(affine="no"), TypeError, ["affine must be True or False", "affine='no'"]),
    (BatchNorm1d, dict(track_running_stats=1), TypeError, ["track_running_stats must be True or False"]),
    (LayerNorm, dict(normalized_shape=0), ValueError, ["normalized_shape must be a positive int", "=0"]),
    (LayerNorm, dict(normalized_shape=()), ValueError, ["non-empty sequence of positive ints", "=()"]),
    (LayerNorm, dict(normalized_shape=(3, -1)), ValueError, ["normalized_shape", "(3, -1)"]),
    (LayerNorm, dict(eps=float("nan")), ValueError, ["eps must be positive and finite", "eps=nan"]),
    (LayerNorm, dict(elementwise_affine=None), TypeError, ["elementwise_affine must be True or False"]),
    (LayerNorm, dict(bias="yes"), TypeError, ["bias must be True or False", "bias='yes'"]),
    (GroupNorm, dict(num_groups=0), ValueError, ["num_groups must be a positive int", "num_groups=0"]),
    (GroupNorm, dict(num_channels=2.0), ValueError, ["num_channels must be a positive int", "num_channels=2.0"]),
    (GroupNorm, dict(num_groups=4), ValueError, ["num_channels must be divisible by num_groups",
                                                 "num_channels=6", "num_groups=4"]),
    (GroupNorm, dict(eps=-1.0), ValueError, ["eps must be positive", "eps=-1.0"]),
    (GroupNorm, dict(affine=0), TypeError, ["affine must be True or False", "affine=0"]),
])
def test_constructors_reject_bad_arguments_naming_the_layer(cls, kwargs, error, parts):
    args = {BatchNorm1d: dict(num_features=3), LayerNorm: dict(normalized_shape=3),
            GroupNorm: dict(num_groups=3, num_channels=6)}[cls]
    with pytest.raises(error, match=message_with("norm_x", *parts)):
        cls(**{**args, **kwargs}, name="norm_x")


@pytest.mark.parametrize("cls, args", [(BatchNorm1d, (2,)), (LayerNorm, (2,)), (GroupNorm, (1, 2))])
def test_constructors_reject_a_non_float_dtype(cls, args):
    with pytest.raises(xpnet.DTypeError, match=message_with("norm_d", "int64")):
        cls(*args, dtype=numpy.int64, name="norm_d")


@pytest.mark.parametrize("layer, config", [
    (BatchNorm1d(5, eps=1e-3, momentum=0.2, affine=False),
     {"num_features": 5, "eps": 1e-3, "momentum": 0.2, "affine": False, "track_running_stats": True}),
    (LayerNorm((2, 3), eps=1e-6, bias=False),
     {"normalized_shape": [2, 3], "eps": 1e-6, "elementwise_affine": True, "bias": False}),
    (LayerNorm(4, elementwise_affine=False),
     {"normalized_shape": [4], "eps": 1e-5, "elementwise_affine": False, "bias": False}),
    (GroupNorm(2, 4, eps=1e-4, affine=False), {"num_groups": 2, "num_channels": 4, "eps": 1e-4, "affine": False}),
], ids=["batch_norm1d", "layer_norm", "layer_norm_plain", "group_norm"])
def test_config_round_trips(layer, config):
    assert layer.config() == config
    rebuilt = type(layer)(**config)
    assert rebuilt.config() == config
    assert [(v.name, v.shape) for v in rebuilt.variables()] == [(v.name, v.shape) for v in layer.variables()]


# --- the Layer protocol of tests/layers/test_base.py, on the new layers ----------------------------------
CASES = {
    "BatchNorm1d": (lambda name=None: BatchNorm1d(2, name=name), (3, 2, 4)),
    "LayerNorm": (lambda name=None: LayerNorm((3, 4), name=name), (2, 5, 3, 4)),
    "GroupNorm": (lambda name=None: GroupNorm(2, 4, name=name), (2, 4, 3, 3)),
}
PROTOCOL = [
    "test_backward_before_forward_raises_naming_the_layer", "test_clear_cache_makes_backward_raise",
    "test_config_is_plain_json_and_rebuilds_the_layer", "test_cast_to_float64_casts_every_variable",
    "test_cast_to_a_non_float_dtype_is_rejected", "test_apply_to_strict_device_keeps_values_and_moves_grads",
    "test_same_results_on_numpy_and_strict_device", "test_layer_on_device_refuses_host_input",
    "test_name_defaults_to_class_name_and_repr_shows_config",
]
PROTOCOL_ON_EACH_BACKEND = [
    "test_output_shape_matches_forward", "test_int64_input_is_rejected_and_layer_is_unchanged",
    "test_float64_input_to_float32_layer_is_rejected", "test_backward_accumulates_into_grad_and_zero_grad_resets",
]


def _run_check(monkeypatch, check, **args):
    """Run test_base's ``check`` with the new layers among its cases."""
    for kind, case in CASES.items():
        monkeypatch.setitem(test_base.CASES, kind, case)
    function = getattr(test_base, check)
    args["dtype"] = numpy.int32  # for the cast check
    function(**{name: args[name] for name in inspect.signature(function).parameters})


@pytest.mark.parametrize("check", PROTOCOL)
@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_layer_protocol_holds(monkeypatch, registered, rng, kind, check):
    """Every check test_base runs on each exported layer (once xpnet.layers exports these and
    test_base.CASES lists them, this and the next test are redundant)."""
    _run_check(monkeypatch, check, kind=kind, rng=rng)


@pytest.mark.parametrize("check", PROTOCOL_ON_EACH_BACKEND)
@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_layer_protocol_holds_on_each_backend(monkeypatch, xp, rng, kind, check):
    _run_check(monkeypatch, check, kind=kind, rng=rng, xp=xp)


def test_the_protocol_list_is_current():
    """Every test_base check that takes a layer kind runs here, but need_input_grad's (Conv2d and Linear only)."""
    takes_kind = {name for name, f in vars(test_base).items()
                  if name.startswith("test_") and "kind" in inspect.signature(f).parameters}
    skipped = takes_kind - set(PROTOCOL) - set(PROTOCOL_ON_EACH_BACKEND)
    assert skipped == {"test_need_input_grad_false_skips_dx_but_not_parameter_grads"}


# --- in a model: names, summary, files ----------------------------------------------------------------
def norm_model(seed=0, dtype="float32"):
    """Conv2d, GroupNorm and LayerNorm on images, BatchNorm1d and LayerNorm on features, and the variants
    without parameters or buffers."""
    return xpnet.Sequential(
        L.Conv2d(1, 4, 3, padding=1), GroupNorm(2, 4), L.ReLU(), L.MaxPool2d(2), LayerNorm((4, 4, 4)),
        GroupNorm(4, 4, affine=False), L.Flatten(), L.Linear(64, 16), BatchNorm1d(16), L.ReLU(),
        LayerNorm(16, bias=False), BatchNorm1d(16, affine=False), BatchNorm1d(16, track_running_stats=False),
        LayerNorm(16, elementwise_affine=False), L.Linear(16, 10), seed=seed, dtype=dtype)


NORM_MODEL_KEYS = [
    "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "7.weight", "7.bias",
    "8.weight", "8.bias", "8.running_mean", "8.running_var", "8.num_batches_tracked", "10.weight",
    "11.running_mean", "11.running_var", "11.num_batches_tracked", "12.weight", "12.bias", "14.weight", "14.bias",
]


def test_state_dict_names_shapes_and_dtypes(rng):
    model = norm_model()
    state = model.state_dict()
    assert list(state) == NORM_MODEL_KEYS
    assert state["4.weight"].shape == (4, 4, 4) and state["10.weight"].shape == (16,)
    assert state["8.num_batches_tracked"].shape == () and state["8.num_batches_tracked"].dtype == numpy.int64
    assert state["1.weight"].dtype == numpy.float32
    names = [layer.name for layer in model.layers]
    assert names[1] == "group_norm" and names[4] == "layer_norm" and names[8] == "batch_norm1d"
    text = model.summary((1, 8, 8), print_fn=None)
    assert "group_norm (GroupNorm)" in text and "batch_norm1d_1 (BatchNorm1d)" in text
    assert model.sample_shape() == (1, None, None)


def test_a_model_saves_and_loads_bit_identically(tmp_path, rng, registered):
    model = norm_model(seed=1)
    state = {k: (rng.standard_normal(v.shape) * 0.5 + 1).astype(v.dtype) if v.dtype.kind == "f" else v
             for k, v in model.state_dict().items()}
    state["11.running_var"] = numpy.abs(state["11.running_var"])
    model.load_state_dict(state)
    x = rng.standard_normal((6, 1, 8, 8)).astype(numpy.float32)
    for _ in range(2):  # move the running statistics and counters
        model.forward(x, train=True)
    model.save(tmp_path / "norm.xpnet")
    loaded = xpnet.load(tmp_path / "norm.xpnet")
    assert [layer.config() for layer in loaded.layers] == [layer.config() for layer in model.layers]
    assert list(loaded.state_dict()) == NORM_MODEL_KEYS
    for (name, want), got in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert got.dtype == want.dtype, name
        numpy.testing.assert_array_equal(got, want, err_msg=name)
    assert int(loaded.state_dict()["8.num_batches_tracked"]) == 2
    numpy.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# --- the cross-check against torch.nn (runs where PyTorch is installed) ---------------------------------
def torch_twin(layer, nn):
    """The torch.nn module of an xpnet normalisation layer, with its weights."""
    import torch
    if isinstance(layer, BatchNorm1d):
        module = nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                                track_running_stats=layer.track_running_stats)
    elif isinstance(layer, LayerNorm):
        module = nn.LayerNorm(layer.normalized_shape, eps=layer.eps, elementwise_affine=layer.elementwise_affine,
                              bias=layer.bias is not None)
    else:
        module = nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps, affine=layer.affine)
    module = module.double()
    module.load_state_dict({v.name: torch.from_numpy(host(v.value)) for v in layer.variables()}, strict=True)
    return module


TORCH_CASES = [
    (lambda: BatchNorm1d(3, momentum=0.3), (6, 3)),
    (lambda: BatchNorm1d(3, eps=1e-3), (4, 3, 5)),
    (lambda: BatchNorm1d(3, affine=False), (4, 3, 5)),
    (lambda: BatchNorm1d(3, track_running_stats=False), (5, 3)),
    (lambda: LayerNorm((3, 4)), (2, 5, 3, 4)),
    (lambda: LayerNorm(4, bias=False, eps=1e-3), (6, 4)),
    (lambda: LayerNorm(4, elementwise_affine=False), (3, 2, 4)),
    (lambda: GroupNorm(2, 6), (3, 6, 4, 4)),
    (lambda: GroupNorm(3, 6, affine=False), (2, 6, 5)),
    (lambda: GroupNorm(1, 4, eps=1e-3), (4, 4)),
]


@pytest.mark.parametrize("case", range(len(TORCH_CASES)))
def test_forward_backward_and_running_statistics_match_torch(rng, case):
    torch = pytest.importorskip("torch")
    factory, shape = TORCH_CASES[case]
    layer = _randomise(factory(), rng)
    module = torch_twin(layer, torch.nn)
    params = dict(module.named_parameters())
    for step in range(3):  # three training steps of plain SGD, then evaluation
        x, dy = _data(rng, shape) + step, rng.standard_normal(shape)
        layer.zero_grad()
        module.zero_grad()
        module.train()
        xt = torch.from_numpy(x).requires_grad_()
        yt = module(xt)
        yt.backward(torch.from_numpy(dy))
        numpy.testing.assert_allclose(layer.forward(x, train=True), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        numpy.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        assert [p.name for p in layer.parameters()] == list(params)
        with torch.no_grad():
            for p in layer.parameters():
                numpy.testing.assert_allclose(p.grad, params[p.name].grad.numpy(), rtol=1e-9, atol=1e-11,
                                              err_msg=p.name)
                p.value -= 0.1 * p.grad
                params[p.name] -= 0.1 * params[p.name].grad
        theirs = module.state_dict()
        assert [v.name for v in layer.variables()] == list(theirs)
        for v in layer.variables():
            assert v.value.dtype == theirs[v.name].numpy().dtype, v.name
            numpy.testing.assert_allclose(v.value, theirs[v.name].numpy(), rtol=1e-12, atol=1e-14, err_msg=v.name)
    module.eval()
    x = _data(rng, shape)
    with torch.no_grad():
        numpy.testing.assert_allclose(layer.forward(x, train=False), module(torch.from_numpy(x)).numpy(),
                                      rtol=1e-10, atol=1e-12)


def test_a_model_of_norm_layers_trains_as_in_torch():
    """Three SGD-momentum steps of the whole norm_model through fit, against the same net in torch.nn."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = norm_model(seed=5, dtype="float64")
    modules = []
    for layer in model.layers:
        if isinstance(layer, tuple(NEW.values())):
            modules.append(torch_twin(layer, nn))
        elif isinstance(layer, L.Conv2d):
            modules.append(nn.Conv2d(1, 4, 3, padding=1))
        elif isinstance(layer, L.Linear):
            modules.append(nn.Linear(layer.in_features, layer.out_features))
        else:
            modules.append({L.ReLU: nn.ReLU, L.Flatten: nn.Flatten}.get(type(layer), lambda: nn.MaxPool2d(2))())
    net = nn.Sequential(*modules).double()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    gen = numpy.random.default_rng(3)
    x, y = gen.standard_normal((96, 1, 8, 8)), gen.integers(0, 10, 96)
    model.compile(xpnet.optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    sgd = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    for start in range(0, 96, 32):
        sgd.zero_grad()
        loss = nn.functional.cross_entropy(net(torch.from_numpy(x[start:start + 32])),
                                           torch.from_numpy(y[start:start + 32]))
        loss.backward()
        sgd.step()
    for name, value in net.state_dict().items():
        numpy.testing.assert_allclose(model.state_dict()[name], value.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)
    net.eval()
    with torch.no_grad():
        numpy.testing.assert_allclose(model.predict(x), net(torch.from_numpy(x)).numpy(), rtol=1e-9, atol=1e-11)

