"""The Layer protocol, checked on every layer: errors, caches, gradients, casts, moves, configs."""

import json
import re
from pathlib import Path

import numpy
import pytest

import xpnet
from tests.helpers import gradcheck, host, to_layer_backend
from tests.strict_backend import STRICT_DEVICE, StrictArray, strict
from xpnet import layers as L
from xpnet.io import layer_entry, layer_from_config
from xpnet.layers.base import Layer, positive_int


def message_with(*parts):
    """A regex that matches a message containing every one of ``parts`` (in any order)."""
    return "(?s)" + "".join(f"(?=.*{re.escape(str(p))})" for p in parts)


def check_rejected(xp, layer, good, bad, error, parts, train=True, seed=0):
    """``layer.forward(bad)`` raises ``error`` naming ``parts`` and leaves the layer as it was.

    A forward on ``good`` first stores a cache; after the failed call, the parameters are
    bit-identical, the bad input is unmodified, and backward() on the stored cache gives
    the same input and parameter gradients as before.
    """
    gen = numpy.random.default_rng(seed)
    y = layer.forward(xp.asarray(good), train=train)
    dy = xp.asarray(gen.standard_normal(host(y).shape).astype(host(y).dtype))
    values = [host(v.value).copy() for v in layer.variables()]
    layer.zero_grad()
    dx_before = host(layer.backward(dy))
    grads_before = [host(p.grad).copy() for p in layer.parameters()]
    layer.zero_grad()
    rng_state = layer.rng.bit_generator.state if hasattr(layer, "rng") else None
    bad_host = numpy.array(bad, copy=True)
    bad_dev = xp.asarray(bad)
    with pytest.raises(error, match=message_with(*parts)):
        layer.forward(bad_dev, train=train)
    numpy.testing.assert_array_equal(host(bad_dev), bad_host)
    for v, before in zip(layer.variables(), values, strict=True):
        numpy.testing.assert_array_equal(host(v.value), before, err_msg=f"{v.name} changed")
    if rng_state is not None:
        assert layer.rng.bit_generator.state == rng_state, "the failed call consumed random numbers"
    numpy.testing.assert_array_equal(host(layer.backward(dy)), dx_before)  # the same call on the same cache
    for p, before in zip(layer.parameters(), grads_before, strict=True):
        numpy.testing.assert_array_equal(host(p.grad), before, err_msg=f"{p.name}.grad differs")


# One small working configuration of every layer: factory(name) and an input shape.
CASES = {
    "BatchNorm1d": (lambda name=None: L.BatchNorm1d(2, name=name), (3, 2, 4)),
    "LayerNorm": (lambda name=None: L.LayerNorm((3, 4), name=name), (2, 5, 3, 4)),
    "GroupNorm": (lambda name=None: L.GroupNorm(2, 4, name=name), (2, 4, 3, 3)),
    "Conv2d": (lambda name=None: L.Conv2d(2, 3, 3, padding=1, seed=0, name=name), (2, 2, 5, 5)),
    "ConvTranspose2d": (lambda name=None: L.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1,
                                                            groups=2, seed=0, name=name), (2, 4, 3, 4)),
    "MaxPool2d": (lambda name=None: L.MaxPool2d(2, name=name), (2, 2, 4, 4)),
    "AvgPool2d": (lambda name=None: L.AvgPool2d(3, stride=2, padding=1, name=name), (2, 2, 5, 5)),
    "MinPool2d": (lambda name=None: L.MinPool2d((2, 3), name=name), (2, 2, 4, 6)),
    "GlobalAvgPool2d": (lambda name=None: L.GlobalAvgPool2d(name=name), (2, 3, 4, 4)),
    "AdaptiveAvgPool2d": (lambda name=None: L.AdaptiveAvgPool2d((3, None), name=name), (2, 2, 5, 4)),
    "Linear": (lambda name=None: L.Linear(4, 3, seed=0, name=name), (2, 4)),
    "Flatten": (lambda name=None: L.Flatten(name=name), (2, 2, 3, 3)),
    "Upsample": (lambda name=None: L.Upsample(2, name=name), (2, 2, 3, 3)),
    "Dropout": (lambda name=None: L.Dropout(0.5, seed=0, name=name), (2, 3, 4)),
    "Dropout2d": (lambda name=None: L.Dropout2d(0.5, seed=0, name=name), (4, 3, 2, 2)),
    "Identity": (lambda name=None: L.Identity(name=name), (2, 3)),
    "BatchNorm2d": (lambda name=None: L.BatchNorm2d(2, name=name), (3, 2, 3, 3)),
    "ReLU": (lambda name=None: L.ReLU(name=name), (2, 5)),
    "LeakyReLU": (lambda name=None: L.LeakyReLU(0.1, name=name), (2, 5)),
    "Sigmoid": (lambda name=None: L.Sigmoid(name=name), (2, 5)),
    "Tanh": (lambda name=None: L.Tanh(name=name), (2, 5)),
    "Softmax": (lambda name=None: L.Softmax(name=name), (2, 5)),
    "GELU": (lambda name=None: L.GELU(name=name), (2, 5)),
    # containers are layers: every check below holds for them too
    "Sequential": (lambda name=None: L.Sequential(L.Conv2d(2, 3, 3, padding=1, seed=0), L.BatchNorm2d(3), L.ReLU(),
                                                  name=name), (3, 2, 5, 5)),
    "Residual": (lambda name=None: L.Residual(L.Sequential(L.Conv2d(2, 3, 3, stride=2, padding=1, seed=0),
                                                           L.BatchNorm2d(3)),
                                              L.Conv2d(2, 3, 1, stride=2, seed=1), name=name), (3, 2, 5, 5)),
    "Concat": (lambda name=None: L.Concat(L.Conv2d(2, 3, 1, seed=0),
                                          L.Sequential(L.Conv2d(2, 2, 3, padding=1, seed=1), L.Tanh()), name=name),
               (2, 2, 5, 5)),
}
WITH_PARAMETERS = ["Conv2d", "ConvTranspose2d", "Linear", "BatchNorm2d", "BatchNorm1d", "LayerNorm", "GroupNorm",
                   "Sequential", "Residual", "Concat"]
