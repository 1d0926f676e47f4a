"""Layers: stateful wrappers around the ops, with PyTorch names and weight shapes."""

from .activation import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .adaptive_pool import AdaptiveAvgPool2d
from .base import Layer
from .batchnorm import BatchNorm2d
from .containers import Concat, Residual, Sequential
from .conv import Conv2d
from .conv_transpose import ConvTranspose2d
from .dropout import Dropout
from .dropout2d import Dropout2d
from .identity import Identity
from .linear import Linear
from .norm import BatchNorm1d, GroupNorm, LayerNorm
from .pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d, MinPool2d
from .reshape import Flatten, Upsample

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Concat", "Conv2d", "ConvTranspose2d", "Dropout",
    "Dropout2d", "Flatten", "GELU", "GlobalAvgPool2d", "GroupNorm", "Identity", "Layer", "LayerNorm", "LeakyReLU",
    "Linear", "MaxPool2d", "MinPool2d", "ReLU", "Residual", "Sequential", "Sigmoid", "Softmax", "Tanh", "Upsample",
]
