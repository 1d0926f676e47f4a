"""BatchNorm2d layer: gradients in both modes, running statistics, parameters and bad inputs."""

import numpy
import pytest

import xpnet
from tests.helpers import TOL, host, layer_gradcheck, to_layer_backend
from tests.layers.test_base import check_rejected, message_with
from xpnet.layers import BatchNorm2d


def _randomise(layer, rng):
    """Non-trivial gamma, beta and running statistics (float64 on the host)."""
    C = layer.num_features
    layer.cast(numpy.float64)
    layer.gamma.value = rng.uniform(0.5, 2, C)
    layer.beta.value = rng.standard_normal(C)
    layer.running_mean.value = rng.standard_normal(C)
    layer.running_var.value = rng.uniform(0.5, 2, C)
    return layer


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 3, 3), (1, 3, 2, 4), (4, 1, 1, 1)])
def test_gradcheck_wrt_input_gamma_and_beta(xp, rng, train, shape):
    layer = _randomise(BatchNorm2d(shape[1]), rng)
    layer_gradcheck(xp, layer, rng.standard_normal(shape) * 2 + 1, train=train)


def _reference(x, gamma, beta, mean, var, eps):
    C = x.shape[1]
    shape = (1, C, 1, 1)
    return (x - mean.reshape(shape)) / numpy.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_training_forward_uses_batch_statistics_and_eps(xp, rng, dtype):
    layer = _randomise(BatchNorm2d(3, eps=0.1), rng)
    x = rng.standard_normal((4, 3, 2, 5)) * 3 + 2
    expected = _reference(x, layer.gamma.value, layer.beta.value, x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)), 0.1)
    layer.cast(dtype).apply(xp.asarray)
    y = host(layer.forward(xp.asarray(x.astype(dtype)), train=True))
    assert y.dtype == dtype
    numpy.testing.assert_allclose(y, expected, **TOL[numpy.dtype(dtype)])


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_evaluation_forward_uses_running_statistics(xp, rng, dtype):
    layer = _randomise(BatchNorm2d(3, eps=1e-3), rng)
    x = rng.standard_normal((2, 3, 4, 4))
    expected = _reference(x, layer.gamma.value, layer.beta.value, layer.running_mean.value,
                          layer.running_var.value, 1e-3)
    layer.cast(dtype).apply(xp.asarray)
    numpy.testing.assert_allclose(host(layer.forward(xp.asarray(x.astype(dtype)), train=False)), expected,
                                  **TOL[numpy.dtype(dtype)])


def test_running_statistics_update_in_training_only(xp, rng):
    layer = to_layer_backend(BatchNorm2d(2, momentum=0.25), xp)
    x = rng.standard_normal((3, 2, 2, 2)) * 2 + 5
    layer.forward(xp.asarray(x), train=True)
    M = 3 * 2 * 2
    expected_mean = 0.75 * 0 + 0.25 * x.mean(axis=(0, 2, 3))
    expected_var = 0.75 * 1 + 0.25 * x.var(axis=(0, 2, 3)) * M / (M - 1)
    numpy.testing.assert_allclose(host(layer.running_mean.value), expected_mean, rtol=1e-12)
    numpy.testing.assert_allclose(host(layer.running_var.value), expected_var, rtol=1e-12)
    after_training = [host(b.value).copy() for b in layer.buffers()]
    layer.forward(xp.asarray(x + 100), train=False)
    for b, before in zip(layer.buffers(), after_training, strict=True):
        numpy.testing.assert_array_equal(host(b.value), before)


def test_running_statistics_converge_to_the_data_statistics(rng):
    layer = BatchNorm2d(1, momentum=0.5, dtype=numpy.float64)
    x = rng.standard_normal((8, 1, 4, 4)) * 3 + 7
    for _ in range(60):
        layer.forward(x, train=True)
    numpy.testing.assert_allclose(layer.running_mean.value, [x.mean()], rtol=1e-12)
    numpy.testing.assert_allclose(layer.running_var.value, [x.var(ddof=1)], rtol=1e-12)


def test_training_output_is_normalised_per_channel(rng):
    y = BatchNorm2d(3, dtype=numpy.float64).forward(rng.standard_normal((5, 3, 3, 3)) * 4 - 2, train=True)
    numpy.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    numpy.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)


def test_parameters_are_weight_and_bias_and_buffers_are_running_stats_and_a_counter():
    layer = BatchNorm2d(4)
    assert [(p.name, p.trainable) for p in layer.parameters()] == [("weight", True), ("bias", True)]
    assert layer.gamma is layer.weight and layer.beta is layer.bias  # the textbook names
    assert [(p.name, p.trainable) for p in layer.buffers()] == [("running_mean", False), ("running_var", False),
                                                                ("num_batches_tracked", False)]
    assert [v.name for v in layer.variables()] == ["weight", "bias", "running_mean", "running_var",
                                                   "num_batches_tracked"]
    counter = layer.num_batches_tracked.value
    assert counter.shape == () and counter.dtype == numpy.int64 and counter == 0
    assert layer.num_parameters() == 8
    numpy.testing.assert_array_equal(layer.gamma.value, numpy.ones(4))
    numpy.testing.assert_array_equal(layer.running_var.value, numpy.ones(4))
    assert not numpy.any(layer.beta.value) and not numpy.any(layer.running_mean.value)