ALL = sorted(CASES)


def make(kind, name=None):
    factory, shape = CASES[kind]
    return factory(name), shape


def test_every_public_layer_is_covered():
    public = {n for n in L.__all__ if n != "Layer"}
    assert public == set(CASES)


@pytest.mark.parametrize("kind", ALL)
def test_backward_before_forward_raises_naming_the_layer(kind):
    layer, _ = make(kind, name="first_block")
    with pytest.raises(RuntimeError, match=message_with("first_block", "backward() called before forward()")):
        layer.backward(numpy.ones((2, 3), numpy.float32))


@pytest.mark.parametrize("kind", ALL)
def test_clear_cache_makes_backward_raise(kind, rng):
    layer, shape = make(kind)
    y = layer.forward(rng.standard_normal(shape).astype(numpy.float32), train=True)
    layer.clear_cache()
    with pytest.raises(RuntimeError, match=kind):
        layer.backward(numpy.ones_like(y))


@pytest.mark.parametrize("kind", ALL)
def test_config_is_plain_json_and_rebuilds_the_layer(kind):
    layer, _ = make(kind)
    config = layer.config()
    assert json.loads(json.dumps(config)) == config
    if not layer.children():
        assert type(layer)(**config).config() == config
    entry = layer_entry(layer)  # a container's entry holds its children's, as in a model file
    assert json.loads(json.dumps(entry)) == entry
    assert layer_entry(layer_from_config(Path("model.xpnet"), entry)) == entry


@pytest.mark.parametrize("kind", ALL)
def test_output_shape_matches_forward(xp, rng, kind):
    layer, shape = make(kind)
    layer.apply(xp.asarray)
    y = layer.forward(xp.asarray(rng.standard_normal(shape).astype(numpy.float32)), train=True)
    assert tuple(y.shape) == (shape[0], *layer.output_shape(shape[1:]))


@pytest.mark.parametrize("kind", ALL)
def test_int64_input_is_rejected_and_layer_is_unchanged(xp, rng, kind):
    layer, shape = make(kind, name="my_layer")
    good = rng.standard_normal(shape).astype(numpy.float32)
    check_rejected(xp, layer.apply(xp.asarray), good, numpy.ones(shape, numpy.int64), xpnet.DTypeError,
                   ["my_layer", "float32 or float64", "int64"])


@pytest.mark.parametrize("kind", WITH_PARAMETERS)
def test_float64_input_to_float32_layer_is_rejected(xp, rng, kind):
    layer, shape = make(kind, name="f32")
    good = rng.standard_normal(shape).astype(numpy.float32)
    check_rejected(xp, layer.apply(xp.asarray), good, good.astype(numpy.float64), xpnet.DTypeError,
                   ["f32", "float32 parameters", "float64 input"])


