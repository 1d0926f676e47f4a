r"""2-D pooling: max, min and average over KH x KW windows, and global average.

With ``x_k`` the strided slice of the (padded) input seen by window position k (one of
KH x KW, as in im2col), for each output pixel:

    max:  y = max_k x_k      dL/dx routes dy to the arg-max only (the first one on ties)
    min:  y = min_k x_k      the same with the arg-min
    avg:  y = sum_k x_k / D  dL/dx spreads dy / D to every window position

Max and min pooling are separable: one pass along the rows of the windows (KW strided
slices), then one down their columns (KH slices).  Average pooling loops over the KH x KW
positions.  Each step is one operation on whole strided slices of the batch: no im2col
matrix is built.

Padding: max (min) pooling pads with -inf (+inf), so a padded cell never wins.  Average
pooling pads with zeros; by default the zeros count in the divisor ``D = KH * KW``
(PyTorch's ``count_include_pad=True``); with ``count_include_pad=False`` the divisor is
the number of real input pixels under the window.  As in PyTorch, padding may be at most
half the kernel, so every window holds at least one real pixel.
The gradients go back to the pixels with strided slice adds (overlapping windows add up).
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, get_xp
from ..errors import ShapeError
from ._args import IntPair, Pads, as_pair, check_float
from .im2col import output_hw, pad_input, window_slices


class PoolCache(NamedTuple):
    """What a pooling backward needs: geometry plus the winners' positions or the divisors."""

    x_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: Pads
    index: tuple[Array, Array] | None  # max/min: (column winners (N, C, Hp, OW), row winners (N, C, OH, OW))
    divisor: Array | None  # (OH, OW) or scalar, for avg
    x: Array | None = None  # max/min without need_backward: the input itself (not a copy), for backward


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


def _windows(cache_like: tuple, out_hw: tuple[int, int]) -> list[tuple[slice, slice]]:
    """(rows, columns) of the padded input seen by each window position, in row-major order."""
    (KH, KW), stride = cache_like
    return [window_slices(i, j, out_hw, stride, (1, 1)) for i in range(KH) for j in range(KW)]


