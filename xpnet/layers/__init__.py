"""Layers: stateful wrappers around the ops, with PyTorch names and weight shapes."""

from .activation import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .batchnorm import BatchNorm2d
from .containers import Concat, Residual, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d, MinPool2d
from .reshape import Flatten, Upsample

__all__ = [
    "AvgPool2d", "BatchNorm2d", "Concat", "Conv2d", "Dropout", "Flatten", "GELU", "GlobalAvgPool2d", "Layer",
    "LeakyReLU", "Linear", "MaxPool2d", "MinPool2d", "ReLU", "Residual", "Sequential", "Sigmoid", "Softmax", "Tanh",
    "Upsample",
]
