"""ConvTranspose2d: 2-D transposed convolution with PyTorch's weight layout (C_in, C_out/groups, KH, KW)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy

from ..backend import Array
from ..initializers import fans, get_initializer
from ..ops._args import IntPair, as_pair
from ..ops.conv import DEFAULT_WORKSPACE_BYTES
from ..ops.conv_transpose import (
    check_conv_transpose_input,
    check_output_padding,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    transposed_hw,
)
from .base import Layer, float_dtype, new_parameter, positive_int
from .conv import Conv2d


def torch_default_uniform(fan_in: int) -> Callable[..., numpy.ndarray]:
    """PyTorch's default for convolution weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    (``kaiming_uniform_(a=sqrt(5))`` on the weight, whose bound gain * sqrt(3 / fan_in) with
    gain = sqrt(2 / (1 + 5)) is 1 / sqrt(fan_in); the bias uses the same bound.)
    """
    bound = 1 / math.sqrt(fan_in)
    return lambda shape, rng, dtype=numpy.float32: rng.uniform(-bound, bound, size=shape).astype(dtype)


class ConvTranspose2d(Layer):
    r"""2-D transposed convolution: (N, in_channels, H, W) -> (N, out_channels, OH, OW).

    torch.nn.ConvTranspose2d's arguments, in its order, and its semantics: every input pixel
    adds its values times the kernel to the output (stride apart, dilated taps), so

        y[n, g*Og + o, p*SH + i*DH - PH, q*SW + j*DW - PW] += x[n, g*Cg + c, p, q] * w[g*Cg + c, o, i, j]
        OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + OPH + 1          (OW likewise)

    with Cg = in_channels / groups, Og = out_channels / groups.  ``padding`` (int or pair) trims
    both sides of the output, ``output_padding`` (below the stride or the dilation) extends it at
    the bottom and right, which picks one of the output sizes that a stride-S convolution maps
    back to H.  Weight (in_channels, out_channels / groups, KH, KW) and bias (out_channels,),
    named ``weight`` and ``bias`` as in PyTorch.

    By default both are drawn as PyTorch draws them, U(-b, b) with b = 1 / sqrt(fan_in) and
    fan_in = out_channels / groups * KH * KW (weight.shape[1] * KH * KW); ``weight_init`` and
    ``bias_init`` take an initializer name (as Conv2d's do) instead.  The op is
    :func:`xpnet.ops.conv_transpose.conv_transpose2d_forward`: GEMM then col2im.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1, bias: bool = True,
                 dilation: IntPair = 1, weight_init: str | Callable | None = None,
                 bias_init: str | Callable | None = None, dtype: Any = numpy.float32,
                 seed: numpy.random.Generator | int | None = None, name: str | None = None,
                 max_workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> None:
        super().__init__(name)
        who = self.name
        self.in_channels, self.out_channels, self.groups = (positive_int(value, arg, who) for value, arg in (
            (in_channels, "in_channels"), (out_channels, "out_channels"), (groups, "groups")))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{who}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        try:
            self.kernel_size, self.stride, self.dilation = (as_pair(value, arg) for value, arg in (
                (kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation")))
            self.padding, self.output_padding = (as_pair(value, arg, minimum=0) for value, arg in (
                (padding, "padding"), (output_padding, "output_padding")))
        except ValueError as exc:
            raise ValueError(f"{who}: {exc}") from None
        check_output_padding(self.output_padding, self.stride, self.dilation, who)
        self.max_workspace_bytes = positive_int(max_workspace_bytes, "max_workspace_bytes", who)
        dtype = float_dtype(dtype, self.name)
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        default = torch_default_uniform(fans(shape)[0])
        self.weight_init = default if weight_init is None else get_initializer(weight_init)
        self.bias_init = default if bias_init is None else get_initializer(bias_init)
        self.weight = new_parameter(shape, dtype, "weight")
        self.bias = new_parameter((self.out_channels,), dtype, "bias") if bias else None
        self.reset_parameters(seed)

    # the same parameters as Conv2d's (weight, then bias if any), drawn the same way
    sample_shape = Conv2d.sample_shape
    output_shape = Conv2d.output_shape  # with this class's _out_hw
    _channel_error = Conv2d._channel_error
    own_variables = Conv2d.own_variables
    reset_parameters = Conv2d.reset_parameters

    def _out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return transposed_hw(hw, self.kernel_size, self.stride, self.padding, self.output_padding,
                             self.dilation, who=self.name)


    def forward(self, x: Array, train: bool = False) -> Array:
        check_conv_transpose_input(x, self.weight.shape, self.groups, who=self.name)
        self._check_dtype(x)
        self._out_hw(tuple(x.shape[2:]))
        bias = self.bias.value if self.bias is not None else None
        y, self._cache = conv_transpose2d_forward(x, self.weight.value, bias, self.stride, self.padding,
                                                  self.output_padding, self.groups, self.dilation,
                                                  self.max_workspace_bytes)
        return y

    def backward(self, dy: Array) -> Array | None:
        dx, *grads = conv_transpose2d_backward(dy, self._cached(), self.need_input_grad)
        for variable, grad in zip(self.own_variables(), grads):  # dweight, then dbias with a bias
            variable.grad += grad
        return dx

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "output_padding": list(self.output_padding),
                "groups": self.groups, "bias": self.bias is not None, "dilation": list(self.dilation)}
