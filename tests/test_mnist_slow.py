"""Accuracy on real MNIST (../shared/data/mnist): marked slow; CI runs them (about two minutes).

The first test is issue 3's LeNet-5 + Adam, 5 epochs. Its bar is set from measurements,
not from the issue's 98.8%: with this data (22,699 training images) and recipe, PyTorch
2.13 itself reaches 98.34-98.36% after 5 epochs (98.64-98.74% after 10), and xpnet
98.10-98.16% (two seeds). See the README's accuracy notes.
"""

import math
from pathlib import Path

import numpy
import pytest

import xpnet
from xpnet import optim
from xpnet.augment import RandomShift
from xpnet.models import lenet5

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
    _, history, result = train(mnist, epochs=5, lr=3e-3)
    assert history["loss"][-1] < history["loss"][0] / 5
    assert result["accuracy"] >= 0.978, result


def test_lenet5_with_the_xpnet_train_recipe(mnist):
    """The defaults of `xpnet train` (16 epochs, batch 64, Adam 2e-3 cosine, random 2-pixel shifts)
    reach issue 3's 98.5%: measured 98.64% (seed 0; seeds 1 and 2: 98.94%, 98.70%)."""
    _, _, result = train(mnist, epochs=16, lr=2e-3, augment=RandomShift(2))
    assert result["accuracy"] >= 0.985, result
