r"""2-D pooling: max, min and average over KH x KW windows, and global average.

With ``cols = im2col(x)`` viewed as (N, C, KH*KW, OH, OW), for each output pixel:

    max:  y = max_k cols[k]      dL/dx routes dy to the arg-max only (the first one on ties)
    min:  y = min_k cols[k]      the same with the arg-min
    avg:  y = sum_k cols[k] / D  dL/dx spreads dy / D to every window position

Padding: max (min) pooling pads with -inf (+inf), so a padded cell never wins.  Average
pooling pads with zeros; by default the zeros count in the divisor ``D = KH * KW``
(PyTorch's ``count_include_pad=True``); with ``count_include_pad=False`` the divisor is
the number of real input pixels under the window.  As in PyTorch, padding may be at most
half the kernel, so every window holds at least one real pixel.
The gradients go back to the pixels through ``col2im`` (overlapping windows add up).
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, get_xp
from ..errors import ShapeError
from ._args import IntPair, Pads, as_pair, check_float
from .im2col import col2im, im2col, output_hw


class PoolCache(NamedTuple):
    """What a pooling backward needs: geometry plus arg-max indices or divisors."""

    x_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: Pads
    index: Array | None    # (N, C, OH, OW) winning window position, for max/min
    divisor: Array | None  # (OH, OW) or scalar, for avg


def pool_geometry(kernel_size: IntPair, stride: IntPair | None, padding: IntPair,
                  who: str = "pool2d") -> tuple[tuple[int, int], tuple[int, int], Pads]:
    """Validate pooling arguments; return (kernel, stride, pads). ``stride`` defaults to the kernel."""
    kernel = as_pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else as_pair(stride, "stride")
    ph, pw = as_pair(padding, "padding", minimum=0)
    if 2 * ph > kernel[0] or 2 * pw > kernel[1]:
        raise ValueError(f"{who}: padding must be at most half the kernel; received padding="
                         f"{padding!r} with kernel_size={kernel_size!r}")
    return kernel, stride, ((ph, ph), (pw, pw))


def check_pool_input(x: Array, who: str = "pool2d") -> None:
    """ShapeError/DTypeError unless x is a float (N, C, H, W) array."""
    check_float(x, f"{who} input")
    if x.ndim != 4:
        raise ShapeError(f"{who} expects 4-D input (N, C, H, W), got shape {tuple(x.shape)}")


def _extreme_pool(x: Array, kernel_size: IntPair, stride: IntPair | None, padding: IntPair,
                  largest: bool) -> tuple[Array, PoolCache]:
    who = "max_pool2d" if largest else "min_pool2d"
    check_pool_input(x, who)
    kernel, stride, pads = pool_geometry(kernel_size, stride, padding, who)
    output_hw(x.shape[2:], kernel, stride, pads, who=who)
    fill = -float("inf") if largest else float("inf")
    cols = im2col(x, kernel, stride, pads, pad_value=fill)
    N, C, KH, KW, OH, OW = cols.shape
    cols = cols.reshape(N, C, KH * KW, OH, OW)  # (N, C, KH*KW, OH, OW)
    index = cols.argmax(axis=2) if largest else cols.argmin(axis=2)  # first on ties
    y = cols.max(axis=2) if largest else cols.min(axis=2)
    return y, PoolCache(tuple(x.shape), kernel, stride, pads, index, None)


def _route_to_index(dy: Array, cache: PoolCache) -> Array:
    """dy (N, C, OH, OW) -> dx, each value added to the input pixel that won its window."""
    xp = get_xp(dy)
    KH, KW = cache.kernel
    positions = xp.arange(KH * KW).reshape(1, 1, KH * KW, 1, 1)
    dcols = (positions == cache.index[:, :, None]) * dy[:, :, None]  # (N, C, KH*KW, OH, OW)
    dcols = dcols.reshape(dy.shape[0], dy.shape[1], KH, KW, *dy.shape[2:])  # (N, C, KH, KW, OH, OW)
    return col2im(dcols.astype(dy.dtype, copy=False), cache.x_shape, cache.stride, cache.pads)


def max_pool2d_forward(x: Array, kernel_size: IntPair, stride: IntPair | None = None,
                       padding: IntPair = 0) -> tuple[Array, PoolCache]:
    """y (N, C, OH, OW): the largest value of each window of x (N, C, H, W)."""
    return _extreme_pool(x, kernel_size, stride, padding, largest=True)


def max_pool2d_backward(dy: Array, cache: PoolCache) -> Array:
    """dL/dx of max pooling: dy goes to the first arg-max of each window."""
    return _route_to_index(dy, cache)


def min_pool2d_forward(x: Array, kernel_size: IntPair, stride: IntPair | None = None,
                       padding: IntPair = 0) -> tuple[Array, PoolCache]:
    """y (N, C, OH, OW): the smallest value of each window of x (N, C, H, W)."""
    return _extreme_pool(x, kernel_size, stride, padding, largest=False)


def min_pool2d_backward(dy: Array, cache: PoolCache) -> Array:
    """dL/dx of min pooling: dy goes to the first arg-min of each window."""
    return _route_to_index(dy, cache)


def _avg_divisor(x: Array, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
                 count_include_pad: bool) -> Array | float:
    """KH*KW, or per output pixel (OH, OW) the number of real pixels under the window."""
    if count_include_pad or pads == ((0, 0), (0, 0)):
        return float(kernel[0] * kernel[1])
    xp = get_xp(x)
    ones = xp.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    return im2col(ones, kernel, stride, pads).sum(axis=(2, 3))[0, 0]  # (OH, OW)


def avg_pool2d_forward(x: Array, kernel_size: IntPair, stride: IntPair | None = None,
                       padding: IntPair = 0, count_include_pad: bool = True) -> tuple[Array, PoolCache]:
    """y (N, C, OH, OW): the mean of each window of x (N, C, H, W); see the module docstring on padding."""
    check_pool_input(x, "avg_pool2d")
    kernel, stride, pads = pool_geometry(kernel_size, stride, padding, "avg_pool2d")
    output_hw(x.shape[2:], kernel, stride, pads, who="avg_pool2d")
    divisor = _avg_divisor(x, kernel, stride, pads, count_include_pad)
    y = im2col(x, kernel, stride, pads).sum(axis=(2, 3)) / divisor  # (N, C, OH, OW)
    return y.astype(x.dtype, copy=False), PoolCache(tuple(x.shape), kernel, stride, pads, None, divisor)


def avg_pool2d_backward(dy: Array, cache: PoolCache) -> Array:
    """dL/dx of average pooling: dy / D spread over every window position."""
    xp = get_xp(dy)
    KH, KW = cache.kernel
    share = (dy / cache.divisor).astype(dy.dtype, copy=False)[:, :, None, None]  # (N, C, 1, 1, OH, OW)
    dcols = xp.broadcast_to(share, dy.shape[:2] + (KH, KW) + dy.shape[2:])  # (N, C, KH, KW, OH, OW)
    return col2im(dcols, cache.x_shape, cache.stride, cache.pads)


def global_avg_pool2d_forward(x: Array, keepdims: bool = False) -> tuple[Array, tuple[int, ...]]:
    """y = mean of x (N, C, H, W) over H and W: (N, C), or (N, C, 1, 1) with ``keepdims``."""
    check_pool_input(x, "global_avg_pool2d")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ShapeError(f"global_avg_pool2d needs H, W >= 1, got input shape {tuple(x.shape)}")
    return x.mean(axis=(2, 3), keepdims=keepdims), tuple(x.shape)


def global_avg_pool2d_backward(dy: Array, cache: tuple[int, ...]) -> Array:
    """dL/dx = dy / (H * W), the same for every pixel of a channel."""
    xp = get_xp(dy)
    N, C, H, W = cache
    share = (dy.reshape(N, C, 1, 1) / (H * W)).astype(dy.dtype, copy=False)  # (N, C, 1, 1)
    return xp.ascontiguousarray(xp.broadcast_to(share, cache))
