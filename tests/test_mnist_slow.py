"""Accuracy on real MNIST (../shared/data/mnist): marked slow; CI runs them (about ten minutes, 7 the ResNet).

The first test is issue 3's LeNet-5 + Adam, 5 epochs. Its bar is set from measurements,
not from the issue's 98.8%: with this data (22,699 training images) and recipe, PyTorch
2.13 itself reaches 98.34-98.36% after 5 epochs (98.64-98.74% after 10), and xpnet
98.00-98.18% (table below). See the README's accuracy notes.

Floors come from the spread over seeds and OpenBLAS kernels (OPENBLAS_CORETYPE; Sandybridge
with OPENBLAS_NUM_THREADS=1), not from one run: each is the lowest run less about 3 sample
standard deviations of all runs, rounded down. One test image is 0.02 points.
"""

import math
from pathlib import Path

import numpy
import pytest

import xpnet
from xpnet import optim
from xpnet.augment import RandomShift
from xpnet.models import lenet5, resnet_mnist

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist():
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"{SHARED_MNIST} is missing (CI and the dev checkout have it beside the repository)")
    return xpnet.datasets.load_mnist(SHARED_MNIST)


def train(mnist, epochs, lr, batch_size=64, augment=None, seed=0):
    (x, y), (x_test, y_test) = mnist
    steps = epochs * math.ceil(len(x) / batch_size)
    model = lenet5(seed=seed).compile(optim.Adam(lr=optim.CosineDecay(lr, total_steps=steps)),
                                      "cross_entropy", ["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, augment=augment)
    return model, history, model.evaluate(x_test, y_test)


def test_shared_mnist_has_the_documented_size(mnist):
    (x, y), (x_test, y_test) = mnist
    assert x.shape == (22699, 1, 28, 28) and x_test.shape == (5000, 1, 28, 28)
    assert numpy.bincount(y, minlength=10).min() > 1900


def test_lenet5_adam_five_epochs(mnist):
    """5 epochs, Adam 3e-3 cosine, no augmentation. Test accuracy (%), measured on d95767a:

        seed  Haswell  Sandybridge/1 thread  SkylakeX
        0     98.08    98.14                 98.08
        1     98.14    98.00                 98.18
        2     98.00    98.08                 98.18

    Lowest 98.00, sample std 0.07: floor 97.8 (min - 2.9 std; the lowest run clears it by 10
    images). The loss fell 22.8-28.6x over the 5 epochs in these runs; the test asks for 5x."""
    _, history, result = train(mnist, epochs=5, lr=3e-3)
    assert history["loss"][-1] < history["loss"][0] / 5
    assert result["accuracy"] >= 0.978, result


def test_lenet5_with_the_xpnet_train_recipe(mnist):
    """The defaults of `xpnet train` (16 epochs, batch 64, Adam 2e-3 cosine, random 2-pixel shifts).
    Test accuracy (%), measured on d95767a:

        seed  Haswell  Sandybridge/1 thread  SkylakeX
        0     98.52    98.46                 98.52
        1     98.82    98.74                 98.84
        2     98.62    98.60                 98.48
        3     98.76    98.54                 98.54

    Mean 98.62, sample std 0.14, lowest 98.46, so issue 3's 98.5% is the typical result, not a
    guaranteed one (2 of these 12 runs fall short of it). Floor 98.0 (min - 3.4 std, rounded down)."""
    _, _, result = train(mnist, epochs=16, lr=2e-3, augment=RandomShift(2))
    assert result["accuracy"] >= 0.980, result


def test_resnet_mnist_reaches_99_percent(mnist):
    """xpnet.models.resnet_mnist with `examples/resnet_mnist.py`'s recipe (8 epochs, batch 64, Adam
    2e-3 cosine, random 2-pixel shifts): measured 99.24% (seed 0, AMD EPYC, default OpenBLAS
    kernels; 2026-12-02).  One run only, so the floor keeps the LeNet-5 recipe's margin below it
    (3 standard deviations of its spread over seeds and kernels, 0.135 points, rounded down): 98.8%.
    About 7 minutes on 2 cores."""
    (x, y), (x_test, y_test) = mnist
    steps = 8 * math.ceil(len(x) / 64)
    model = resnet_mnist(seed=0).compile(optim.Adam(lr=optim.CosineDecay(2e-3, total_steps=steps)),
                                         "cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=8, batch_size=64, verbose=0, augment=RandomShift(2))
    result = model.evaluate(x_test, y_test)
    assert result["accuracy"] >= 0.988, result
