"""Flatten and Upsample."""

from __future__ import annotations

import math
from typing import Any

from ..backend import Array
from ..errors import ShapeError
from ..ops._args import IntPair, as_pair, check_float
from ..ops.reshape import flatten_backward, flatten_forward, upsample2d_backward, upsample2d_forward
from .base import Layer, Shape


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ShapeError(f"{self.name} expects input (N, ...) with at least 2 axes, "
                             f"got per-sample shape {tuple(input_shape)}")
        return (math.prod(input_shape),)

    def forward(self, x: Array, train: bool = False) -> Array:
        check_float(x, f"{self.name} input")
        if x.ndim < 2:
            raise ShapeError(f"{self.name} expects input (N, ...) with at least 2 axes, got shape {tuple(x.shape)}")
        y, self._cache = flatten_forward(x)
        return y

    def backward(self, dy: Array) -> Array:
        return flatten_backward(dy, self._cached())


class Upsample(Layer):
    """Nearest-neighbour upsampling by an integer factor per axis: (N, C, H, W) -> (N, C, H*SH, W*SW)."""

    def __init__(self, scale_factor: IntPair = 2, mode: str = "nearest", name: str | None = None) -> None:
        super().__init__(name)
        if mode != "nearest":
            raise ValueError(f"{self.name}: only mode='nearest' is supported; received mode={mode!r}")
        try:
            self.scale_factor = as_pair(scale_factor, "scale_factor")
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(input_shape, 3, "C, H, W")
        C, H, W = input_shape
        return (C, H * self.scale_factor[0], W * self.scale_factor[1])

    def forward(self, x: Array, train: bool = False) -> Array:
        check_float(x, f"{self.name} input")
        if x.ndim != 4:
            raise ShapeError(f"{self.name} expects 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        y, self._cache = upsample2d_forward(x, self.scale_factor)
        return y

    def backward(self, dy: Array) -> Array:
        return upsample2d_backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        return {"scale_factor": list(self.scale_factor), "mode": "nearest"}
