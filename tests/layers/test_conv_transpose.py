"""ConvTranspose2d layer: gradients, the naive scatter loop, PyTorch's initialisation, shapes, configs,
bad inputs, and (where PyTorch is installed) torch.nn.ConvTranspose2d itself."""

import json
import math

import numpy
import pytest

import xpnet
from tests.helpers import TOL, host, layer_gradcheck
from tests.layers.test_base import check_rejected, message_with
from tests.reference.conv_transpose import scatter_reference
from tests.strict_backend import STRICT_DEVICE
from xpnet import initializers
from xpnet.layers import ConvTranspose2d
from xpnet.ops.conv_transpose import conv_transpose2d_forward

# (constructor kwargs, input shape)
CONFIGS = [
    (dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 4, 5)),
    (dict(in_channels=2, out_channels=2, kernel_size=3, stride=2, padding=1, output_padding=1), (2, 2, 3, 4)),
    (dict(in_channels=4, out_channels=2, kernel_size=(2, 3), stride=(2, 1), groups=2), (1, 4, 3, 3)),
    (dict(in_channels=2, out_channels=2, kernel_size=2, dilation=2, padding=1, output_padding=1), (1, 2, 4, 4)),
    (dict(in_channels=2, out_channels=3, kernel_size=2, stride=2, bias=False), (2, 2, 3, 3)),
]
IDS = ["basic", "s2_p1_op1", "groups2_asym", "dilation2", "nobias"]
OP_ARGS = ("stride", "padding", "output_padding", "groups", "dilation")


@pytest.mark.parametrize("kwargs, shape", CONFIGS, ids=IDS)
def test_gradients_and_outputs_against_the_scatter_loop(xp, rng, kwargs, shape):
    layer_gradcheck(xp, ConvTranspose2d(**kwargs, seed=1), rng.standard_normal(shape))
    op_args = {k: kwargs[k] for k in OP_ARGS if k in kwargs}
    for dtype in (numpy.float32, numpy.float64):
        layer = ConvTranspose2d(**kwargs, seed=2, dtype=dtype).apply(xp.asarray)
        x = rng.standard_normal(shape).astype(dtype)
        y = layer.forward(xp.asarray(x))
        bias = None if layer.bias is None else host(layer.bias.value)
        assert host(y).dtype == dtype and tuple(y.shape) == (shape[0], *layer.output_shape(shape[1:]))
        expected = scatter_reference(x, host(layer.weight.value), bias, **op_args)
        numpy.testing.assert_allclose(host(y), expected, **TOL[numpy.dtype(dtype)])


