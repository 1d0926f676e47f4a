"""Pooling layers: gradients, wiring to the pool ops, shapes and bad inputs."""

import json

import numpy
import pytest

import xpnet
from tests.helpers import host, layer_gradcheck
from tests.layers.test_base import check_rejected, message_with
from xpnet import ops
from xpnet.layers import AvgPool2d, GlobalAvgPool2d, MaxPool2d, MinPool2d


def distinct_values(shape, seed=0):
    """Shuffled, well separated values (gap 1/size) plus a little jitter: no near-ties for max/min."""
    gen = numpy.random.default_rng(seed)
    size = int(numpy.prod(shape))
    values = numpy.linspace(-1, 1, size) + gen.uniform(-0.1, 0.1, size) / size
    return gen.permutation(values).reshape(shape)


WINDOWS = [  # (kernel_size, stride, padding, input shape)
    (2, None, 0, (2, 2, 4, 4)),
    (3, 2, 1, (1, 2, 5, 5)),
    ((2, 3), (1, 2), 0, (2, 1, 4, 7)),
    (3, 1, (1, 0), (1, 2, 4, 5)),
    (2, 3, 0, (1, 1, 7, 5)),
]
WINDOW_IDS = ["k2", "k3s2p1", "k23s12", "k3p10", "stride_gt_kernel"]
EXTREMES = [(MaxPool2d, ops.max_pool2d_forward), (MinPool2d, ops.min_pool2d_forward)]


@pytest.mark.parametrize("layer_cls", [MaxPool2d, MinPool2d])
@pytest.mark.parametrize("kernel, stride, padding, shape", WINDOWS, ids=WINDOW_IDS)
def test_extreme_pool_gradcheck(xp, layer_cls, kernel, stride, padding, shape):
    layer_gradcheck(xp, layer_cls(kernel, stride, padding), distinct_values(shape))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel, stride, padding, shape", WINDOWS, ids=WINDOW_IDS)
def test_avg_pool_gradcheck(xp, rng, kernel, stride, padding, shape, count_include_pad):
    layer_gradcheck(xp, AvgPool2d(kernel, stride, padding, count_include_pad), rng.standard_normal(shape))


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_avg_pool_gradcheck(xp, rng, keepdims):
    layer_gradcheck(xp, GlobalAvgPool2d(keepdims), rng.standard_normal((2, 3, 3, 4)))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("layer_cls, op", EXTREMES)
@pytest.mark.parametrize("kernel, stride, padding, shape", WINDOWS, ids=WINDOW_IDS)
def test_extreme_pool_forward_passes_its_arguments(xp, layer_cls, op, kernel, stride, padding, shape, dtype):
    x = distinct_values(shape).astype(dtype)
    expected, _ = op(x, kernel, stride, padding)
    y = layer_cls(kernel, stride, padding)(xp.asarray(x))
    assert host(y).dtype == dtype
    numpy.testing.assert_array_equal(host(y), expected)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel, stride, padding, shape", WINDOWS, ids=WINDOW_IDS)
def test_avg_pool_forward_passes_its_arguments(xp, rng, kernel, stride, padding, shape, count_include_pad):
    x = rng.standard_normal(shape).astype(numpy.float32)
    expected, _ = ops.avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)
    y = AvgPool2d(kernel, stride, padding, count_include_pad)(xp.asarray(x))
    numpy.testing.assert_array_equal(host(y), expected)


def test_inference_forward_tracks_no_winners_and_backward_still_works(rng):
    layer, x = MaxPool2d(2), rng.standard_normal((2, 3, 4, 4))
    y_train = layer.forward(x, train=True)
    assert layer._cached().index is not None
    dx_train = layer.backward(numpy.ones(y_train.shape))
    y_eval = layer.forward(x, train=False)
    assert layer._cached().index is None
    numpy.testing.assert_array_equal(y_eval, y_train)
    numpy.testing.assert_array_equal(layer.backward(numpy.ones(y_eval.shape)), dx_train)


