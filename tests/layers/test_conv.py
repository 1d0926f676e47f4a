"""Conv2d layer: gradients, wiring to the conv op, shapes, parameters, seeds and bad inputs."""

import json

import numpy
import pytest

import xpnet
from tests.helpers import TOL, host, layer_gradcheck
from tests.layers.test_base import check_rejected, message_with
from tests.strict_backend import STRICT_DEVICE
from xpnet import initializers
from xpnet.layers import Conv2d

# (constructor kwargs, input shape)
CONFIGS = [
    (dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 5, 6)),
    (dict(in_channels=2, out_channels=2, kernel_size=(2, 3), stride=2), (1, 2, 5, 7)),
    (dict(in_channels=1, out_channels=2, kernel_size=3, padding=(2, 1)), (2, 1, 4, 4)),
    (dict(in_channels=2, out_channels=2, kernel_size=2, dilation=2, padding=1), (1, 2, 5, 5)),
    (dict(in_channels=4, out_channels=2, kernel_size=3, groups=2, padding=1), (1, 4, 4, 4)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, bias=False), (2, 2, 4, 5)),
    (dict(in_channels=2, out_channels=2, kernel_size=3, stride=2, padding="same"), (1, 2, 5, 6)),
    (dict(in_channels=1, out_channels=2, kernel_size=(3, 2), stride=(3, 2), padding=((1, 0), (0, 1))), (2, 1, 7, 6)),
]
IDS = ["basic", "stride2", "pad21", "dilation2", "groups2", "nobias", "same_s2", "asym_pads"]


def _op_args(kwargs):
    return dict(stride=kwargs.get("stride", 1), padding=kwargs.get("padding", 0),
                dilation=kwargs.get("dilation", 1), groups=kwargs.get("groups", 1))


@pytest.mark.parametrize("kwargs, shape", CONFIGS, ids=IDS)
def test_gradcheck_wrt_input_weight_and_bias(xp, rng, kwargs, shape):
    layer_gradcheck(xp, Conv2d(**kwargs, seed=1), rng.standard_normal(shape))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("kwargs, shape", CONFIGS, ids=IDS)
def test_forward_passes_every_argument_to_the_op(xp, rng, kwargs, shape, dtype):
    layer = Conv2d(**kwargs, seed=2, dtype=dtype)
    if layer.bias is not None:
        layer.bias.value = rng.standard_normal(layer.bias.shape).astype(dtype)
    layer.apply(xp.asarray)
    x = rng.standard_normal(shape).astype(dtype)
    bias = None if layer.bias is None else host(layer.bias.value)
    expected, _ = xpnet.ops.conv2d_forward(x, host(layer.weight.value), bias, **_op_args(kwargs))
    y = layer.forward(xp.asarray(x))
    assert host(y).dtype == dtype
    numpy.testing.assert_allclose(host(y), expected, **TOL[numpy.dtype(dtype)])


def test_training_forward_keeps_the_columns_and_inference_does_not(xp, rng):
    layer = Conv2d(2, 3, kernel_size=3, padding=1, seed=3).apply(xp.asarray)
    x = xp.asarray(rng.standard_normal((2, 2, 5, 5)).astype(numpy.float32))
    y_train = layer.forward(x, train=True)
    assert layer._cached().cols is not None  # reused by backward
    y_eval = layer.forward(x, train=False)
    assert layer._cached().cols is None  # inference never holds the im2col matrix
    numpy.testing.assert_array_equal(host(y_eval), host(y_train))  # bit-exact: one chunk either way, same GEMM
    assert layer.backward(y_eval).shape == x.shape  # still differentiable


def _naive_conv(x, w, b, stride, pads, dilation):
    (pt, pb), (pl, pr) = pads
    xp_ = numpy.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    N, _, H, W = xp_.shape
    O, _, KH, KW = w.shape
    OH = (H - dilation * (KH - 1) - 1) // stride + 1
    OW = (W - dilation * (KW - 1) - 1) // stride + 1
    y = numpy.zeros((N, O, OH, OW))
    for p in range(OH):
        for q in range(OW):
            patch = xp_[:, :, p * stride:p * stride + dilation * (KH - 1) + 1:dilation,
                        q * stride:q * stride + dilation * (KW - 1) + 1:dilation]
            y[:, :, p, q] = numpy.einsum("nchw,ochw->no", patch, w)
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


