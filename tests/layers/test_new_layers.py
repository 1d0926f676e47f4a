"""AdaptiveAvgPool2d, Identity and Dropout2d layers, and a model of every new layer (ConvTranspose2d
included) through summary, state_dict, model files and checkpoints; torch.nn cross-checks where
PyTorch is installed."""

import json

import numpy
import pytest

import xpnet
from tests.helpers import gradcheck, host, layer_gradcheck
from tests.layers.test_base import check_rejected, message_with
from tests.reference.adaptive_pool import adaptive_reference
from tests.strict_backend import strict
from xpnet import layers as L
from xpnet import optim

# --- AdaptiveAvgPool2d ----------------------------------------------------------------------

POOL_CASES = [((2, 3, 6, 8), (3, 4)), ((2, 2, 5, 7), (3, 2)), ((1, 2, 5, 7), 3), ((2, 2, 3, 4), (5, 6)),
              ((2, 2, 7, 6), (None, 4)), ((2, 2, 6, 6), 1)]
POOL_IDS = ["uniform", "overlap", "int", "upsizing", "none_h", "global"]


def _pair(size):
    return (size, size) if isinstance(size, int) else size


@pytest.mark.parametrize("shape, size", POOL_CASES, ids=POOL_IDS)
def test_adaptive_pool_gradcheck_and_bin_loop(xp, rng, shape, size):
    layer = L.AdaptiveAvgPool2d(size)
    x = rng.standard_normal(shape)
    layer_gradcheck(xp, layer, x)
    y = layer.forward(xp.asarray(x))
    numpy.testing.assert_allclose(host(y), adaptive_reference(x, _pair(size)), rtol=1e-12, atol=1e-12)
    assert tuple(y.shape) == (shape[0], *layer.output_shape(shape[1:]))


@pytest.mark.parametrize("size, config, out", [(3, 3, (2, 3, 3)), ((2, None), [2, None], (2, 2, 9)),
                                               (numpy.int64(4), 4, (2, 4, 4)), ([None, 1], [None, 1], (2, 5, 1))])
def test_adaptive_pool_config_is_plain_data_and_rebuilds(size, config, out):
    layer = L.AdaptiveAvgPool2d(size)
    assert layer.config() == {"output_size": config}
    assert json.loads(json.dumps(layer.config())) == layer.config()
    assert L.AdaptiveAvgPool2d(**layer.config()).output_shape((2, 5, 9)) == out
    assert layer.num_parameters() == 0 and layer.sample_shape() == (None, None, None)


def test_adaptive_pool_of_one_equals_global_average_pooling(xp, rng):
    x = xp.asarray(rng.standard_normal((3, 4, 5, 7)))
    numpy.testing.assert_allclose(host(L.AdaptiveAvgPool2d(1)(x)), host(L.GlobalAvgPool2d(keepdims=True)(x)),
                                  rtol=1e-15)


@pytest.mark.parametrize("shape, dtype, error, parts", [
    ((2, 5, 5), numpy.float32, xpnet.ShapeError, ["ap1", "4-D input (N, C, H, W)", "(2, 5, 5)"]),
    ((2, 2, 0, 5), numpy.float32, xpnet.ShapeError, ["ap1", "H, W >= 1", "(2, 2, 0, 5)"]),
    ((2, 2, 5, 5), numpy.int64, xpnet.DTypeError, ["ap1", "float32 or float64", "int64"]),
], ids=["rank3", "empty_height", "int64"])
def test_adaptive_pool_bad_input_is_rejected(xp, rng, shape, dtype, error, parts):
    check_rejected(xp, L.AdaptiveAvgPool2d((2, 3), name="ap1"), rng.standard_normal((2, 2, 5, 5)).astype(numpy.float32),
                   numpy.ones(shape, dtype), error, parts)