def test_backward_accumulates_and_respects_need_input_grad(rng):
    layer = ConvTranspose2d(2, 3, 3, stride=2, seed=0, dtype=numpy.float64)
    x = rng.standard_normal((2, 2, 3, 3))
    y = layer.forward(x, train=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    once = layer.weight.grad.copy()
    layer.need_input_grad = False
    assert layer.backward(dy) is None
    numpy.testing.assert_array_equal(layer.weight.grad, 2 * once)
    assert dx.shape == x.shape


def test_parameters_are_weight_then_bias_with_pytorch_shapes():
    layer = ConvTranspose2d(6, 4, (3, 2), groups=2)
    assert [p.name for p in layer.parameters()] == ["weight", "bias"]
    assert [p.shape for p in layer.parameters()] == [(6, 2, 3, 2), (4,)]  # (C_in, C_out / groups, KH, KW)
    assert layer.num_parameters() == 6 * 2 * 3 * 2 + 4 and layer.buffers() == []
    assert [p.name for p in ConvTranspose2d(6, 4, 3, bias=False).parameters()] == ["weight"]


def test_default_initialisation_is_pytorchs():
    """U(-b, b) with b = 1 / sqrt(fan_in), fan_in = weight.shape[1] * KH * KW, for the weight and then the bias."""
    layer = ConvTranspose2d(6, 8, 3, groups=2, seed=5, dtype=numpy.float64)
    bound = 1 / math.sqrt(4 * 3 * 3)
    gen = numpy.random.default_rng(5)
    numpy.testing.assert_array_equal(layer.weight.value, gen.uniform(-bound, bound, (6, 4, 3, 3)))
    numpy.testing.assert_array_equal(layer.bias.value, gen.uniform(-bound, bound, 8))
    big = ConvTranspose2d(64, 32, 4, seed=0)
    bound = 1 / math.sqrt(32 * 4 * 4)
    assert big.weight.value.dtype == numpy.float32
    assert 0.99 * bound < numpy.abs(big.weight.value).max() <= bound
    assert abs(big.weight.value.std() - bound / math.sqrt(3)) < 0.02 * bound


def test_named_initializers_are_used_as_in_conv2d():
    layer = ConvTranspose2d(3, 4, 3, weight_init="glorot_normal", bias_init="zeros", seed=5, dtype=numpy.float64)
    expected = initializers.glorot_normal((3, 4, 3, 3), numpy.random.default_rng(5), numpy.float64)
    numpy.testing.assert_array_equal(layer.weight.value, expected)
    assert not numpy.any(layer.bias.value)


def test_same_seed_gives_the_same_weights_on_every_device():
    a, b = ConvTranspose2d(3, 4, 3, seed=7), ConvTranspose2d(3, 4, 3, seed=7)
    numpy.testing.assert_array_equal(a.weight.value, b.weight.value)
    assert not numpy.array_equal(a.weight.value, ConvTranspose2d(3, 4, 3, seed=8).weight.value)
    b.apply(lambda v: xpnet.to_device(v, STRICT_DEVICE))
    b.reset_parameters(9)
    a.reset_parameters(numpy.random.default_rng(9))
    assert xpnet.device_of(b.weight.value) == STRICT_DEVICE
    numpy.testing.assert_array_equal(host(b.weight.value), a.weight.value)
    numpy.testing.assert_array_equal(host(b.bias.value), a.bias.value)


def test_config_round_trips_every_argument():
    layer = ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2,
                            bias=False, dilation=(1, 2))
    config = layer.config()
    assert json.loads(json.dumps(config)) == config
    assert config == {"in_channels": 4, "out_channels": 6, "kernel_size": [3, 2], "stride": [2, 3],
                      "padding": [1, 0], "output_padding": [1, 2], "groups": 2, "bias": False, "dilation": [1, 2]}
    assert ConvTranspose2d(**config).config() == config


@pytest.mark.parametrize("hw, expected", [((3, 4), (6, 8)), ((1, 1), (2, 2)), ((5, 2), (10, 4))])
def test_stride2_padding1_output_padding1_doubles_the_size(hw, expected):
    assert ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1).output_shape((1, *hw)) == (1, *expected)


def test_layer_passes_its_workspace_budget_to_the_op(rng):
    layer = ConvTranspose2d(2, 3, 3, stride=2, seed=0, max_workspace_bytes=1, dtype=numpy.float64)
    x = rng.standard_normal((3, 2, 3, 3))
    y = layer.forward(x, train=True)
    assert layer._cached().chunk == 1
    expected, _ = conv_transpose2d_forward(x, layer.weight.value, layer.bias.value, stride=2)
    numpy.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


GOOD = (2, 3, 4, 4)
BAD_INPUTS = [
    ((4, 4), numpy.float32, xpnet.ShapeError, ["ct1", "4-D input (N, C, H, W)", "(4, 4)"]),
    ((2, 2, 4, 4), numpy.float32, xpnet.ShapeError, ["ct1", "3 input channels", "(3, 2, 3, 3)", "(2, 2, 4, 4)"]),
    ((2, 3, 4, 4), numpy.int64, xpnet.DTypeError, ["ct1", "float32 or float64", "int64"]),
    ((2, 3, 4, 4), numpy.float64, xpnet.DTypeError, ["ct1", "float32 parameters", "float64"]),
    ((2, 3, 1, 4), numpy.float32, xpnet.ShapeError, ["ct1", "input H x W 1x4 gives output -1x2", "padding (2, 2)"]),
]


@pytest.mark.parametrize("shape, dtype, error, parts", BAD_INPUTS, ids=["rank2", "channels", "int64", "float64",
                                                                         "output_below_1"])
def test_bad_input_is_rejected_and_layer_is_unchanged(xp, rng, shape, dtype, error, parts):
    layer = ConvTranspose2d(3, 2, 3, padding=2, seed=0, name="ct1").apply(xp.asarray)
    check_rejected(xp, layer, rng.standard_normal(GOOD).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, parts)