def test_forward_matches_a_naive_loop_with_stride_padding_and_dilation(xp, rng):
    layer = Conv2d(2, 3, 3, stride=2, padding=2, dilation=2, seed=3, dtype=numpy.float64)
    layer.bias.value = rng.standard_normal(3)
    layer.apply(xp.asarray)
    x = rng.standard_normal((2, 2, 7, 8))
    expected = _naive_conv(x, host(layer.weight.value), host(layer.bias.value), 2, ((2, 2), (2, 2)), 2)
    numpy.testing.assert_allclose(host(layer(xp.asarray(x))), expected, rtol=1e-10, atol=1e-12)


def test_groups_keep_channel_groups_separate(rng):
    layer = Conv2d(4, 2, 1, groups=2, bias=False, dtype=numpy.float64)
    assert layer.weight.shape == (2, 2, 1, 1)
    layer.weight.value = numpy.ones((2, 2, 1, 1))
    x = rng.standard_normal((1, 4, 3, 3))
    y = layer(x)
    numpy.testing.assert_allclose(y[0, 0], x[0, 0] + x[0, 1], rtol=1e-12)
    numpy.testing.assert_allclose(y[0, 1], x[0, 2] + x[0, 3], rtol=1e-12)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(in_channels=1, out_channels=6, kernel_size=5), 156),
    (dict(in_channels=6, out_channels=16, kernel_size=5), 2416),
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=2), 114),
    (dict(in_channels=3, out_channels=8, kernel_size=(1, 2), bias=False), 48),
])
def test_num_parameters(kwargs, expected):
    assert Conv2d(**kwargs).num_parameters() == expected


def test_parameters_are_weight_then_bias_with_pytorch_shapes():
    layer = Conv2d(6, 4, (3, 2), groups=2)
    assert [p.name for p in layer.parameters()] == ["weight", "bias"]
    assert [p.shape for p in layer.parameters()] == [(4, 3, 3, 2), (4,)]
    assert all(p.trainable for p in layer.parameters()) and layer.buffers() == []
    assert [p.name for p in Conv2d(6, 4, 3, bias=False).parameters()] == ["weight"]


@pytest.mark.parametrize("kwargs, shape", CONFIGS + [
    (dict(in_channels=1, out_channels=1, kernel_size=3, stride=2, padding="same"), (1, 1, 7, 4)),
    (dict(in_channels=1, out_channels=1, kernel_size=4, stride=3, padding="same", dilation=2), (1, 1, 9, 10)),
    (dict(in_channels=1, out_channels=1, kernel_size=5, padding="valid"), (1, 1, 5, 9)),
    (dict(in_channels=1, out_channels=1, kernel_size=3, stride=3), (1, 1, 8, 3)),
], ids=IDS + ["same_s2_odd", "same_s3_d2", "valid", "drop_rows"])
def test_output_shape_matches_forward(rng, kwargs, shape):
    layer = Conv2d(**kwargs)
    y = layer.forward(rng.standard_normal(shape).astype(numpy.float32))
    assert y.shape == (shape[0], *layer.output_shape(shape[1:]))


@pytest.mark.parametrize("size", [5, 6, 7, 8])
def test_same_padding_gives_ceil_of_size_over_stride(size):
    assert Conv2d(1, 1, 3, stride=2, padding="same").output_shape((1, size, size + 1)) == (
        1, -(-size // 2), -(-(size + 1) // 2))


def test_config_round_trips_every_argument():
    layer = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2), groups=2, bias=False)
    rebuilt = Conv2d(**layer.config())
    assert rebuilt.config() == layer.config()
    assert (rebuilt.kernel_size, rebuilt.stride, rebuilt.dilation, rebuilt.groups) == ((3, 2), (2, 1), (1, 2), 2)
    assert rebuilt.bias is None
    assert Conv2d(1, 1, 3, padding="same").config()["padding"] == "same"