@pytest.mark.parametrize("size", [0, -1, (2, 0), (2, 3, 4), 2.0, "2", True, (None, 1.5)])
def test_adaptive_pool_constructor_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match=message_with("ap2", "output_size must be a positive int, None or a pair",
                                                      repr(size))):
        L.AdaptiveAvgPool2d(size, name="ap2")


def test_adaptive_pool_output_shape_names_the_layer():
    with pytest.raises(xpnet.ShapeError, match=message_with("ap3", "4-D input", "(5, 5)")):
        L.AdaptiveAvgPool2d(2, name="ap3").output_shape((5, 5))


# --- Identity -------------------------------------------------------------------------------

def test_identity_returns_its_input_and_its_gradient(xp, rng):
    layer = L.Identity()
    x = xp.asarray(rng.standard_normal((2, 3, 4)))
    assert layer(x) is x
    dy = xp.asarray(rng.standard_normal((2, 3, 4)))
    assert layer.backward(dy) is dy

    def backward(d, a):
        layer.forward(a)
        return [layer.backward(d)]
    gradcheck(xp, layer.forward, backward, [rng.standard_normal((2, 5))])
    assert layer.parameters() == [] and layer.config() == {} and layer.output_shape((3, 4, 5)) == (3, 4, 5)


def test_identity_refuses_non_float_input_naming_itself(xp):
    with pytest.raises(xpnet.DTypeError, match=message_with("id1", "float32 or float64", "int32")):
        L.Identity(name="id1")(xp.asarray(numpy.ones((2, 3), numpy.int32)))


# --- Dropout2d ------------------------------------------------------------------------------

def _passes_with_one_mask(layer, seed):
    """forward(x) and backward(dy, x) for gradcheck, the generator reseeded before each forward (one mask)."""
    def forward(x):
        layer.rng = numpy.random.default_rng(seed)
        return layer.forward(x, train=True)
    return forward, lambda dy, x: (forward(x), [layer.backward(dy)])[1]


@pytest.mark.parametrize("p", [0.0, 0.4, 0.8])
def test_dropout2d_gradcheck_with_the_generator_reseeded(xp, rng, p):
    gradcheck(xp, *_passes_with_one_mask(L.Dropout2d(p), 3), [rng.standard_normal((3, 4, 2, 3))])


def test_dropout2d_zeroes_whole_channels_with_the_hosts_mask(xp):
    p = 0.5
    y = host(L.Dropout2d(p, seed=11).forward(xp.asarray(numpy.ones((16, 8, 3, 5))), train=True))
    keep = numpy.random.default_rng(11).random((16, 8), dtype=numpy.float32) >= p  # as Dropout draws its masks
    numpy.testing.assert_array_equal(y, numpy.broadcast_to(keep[:, :, None, None] / (1 - p), y.shape))
    assert 0 < keep.mean() < 1


def test_dropout2d_same_seed_same_channels_on_numpy_and_strict():
    x = numpy.ones((4, 6, 2, 2), numpy.float32)
    on_host = L.Dropout2d(0.5, seed=42).forward(x, train=True)
    numpy.testing.assert_array_equal(host(L.Dropout2d(0.5, seed=42).forward(strict.asarray(x), train=True)), on_host)
    assert not numpy.array_equal(L.Dropout2d(0.5, seed=43).forward(x, train=True), on_host)


def test_dropout2d_kept_fraction_matches_p():
    p = 0.3
    y = L.Dropout2d(p, seed=0).forward(numpy.ones((300, 200, 1, 2)), train=True)
    kept = y[:, :, 0, 0] != 0
    assert abs(kept.mean() - (1 - p)) < 5 * numpy.sqrt(p * (1 - p) / kept.size)
    numpy.testing.assert_array_equal(y[:, :, 0, 0], y[:, :, 0, 1])  # a channel is kept or dropped whole


