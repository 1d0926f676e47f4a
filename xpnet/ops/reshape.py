r"""Shape-only ops: flatten and nearest-neighbour upsampling.

flatten:   x (N, d1, d2, ...) -> y (N, d1*d2*...);  dL/dx = dL/dy reshaped back.
upsample:  y[n, c, h, w] = x[n, c, h // SH, w // SW], so y is (N, C, H*SH, W*SW);
           dL/dx[n, c, i, j] = sum of dL/dy over the SH x SW block that copied x[n, c, i, j].
"""

from __future__ import annotations

import math

from ..backend import Array, get_xp
from ..errors import ShapeError
from ._args import IntPair, as_pair, check_float


def flatten_forward(x: Array) -> tuple[Array, tuple[int, ...]]:
    """x (N, ...) -> (N, prod(...)); the cache is the input shape."""
    if x.ndim < 1:
        raise ShapeError(f"flatten expects an input with a batch axis, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], math.prod(x.shape[1:])), tuple(x.shape)  # (N, d1*d2*...); -1 fails for N=0


def flatten_backward(dy: Array, cache: tuple[int, ...]) -> Array:
    """dL/dx: dy (N, prod(...)) reshaped to the input shape."""
    return dy.reshape(cache)  # (N, d1, d2, ...)


def upsample2d_forward(x: Array, scale_factor: IntPair = 2) -> tuple[Array, tuple[int, int]]:
    """Nearest-neighbour upsampling of x (N, C, H, W) by an integer factor per axis."""
    SH, SW = as_pair(scale_factor, "scale_factor")
    check_float(x, "upsample2d input")
    if x.ndim != 4:
        raise ShapeError(f"upsample2d expects 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    xp = get_xp(x)
    N, C, H, W = x.shape
    y = xp.empty((N, C, H, SH, W, SW), dtype=x.dtype)  # a fresh array, never a view of x (scale 1)
    y[...] = x[:, :, :, None, :, None]
    return y.reshape(N, C, H * SH, W * SW), (SH, SW)  # (N, C, H*SH, W*SW)


def upsample2d_backward(dy: Array, cache: tuple[int, int]) -> Array:
    """dL/dx: dy (N, C, H*SH, W*SW) summed over each SH x SW block."""
    SH, SW = cache
    N, C, HS, WS = dy.shape
    return dy.reshape(N, C, HS // SH, SH, WS // SW, SW).sum(axis=(3, 5))  # (N, C, H, W)
