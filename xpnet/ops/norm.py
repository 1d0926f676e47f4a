r"""Layer and group normalisation: statistics per sample, the same in training and evaluation.

Both normalise the rows of a 2-D view of the input, R rows of D values each:

    layer norm, x of shape (*, *S), S = normalized_shape:  rows = x.reshape(R, D),
        R = prod(*), D = prod(S);  weight and bias of shape S (one value per position of S)
    group norm, x of shape (N, C, *), G groups of C / G consecutive channels:  rows = x.reshape(N * G, D),
        D = C / G * prod(*);  weight and bias of shape (C,) (one value per channel)

Per row, with biased variance:

    mu = mean(x),  var = mean((x - mu)^2),  s = 1 / sqrt(var + eps),  xhat = (x - mu) * s
    y = weight * xhat + bias                      (either may be None: no scale, no shift)
    dL/dx      = s * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * weight   (means over the row)
    dL/dweight = sum(dy * xhat),  dL/dbias = sum(dy)    (over every axis the parameter is broadcast on)

The variance is taken in two passes (x - mu first), never as mean(x^2) - mu^2, so rows with a
large mean keep their precision.  Everything is computed in the input's dtype: float32 in,
float32 out (Python-scalar ``eps`` does not promote under NumPy 2's rules).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from ..backend import Array, get_xp
from ..errors import DTypeError, ShapeError
from ._args import _is_int, check_float


class NormCache(NamedTuple):
    """What the backward pass of layer or group normalisation needs."""

    xhat: Array                   # (R, D): the input's rows, normalised
    inv_std: Array                # (R, 1)
    weight: Array | None
    has_bias: bool
    shape: tuple[int, ...]        # the input's
    param_shape: tuple[int, ...]  # weight and bias as they broadcast against the input
    param_axes: tuple[int, ...]   # the input axes a parameter gradient sums over


def as_normalized_shape(normalized_shape: int | Sequence[int], who: str = "layer_norm") -> tuple[int, ...]:
    """``5 -> (5,)``; a sequence of positive ints stays; ValueError naming ``who`` otherwise."""
    shape = (normalized_shape,) if _is_int(normalized_shape) else normalized_shape
    if (not isinstance(shape, (tuple, list)) or not shape
            or not all(_is_int(s) and s > 0 for s in shape)):
        raise ValueError(f"{who}: normalized_shape must be a positive int or a non-empty sequence of positive "
                         f"ints; received normalized_shape={normalized_shape!r}")
    return tuple(int(s) for s in shape)


def check_layer_norm_input(x: Array, normalized_shape: tuple[int, ...], who: str = "layer_norm",
                           batched: bool = False) -> None:
    """ShapeError/DTypeError unless x is a float array ending in ``normalized_shape`` (after a batch
    axis when ``batched``)."""
    check_float(x, f"{who} input")
    k = len(normalized_shape)
    if x.ndim < k + batched or tuple(x.shape[x.ndim - k:]) != tuple(normalized_shape):
        dims = ", ".join(map(str, normalized_shape))
        raise ShapeError(f"{who} expects input ({'N, ' if batched else ''}*, {dims}), got shape {tuple(x.shape)}")


def check_group_norm_input(x: Array, num_groups: int, num_channels: int | None = None,
                           who: str = "group_norm") -> None:
    """ShapeError/DTypeError unless x is a float (N, C, *) array whose C (``num_channels`` when
    given) splits into ``num_groups`` groups."""
    check_float(x, f"{who} input")
    if x.ndim < 2 or (num_channels is not None and x.shape[1] != num_channels):
        channels = "C" if num_channels is None else num_channels
        raise ShapeError(f"{who} expects input (N, {channels}, *), got shape {tuple(x.shape)}")
    if x.shape[1] % num_groups:
        raise ShapeError(f"{who}: the {x.shape[1]} channels of input shape {tuple(x.shape)} cannot be split "
                         f"into {num_groups} groups (C must be divisible by num_groups)")


def _check_params(x: Array, weight: Array | None, bias: Array | None, shape: tuple[int, ...], who: str) -> None:
    for name, param in (("weight", weight), ("bias", bias)):
        if param is None:
            continue
        if tuple(param.shape) != shape:
            raise ShapeError(f"{who} {name} must have shape {shape}, got {tuple(param.shape)}")
        if param.dtype != x.dtype:
            raise DTypeError(f"{who} input and parameters must share one dtype; got input {x.dtype}, "
                             f"{name} {param.dtype}")


def _normalize(x: Array, rows: tuple[int, int], weight: Array | None, bias: Array | None,
               param_shape: tuple[int, ...], param_axes: tuple[int, ...], eps: float) -> tuple[Array, NormCache]:
    """Normalise x as ``rows`` (R, D), each row on its own, then scale and shift (the shared forward)."""
    xp = get_xp(x, weight, bias)
    view = x.reshape(rows)  # (R, D)
    mean = view.mean(axis=1, keepdims=True)  # (R, 1)
    centred = view - mean  # (R, D)
    var = (centred * centred).mean(axis=1, keepdims=True)  # (R, 1), biased
    inv_std = 1 / xp.sqrt(var + eps)  # (R, 1)
    xhat = centred * inv_std  # (R, D)
    y = xhat.reshape(x.shape)  # (R, D) -> the input's shape (a view)
    if weight is not None:
        y = y * weight.reshape(param_shape)
    if bias is not None:
        y = y + bias.reshape(param_shape)
    if weight is None and bias is None:
        y = y.copy()  # never hand out a view of the cache: a caller may add into y in place
    return y, NormCache(xhat, inv_std, weight, bias is not None, tuple(x.shape), param_shape, param_axes)


def _normalize_backward(dy: Array, cache: NormCache) -> tuple[Array, Array | None, Array | None]:
    """``(dx, dweight, dbias)`` of :func:`_normalize` (None for an absent parameter)."""
    xhat = cache.xhat.reshape(cache.shape)  # (R, D) -> the input's shape (a view)
    dweight = None if cache.weight is None else (dy * xhat).sum(axis=cache.param_axes)
    dbias = dy.sum(axis=cache.param_axes) if cache.has_bias else None
    g = dy if cache.weight is None else dy * cache.weight.reshape(cache.param_shape)
    g = g.reshape(cache.xhat.shape)  # the input's shape -> (R, D)
    dx = cache.inv_std * (g - g.mean(axis=1, keepdims=True)
                          - cache.xhat * (g * cache.xhat).mean(axis=1, keepdims=True))  # (R, D)
    return dx.reshape(cache.shape), dweight, dbias  # (R, D) -> the input's shape


def layer_norm_forward(x: Array, normalized_shape: int | Sequence[int], weight: Array | None = None,
                       bias: Array | None = None, eps: float = 1e-5) -> tuple[Array, NormCache]:
    """y = weight * (x - mean) / sqrt(var + eps) + bias over the last ``len(normalized_shape)`` axes.

    x: (*, *S) with S = normalized_shape; weight, bias: S or None; y: x's shape and dtype.
    As ``torch.nn.functional.layer_norm``.
    """
    shape = as_normalized_shape(normalized_shape)
    check_layer_norm_input(x, shape)
    _check_params(x, weight, bias, shape, "layer_norm")
    lead = x.ndim - len(shape)
    rows = (math.prod(x.shape[:lead]), math.prod(shape))  # (*, *S) -> (R, D)
    return _normalize(x, rows, weight, bias, shape, tuple(range(lead)), eps)


def layer_norm_backward(dy: Array, cache: NormCache) -> tuple[Array, Array | None, Array | None]:
    """``(dx, dweight, dbias)`` of layer normalisation; dweight/dbias have shape S (None when the
    forward had no weight/bias)."""
    return _normalize_backward(dy, cache)


def group_norm_forward(x: Array, num_groups: int, weight: Array | None = None, bias: Array | None = None,
                       eps: float = 1e-5) -> tuple[Array, NormCache]:
    """Normalise each group of C / num_groups channels of each sample, then scale and shift per channel.

    x: (N, C, *); weight, bias: (C,) or None; y: x's shape and dtype.  As
    ``torch.nn.functional.group_norm``.
    """
    if not _is_int(num_groups) or num_groups < 1:
        raise ValueError(f"group_norm: num_groups must be a positive int; received num_groups={num_groups!r}")
    check_group_norm_input(x, num_groups)
    C = x.shape[1]
    _check_params(x, weight, bias, (C,), "group_norm")
    per_channel = (1, C) + (1,) * (x.ndim - 2)  # (C,) -> broadcast against (N, C, *)
    spatial_axes = tuple(range(2, x.ndim))
    G = int(num_groups)
    # (N, C, *) -> (N * G, C / G * prod(*)): row n * G + j holds channels j * C / G ... (j + 1) * C / G - 1
    # of sample n, all positions
    rows = (x.shape[0] * G, C // G * math.prod(x.shape[2:]))
    return _normalize(x, rows, weight, bias, per_channel, (0, *spatial_axes), eps)


def group_norm_backward(dy: Array, cache: NormCache) -> tuple[Array, Array | None, Array | None]:
    """``(dx, dweight, dbias)`` of group normalisation; dweight/dbias have shape (C,) (None when the
    forward had no weight/bias)."""
    return _normalize_backward(dy, cache)
