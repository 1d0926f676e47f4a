"""AdaptiveAvgPool2d: average pooling to a fixed output size, over PyTorch's bins."""

from __future__ import annotations

from typing import Any

from ..backend import Array
from ..ops.adaptive_pool import (
    OutputSize,
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_output_size,
    check_adaptive_input,
    resolve_output_hw,
)
from .base import Layer, Shape


class AdaptiveAvgPool2d(Layer):
    r"""Mean over adaptive bins: (N, C, H, W) -> (N, C, OH, OW) for a fixed ``output_size``.

    ``output_size`` is an int (OH = OW), or a pair (OH, OW) in which None keeps that input
    size, as torch.nn.AdaptiveAvgPool2d.  Output pixel (i, j) is the mean of rows
    floor(i*H/OH) <= h < ceil((i+1)*H/OH) and columns floor(j*W/OW) <= w < ceil((j+1)*W/OW);
    when H and W are multiples of OH and OW the bins are the tiles of AvgPool2d(H/OH, W/OW).
    ``AdaptiveAvgPool2d(1)`` is GlobalAvgPool2d(keepdims=True).
    """

    def __init__(self, output_size: OutputSize, name: str | None = None) -> None:
        super().__init__(name)
        pair = adaptive_output_size(output_size, self.name)
        # as given, in plain Python: an int stays an int (numpy integers converted), a pair a tuple
        self.output_size: OutputSize = pair if isinstance(output_size, (tuple, list)) else pair[0]

    def sample_shape(self) -> tuple[int | None, ...]:
        return (None, None, None)

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(input_shape, 3, "C, H, W")
        return (input_shape[0], *resolve_output_hw(self.output_size, tuple(input_shape[1:])))

    def forward(self, x: Array, train: bool = False) -> Array:
        check_adaptive_input(x, self.name)
        y, self._cache = adaptive_avg_pool2d_forward(x, self.output_size)
        return y

    def backward(self, dy: Array) -> Array:
        return adaptive_avg_pool2d_backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        size = self.output_size
        return {"output_size": size if size is None or isinstance(size, int) else list(size)}
