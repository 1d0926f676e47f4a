"""Host-side augmentation: RandomShift and fit(augment=...)."""

import numpy
import pytest

import xpnet
from tests.helpers import host
from xpnet import layers as L
from xpnet.augment import RandomShift


def shift_reference(image, dy, dx):
    """Loop reference: out[c, i, j] = image[c, i - dy, j - dx], zero outside."""
    C, H, W = image.shape
    out = numpy.zeros_like(image)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                if 0 <= i - dy < H and 0 <= j - dx < W:
                    out[c, i, j] = image[c, i - dy, j - dx]
    return out


@pytest.mark.parametrize("max_shift", [1, 2, 3])
def test_each_image_is_a_whole_shift_of_itself_within_range(rng, max_shift):
    images = rng.random((16, 2, 7, 9)).astype(numpy.float32) + 1  # no zeros: every pixel is traceable
    out = RandomShift(max_shift)(images, numpy.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    seen = set()
    for image, shifted in zip(images, out):
        matches = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)
                   if numpy.array_equal(shifted, shift_reference(image, dy, dx))]
        assert len(matches) == 1, "each output must be exactly one shift of its input"
        seen.add(matches[0])
    assert len(seen) > 3, "offsets must vary from image to image"


def test_offsets_cover_the_whole_range_uniformly():
    image = numpy.zeros((1, 1, 9, 9), numpy.float32)
    image[0, 0, 4, 4] = 1
    batch = numpy.repeat(image, 2500, axis=0)
    out = RandomShift(2)(batch, numpy.random.default_rng(1))
    rows, cols = numpy.nonzero(out[:, 0])[1:]
    counts = numpy.bincount((rows - 2) * 5 + (cols - 2), minlength=25)
    assert counts.min() > 50 and counts.max() < 150  # 25 offsets, 100 expected each


def test_same_generator_state_gives_the_same_shifts(rng):
    images = rng.random((8, 1, 6, 6))
    first = RandomShift(2)(images, numpy.random.default_rng(5))
    assert numpy.array_equal(first, RandomShift(2)(images, numpy.random.default_rng(5)))
    assert not numpy.array_equal(first, RandomShift(2)(images, numpy.random.default_rng(6)))


def test_input_is_not_modified_and_zero_shift_is_identity(rng):
    images = rng.random((4, 1, 5, 5))
    copy = images.copy()
    RandomShift(2)(images, numpy.random.default_rng(0))
    assert numpy.array_equal(images, copy)
    assert RandomShift(0)(images, numpy.random.default_rng(0)) is images


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_max_shift_is_rejected(bad):
    with pytest.raises(ValueError, match="max_shift must be a non-negative int"):
        RandomShift(bad)


def test_non_image_batch_is_rejected():
    with pytest.raises(ValueError, match=r"expects images \(N, C, H, W\), got shape \(4, 5\)"):
        RandomShift(1)(numpy.zeros((4, 5)), numpy.random.default_rng(0))


def _model(device):
    return xpnet.Sequential(L.Conv2d(1, 4, 3), L.ReLU(), L.Flatten(), L.Linear(4 * 6 * 6, 3),
                            seed=0, device=device).compile("adam", "cross_entropy", ["accuracy"])


def test_fit_applies_augment_to_training_batches_only(device, rng):
    x = rng.random((40, 1, 8, 8)).astype(numpy.float32)
    y = rng.integers(0, 3, 40)
    seen = []

    def spy(images, generator):
        assert isinstance(images, numpy.ndarray) and isinstance(generator, numpy.random.Generator)
        seen.append(len(images))
        return RandomShift(1)(images, generator)

    model = _model(device)
    model.fit(x, y, epochs=2, batch_size=16, validation_data=(x[:10], y[:10]), augment=spy, verbose=0)
    assert seen == [16, 16, 8] * 2  # every training batch, no validation batch


def test_augmented_fit_is_reproducible_and_differs_from_plain_fit(device, rng):
    x = rng.random((48, 1, 8, 8)).astype(numpy.float32)
    y = rng.integers(0, 3, 48)
    runs = []
    for augment in (RandomShift(1), RandomShift(1), None):
        model = _model(device)
        model.fit(x, y, epochs=2, batch_size=16, augment=augment, verbose=0)
        runs.append(host(model.parameters()[0].value))
    assert numpy.array_equal(runs[0], runs[1])
    assert not numpy.array_equal(runs[0], runs[2])