def _along(a: Array, axis: int, start: int, stride: int, count: int) -> Array:
    """The strided view a[..., start::stride][:count] along ``axis`` (2 = rows, 3 = columns)."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, start + stride * (count - 1) + 1, stride)
    return a[tuple(index)]


def _extreme_along(a: Array, axis: int, kernel: int, stride: int, count: int,
                   largest: bool, need_index: bool = True) -> tuple[Array, Array | None]:
    """1-D max (min) pooling of ``a`` along ``axis``: ``(best, index)``, index the first winner's position.

    A later window position replaces the best only when strictly better, so ties keep the first.
    Without ``need_index`` the index is None and only the extremes are computed.
    """
    xp = get_xp(a)
    index_dtype = xp.int8 if kernel <= 128 else xp.int32  # positions 0 .. kernel - 1
    best, index = _along(a, axis, 0, stride, count), None
    extreme = xp.maximum if largest else xp.minimum
    for k in range(1, kernel):
        candidate = _along(a, axis, k, stride, count)
        if not need_index:
            best = extreme(best, candidate) if k == 1 else extreme(best, candidate, out=best)
            continue
        better = candidate > best if largest else candidate < best
        if index is None:
            index, best = better.astype(index_dtype), extreme(best, candidate)
        else:
            xp.copyto(index, index_dtype(k), where=better)
            extreme(best, candidate, out=best)
    if kernel == 1:  # a window of one
        best, index = best.copy(), xp.zeros(best.shape, dtype=index_dtype) if need_index else None
    return best, index


def _extreme_pool(x: Array, kernel_size: IntPair, stride: IntPair | None, padding: IntPair,
                  largest: bool, need_backward: bool = True) -> tuple[Array, PoolCache]:
    """Separable max (min) pooling: first along the rows of each window, then down its columns.

    The extreme of a window is the extreme of its per-row extremes.  Picking the first
    winning column in each row, then the first row whose winner is strictly better than
    the rows above it, finds the first winner in row-major order: the same tie rule as
    PyTorch's arg-max.  Two 1-D passes touch far fewer strided elements than
    KH x KW window slices, and their inner loops run along whole rows.  Without
    ``need_backward`` (inference) the winners are not tracked; the cache keeps x instead,
    and a backward pass finds them then.
    """
    who = "max_pool2d" if largest else "min_pool2d"
    check_pool_input(x, who)
    kernel, stride, pads = pool_geometry(kernel_size, stride, padding, who)
    OH, OW = output_hw(x.shape[2:], kernel, stride, pads, who=who)
    padded = pad_input(x, pads, -float("inf") if largest else float("inf"))
    rows, column_index = _extreme_along(padded, 3, kernel[1], stride[1], OW, largest, need_backward)  # (N, C, Hp, OW)
    y, row_index = _extreme_along(rows, 2, kernel[0], stride[0], OH, largest, need_backward)         # (N, C, OH, OW)
    if not need_backward:
        return y, PoolCache(tuple(x.shape), kernel, stride, pads, None, None, x)
    return y, PoolCache(tuple(x.shape), kernel, stride, pads, (column_index, row_index), None)


def _route_along(d: Array, index: Array, axis: int, kernel: int, stride: int, size: int) -> Array:
    """Adjoint of :func:`_extreme_along`: each value of d goes to the position ``index`` names.

    ``size`` is the input's length along ``axis``; positions no window picked get 0.
    """
    xp = get_xp(d)
    count = d.shape[axis]
    shape = list(d.shape)
    shape[axis] = size
    tiled = stride == kernel and size == kernel * count  # every input position in exactly one window
    routed = xp.empty(shape, dtype=d.dtype) if tiled else xp.zeros(shape, dtype=d.dtype)
    for k in range(kernel):
        target = _along(routed, axis, k, stride, count)
        if tiled:
            xp.multiply(d, index == k, out=target)
        else:
            target += d * (index == k)
    return routed


def _route_to_index(dy: Array, cache: PoolCache, largest: bool) -> Array:
    """dy (N, C, OH, OW) -> dx (N, C, H, W), each value added to the input pixel that won its window."""
    N, C, H, W = cache.x_shape
    (pt, pb), (pl, pr) = cache.pads
    if cache.index is None:  # an inference forward: find the winners now
        cache = _extreme_pool(cache.x, cache.kernel, cache.stride, (pt, pl), largest)[1]
    column_index, row_index = cache.index
    rows = _route_along(dy, row_index, 2, cache.kernel[0], cache.stride[0], pt + H + pb)            # (N, C, Hp, OW)
    padded = _route_along(rows, column_index, 3, cache.kernel[1], cache.stride[1], pl + W + pr)  # (N, C, Hp, Wp)
    if cache.pads == ((0, 0), (0, 0)):
        return padded
    return get_xp(dy).ascontiguousarray(padded[:, :, pt:pt + H, pl:pl + W])


def _spread(share: Array, cache: PoolCache) -> Array:
    """dx (N, C, H, W): ``share`` (N, C, OH, OW) added to every pixel of its window."""
    xp = get_xp(share)
    N, C, H, W = cache.x_shape
    (pt, pb), (pl, pr) = cache.pads
    padded = xp.zeros((N, C, pt + H + pb, pl + W + pr), dtype=share.dtype)
    for rows, columns in _windows((cache.kernel, cache.stride), share.shape[2:]):
        padded[:, :, rows, columns] += share
    return xp.ascontiguousarray(padded[:, :, pt:pt + H, pl:pl + W])


def max_pool2d_forward(x: Array, kernel_size: IntPair, stride: IntPair | None = None,
                       padding: IntPair = 0, need_backward: bool = True) -> tuple[Array, PoolCache]:
    """y (N, C, OH, OW): the largest value of each window of x (N, C, H, W).

    ``need_backward=False`` (inference) skips tracking the arg-max; backward still works,
    finding it from x, which the cache then references (so x must not change in between).
    A NaN in a window makes y NaN there, but the gradient is not routed to the NaN, which never
    compares as larger (PyTorch routes it to the NaN).
    """
    return _extreme_pool(x, kernel_size, stride, padding, largest=True, need_backward=need_backward)


def max_pool2d_backward(dy: Array, cache: PoolCache) -> Array:
    """dL/dx of max pooling: dy goes to the first arg-max of each window."""
    return _route_to_index(dy, cache, largest=True)


def min_pool2d_forward(x: Array, kernel_size: IntPair, stride: IntPair | None = None,
                       padding: IntPair = 0, need_backward: bool = True) -> tuple[Array, PoolCache]:
    """y (N, C, OH, OW): the smallest value of each window of x (N, C, H, W); see max_pool2d_forward."""
    return _extreme_pool(x, kernel_size, stride, padding, largest=False, need_backward=need_backward)


def min_pool2d_backward(dy: Array, cache: PoolCache) -> Array:
    """dL/dx of min pooling: dy goes to the first arg-min of each window."""
    return _route_to_index(dy, cache, largest=False)


def _avg_divisor(x: Array, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
                 count_include_pad: bool) -> Array | float:
    """KH*KW, or per output pixel (OH, OW) the number of real pixels under the window."""
    if count_include_pad or pads == ((0, 0), (0, 0)):
        return float(kernel[0] * kernel[1])
    xp = get_xp(x)
    ones = xp.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    return _window_sum(ones, kernel, stride, pads)[0, 0]  # (OH, OW)


def _window_sum(x: Array, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads) -> Array:
    """(N, C, OH, OW): the sum of each window, a loop of strided slice adds."""
    padded = pad_input(x, pads, 0.0)
    windows = _windows((kernel, stride), output_hw(x.shape[2:], kernel, stride, pads))
    total = padded[(slice(None), slice(None)) + windows[0]].copy()
    for rows, columns in windows[1:]:
        total += padded[:, :, rows, columns]
    return total


def avg_pool2d_forward(x: Array, kernel_size: IntPair, stride: IntPair | None = None,
                       padding: IntPair = 0, count_include_pad: bool = True) -> tuple[Array, PoolCache]:
    """y (N, C, OH, OW): the mean of each window of x (N, C, H, W); see the module docstring on padding."""
    check_pool_input(x, "avg_pool2d")
    kernel, stride, pads = pool_geometry(kernel_size, stride, padding, "avg_pool2d")
    output_hw(x.shape[2:], kernel, stride, pads, who="avg_pool2d")
    divisor = _avg_divisor(x, kernel, stride, pads, count_include_pad)
    y = _window_sum(x, kernel, stride, pads) / divisor  # (N, C, OH, OW)
    return y.astype(x.dtype, copy=False), PoolCache(tuple(x.shape), kernel, stride, pads, None, divisor)


def avg_pool2d_backward(dy: Array, cache: PoolCache) -> Array:
    """dL/dx of average pooling: dy / D spread over every window position."""
    share = (dy / cache.divisor).astype(dy.dtype, copy=False)  # (N, C, OH, OW)
    return _spread(share, cache)


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
