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


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[L.Layer]:
    """conv (no bias: the batch norm's shift replaces it), then batch norm: torchvision's pattern."""
    return [L.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            L.BatchNorm2d(c_out)]


def basic_block(c_in: int, c_out: int, stride: int = 1) -> L.Residual:
    """ResNet's basic block: two 3x3 conv-bn pairs with a ReLU between, plus a shortcut that is the
    identity, or a strided 1x1 conv-bn projection when the shape changes.  ReLU after the sum is
    the caller's next layer (as in torchvision)."""
    body = L.Sequential(*_conv_bn(c_in, c_out, 3, stride), L.ReLU(), *_conv_bn(c_out, c_out, 3))
    shortcut = None if stride == 1 and c_in == c_out else L.Sequential(*_conv_bn(c_in, c_out, 1, stride))
    return L.Residual(body, shortcut)


def resnet_mnist(seed: int | None = 0, device: str | Device = "cpu", dtype: Any = "float32",
                 widths: tuple[int, int, int] = (16, 32, 64)) -> Sequential:
    """A small ResNet for 1x28x28 inputs and 10 classes (about 0.2 M parameters).

    stem: conv 3x3 1->16, bn, relu; three stages of two basic blocks (16 at 28x28; 32 at 14x14 and
    64 at 7x7, each stage opened by a stride-2 block with a projection shortcut); global average
    pooling; linear 64->10.  Children of the model: 0-2 stem, 3-8 blocks each followed by a ReLU
    (odd indices 4, 6, ...), then pooling, flatten and the classifier.
    """
    a, b, c = widths
    stages = [(a, a, 1), (a, a, 1), (a, b, 2), (b, b, 1), (b, c, 2), (c, c, 1)]
    blocks = [layer for c_in, c_out, stride in stages for layer in (basic_block(c_in, c_out, stride), L.ReLU())]
    return Sequential(*_conv_bn(1, a, 3), L.ReLU(), *blocks, L.GlobalAvgPool2d(), L.Flatten(), L.Linear(c, 10),
                      seed=seed, device=device, dtype=dtype)


def separable_block(c_in: int, c_out: int, stride: int = 1) -> L.Sequential:
    """MobileNet's depthwise-separable block: a 3x3 depthwise conv (``groups=c_in``), bn, relu, then
    a 1x1 pointwise conv, bn, relu."""
    return L.Sequential(*_conv_bn(c_in, c_in, 3, stride, groups=c_in), L.ReLU(), *_conv_bn(c_in, c_out, 1), L.ReLU())


def mobilenet_mnist(seed: int | None = 0, device: str | Device = "cpu", dtype: Any = "float32") -> Sequential:
    """A small MobileNet (v1 style) for 1x28x28 inputs and 10 classes: conv 3x3 1->16, bn, relu, then
    depthwise-separable blocks 16->32, 32->64 (stride 2, 14x14), 64->64, 64->128 (stride 2, 7x7),
    128->128, global average pooling, dropout 0.2 and linear 128->10 (about 40 k parameters)."""
    blocks = [separable_block(16, 32), separable_block(32, 64, 2), separable_block(64, 64),
              separable_block(64, 128, 2), separable_block(128, 128)]
    return Sequential(*_conv_bn(1, 16, 3), L.ReLU(), *blocks, L.GlobalAvgPool2d(), L.Flatten(), L.Dropout(0.2),
                      L.Linear(128, 10), seed=seed, device=device, dtype=dtype)


MODELS = {"lenet5": lenet5, "resnet": resnet_mnist, "mobilenet": mobilenet_mnist}