def test_dropout2d_is_the_identity_in_evaluation_and_draws_nothing(xp, rng):
    layer = L.Dropout2d(0.9, seed=0)
    state = layer.rng.bit_generator.state
    x = rng.standard_normal((2, 3, 4, 4))
    numpy.testing.assert_array_equal(host(layer.forward(xp.asarray(x), train=False)), x)
    dy = rng.standard_normal(x.shape)
    numpy.testing.assert_array_equal(host(layer.backward(xp.asarray(dy))), dy)
    assert layer.rng.bit_generator.state == state


def test_dropout2d_config_shape_and_mask_override(rng):
    layer = L.Dropout2d(0.25)
    assert layer.config() == {"p": 0.25} and layer.parameters() == []
    assert layer.output_shape((3, 4, 5)) == (3, 4, 5)
    keep = numpy.array([[True, False], [False, True]])
    y = layer.forward(numpy.ones((2, 2, 1, 3)), train=True, mask=keep)
    numpy.testing.assert_array_equal(y[:, :, 0, 0], keep / 0.75)


@pytest.mark.parametrize("shape, dtype, error, parts, train", [
    ((4, 3, 2), numpy.float32, xpnet.ShapeError, ["d2", "4-D input (N, C, H, W)", "(4, 3, 2)"], True),
    ((4, 3, 2), numpy.float32, xpnet.ShapeError, ["d2", "4-D input (N, C, H, W)", "(4, 3, 2)"], False),
    ((4, 3, 2, 2), numpy.int64, xpnet.DTypeError, ["d2", "float32 or float64", "int64"], True),
])
def test_dropout2d_bad_input_is_rejected_and_generator_untouched(xp, rng, shape, dtype, error, parts, train):
    check_rejected(xp, L.Dropout2d(0.5, seed=0, name="d2"), rng.standard_normal((4, 3, 2, 2)).astype(numpy.float32),
                   numpy.ones(shape, dtype), error, parts, train=train)


def test_dropout2d_output_shape_names_the_layer_and_rate_is_checked():
    with pytest.raises(xpnet.ShapeError, match=message_with("d3", "4-D input", "(3, 4)")):
        L.Dropout2d(name="d3").output_shape((3, 4))
    with pytest.raises(ValueError, match=message_with("d4", "[0, 1)", "p=1.0")):
        L.Dropout2d(1.0, name="d4")


# --- every new layer in a model -------------------------------------------------------------

def new_layer_model(seed=0, device="cpu", dtype=numpy.float32):
    return xpnet.Sequential(
        L.ConvTranspose2d(1, 4, 3, stride=2, padding=1, output_padding=1), L.ReLU(), L.Dropout2d(0.25),
        L.ConvTranspose2d(4, 4, 2, groups=2, dilation=2), L.Identity(), L.AdaptiveAvgPool2d((3, 5)),
        L.Flatten(), L.Linear(4 * 3 * 5, 3), seed=seed, device=device, dtype=dtype)


def test_summary_and_state_dict_names(capsys):
    model = new_layer_model()
    text = model.summary((1, 4, 4))
    for part in ("ConvTranspose2d", "(None, 4, 8, 8)", "(None, 4, 10, 10)", "AdaptiveAvgPool2d", "(None, 4, 3, 5)",
                 "Identity", "Dropout2d"):
        assert part in text, part
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        "0.weight": (1, 4, 3, 3), "0.bias": (4,), "3.weight": (4, 2, 2, 2), "3.bias": (4,),
        "7.weight": (3, 60), "7.bias": (3,)}
    with pytest.raises(xpnet.ShapeError, match=message_with("conv_transpose2d expects 1 input channels", "(1, 4, 3, 3)",
                                                            "(2, 4, 4)")):
        model.summary((2, 4, 4))


def test_model_file_round_trip_on_every_backend(device, tmp_path, rng):
    model = new_layer_model(seed=1, device=device)
    x = rng.random((6, 1, 4, 4)).astype(numpy.float32)
    model.save(tmp_path / "new.xpnet")
    loaded = xpnet.load(tmp_path / "new.xpnet", device=device)
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    assert [layer.config() for layer in loaded.layers] == [layer.config() for layer in model.layers]
    for (name, want), got in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        numpy.testing.assert_array_equal(got, want, err_msg=name)
    numpy.testing.assert_array_equal(loaded.predict(x), model.predict(x))  # same weights, same ops