@pytest.mark.parametrize("kind", WITH_PARAMETERS)
def test_backward_accumulates_into_grad_and_zero_grad_resets(xp, rng, kind):
    layer, shape = make(kind)
    to_layer_backend(layer, xp)
    x = xp.asarray(rng.standard_normal(shape))
    y = layer.forward(x, train=True)
    dy = xp.asarray(rng.standard_normal(host(y).shape))
    layer.backward(dy)
    once = [host(p.grad).copy() for p in layer.parameters()]
    assert all(numpy.any(g != 0) for g in once)
    layer.backward(dy)
    for p, g in zip(layer.parameters(), once, strict=True):
        numpy.testing.assert_allclose(host(p.grad), 2 * g, rtol=1e-12, atol=1e-12)
    layer.zero_grad()
    for p in layer.parameters():
        assert not numpy.any(host(p.grad))


@pytest.mark.parametrize("kind", ["Conv2d", "ConvTranspose2d", "Linear"])
def test_need_input_grad_false_skips_dx_but_not_parameter_grads(rng, kind):
    layer, shape = make(kind)
    layer.cast(numpy.float64)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal((shape[0], *layer.output_shape(shape[1:])))
    layer.forward(x)
    assert layer.backward(dy) is not None
    full = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    layer.need_input_grad = False
    layer.forward(x)
    assert layer.backward(dy) is None
    for p, g in zip(layer.parameters(), full, strict=True):
        numpy.testing.assert_array_equal(p.grad, g)  # bit-exact: the same GEMMs on the same shapes


@pytest.mark.parametrize("kind", WITH_PARAMETERS)
def test_cast_to_float64_casts_every_variable(rng, kind):
    layer, shape = make(kind)
    before = [v.value.copy() for v in layer.variables()]
    assert layer.cast("float64") is layer
    assert layer.dtype == numpy.float64
    for v, b in zip(layer.variables(), before, strict=True):
        want = numpy.float64 if b.dtype.kind == "f" else b.dtype  # counters stay ints
        assert v.value.dtype == want and v.grad.dtype == want
        numpy.testing.assert_array_equal(v.value, b.astype(want))
    assert layer.forward(rng.standard_normal(shape), train=True).dtype == numpy.float64


@pytest.mark.parametrize("dtype", [int, numpy.int32, numpy.float16, bool, numpy.complex128])
@pytest.mark.parametrize("kind", WITH_PARAMETERS)
def test_cast_to_a_non_float_dtype_is_rejected(kind, dtype):
    layer, _ = make(kind, name="castme")
    before = [v.value.copy() for v in layer.variables()]
    with pytest.raises(xpnet.DTypeError, match=message_with("castme", "float32 or float64",
                                                            numpy.dtype(dtype).name)):
        layer.cast(dtype)
    for v, b in zip(layer.variables(), before, strict=True):
        assert v.value.dtype == b.dtype
        numpy.testing.assert_array_equal(v.value, b)


@pytest.mark.parametrize("kind", WITH_PARAMETERS)
def test_apply_to_strict_device_keeps_values_and_moves_grads(rng, kind):
    layer, shape = make(kind)
    layer.forward(rng.standard_normal(shape).astype(numpy.float32), train=True)
    values = [v.value.copy() for v in layer.variables()]
    assert layer.apply(lambda a: xpnet.to_device(a, STRICT_DEVICE)) is layer
    assert layer._cache is None
    for v, value in zip(layer.variables(), values, strict=True):
        assert isinstance(v.value, StrictArray) and isinstance(v.grad, StrictArray)
        assert xpnet.device_of(v.grad) == STRICT_DEVICE
        numpy.testing.assert_array_equal(host(v.value), value)
        numpy.testing.assert_array_equal(host(v.grad), numpy.zeros_like(value))
    layer.apply(lambda a: xpnet.to_device(a, "cpu"))
    for v, value in zip(layer.variables(), values, strict=True):
        assert isinstance(v.value, numpy.ndarray) and isinstance(v.grad, numpy.ndarray)
        numpy.testing.assert_array_equal(v.value, value)
        assert v.grad.shape == value.shape and v.grad.dtype == value.dtype


