"""Conv2d: 2-D convolution layer with PyTorch's weight layout (C_out, C_in/groups, KH, KW)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy

from ..backend import Array
from ..errors import ShapeError
from ..initializers import get_initializer
from ..ops._args import IntPair, Padding, as_pair, check_padding, resolve_pads
from ..ops.conv import DEFAULT_WORKSPACE_BYTES, check_conv_input, conv2d_backward, conv2d_forward
from ..ops.im2col import output_hw
from ..parameter import Parameter
from .base import Layer, Shape, as_rng, draw_into, float_dtype, new_parameter, positive_int


def _plain_padding(padding: Padding) -> Padding:
    """A validated padding with Python ints and tuples only (numpy integers and lists converted)."""
    if isinstance(padding, str):
        return padding
    if isinstance(padding, numbers.Integral):
        return int(padding)
    return tuple(_plain_padding(side) for side in padding)  # type: ignore[return-value]


class Conv2d(Layer):
    """2-D convolution: (N, in_channels, H, W) -> (N, out_channels, OH, OW).

    ``padding``: int, pair, "valid" or "same" (TensorFlow's rule, any stride).
    Weights default to Kaiming-uniform (suited to ReLU), biases to zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
                 groups: int = 1, bias: bool = True, weight_init: str = "kaiming_uniform",
                 bias_init: str = "zeros", dtype: Any = numpy.float32,
                 seed: numpy.random.Generator | int | None = None, name: str | None = None,
                 max_workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> None:
        super().__init__(name)
        who = self.name
        self.in_channels = positive_int(in_channels, "in_channels", who)
        self.out_channels = positive_int(out_channels, "out_channels", who)
        self.groups = positive_int(groups, "groups", who)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{who}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        try:
            self.kernel_size = as_pair(kernel_size, "kernel_size")
            self.stride = as_pair(stride, "stride")
            self.dilation = as_pair(dilation, "dilation")
            check_padding(padding)
        except ValueError as exc:
            raise ValueError(f"{who}: {exc}") from None
        self.padding = _plain_padding(padding)
        self.max_workspace_bytes = positive_int(max_workspace_bytes, "max_workspace_bytes", who)
        self.weight_init, self.bias_init = get_initializer(weight_init), get_initializer(bias_init)
        dtype = float_dtype(dtype, self.name)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = new_parameter(shape, dtype, "weight")
        self.bias = new_parameter((self.out_channels,), dtype, "bias") if bias else None
        self.reset_parameters(seed)

    def sample_shape(self) -> tuple[int | None, ...]:
        return (self.in_channels, None, None)

    def own_variables(self) -> list[Parameter]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        rng = as_rng(rng)
        draw_into(self.weight, self.weight_init, rng)
        if self.bias is not None:
            draw_into(self.bias, self.bias_init, rng)

    def _out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        pads = resolve_pads(self.padding, hw, self.kernel_size, self.stride, self.dilation)
        return output_hw(hw, self.kernel_size, self.stride, pads, self.dilation, who=self.name)

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(input_shape, 3, "C, H, W")
        if input_shape[0] != self.in_channels:
            raise self._channel_error(input_shape)
        return (self.out_channels, *self._out_hw(tuple(input_shape[1:])))

    def _channel_error(self, shape: Shape) -> Exception:
        return ShapeError(f"{self.name} expects {self.in_channels} input channels (weight shape "
                          f"{self.weight.shape}), got per-sample shape {tuple(shape)}")

    def forward(self, x: Array, train: bool = False) -> Array:
        check_conv_input(x, self.weight.shape, self.groups, who=self.name)
        self._check_dtype(x)
        self._out_hw(tuple(x.shape[2:]))
        bias = self.bias.value if self.bias is not None else None
        y, self._cache = conv2d_forward(x, self.weight.value, bias, self.stride, self.padding,
                                        self.dilation, self.groups, self.max_workspace_bytes, need_backward=train)
        return y

    def backward(self, dy: Array) -> Array | None:
        dx, dweight, dbias = conv2d_backward(dy, self._cached(), self.need_input_grad)
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def config(self) -> dict[str, Any]:
        padding = self.padding if isinstance(self.padding, (int, str)) else [
            side if isinstance(side, int) else list(side) for side in self.padding]
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": padding, "dilation": list(self.dilation), "groups": self.groups,
                "bias": self.bias is not None}