def test_checkpoint_resumes_the_dropout2d_generator(tmp_path, rng):
    x, y = rng.random((8, 1, 4, 4)).astype(numpy.float32), rng.integers(0, 3, 8)
    model = new_layer_model(seed=2).compile(optim.SGD(lr=0.01), "cross_entropy")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "ckpt.xpnet", include_optimizer=True)
    resumed = xpnet.load(tmp_path / "ckpt.xpnet")
    assert resumed.layers[2].rng.bit_generator.state == model.layers[2].rng.bit_generator.state
    ones = numpy.ones((4, 4, 2, 2), numpy.float32)
    numpy.testing.assert_array_equal(resumed.layers[2].forward(ones, train=True),
                                     model.layers[2].forward(ones, train=True))


def test_model_trains_end_to_end_and_gradients_reach_the_first_layer(rng):
    model = new_layer_model(seed=3, dtype=numpy.float64).compile(optim.SGD(lr=0.05), "cross_entropy")
    x, y = rng.random((16, 1, 4, 4)), rng.integers(0, 3, 16)
    before = model.state_dict()["0.weight"].copy()
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert numpy.all(numpy.isfinite(history.history["loss"]))
    assert not numpy.array_equal(model.state_dict()["0.weight"], before)


# --- PyTorch, where it is installed ---------------------------------------------------------

@pytest.mark.parametrize("shape, size", [((2, 3, 7, 5), (3, 2)), ((2, 3, 10, 9), 4), ((1, 2, 3, 5), (4, 7)),
                                         ((2, 2, 7, 6), (None, 4)), ((2, 2, 8, 6), (4, 3))])
def test_adaptive_pool_matches_torch(rng, shape, size):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape)
    x_t = torch.from_numpy(x).requires_grad_()
    y_t = torch.nn.AdaptiveAvgPool2d(size)(x_t)
    layer = L.AdaptiveAvgPool2d(size)
    y = layer.forward(x, train=True)
    numpy.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    y_t.backward(torch.from_numpy(dy))
    numpy.testing.assert_allclose(layer.backward(dy), x_t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_identity_and_dropout2d_behave_as_torchs():
    torch = pytest.importorskip("torch")
    x = numpy.ones((64, 16, 2, 3))
    numpy.testing.assert_array_equal(torch.nn.Identity()(torch.from_numpy(x)).numpy(), L.Identity()(x))
    net = torch.nn.Dropout2d(0.5)
    theirs = net(torch.from_numpy(x)).numpy()
    ours = L.Dropout2d(0.5, seed=0).forward(x, train=True)
    for y in (theirs, ours):  # every (n, c) map all zero or all 1 / (1 - p)
        per_channel = y.reshape(64, 16, -1)
        assert numpy.all(per_channel == per_channel[:, :, :1]) and set(numpy.unique(y)) == {0.0, 2.0}
    net.eval()
    numpy.testing.assert_array_equal(net(torch.from_numpy(x)).numpy(), L.Dropout2d(0.5).forward(x, train=False))


def test_to_torch_translates_every_new_layer(rng):
    torch = pytest.importorskip("torch")
    from benchmarks.torch_models import to_torch
    model = new_layer_model(seed=4)
    net = to_torch(model, torch).eval()
    types = [type(m).__name__ for m in net]
    assert types[:7] == ["ConvTranspose2d", "ReLU", "Dropout2d", "ConvTranspose2d", "Identity",
                         "AdaptiveAvgPool2d", "Flatten"]
    x = rng.standard_normal((5, 1, 4, 4)).astype(numpy.float32)
    with torch.no_grad():
        numpy.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), model.predict(x), rtol=1e-4, atol=1e-5)