@pytest.mark.parametrize("kind", WITH_PARAMETERS)
def test_same_results_on_numpy_and_strict_device(rng, kind):
    on_host, shape = make(kind)
    on_device, _ = make(kind)
    on_device.apply(lambda a: xpnet.to_device(a, STRICT_DEVICE))
    x = rng.standard_normal(shape).astype(numpy.float32)
    y = on_host.forward(x, train=True)
    y_dev = on_device.forward(strict.asarray(x), train=True)
    numpy.testing.assert_array_equal(host(y_dev), y)  # bit-exact: strict calls numpy with the same shapes
    dy = rng.standard_normal(y.shape).astype(numpy.float32)
    # dx may take another route on the host (Conv2d: col2im on the padded grid), so it agrees
    # to float32 rounding, not bit for bit
    numpy.testing.assert_allclose(host(on_device.backward(strict.asarray(dy))), on_host.backward(dy),
                                  rtol=1e-5, atol=1e-6)
    for a, b in zip(on_device.variables(), on_host.variables(), strict=True):
        numpy.testing.assert_array_equal(host(a.value), b.value)
        numpy.testing.assert_array_equal(host(a.grad), b.grad)  # same numpy calls, same shapes: bit-exact


@pytest.mark.parametrize("kind", WITH_PARAMETERS)
def test_layer_on_device_refuses_host_input(rng, kind):
    layer, shape = make(kind)
    layer.apply(lambda a: xpnet.to_device(a, STRICT_DEVICE))
    with pytest.raises(TypeError, match=message_with("numpy", "strict")):
        layer.forward(rng.standard_normal(shape).astype(numpy.float32), train=True)


@pytest.mark.parametrize("kind", ALL)
def test_name_defaults_to_class_name_and_repr_shows_config(kind):
    layer, _ = make(kind)
    assert layer.name == kind
    assert make(kind, name="custom")[0].name == "custom"
    text = repr(layer)
    assert text.startswith(f"{kind}(")
    for key in layer.config():
        assert f"{key}=" in text


def test_base_layer_defaults():
    layer = Layer()
    assert layer.name == "Layer"
    assert layer.parameters() == [] and layer.buffers() == [] and layer.num_parameters() == 0
    assert layer.dtype is None and layer.config() == {}
    assert layer.output_shape((3, 4)) == (3, 4)
    with pytest.raises(NotImplementedError):
        layer(numpy.ones((1, 2)))


@pytest.mark.parametrize("value", [0, -1, 2.5, "3", True, None])
def test_positive_int_rejects_with_layer_and_argument_names(value):
    with pytest.raises(ValueError, match=message_with("conv_a", "in_channels must be a positive int",
                                                      f"in_channels={value!r}")):
        positive_int(value, "in_channels", "conv_a")


def test_positive_int_accepts_numpy_integers():
    result = positive_int(numpy.int64(3), "n", "who")
    assert result == 3 and type(result) is int


def _lenet_like_stack(seed):
    return [L.Conv2d(1, 2, 3, padding=1, seed=seed), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
            L.Linear(2 * 3 * 3, 3, seed=seed + 1)]


def test_end_to_end_stack_gradient_of_summed_cross_entropy(xp):
    """Conv2d -> ReLU -> MaxPool2d -> Flatten -> Linear, chained by hand, checked w.r.t. the conv weight."""
    gen = numpy.random.default_rng(5)
    stack = [to_layer_backend(layer, xp) for layer in _lenet_like_stack(3)]
    conv = stack[0]
    x = xp.asarray(gen.standard_normal((2, 1, 6, 6)))
    labels = xp.asarray(numpy.array([0, 2]))
    w0 = host(conv.weight.value).copy()
    b0 = host(conv.bias.value).copy()

    def forward(w):
        conv.weight.value = w
        a = x
        for layer in stack:
            a = layer.forward(a, train=True)
        loss, dlogits = xpnet.ops.softmax_cross_entropy(a, labels, reduction="sum")
        return loss, dlogits

    def backward(dloss, w):
        _, dlogits = forward(w)
        for layer in stack:
            layer.zero_grad()
        grad = dlogits * dloss
        for layer in reversed(stack):
            grad = layer.backward(grad)
        return [conv.weight.grad, grad]

    gradcheck(xp, lambda w: forward(w)[0], backward, [w0], wrt=[0])
    conv.weight.value = xp.asarray(w0)
    numpy.testing.assert_array_equal(host(conv.bias.value), b0)


def test_end_to_end_stack_input_gradient(xp):
    gen = numpy.random.default_rng(6)
    stack = [to_layer_backend(layer, xp) for layer in _lenet_like_stack(4)]
    labels = xp.asarray(numpy.array([1, 0]))

    def forward(x):
        for layer in stack:
            x = layer.forward(x, train=True)
        return xpnet.ops.softmax_cross_entropy(x, labels, reduction="sum")

    def backward(dloss, x):
        grad = forward(x)[1] * dloss
        for layer in reversed(stack):
            grad = layer.backward(grad)
        return [grad]

    gradcheck(xp, lambda x: forward(x)[0], backward, [gen.standard_normal((2, 1, 6, 6))])
