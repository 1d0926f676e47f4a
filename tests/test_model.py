"""Sequential as a network: parameter order, layer names, seeds, devices, modes, summary, shapes."""

import warnings

import numpy
import pytest

import xpnet
from tests.helpers import host
from xpnet import layers as L
from xpnet import optim
from xpnet.models import lenet5

no_gpu = pytest.mark.skipif(xpnet.gpu_available(), reason="checks the CPU fallback without a usable GPU")


def tiny(seed=0, device="cpu"):
    """Conv 1->4 k5 s2 (12x12), ReLU, 2x2 max pool (6x6), flatten (144), linear 144->10."""
    return xpnet.Sequential(L.Conv2d(1, 4, 5, stride=2), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                            L.Linear(144, 10), seed=seed, device=device)


def weights(model):
    return [host(p.value).copy() for p in model.parameters()]


def test_parameters_are_listed_in_layer_order():
    model = tiny()
    conv, linear = model.layers[0], model.layers[4]
    params = model.parameters()
    assert [id(p) for p in params] == [id(conv.weight), id(conv.bias), id(linear.weight), id(linear.bias)]
    assert [p.shape for p in params] == [(4, 1, 5, 5), (4,), (10, 144), (10,)]
    assert model.num_parameters() == 4 * 25 + 4 + 1440 + 10
    assert [name for name, _ in model.variables()] == [
        "0.weight", "0.bias", "4.weight", "4.bias"]  # state_dict names: torch.nn's paths


def test_default_layer_names_are_unique_and_keras_like():
    model = xpnet.Sequential(L.Conv2d(1, 2, 3), L.ReLU(), L.Conv2d(2, 2, 3), L.ReLU(), L.MaxPool2d(2),
                             L.Flatten(), L.Linear(8, 4), L.LeakyReLU(), L.Linear(4, 2))
    assert [layer.name for layer in model.layers] == [
        "conv2d", "relu", "conv2d_1", "relu_1", "max_pool2d", "flatten", "linear", "leaky_relu", "linear_1"]


def test_user_names_are_kept_and_default_names_avoid_them():
    model = xpnet.Sequential(L.Linear(4, 4, name="linear"), L.ReLU(name="act"), L.Linear(4, 2))
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["linear", "act"]
    assert len(set(names)) == 3, f"duplicate layer names {names}"


def test_duplicate_user_names_are_rejected():
    with pytest.raises(ValueError, match="unique.*'same'"):
        xpnet.Sequential(L.Linear(4, 4, name="same"), L.Linear(4, 2, name="same"))


@pytest.mark.parametrize("bad, error, match", [
    ((), ValueError, "at least one layer"),
    ((L.ReLU(), "relu"), TypeError, "layer #1 is a str"),
])
def test_bad_layer_lists_are_rejected(bad, error, match):
    with pytest.raises(error, match=match):
        xpnet.Sequential(*bad)


def test_same_seed_gives_bit_identical_weights_on_every_device(device):
    reference = weights(tiny(seed=3))
    on_device = tiny(seed=3, device=device)
    assert all(xpnet.device_of(p.value) == device for p in on_device.parameters())
    for a, b in zip(reference, weights(on_device)):
        assert a.dtype == b.dtype == numpy.float32
        numpy.testing.assert_array_equal(a, b)
    other = weights(tiny(seed=4, device=device))
    assert not numpy.array_equal(reference[0], other[0])
    assert not numpy.array_equal(reference[2], other[2])


