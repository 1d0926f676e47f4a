"""Dropout layer: fixed-mask gradients, seeded masks on every device, evaluation identity, bad inputs."""

import numpy
import pytest

import xpnet
from tests.helpers import gradcheck, host
from tests.layers.test_base import check_rejected, message_with
from tests.strict_backend import strict
from xpnet.layers import Dropout


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.9])
def test_gradcheck_with_a_fixed_mask(xp, rng, p):
    layer = Dropout(p)
    mask = xp.asarray(rng.random((3, 4, 5)) >= p)

    def forward(x):
        return layer.forward(x, train=True, mask=mask)

    def backward(dy, x):
        forward(x)
        return [layer.backward(dy)]
    gradcheck(xp, forward, backward, [rng.standard_normal((3, 4, 5))])


def test_gradcheck_with_the_layer_generator_reseeded(xp, rng):
    layer = Dropout(0.4)

    def forward(x):
        layer.rng = numpy.random.default_rng(3)
        return layer.forward(x, train=True)

    def backward(dy, x):
        forward(x)
        return [layer.backward(dy)]
    gradcheck(xp, forward, backward, [rng.standard_normal((2, 3, 4))])


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_training_output_is_input_times_scaled_mask(xp, rng, dtype):
    p = 0.25
    x = rng.standard_normal((4, 6)).astype(dtype)
    keep = rng.random((4, 6)) >= p
    y = host(Dropout(p).forward(xp.asarray(x), train=True, mask=xp.asarray(keep)))
    assert y.dtype == dtype
    numpy.testing.assert_allclose(y, numpy.where(keep, x / (1 - p), 0), rtol=1e-6 if dtype == numpy.float32 else 1e-15)


def test_same_seed_gives_the_same_mask_on_numpy_and_strict():
    x = numpy.ones((4, 3, 5, 5), numpy.float32)
    on_host = Dropout(0.5, seed=42).forward(x, train=True)
    on_device = Dropout(0.5, seed=42).forward(strict.asarray(x), train=True)
    numpy.testing.assert_array_equal(host(on_device), on_host)
    other_seed = Dropout(0.5, seed=43).forward(x, train=True)
    assert not numpy.array_equal(other_seed, on_host)


def test_successive_training_calls_draw_new_masks():
    layer = Dropout(0.5, seed=0)
    x = numpy.ones((8, 8))
    assert not numpy.array_equal(layer.forward(x, train=True), layer.forward(x, train=True))


def test_reset_parameters_with_the_same_generator_seed_is_reproducible():
    a, b = Dropout(0.5, seed=1), Dropout(0.5, seed=2)
    a.reset_parameters(numpy.random.default_rng(7))
    b.reset_parameters(7)
    x = numpy.ones((6, 6))
    numpy.testing.assert_array_equal(a.forward(x, train=True), b.forward(x, train=True))


@pytest.mark.parametrize("p", [0.0, 0.5, 0.99])
def test_evaluation_is_the_identity(xp, rng, p):
    layer = Dropout(p, seed=0)
    x = rng.standard_normal((3, 4))
    state = layer.rng.bit_generator.state
    y = layer.forward(xp.asarray(x), train=False)
    numpy.testing.assert_array_equal(host(y), x)
    dy = rng.standard_normal((3, 4))
    numpy.testing.assert_array_equal(host(layer.backward(xp.asarray(dy))), dy)
    assert layer.rng.bit_generator.state == state, "evaluation drew random numbers"


def test_p_zero_is_the_identity_in_training(rng):
    x = rng.standard_normal((3, 4))
    numpy.testing.assert_array_equal(Dropout(0.0, seed=0).forward(x, train=True), x)


def test_kept_fraction_and_mean_match_p():
    p = 0.3
    y = Dropout(p, seed=0).forward(numpy.ones((200, 500)), train=True)
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 5 * numpy.sqrt(p * (1 - p) / y.size)
    numpy.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-15)
    assert abs(y.mean() - 1) < 0.01


def test_backward_uses_the_mask_of_the_last_forward(rng):
    layer = Dropout(0.5, seed=0)
    y = layer.forward(numpy.ones((5, 5)), train=True)
    dy = rng.standard_normal((5, 5))
    numpy.testing.assert_array_equal(layer.backward(dy), dy * y)


def test_no_parameters_and_identity_output_shape():
    layer = Dropout(0.2)
    assert layer.parameters() == [] and layer.num_parameters() == 0
    assert layer.output_shape((3, 4, 5)) == (3, 4, 5)
    assert layer.config() == {"p": 0.2}


@pytest.mark.parametrize("dtype, name", [(numpy.int64, "int64"), (numpy.bool_, "bool"), (numpy.float16, "float16")])
@pytest.mark.parametrize("train", [True, False])
def test_non_float_input_is_rejected_and_generator_untouched(xp, rng, dtype, name, train):
    check_rejected(xp, Dropout(0.5, seed=0, name="drop1"), rng.standard_normal((3, 4)).astype(numpy.float32),
                   numpy.ones((3, 4), dtype), xpnet.DTypeError, ["drop1", "float32 or float64", name], train=train)


def test_mask_of_the_wrong_shape_is_rejected(xp):
    layer = Dropout(0.5)
    with pytest.raises(xpnet.ShapeError, match=message_with("mask shape (3, 3)", "(3, 4)")):
        layer.forward(xp.asarray(numpy.ones((3, 4))), train=True, mask=xp.asarray(numpy.ones((3, 3), bool)))


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, "0.5", None, True, float("nan")])
def test_constructor_rejects_bad_rates(p):
    with pytest.raises(ValueError, match=message_with("drop_x", "[0, 1)", f"p={p!r}")):
        Dropout(p, name="drop_x")