def test_max_and_min_pool_pick_the_window_extremes():
    x = numpy.arange(16, dtype=numpy.float64).reshape(1, 1, 4, 4)
    numpy.testing.assert_array_equal(MaxPool2d(2)(x)[0, 0], [[5, 7], [13, 15]])
    numpy.testing.assert_array_equal(MinPool2d(2)(x)[0, 0], [[0, 2], [8, 10]])


def test_avg_pool_padding_counts_zeros_only_when_asked():
    x = numpy.ones((1, 1, 2, 2))
    numpy.testing.assert_allclose(AvgPool2d(2, 1, 1)(x)[0, 0, 0, 0], 0.25, rtol=1e-12)
    numpy.testing.assert_allclose(AvgPool2d(2, 1, 1, count_include_pad=False)(x)[0, 0, 0, 0], 1.0, rtol=1e-12)


@pytest.mark.parametrize("keepdims, shape", [(False, (2, 3)), (True, (2, 3, 1, 1))])
def test_global_avg_pool_is_the_spatial_mean(xp, rng, keepdims, shape):
    x = rng.standard_normal((2, 3, 4, 5))
    y = host(GlobalAvgPool2d(keepdims)(xp.asarray(x)))
    assert y.shape == shape
    numpy.testing.assert_allclose(y.reshape(2, 3), x.mean(axis=(2, 3)), rtol=1e-12)


def test_stride_defaults_to_kernel_size():
    assert MaxPool2d((2, 3)).stride == (2, 3)
    assert AvgPool2d(3, stride=1).stride == (1, 1)


@pytest.mark.parametrize("layer", [
    MaxPool2d(2), MaxPool2d(3, 2, 1), MinPool2d((2, 3), (1, 2)), AvgPool2d(3, 2, 1),
    AvgPool2d(3, 3, 1, count_include_pad=False), AvgPool2d((3, 2), 1, (1, 0)), MaxPool2d(2, 3),
    GlobalAvgPool2d(), GlobalAvgPool2d(keepdims=True),
], ids=repr)
@pytest.mark.parametrize("shape", [(2, 6, 6), (1, 7, 5), (3, 4, 9)])
def test_output_shape_matches_forward(rng, layer, shape):
    y = layer(rng.standard_normal((2, *shape)).astype(numpy.float32))
    assert y.shape == (2, *layer.output_shape(shape))


@pytest.mark.parametrize("layer, expected", [
    (MaxPool2d(3, 2, 1), {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]}),
    (MinPool2d((2, 3)), {"kernel_size": [2, 3], "stride": [2, 3], "padding": [0, 0]}),
    (AvgPool2d(2, padding=(1, 0), count_include_pad=False),
     {"kernel_size": [2, 2], "stride": [2, 2], "padding": [1, 0], "count_include_pad": False}),
    (GlobalAvgPool2d(keepdims=True), {"keepdims": True}),
], ids=repr)
def test_config_is_plain_data_and_round_trips(layer, expected):
    assert json.loads(json.dumps(layer.config())) == expected
    assert type(layer)(**expected).config() == expected


@pytest.mark.parametrize("layer_cls", [MaxPool2d, MinPool2d, AvgPool2d, GlobalAvgPool2d])
def test_pools_have_no_parameters(layer_cls):
    layer = layer_cls() if layer_cls is GlobalAvgPool2d else layer_cls(2)
    assert layer.parameters() == [] and layer.num_parameters() == 0 and layer.dtype is None


POOLS = [MaxPool2d, MinPool2d, AvgPool2d]
BAD_INPUTS = [
    ((4, 4), numpy.float32, xpnet.ShapeError, ["4-D input (N, C, H, W)", "(4, 4)"]),
    ((2, 4, 4), numpy.float32, xpnet.ShapeError, ["4-D input", "(2, 4, 4)"]),
    ((2, 2, 4, 4), numpy.int64, xpnet.DTypeError, ["float32 or float64", "int64"]),
    ((2, 2, 1, 4), numpy.float32, xpnet.ShapeError, ["smaller than", "kernel 2x2", "1x4"]),
]


