r"""Batch normalisation over (N, H, W) for each channel of an (N, C, H, W) input.

Training, with M = N * H * W values per channel:

    mu = mean(x),  var = mean((x - mu)^2)  (biased),  s = 1 / sqrt(var + eps)
    xhat = (x - mu) * s,  y = gamma * xhat + beta
    dL/dbeta  = sum dy,   dL/dgamma = sum dy * xhat
    dL/dx     = s / M * (M * g - sum g - xhat * sum(g * xhat)),  g = dy * gamma

Evaluation uses the running statistics instead, so y is affine in x and
dL/dx = dy * gamma / sqrt(running_var + eps).  After a training step the running
statistics move towards the batch's: ``r <- (1 - momentum) * r + momentum * batch``,
with the unbiased variance (M / (M - 1)), as in PyTorch.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, get_xp
from ..errors import DTypeError, ShapeError
from ._args import check_float


class BatchNormCache(NamedTuple):
    """The centred input and scale of the forward pass, plus the batch statistics."""

    centered: Array     # training: x - mean, (N, C, H, W), so xhat = centered * inv_std; evaluation: x
    inv_std: Array      # (C,)
    gamma: Array
    train: bool
    batch_mean: Array | None  # evaluation: the running mean used
    batch_var: Array | None   # biased; None in evaluation


def check_batchnorm_input(x: Array, num_features: int, who: str = "batch_norm2d") -> None:
    """ShapeError/DTypeError unless x is a float (N, num_features, H, W) array."""
    check_float(x, f"{who} input")
    if x.ndim != 4 or x.shape[1] != num_features:
        raise ShapeError(f"{who} expects input (N, {num_features}, H, W), got shape {tuple(x.shape)}")


def _channel_sums(a: Array, b: Array | None = None) -> Array:
    """Per channel of (N, C, L) arrays: sum of a, or of a * b, as (C,) without a temporary of a's size.

    The sums over L are BLAS dot products (vectorised, with several partial sums, so as accurate
    as numpy's pairwise sum); the N partial results are then added.
    """
    xp = get_xp(a)
    if b is None:
        return xp.matmul(a, xp.ones(a.shape[2], dtype=a.dtype)).sum(axis=0)  # (N, C, L) @ (L,) -> (N, C) -> (C,)
    return xp.matmul(a[:, :, None, :], b[:, :, :, None]).sum(axis=0)[:, 0, 0]  # (N, C, 1, 1) -> (C, 1, 1) -> (C,)


def _affine(a: Array, scale: Array, shift: Array) -> Array:
    """a * scale + shift per channel of (N, C, L), in two passes over one new array."""
    xp = get_xp(a)
    out = xp.multiply(a, scale.reshape(1, -1, 1))  # (C,) -> (1, C, 1)
    out += shift.reshape(1, -1, 1)
    return out


def batch_norm2d_forward(x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array,
                         train: bool = True, eps: float = 1e-5) -> tuple[Array, BatchNormCache]:
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel; batch statistics when ``train``.

    Three passes over the data in training (the sum, the centring with the sum of squares
    read from it, the affine output); in evaluation, y = (x - running_mean) * scale + beta in
    three passes over one new array (centred first, so a large mean loses no precision).
    """
    check_batchnorm_input(x, gamma.shape[0])
    if any(a.dtype != x.dtype for a in (gamma, beta, running_mean, running_var)):
        raise DTypeError(f"batch_norm2d input and parameters must share one dtype; got input {x.dtype}, "
                         f"gamma {gamma.dtype}, running_var {running_var.dtype}")
    xp = get_xp(x, gamma, beta, running_mean, running_var)
    N, C = x.shape[:2]
    M = N * x.shape[2] * x.shape[3]
    flat = x.reshape(N, C, -1)  # (N, C, H, W) -> (N, C, H*W)
    if not train:
        inv_std = 1 / xp.sqrt(running_var + eps)
        y = flat - running_mean.reshape(1, C, 1)  # (C,) -> (1, C, 1)
        y *= (gamma * inv_std).reshape(1, C, 1)
        y += beta.reshape(1, C, 1)
        cache = BatchNormCache(x, inv_std, gamma, False, running_mean, None)  # backward centres x if asked
        return y.reshape(x.shape), cache  # (N, C, H*W) -> (N, C, H, W)
    if M < 2:
        raise ShapeError(f"batch_norm2d needs more than one value per channel in training, "
                         f"got input shape {tuple(x.shape)}")
    mean = _channel_sums(flat) / M
    centered = flat - mean.reshape(1, C, 1)  # (C,) -> (1, C, 1)
    var = _channel_sums(centered, centered) / M  # two-pass: no cancellation for large means
    inv_std = 1 / xp.sqrt(var + eps)
    y = _affine(centered, gamma * inv_std, beta)
    cache = BatchNormCache(centered.reshape(x.shape), inv_std, gamma, True, mean, var)
    return y.reshape(x.shape), cache  # (N, C, H*W) -> (N, C, H, W)


def batch_norm2d_backward(dy: Array, cache: BatchNormCache) -> tuple[Array, Array, Array]:
    """``(dx, dgamma, dbeta)`` of batch normalisation.

    In training dx is affine in dy and the centred input per channel,
    ``dx = k1 * dy + k2 * centered + k3`` with k1 = gamma s, k2 = -gamma s^3 sum(dy centered) / M
    and k3 = -gamma s sum(dy) / M (s = inv_std): the module docstring's formula, expanded.
    """
    centered, inv_std, gamma = cache.centered, cache.inv_std, cache.gamma
    N, C = dy.shape[:2]
    M = N * dy.shape[2] * dy.shape[3]
    dy_flat = dy.reshape(N, C, -1)  # (N, C, H, W) -> (N, C, H*W)
    c_flat = centered.reshape(N, C, -1)  # (N, C, H, W) -> (N, C, H*W)
    dbeta = _channel_sums(dy_flat)
    if not cache.train:  # y is affine in x: dx = gamma s dy, dgamma = s sum(dy (x - running_mean))
        dgamma = _channel_sums(dy_flat, c_flat - cache.batch_mean.reshape(1, C, 1)) * inv_std  # (C,) -> (1, C, 1)
        return (dy_flat * (gamma * inv_std).reshape(1, C, 1)).reshape(dy.shape), dgamma, dbeta  # (C,) -> (1, C, 1)
    dy_c = _channel_sums(dy_flat, c_flat)  # sum(dy * centered)
    dgamma = dy_c * inv_std
    k1 = gamma * inv_std
    dx = _affine(dy_flat, k1, -k1 * dbeta / M)
    dx -= c_flat * (k1 * inv_std * inv_std * dy_c / M).reshape(1, C, 1)  # (C,) -> (1, C, 1)
    return dx.reshape(dy.shape), dgamma, dbeta  # (N, C, H*W) -> (N, C, H, W)


def update_running_stats(running_mean: Array, running_var: Array, cache: BatchNormCache,
                         count: int, momentum: float = 0.1) -> tuple[Array, Array]:
    """New running (mean, var) after a training batch of ``count`` values per channel."""
    unbiased = cache.batch_var * (count / max(count - 1, 1))
    return ((1 - momentum) * running_mean + momentum * cache.batch_mean,
            (1 - momentum) * running_var + momentum * unbiased)
