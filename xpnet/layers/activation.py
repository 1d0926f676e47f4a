"""Activation layers: ReLU, LeakyReLU, Sigmoid, Tanh, Softmax and GELU (any input shape)."""

from __future__ import annotations

import math
from typing import Any

from ..backend import Array
from ..errors import ShapeError
from ..ops import activation as A
from ..ops._args import check_float
from .base import Layer, Shape


class _Activation(Layer):
    """An elementwise op pair without parameters."""

    _forward = staticmethod(A.relu_forward)
    _backward = staticmethod(A.relu_backward)

    def _args(self) -> tuple:
        return ()

    def forward(self, x: Array, train: bool = False) -> Array:
        check_float(x, f"{self.name} input")
        y, self._cache = self._forward(x, *self._args())
        return y

    def backward(self, dy: Array) -> Array:
        return self._backward(dy, self._cached())


class ReLU(_Activation):
    """max(x, 0)."""


class LeakyReLU(_Activation):
    """x for x > 0, negative_slope * x otherwise."""

    _forward = staticmethod(A.leaky_relu_forward)
    _backward = staticmethod(A.leaky_relu_backward)

    def __init__(self, negative_slope: float = 0.01, name: str | None = None) -> None:
        super().__init__(name)
        if (not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool)
                or not math.isfinite(negative_slope)):
            raise ValueError(f"{self.name}: negative_slope must be a finite number; received {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _args(self) -> tuple:
        return (self.negative_slope,)

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    _forward = staticmethod(A.sigmoid_forward)
    _backward = staticmethod(A.sigmoid_backward)


class Tanh(_Activation):
    """tanh(x)."""

    _forward = staticmethod(A.tanh_forward)
    _backward = staticmethod(A.tanh_backward)


class GELU(_Activation):
    """x * Phi(x) (``approximate="tanh"`` for the tanh form)."""

    _forward = staticmethod(A.gelu_forward)
    _backward = staticmethod(A.gelu_backward)

    def __init__(self, approximate: str = "none", name: str | None = None) -> None:
        super().__init__(name)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"{self.name}: approximate must be 'none' or 'tanh'; received {approximate!r}")
        self.approximate = approximate

    def _args(self) -> tuple:
        return (self.approximate,)

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


class Softmax(_Activation):
    """exp(x) / sum(exp(x)) along ``axis`` (1, the class/channel axis, by default)."""

    _forward = staticmethod(A.softmax_forward)
    _backward = staticmethod(A.softmax_backward)

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"{self.name}: axis must be an int; received {axis!r}")
        self.axis = axis

    def _check_axis(self, ndim: int, shape: str) -> None:
        if not -ndim <= self.axis < ndim:
            raise ShapeError(f"{self.name}: axis {self.axis} is out of range for {shape}")

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_axis(len(input_shape) + 1, f"per-sample shape {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: Array, train: bool = False) -> Array:
        self._check_axis(x.ndim, f"input shape {tuple(x.shape)}")
        return super().forward(x, train)

    def _args(self) -> tuple:
        return (self.axis,)

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}