def test_to_moves_parameters_grads_and_optimizer_state(device, rng):
    (x, y) = rng.random((8, 1, 28, 28), dtype=numpy.float32), rng.integers(0, 10, 8)
    model = tiny().compile(optim.Adam(lr=1e-3), "cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert len(model.optimizer.state) == 4
    before = weights(model)
    state_before = [{k: host(a).copy() for k, a in s.items()} for s in model.optimizer.state]
    grads = [rng.standard_normal(p.shape).astype(numpy.float32) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad[...] = g
    assert model.to(device) is model
    assert model.device == device
    for p, w, g in zip(model.parameters(), before, grads):
        assert xpnet.device_of(p.value) == device and xpnet.device_of(p.grad) == device
        numpy.testing.assert_array_equal(host(p.value), w)
        numpy.testing.assert_array_equal(host(p.grad), g)
    for s, s0 in zip(model.optimizer.state, state_before):
        assert set(s) == {"m", "v"}
        for k in s:
            assert xpnet.device_of(s[k]) == device
            numpy.testing.assert_array_equal(host(s[k]), s0[k])
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)  # trains on the device (no mixing error)
    assert model.to("cpu").device == xpnet.get_device("cpu")
    assert all(isinstance(p.value, numpy.ndarray) for p in model.parameters())
    assert all(isinstance(a, numpy.ndarray) for s in model.optimizer.state for a in s.values())


def test_forward_refuses_a_batch_on_another_device(device, rng):
    model = tiny(device=device)
    x = rng.random((2, 1, 28, 28), dtype=numpy.float32)
    if device.type == "cpu":
        other = xpnet.to_device(x, "cpu")
        assert model.forward(other).shape == (2, 10)
    else:
        with pytest.raises(TypeError, match="two backends were mixed"):
            model.forward(x)


@no_gpu
def test_to_cuda_without_gpu_falls_back_with_exactly_one_warning():
    model = tiny()
    before = weights(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model.to("cuda") is model
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "'cuda'" in str(caught[0].message) and "CPU" in str(caught[0].message)
    assert model.device == xpnet.get_device("cpu") and str(model.device) == "cpu"
    for a, b in zip(before, weights(model)):
        numpy.testing.assert_array_equal(a, b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = tiny(device="cuda")
    assert [w.category for w in caught] == [RuntimeWarning] and str(built.device) == "cpu"


@no_gpu
def test_to_cuda_strict_raises_device_error_and_changes_nothing():
    model = tiny()
    values = [p.value for p in model.parameters()]
    with pytest.raises(xpnet.DeviceError, match="'cuda'.*cannot be used"):
        model.to("cuda", strict=True)
    assert str(model.device) == "cpu"
    assert all(p.value is v for p, v in zip(model.parameters(), values))


def test_unknown_device_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tiny().to("tpu")


def test_train_and_eval_modes(device, rng):
    model = xpnet.Sequential(L.Flatten(), L.Linear(16, 16), L.Dropout(0.5), L.Linear(16, 3), seed=0, device=device)
    assert model.training is False
    assert model.train() is model and model.training is True
    assert model.eval() is model and model.training is False
    assert model.train(False).training is False
    x = device.asarray(rng.random((4, 1, 4, 4), dtype=numpy.float32))
    model.eval()
    first, second = host(model(x)), host(model(x))
    numpy.testing.assert_array_equal(first, second)  # dropout is the identity in evaluation
    model.train()
    assert not numpy.array_equal(host(model(x)), first)  # and active in training mode
    assert not numpy.array_equal(host(model.forward(x, train=True)), host(model.forward(x, train=True)))
    numpy.testing.assert_array_equal(host(model.forward(x, train=False)), first)


def test_lenet5_summary(capsys):
    model = lenet5()
    text = model.summary((1, 28, 28))
    printed = capsys.readouterr().out
    assert printed.strip() == text.strip()
    rows = [line for line in text.splitlines() if "(None," in line and "Input shape" not in line]
    expected = [("conv2d", "(None, 6, 28, 28)", "156"), ("relu", "(None, 6, 28, 28)", "0"),
                ("max_pool2d", "(None, 6, 14, 14)", "0"), ("conv2d_1", "(None, 16, 10, 10)", "2,416"),
                ("relu_1", "(None, 16, 10, 10)", "0"), ("max_pool2d_1", "(None, 16, 5, 5)", "0"),
                ("flatten", "(None, 400)", "0"), ("linear", "(None, 120)", "48,120"),
                ("relu_2", "(None, 120)", "0"), ("linear_1", "(None, 84)", "10,164"),
                ("relu_3", "(None, 84)", "0"), ("linear_2", "(None, 10)", "850")]
    assert len(rows) == len(expected)
    for row, (name, shape, params) in zip(rows, expected):
        assert row.split()[0] == name and shape in row and row.split()[-1] == params, row
    assert "Total params: 61,706" in text
    assert model.summary((1, 28, 28), print_fn=None) == text
    assert capsys.readouterr().out == ""


def test_output_shape_and_shape_errors():
    model = lenet5()
    assert model.output_shape((1, 28, 28)) == (10,)
    assert model.output_shape([1, 28, 28]) == (10,)  # any sequence of ints
    with pytest.raises(xpnet.ShapeError, match="3 input channels|channels"):
        model.output_shape((3, 28, 28))
    with pytest.raises(xpnet.ShapeError, match=r"input samples of shape \(1, 20, 20\) do not fit the model"):
        model.check_input_shape((1, 20, 20))
    with pytest.raises(xpnet.ShapeError, match="400"):
        model.summary((1, 20, 20), print_fn=None)


def test_first_layer_needs_no_input_gradient(device, rng):
    model = tiny(device=device)
    assert model.layers[0].need_input_grad is False
    assert all(layer.need_input_grad for layer in model.layers[1:])
    x = device.asarray(rng.random((2, 1, 28, 28), dtype=numpy.float32))
    out = model.forward(x, train=True)
    model.zero_grad()
    assert model.backward(xpnet.get_xp(out).ones_like(out)) is None
    assert float(numpy.abs(host(model.layers[0].weight.grad)).sum()) > 0