def test_same_seed_gives_bit_identical_weights_and_different_seeds_differ():
    a, b, c = Conv2d(3, 4, 3, seed=7), Conv2d(3, 4, 3, seed=7), Conv2d(3, 4, 3, seed=8)
    numpy.testing.assert_array_equal(a.weight.value, b.weight.value)
    assert not numpy.array_equal(a.weight.value, c.weight.value)


def test_weight_init_and_seed_are_used():
    layer = Conv2d(3, 4, 3, weight_init="glorot_normal", bias_init="ones", seed=5, dtype=numpy.float64)
    expected = initializers.glorot_normal((4, 3, 3, 3), numpy.random.default_rng(5), numpy.float64)
    numpy.testing.assert_array_equal(layer.weight.value, expected)
    numpy.testing.assert_array_equal(layer.bias.value, numpy.ones(4))


def test_default_weights_are_kaiming_uniform_and_bias_zero():
    layer = Conv2d(3, 4, 3, seed=5)
    expected = initializers.kaiming_uniform((4, 3, 3, 3), numpy.random.default_rng(5), numpy.float32)
    numpy.testing.assert_array_equal(layer.weight.value, expected)
    assert layer.weight.value.dtype == numpy.float32 and not numpy.any(layer.bias.value)


def test_reset_parameters_is_reproducible_on_every_device():
    host_layer, device_layer = Conv2d(2, 3, 3, seed=0), Conv2d(2, 3, 3, seed=1)
    device_layer.apply(lambda a: xpnet.to_device(a, STRICT_DEVICE))
    host_layer.reset_parameters(numpy.random.default_rng(9))
    device_layer.reset_parameters(9)
    assert xpnet.device_of(device_layer.weight.value) == STRICT_DEVICE
    numpy.testing.assert_array_equal(host(device_layer.weight.value), host_layer.weight.value)
    numpy.testing.assert_array_equal(Conv2d(2, 3, 3, seed=9).weight.value, host_layer.weight.value)


GOOD = (2, 3, 5, 5)
BAD_INPUTS = [
    ((5, 5), numpy.float32, xpnet.ShapeError, ["c1", "4-D input (N, C, H, W)", "(5, 5)"]),
    ((2, 3, 5), numpy.float32, xpnet.ShapeError, ["c1", "4-D input", "(2, 3, 5)"]),
    ((2, 1, 5, 5), numpy.float32, xpnet.ShapeError, ["c1", "3 input channels", "(4, 3, 3, 3)", "(2, 1, 5, 5)"]),
    ((2, 3, 5, 5), numpy.int64, xpnet.DTypeError, ["c1", "float32 or float64", "int64"]),
    ((2, 3, 5, 5), numpy.float16, xpnet.DTypeError, ["c1", "float32 or float64", "float16"]),
    ((2, 3, 5, 5), numpy.float64, xpnet.DTypeError, ["c1", "float32", "float64"]),
    ((2, 3, 2, 5), numpy.float32, xpnet.ShapeError, ["c1", "smaller than", "kernel 3x3", "2x5"]),
]


@pytest.mark.parametrize("shape, dtype, error, parts", BAD_INPUTS,
                         ids=["rank2", "rank3", "channels", "int64", "float16", "float64", "too_small"])
def test_bad_input_is_rejected_and_layer_is_unchanged(xp, rng, shape, dtype, error, parts):
    layer = Conv2d(3, 4, 3, seed=0, name="c1").apply(xp.asarray)
    check_rejected(xp, layer, rng.standard_normal(GOOD).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, parts)


def test_dilated_kernel_too_large_names_the_dilated_span(rng):
    with pytest.raises(xpnet.ShapeError, match=message_with("c2", "dilated kernel 5x5", "4x4")):
        Conv2d(1, 1, 3, dilation=2, name="c2")(rng.standard_normal((1, 1, 4, 4)).astype(numpy.float32))


