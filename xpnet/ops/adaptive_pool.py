r"""Adaptive average pooling: the mean over PyTorch's bins, for any output size.

Output pixel (i, j) of an (OH, OW) output averages the input rows ``start(i, H, OH) <= h < end(i, H, OH)``
and columns ``start(j, W, OW) <= w < end(j, W, OW)``, with

    start(i, H, OH) = floor(i * H / OH),        end(i, H, OH) = ceil((i + 1) * H / OH)

as torch.nn.AdaptiveAvgPool2d (bins may overlap, and repeat rows when OH > H).

Uniform bins (H divisible by OH and W by OW): every bin is a KH x KW tile, KH = H / OH, so
y is one reshape and a mean, ``x (N, C, OH, KH, OW, KW) -> mean over (KH, KW)``, and dL/dx is dy / (KH*KW)
broadcast back over each tile.

Otherwise the mean over a rectangular bin factorises into a row mean and a column mean, so with
the averaging matrices ``A_H (OH, H)``, ``A_H[i, h] = 1 / (end - start)`` inside bin i, 0 elsewhere,
(and ``A_W (OW, W)`` likewise):

    y = A_H @ x @ A_W^T,          dL/dx = A_H^T @ dy @ A_W

two matrix products over the whole batch, no loop over bins or samples.  The matrices are built
on the host (they depend only on the sizes) and moved to x's device once per call.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from ..backend import Array, get_xp
from ..errors import ShapeError
from ._args import _is_int
from .pool import check_pool_input

OutputSize = int | None | tuple[int | None, int | None]


class AdaptivePoolCache(NamedTuple):
    """What adaptive_avg_pool2d_backward needs: the input shape and the averaging matrices (or None)."""

    x_shape: tuple[int, ...]
    out_hw: tuple[int, int]
    rows: Array | None  # A_H (OH, H), None when the bins are uniform
    columns: Array | None  # A_W (OW, W)


def adaptive_output_size(output_size: OutputSize, who: str = "adaptive_avg_pool2d") -> tuple[int | None, int | None]:
    """``5 -> (5, 5)``, ``(5, None) -> (5, None)``; ValueError unless each entry is a positive int or None."""
    pair = (output_size, output_size) if output_size is None or _is_int(output_size) else output_size
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(v is None or (_is_int(v) and v >= 1) for v in pair)):
        raise ValueError(f"{who}: output_size must be a positive int, None or a pair of them; "
                         f"received output_size={output_size!r}")
    return tuple(None if v is None else int(v) for v in pair)  # type: ignore[return-value]


def resolve_output_hw(output_size: OutputSize, hw: tuple[int, int]) -> tuple[int, int]:
    """(OH, OW) for an input (H, W): a None entry keeps that size."""
    oh, ow = adaptive_output_size(output_size)
    return (hw[0] if oh is None else oh), (hw[1] if ow is None else ow)


def bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's bins along one axis: [(floor(i*size/out), ceil((i+1)*size/out)) for each i < out]."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def uniform_bins(hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """True when every bin is the same tile (each input size divisible by its output size)."""
    return hw[0] % out_hw[0] == 0 and hw[1] % out_hw[1] == 0


def averaging_matrix(size: int, out: int, dtype: numpy.dtype) -> numpy.ndarray:
    """A (out, size) host matrix whose row i holds 1 / len(bin i) over bin i and zeros elsewhere."""
    edges = numpy.array(bins(size, out))  # (out, 2): start, end
    index = numpy.arange(size)
    inside = (index >= edges[:, :1]) & (index < edges[:, 1:])  # (out, size)
    return (inside / (edges[:, 1:] - edges[:, :1])).astype(dtype)


def check_adaptive_input(x: Array, who: str = "adaptive_avg_pool2d") -> None:
    """ShapeError/DTypeError unless x is a float (N, C, H, W) array with H, W >= 1."""
    check_pool_input(x, who)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ShapeError(f"{who} needs H, W >= 1, got input shape {tuple(x.shape)}")


def adaptive_avg_pool2d_forward(x: Array, output_size: OutputSize) -> tuple[Array, AdaptivePoolCache]:
    """y (N, C, OH, OW): the mean of x (N, C, H, W) over each of PyTorch's adaptive bins."""
    check_adaptive_input(x)
    xp = get_xp(x)
    N, C, H, W = x.shape
    OH, OW = resolve_output_hw(output_size, (H, W))
    if uniform_bins((H, W), (OH, OW)):
        tiles = x.reshape(N, C, OH, H // OH, OW, W // OW)  # (N, C, H, W) -> (N, C, OH, KH, OW, KW)
        y = tiles.mean(axis=(3, 5))  # (N, C, OH, OW)
        return y.astype(x.dtype, copy=False), AdaptivePoolCache(tuple(x.shape), (OH, OW), None, None)
    rows = xp.asarray(averaging_matrix(H, OH, x.dtype))  # (OH, H)
    columns = xp.asarray(averaging_matrix(W, OW, x.dtype))  # (OW, W)
    y = xp.matmul(xp.matmul(rows, x), columns.T)  # (OH, H) @ (N, C, H, W) @ (W, OW) -> (N, C, OH, OW)
    return y, AdaptivePoolCache(tuple(x.shape), (OH, OW), rows, columns)


def adaptive_avg_pool2d_backward(dy: Array, cache: AdaptivePoolCache) -> Array:
    """dL/dx (N, C, H, W): each dy value shared equally by the pixels of its bin (summed where bins overlap)."""
    xp = get_xp(dy)
    N, C, H, W = cache.x_shape
    OH, OW = cache.out_hw
    if tuple(dy.shape) != (N, C, OH, OW):
        raise ShapeError(f"adaptive_avg_pool2d_backward expects dy of the forward output's shape {(N, C, OH, OW)}, "
                         f"got {tuple(dy.shape)}")
    if cache.rows is None:
        KH, KW = H // OH, W // OW
        share = (dy / (KH * KW)).astype(dy.dtype, copy=False).reshape(N, C, OH, 1, OW, 1)  # (N, C, OH, 1, OW, 1)
        tiles = xp.broadcast_to(share, (N, C, OH, KH, OW, KW))
        return xp.ascontiguousarray(tiles).reshape(N, C, H, W)  # (N, C, OH, KH, OW, KW) -> (N, C, H, W)
    return xp.matmul(xp.matmul(cache.rows.T, dy), cache.columns)  # (H, OH) @ (N, C, OH, OW) @ (OW, W)