def test_zero_grad_leaves_buffers_and_backward_never_touches_them(rng):
    layer = BatchNorm2d(2, dtype=numpy.float64)
    layer.forward(rng.standard_normal((2, 2, 2, 2)), train=True)
    stats = [b.value.copy() for b in layer.buffers()]
    layer.backward(rng.standard_normal((2, 2, 2, 2)))
    layer.zero_grad()
    for b, s in zip(layer.buffers(), stats, strict=True):
        numpy.testing.assert_array_equal(b.value, s)
        assert not numpy.any(b.grad)


def test_reset_parameters_restores_the_initial_state(xp, rng):
    layer = _randomise(BatchNorm2d(3), rng).apply(xp.asarray)
    layer.reset_parameters()
    fresh = BatchNorm2d(3, dtype=numpy.float64)
    for v, f in zip(layer.variables(), fresh.variables(), strict=True):
        numpy.testing.assert_array_equal(host(v.value), f.value)


@pytest.mark.parametrize("shape", [(3, 2, 2), (2, 4, 5), (5, 1, 1)])
def test_output_shape_matches_forward(rng, shape):
    layer = BatchNorm2d(shape[0])
    y = layer.forward(rng.standard_normal((2, *shape)).astype(numpy.float32), train=True)
    assert y.shape == (2, *layer.output_shape(shape))


def test_config_round_trips():
    layer = BatchNorm2d(5, eps=1e-3, momentum=0.2)
    assert layer.config() == {"num_features": 5, "eps": 1e-3, "momentum": 0.2}
    assert BatchNorm2d(**layer.config()).config() == layer.config()


BAD_INPUTS = [
    ((2, 3, 4), numpy.float32, xpnet.ShapeError, ["(N, 3, H, W)", "(2, 3, 4)"]),
    ((2, 2, 4, 4), numpy.float32, xpnet.ShapeError, ["(N, 3, H, W)", "(2, 2, 4, 4)"]),
    ((2, 3, 4, 4), numpy.int64, xpnet.DTypeError, ["float32 or float64", "int64"]),
    ((2, 3, 4, 4), numpy.float64, xpnet.DTypeError, ["float32 parameters", "float64 input"]),
    ((1, 3, 1, 1), numpy.float32, xpnet.ShapeError, ["more than one value per channel", "(1, 3, 1, 1)"]),
]


@pytest.mark.parametrize("shape, dtype, error, parts", BAD_INPUTS,
                         ids=["rank3", "channels", "int64", "float64", "one_value"])
def test_bad_input_is_rejected_and_layer_is_unchanged(xp, rng, shape, dtype, error, parts):
    layer = BatchNorm2d(3, name="bn1").apply(xp.asarray)
    check_rejected(xp, layer, rng.standard_normal((2, 3, 2, 2)).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, ["bn1", *parts])


def test_a_single_value_per_channel_is_fine_in_evaluation(rng):
    y = BatchNorm2d(3).forward(rng.standard_normal((1, 3, 1, 1)).astype(numpy.float32), train=False)
    assert y.shape == (1, 3, 1, 1)


@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 4)])
def test_output_shape_rejects_wrong_rank_or_channels(shape):
    with pytest.raises(xpnet.ShapeError, match=message_with("bn2", str(shape))):
        BatchNorm2d(3, name="bn2").output_shape(shape)


@pytest.mark.parametrize("kwargs, parts", [
    (dict(num_features=0), ["num_features must be a positive int", "num_features=0"]),
    (dict(eps=0), ["eps must be positive", "eps=0"]),
    (dict(eps=-1e-5), ["eps must be positive", "eps=-1e-05"]),
    (dict(eps="a"), ["eps must be positive", "eps='a'"]),
    (dict(eps=float("inf")), ["eps", "eps=inf"]),
    (dict(momentum=2), ["momentum must be in [0, 1]", "momentum=2"]),
    (dict(momentum=-0.1), ["momentum must be in [0, 1]", "momentum=-0.1"]),
    (dict(momentum=None), ["momentum must be in [0, 1]", "momentum=None"]),
])
def test_constructor_rejects_bad_arguments(kwargs, parts):
    args = dict(num_features=3, name="bn_x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message_with("bn_x", *parts)):
        BatchNorm2d(**args)


def test_constructor_rejects_non_float_dtype():
    with pytest.raises(xpnet.DTypeError, match=message_with("bn_d", "int64")):
        BatchNorm2d(2, dtype=numpy.int64, name="bn_d")
