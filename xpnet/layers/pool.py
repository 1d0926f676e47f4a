"""Pooling layers: MaxPool2d, MinPool2d, AvgPool2d and GlobalAvgPool2d."""

from __future__ import annotations

from typing import Any

from ..backend import Array
from ..ops import pool as P
from ..ops._args import IntPair
from ..ops.im2col import output_hw
from .base import Layer, Shape


class _Pool2d(Layer):
    """Shared geometry and checks of the windowed pooling layers."""

    def sample_shape(self) -> tuple[int | None, ...]:
        return (None, None, None)

    _forward = staticmethod(P.max_pool2d_forward)
    _backward = staticmethod(P.max_pool2d_backward)

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
                 name: str | None = None) -> None:
        super().__init__(name)
        try:
            self.kernel_size, self.stride, pads = P.pool_geometry(kernel_size, stride, padding, self.name)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith(self.name) else f"{self.name}: {message}") from None
        self.padding = (pads[0][0], pads[1][0])
        self._pads = pads

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(input_shape, 3, "C, H, W")
        return (input_shape[0], *output_hw(tuple(input_shape[1:]), self.kernel_size, self.stride,
                                           self._pads, who=self.name))

    def _check(self, x: Array) -> None:
        P.check_pool_input(x, self.name)
        output_hw(tuple(x.shape[2:]), self.kernel_size, self.stride, self._pads, who=self.name)

    def forward(self, x: Array, train: bool = False) -> Array:
        self._check(x)
        y, self._cache = self._forward(x, self.kernel_size, self.stride, self.padding, need_backward=train)
        return y

    def backward(self, dy: Array) -> Array:
        return self._backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}


class MaxPool2d(_Pool2d):
    """Max over each window; padding is -inf, so it never wins."""


class MinPool2d(_Pool2d):
    """Min over each window; padding is +inf, so it never wins."""

    _forward = staticmethod(P.min_pool2d_forward)
    _backward = staticmethod(P.min_pool2d_backward)


class AvgPool2d(_Pool2d):
    """Mean over each window; padded zeros count unless ``count_include_pad=False``."""

    _backward = staticmethod(P.avg_pool2d_backward)

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
                 count_include_pad: bool = True, name: str | None = None) -> None:
        super().__init__(kernel_size, stride, padding, name)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x: Array, train: bool = False) -> Array:
        self._check(x)
        y, self._cache = P.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                              self.count_include_pad)
        return y

    def config(self) -> dict[str, Any]:
        return {**super().config(), "count_include_pad": self.count_include_pad}


class GlobalAvgPool2d(Layer):
    """Mean over H and W: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with ``keepdims``."""

    def sample_shape(self) -> tuple[int | None, ...]:
        return (None, None, None)

    def __init__(self, keepdims: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self.keepdims = bool(keepdims)

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(input_shape, 3, "C, H, W")
        return (input_shape[0], 1, 1) if self.keepdims else (input_shape[0],)

    def forward(self, x: Array, train: bool = False) -> Array:
        P.check_pool_input(x, self.name)
        y, self._cache = P.global_avg_pool2d_forward(x, self.keepdims)
        return y

    def backward(self, dy: Array) -> Array:
        return P.global_avg_pool2d_backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        return {"keepdims": self.keepdims}