@pytest.mark.parametrize("shape, parts", [
    ((3, 5), ["ct2", "4-D input", "(3, 5)"]),
    ((1, 5, 5), ["ct2", "3 input channels", "(1, 5, 5)"]),
    ((3, 1, 1), ["ct2", "input H x W 1x1 gives output"]),
])
def test_output_shape_rejects_what_forward_rejects(shape, parts):
    with pytest.raises(xpnet.ShapeError, match=message_with(*parts)):
        ConvTranspose2d(3, 4, 3, padding=2, name="ct2").output_shape(shape)


@pytest.mark.parametrize("kwargs, parts", [
    (dict(in_channels=0), ["in_channels must be a positive int", "in_channels=0"]),
    (dict(out_channels=2.0), ["out_channels", "2.0"]),
    (dict(kernel_size=(3, 0)), ["kernel_size", "positive", "(3, 0)"]),
    (dict(stride=0), ["stride", "positive", "stride=0"]),
    (dict(padding=-1), ["padding", "non-negative", "padding=-1"]),
    (dict(padding="same"), ["padding", "pair of ints", "'same'"]),
    (dict(output_padding=-1), ["output_padding", "non-negative"]),
    (dict(stride=2, output_padding=2), ["output_padding must be smaller than either stride or dilation",
                                        "output_padding=(2, 2)", "stride=(2, 2)"]),
    (dict(output_padding=(0, 1)), ["output_padding must be smaller", "(0, 1)"]),
    (dict(dilation=0), ["dilation", "positive"]),
    (dict(groups=2), ["groups=2", "in_channels=3", "out_channels=4"]),
    (dict(max_workspace_bytes=0), ["max_workspace_bytes", "0"]),
])
def test_constructor_rejects_bad_arguments_naming_the_layer(kwargs, parts):
    args = dict(in_channels=3, out_channels=4, kernel_size=3, name="deconv_x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message_with("deconv_x", *parts)):
        ConvTranspose2d(**args)


def test_dilation_allows_output_padding_up_to_it():
    assert ConvTranspose2d(1, 1, 2, output_padding=2, dilation=3).output_shape((1, 3, 3)) == (1, 8, 8)


# --- PyTorch, where it is installed ---------------------------------------------------------

@pytest.mark.parametrize("kwargs, shape", [
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2),
     (2, 4, 5, 3)),
    (dict(in_channels=3, out_channels=2, kernel_size=(2, 3), stride=(3, 1), padding=(0, 1),
          output_padding=(2, 0), dilation=(1, 2)), (2, 3, 3, 4)),
    (dict(in_channels=2, out_channels=2, kernel_size=4, stride=2, padding=1, bias=False), (1, 2, 4, 4)),
], ids=["s2_p1_op1_groups", "asym_dilated", "dcgan_block"])
def test_matches_torch_conv_transpose2d_outputs_and_gradients(rng, kwargs, shape):
    torch = pytest.importorskip("torch")
    layer = ConvTranspose2d(**kwargs, seed=0, dtype=numpy.float64)
    net = torch.nn.ConvTranspose2d(**kwargs).double()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {
        v.name: v.shape for v in layer.variables()}
    net.load_state_dict({v.name: torch.from_numpy(v.value) for v in layer.variables()}, strict=True)
    x = rng.standard_normal(shape)
    x_t = torch.from_numpy(x).requires_grad_()
    y_t = net(x_t)
    y = layer.forward(x, train=True)
    numpy.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    y_t.backward(torch.from_numpy(dy))
    numpy.testing.assert_allclose(layer.backward(dy), x_t.grad.numpy(), rtol=1e-12, atol=1e-12)
    for v in layer.parameters():
        numpy.testing.assert_allclose(v.grad, getattr(net, v.name).grad.numpy(), rtol=1e-12, atol=1e-12)


def test_default_initialisation_has_torchs_bounds():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.ConvTranspose2d(16, 12, 3, groups=4)
    layer = ConvTranspose2d(16, 12, 3, groups=4, seed=0)
    for name in ("weight", "bias"):
        theirs, ours = getattr(net, name).detach().numpy(), getattr(layer, name).value
        assert theirs.shape == ours.shape
        bound = 1 / math.sqrt(3 * 3 * 3)  # fan_in = weight.shape[1] * KH * KW = (12 / 4) * 9
        assert numpy.abs(theirs).max() <= bound and numpy.abs(ours).max() <= bound
        assert numpy.abs(theirs).max() > 0.8 * bound and numpy.abs(ours).max() > 0.8 * bound
