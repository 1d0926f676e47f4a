"""Ready-made architectures."""

from __future__ import annotations

from typing import Any

from . import layers as L
from .backend import Device
from .training import Sequential


def lenet5(seed: int | None = 0, device: str | Device = "cpu", dtype: Any = "float32") -> Sequential:
    """LeNet-5 for 1x28x28 inputs and 10 classes (ReLU and max pooling, as in modern tutorials).

    conv 1->6 k5 p2, relu, maxpool 2, conv 6->16 k5, relu, maxpool 2, linear 400->120->84->10.
    """
    return Sequential(
        L.Conv2d(1, 6, kernel_size=5, padding=2), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(6, 16, kernel_size=5), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(16 * 5 * 5, 120), L.ReLU(),
        L.Linear(120, 84), L.ReLU(),
        L.Linear(84, 10),
        seed=seed, device=device, dtype=dtype,
    )