@pytest.mark.parametrize("layer_cls", POOLS)
@pytest.mark.parametrize("shape, dtype, error, parts", BAD_INPUTS, ids=["rank2", "rank3", "int64", "too_small"])
def test_bad_input_is_rejected_and_layer_is_unchanged(xp, layer_cls, shape, dtype, error, parts):
    check_rejected(xp, layer_cls(2, name="pool1"), distinct_values((2, 2, 4, 4)).astype(numpy.float32),
                   distinct_values(shape).astype(dtype), error, ["pool1", *parts])


@pytest.mark.parametrize("shape, dtype, error, parts", BAD_INPUTS[:3], ids=["rank2", "rank3", "int64"])
def test_global_avg_pool_rejects_bad_input(xp, rng, shape, dtype, error, parts):
    check_rejected(xp, GlobalAvgPool2d(name="gap"), rng.standard_normal((2, 2, 4, 4)).astype(numpy.float32),
                   rng.standard_normal(shape).astype(dtype), error, ["gap", *parts])


def test_float64_input_works_on_a_default_pool(rng):
    x = rng.standard_normal((1, 1, 4, 4))
    assert MaxPool2d(2)(x).dtype == numpy.float64


@pytest.mark.parametrize("layer", [MaxPool2d(3, name="p"), GlobalAvgPool2d(name="p")], ids=repr)
@pytest.mark.parametrize("shape", [(4, 4), (1, 2, 3, 4)])
def test_output_shape_rejects_wrong_rank(layer, shape):
    with pytest.raises(xpnet.ShapeError, match=message_with("p expects 4-D input", str(shape))):
        layer.output_shape(shape)


def test_output_shape_rejects_too_small_input():
    with pytest.raises(xpnet.ShapeError, match=message_with("p", "smaller than", "kernel 3x3")):
        MaxPool2d(3, name="p").output_shape((1, 2, 5))


@pytest.mark.parametrize("layer_cls", POOLS)
@pytest.mark.parametrize("kwargs, parts", [
    (dict(kernel_size=0), ["kernel_size", "positive", "kernel_size=0"]),
    (dict(kernel_size=(2, 0)), ["kernel_size", "(2, 0)"]),
    (dict(stride=(0, 1)), ["stride", "positive", "stride=(0, 1)"]),
    (dict(stride=-2), ["stride", "stride=-2"]),
    (dict(padding=-1), ["padding", "non-negative", "padding=-1"]),
    (dict(padding="bogus"), ["padding", "'bogus'"]),
    (dict(kernel_size=2, padding=2), ["padding must be at most half the kernel", "padding=2"]),
    (dict(kernel_size=(4, 2), padding=(1, 2)), ["at most half the kernel", "(1, 2)"]),
])
def test_constructor_rejects_bad_arguments(layer_cls, kwargs, parts):
    args = dict(kernel_size=3, name="pool_x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message_with("pool_x", *parts)):
        layer_cls(**args)


@pytest.mark.parametrize("kernel_size", [2.5, "2", None])
@pytest.mark.parametrize("layer_cls", POOLS)
def test_constructor_rejects_non_int_kernel_size_with_a_clear_message(layer_cls, kernel_size):
    with pytest.raises(ValueError, match=message_with("pool_x", "kernel_size", repr(kernel_size))):
        layer_cls(kernel_size, name="pool_x")


@pytest.mark.parametrize("layer_cls", POOLS)
def test_numpy_integer_sizes_are_plain_ints_in_the_config(layer_cls):
    layer = layer_cls(numpy.int64(3), numpy.int32(2), numpy.int64(1))
    assert json.loads(json.dumps(layer.config()))["kernel_size"] == [3, 3]
    assert layer.config()["stride"] == [2, 2] and layer.config()["padding"] == [1, 1]
