"""Seeded host initialisers: shapes, dtypes, fans, distributions and the name registry."""

import math

import numpy
import pytest

from xpnet import initializers as I

RANDOM = ["kaiming_uniform", "kaiming_normal", "glorot_uniform", "glorot_normal"]
CONV_SHAPE = (64, 32, 3, 3)   # fan_in 288, fan_out 576; 18432 values
LINEAR_SHAPE = (300, 200)     # fan_in 200, fan_out 300; 60000 values


@pytest.mark.parametrize("shape, fans", [
    ((16, 6, 5, 5), (150, 400)),
    ((6, 1, 5, 5), (25, 150)),
    ((8, 2, 3, 1), (6, 24)),       # a grouped conv's weight holds C_in / groups
    ((120, 400), (400, 120)),
    ((10,), (10, 10)),
    ((), (1, 1)),
])
def test_fans_of_conv_and_linear_weights(shape, fans):
    assert I.fans(shape) == fans


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("name", sorted(I.INITIALIZERS))
@pytest.mark.parametrize("shape", [(4, 3, 2, 2), (5, 7), (3,)])
def test_shape_and_dtype(name, shape, dtype):
    values = I.get_initializer(name)(shape, numpy.random.default_rng(0), dtype)
    assert isinstance(values, numpy.ndarray) and values.shape == shape and values.dtype == dtype
    assert numpy.all(numpy.isfinite(values))


@pytest.mark.parametrize("name", RANDOM)
def test_default_dtype_is_float32(name):
    assert I.get_initializer(name)((3, 4), numpy.random.default_rng(0)).dtype == numpy.float32


def _expected_std(name, shape):
    fan_in, fan_out = I.fans(shape)
    return math.sqrt(2 / fan_in) if name.startswith("kaiming") else math.sqrt(2 / (fan_in + fan_out))


@pytest.mark.parametrize("shape", [CONV_SHAPE, LINEAR_SHAPE], ids=["conv", "linear"])
@pytest.mark.parametrize("name", RANDOM)
def test_empirical_mean_and_std_match_the_formula(name, shape):
    values = I.get_initializer(name)(shape, numpy.random.default_rng(123), numpy.float64)
    n, std = values.size, _expected_std(name, shape)
    # std of the sample std is about std / sqrt(2n) (normal) or less (uniform): 6 sigma margins
    assert abs(values.mean()) < 6 * std / math.sqrt(n)
    assert abs(values.std() / std - 1) < 6 / math.sqrt(2 * n)


@pytest.mark.parametrize("shape", [CONV_SHAPE, LINEAR_SHAPE], ids=["conv", "linear"])
@pytest.mark.parametrize("name", ["kaiming_uniform", "glorot_uniform"])
def test_uniform_initialisers_fill_their_bound(name, shape):
    bound = math.sqrt(3) * _expected_std(name, shape)  # sqrt(6 / fan_in), sqrt(6 / (fan_in + fan_out))
    values = I.get_initializer(name)(shape, numpy.random.default_rng(7), numpy.float64)
    assert numpy.abs(values).max() <= bound
    assert numpy.abs(values).max() > bound * (1 - 1e-3)
    # uniform: a quarter of the values in each quarter of [-b, b]
    counts, _ = numpy.histogram(values, bins=4, range=(-bound, bound))
    assert numpy.all(numpy.abs(counts / values.size - 0.25) < 0.02)


@pytest.mark.parametrize("shape", [CONV_SHAPE, LINEAR_SHAPE], ids=["conv", "linear"])
@pytest.mark.parametrize("name", ["kaiming_normal", "glorot_normal"])
def test_normal_initialisers_are_gaussian(name, shape):
    std = _expected_std(name, shape)
    values = I.get_initializer(name)(shape, numpy.random.default_rng(8), numpy.float64)
    within_one = numpy.mean(numpy.abs(values) < std)   # 0.6827 for a normal, 0.577 for a uniform
    within_two = numpy.mean(numpy.abs(values) < 2 * std)  # 0.9545
    assert abs(within_one - 0.6827) < 0.02 and abs(within_two - 0.9545) < 0.01


def test_kaiming_depends_on_fan_in_only_and_glorot_on_both():
    gen = numpy.random.default_rng
    a = I.kaiming_normal((10, 50), gen(0), numpy.float64)
    b = I.kaiming_normal((1000, 50), gen(0), numpy.float64)
    numpy.testing.assert_array_equal(a, b[:10])
    c = I.glorot_normal((1000, 50), gen(0), numpy.float64)
    numpy.testing.assert_allclose(c / b, math.sqrt(50 / 1050), rtol=1e-12)


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_values_and_different_seeds_differ(name):
    init = I.get_initializer(name)
    a = init((6, 5), numpy.random.default_rng(3), numpy.float32)
    b = init((6, 5), numpy.random.default_rng(3), numpy.float32)
    c = init((6, 5), numpy.random.default_rng(4), numpy.float32)
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(a, c)


@pytest.mark.parametrize("name", RANDOM)
def test_float32_values_are_the_rounded_float64_draw(name):
    init = I.get_initializer(name)
    wide = init((7, 3), numpy.random.default_rng(5), numpy.float64)
    narrow = init((7, 3), numpy.random.default_rng(5), numpy.float32)
    numpy.testing.assert_array_equal(narrow, wide.astype(numpy.float32))


def test_generator_advances_between_draws():
    gen = numpy.random.default_rng(0)
    assert not numpy.array_equal(I.glorot_uniform((4, 4), gen), I.glorot_uniform((4, 4), gen))


def test_zeros_and_ones_ignore_the_generator():
    numpy.testing.assert_array_equal(I.zeros((2, 3)), numpy.zeros((2, 3), numpy.float32))
    numpy.testing.assert_array_equal(I.ones((4,), None, numpy.float64), numpy.ones(4))
    assert I.ones((4,), None, numpy.float64).dtype == numpy.float64


def test_get_initializer_by_name_and_callable_pass_through():
    assert I.get_initializer("glorot_uniform") is I.glorot_uniform

    def custom(shape, rng, dtype=numpy.float32):
        return numpy.full(shape, 0.5, dtype)
    assert I.get_initializer(custom) is custom


@pytest.mark.parametrize("name", ["he_normal", "Kaiming_Uniform", "", "xavier"])
def test_unknown_initializer_name_lists_the_available_ones(name):
    with pytest.raises(ValueError, match=f"Unknown initializer {name!r}") as info:
        I.get_initializer(name)
    for known in I.INITIALIZERS:
        assert known in str(info.value)