@pytest.mark.parametrize("shape, parts", [
    ((3, 5), ["c3", "4-D input", "(3, 5)"]),
    ((1, 5, 5), ["c3", "3 input channels", "(1, 5, 5)"]),
    ((3, 2, 2), ["c3", "smaller than", "kernel 3x3"]),
])
def test_output_shape_rejects_what_forward_rejects(shape, parts):
    with pytest.raises(xpnet.ShapeError, match=message_with(*parts)):
        Conv2d(3, 4, 3, name="c3").output_shape(shape)


@pytest.mark.parametrize("kwargs, parts", [
    (dict(in_channels=0), ["in_channels must be a positive int", "in_channels=0"]),
    (dict(out_channels=-1), ["out_channels must be a positive int", "out_channels=-1"]),
    (dict(in_channels=2.0), ["in_channels", "2.0"]),
    (dict(kernel_size=0), ["kernel_size", "positive", "kernel_size=0"]),
    (dict(kernel_size=(3, 0)), ["kernel_size", "(3, 0)"]),
    (dict(kernel_size=(1, 2, 3)), ["kernel_size", "pair", "(1, 2, 3)"]),
    (dict(stride=(0, 1)), ["stride", "positive", "stride=(0, 1)"]),
    (dict(padding=-1), ["padding", "non-negative", "padding=-1"]),
    (dict(padding="bogus"), ["padding", "'same'", "'bogus'"]),
    (dict(padding=((1, -1), (0, 0))), ["padding", "non-negative", "(1, -1)"]),
    (dict(dilation=0), ["dilation", "positive", "dilation=0"]),
    (dict(groups=0), ["groups must be a positive int", "groups=0"]),
    (dict(in_channels=4, out_channels=6, groups=4), ["groups=4", "in_channels=4", "out_channels=6"]),
    (dict(in_channels=3, groups=2, out_channels=4), ["groups=2", "in_channels=3"]),
    (dict(weight_init="he"), ["Unknown initializer 'he'", "kaiming_uniform", "glorot_normal"]),
    (dict(max_workspace_bytes=0), ["max_workspace_bytes", "0"]),
])
def test_constructor_rejects_bad_arguments(kwargs, parts):
    args = dict(in_channels=3, out_channels=4, kernel_size=3, name="conv_x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message_with(*parts)):
        Conv2d(**args)
    if "weight_init" not in kwargs:
        with pytest.raises(ValueError, match="conv_x"):
            Conv2d(**args)


@pytest.mark.parametrize("dtype", [numpy.int64, numpy.float16, bool])
def test_constructor_rejects_non_float_dtype(dtype):
    with pytest.raises(xpnet.DTypeError, match=message_with("conv_d", "float32 or float64", numpy.dtype(dtype).name)):
        Conv2d(1, 2, 3, dtype=dtype, name="conv_d")


@pytest.mark.parametrize("padding", [
    (1, 2, 3), ((1, 2),), ((1, 1), (2, 2), (3, 3)), None, 1.5,
    ((1, 1), 2),
])
def test_constructor_rejects_malformed_padding(padding):
    with pytest.raises(ValueError, match=message_with("conv_p", "padding", repr(padding))):
        Conv2d(1, 1, 3, padding=padding, name="conv_p")


@pytest.mark.parametrize("padding, config", [
    (numpy.int64(1), 1), ((numpy.int64(1), 2), [1, 2]), ([[1, 0], [0, 2]], [[1, 0], [0, 2]]), ("same", "same"),
])
def test_padding_is_stored_as_plain_data(rng, padding, config):
    layer = Conv2d(1, 1, 3, padding=padding, seed=0)
    assert layer.config()["padding"] == config
    assert json.loads(json.dumps(layer.config()))["padding"] == config
    x = rng.standard_normal((1, 1, 5, 5)).astype(numpy.float32)
    numpy.testing.assert_array_equal(Conv2d(**layer.config(), seed=0)(x), layer(x))  # same weights, same GEMM


def test_constructor_accepts_numpy_integer_sizes():
    layer = Conv2d(numpy.int64(1), 2, numpy.int64(3), stride=numpy.int64(2), dilation=(numpy.int32(1), 2))
    assert layer.kernel_size == (3, 3) and layer.stride == (2, 2) and layer.dilation == (1, 2)
    assert json.loads(json.dumps(layer.config())) == layer.config()
