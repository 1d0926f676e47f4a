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
    """Normalised input and scale of the forward pass, plus the batch statistics."""

    xhat: Array
    inv_std: Array      # (1, C, 1, 1)
    gamma: Array
    train: bool
    batch_mean: Array | None
    batch_var: Array | None  # biased


def check_batchnorm_input(x: Array, num_features: int, who: str = "batch_norm2d") -> None:
    """ShapeError/DTypeError unless x is a float (N, num_features, H, W) array."""
    check_float(x, f"{who} input")
    if x.ndim != 4 or x.shape[1] != num_features:
        raise ShapeError(f"{who} expects input (N, {num_features}, H, W), got shape {tuple(x.shape)}")


def batch_norm2d_forward(x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array,
                         train: bool = True, eps: float = 1e-5) -> tuple[Array, BatchNormCache]:
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel; batch statistics when ``train``."""
    check_batchnorm_input(x, gamma.shape[0])
    if any(a.dtype != x.dtype for a in (gamma, beta, running_mean, running_var)):
        raise DTypeError(f"batch_norm2d input and parameters must share one dtype; got input {x.dtype}, "
                         f"gamma {gamma.dtype}, running_var {running_var.dtype}")
    xp = get_xp(x, gamma, beta, running_mean, running_var)
    C = x.shape[1]
    if train:
        if x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ShapeError(f"batch_norm2d needs more than one value per channel in training, "
                             f"got input shape {tuple(x.shape)}")
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / xp.sqrt(var.reshape(1, C, 1, 1) + eps)  # (1, C, 1, 1)
    xhat = (x - mean.reshape(1, C, 1, 1)) * inv_std
    y = xhat * gamma.reshape(1, C, 1, 1) + beta.reshape(1, C, 1, 1)
    stats = (mean, var) if train else (None, None)
    return y, BatchNormCache(xhat, inv_std, gamma, train, *stats)


def batch_norm2d_backward(dy: Array, cache: BatchNormCache) -> tuple[Array, Array, Array]:
    """``(dx, dgamma, dbeta)`` of batch normalisation."""
    xhat, inv_std, gamma = cache.xhat, cache.inv_std, cache.gamma
    C = gamma.shape[0]
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    g = dy * gamma.reshape(1, C, 1, 1)
    if not cache.train:
        return g * inv_std, dgamma, dbeta
    M = dy.shape[0] * dy.shape[2] * dy.shape[3]
    g_sum = g.sum(axis=(0, 2, 3), keepdims=True)
    gx_sum = (g * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dx = inv_std / M * (M * g - g_sum - xhat * gx_sum)
    return dx, dgamma, dbeta


def update_running_stats(running_mean: Array, running_var: Array, cache: BatchNormCache,
                         count: int, momentum: float = 0.1) -> tuple[Array, Array]:
    """New running (mean, var) after a training batch of ``count`` values per channel."""
    unbiased = cache.batch_var * (count / max(count - 1, 1))
    return ((1 - momentum) * running_mean + momentum * cache.batch_mean,
            (1 - momentum) * running_var + momentum * unbiased)
