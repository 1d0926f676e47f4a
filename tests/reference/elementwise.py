"""Naive host references for activations, losses and batch norm: Python floats and math, element by element."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy

SQRT2 = math.sqrt(2.0)
TANH_C = math.sqrt(2.0 / math.pi)


def _map(fn: Callable[[float], float], x) -> numpy.ndarray:
    x = numpy.asarray(x, dtype=numpy.float64)
    out = numpy.empty(x.shape, dtype=numpy.float64)
    for idx in numpy.ndindex(x.shape):
        out[idx] = fn(float(x[idx]))
    return out


def relu(x) -> numpy.ndarray:
    return _map(lambda v: v if v > 0 else 0.0, x)


def leaky_relu(x, negative_slope: float) -> numpy.ndarray:
    return _map(lambda v: v if v > 0 else negative_slope * v, x)


def _sigmoid(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def sigmoid(x) -> numpy.ndarray:
    return _map(_sigmoid, x)


def tanh(x) -> numpy.ndarray:
    return _map(math.tanh, x)


def gelu(x, approximate: str = "none") -> numpy.ndarray:
    """Exact GELU x * Phi(x) from math.erf, or the tanh form."""
    if approximate == "tanh":
        return _map(lambda v: 0.5 * v * (1.0 + math.tanh(TANH_C * (v + 0.044715 * v ** 3))), x)
    return _map(lambda v: v * 0.5 * (1.0 + math.erf(v / SQRT2)), x)


def _logsumexp(row: list[float]) -> float:
    m = max(row)
    if m == -math.inf:
        return -math.inf
    return m + math.log(math.fsum(math.exp(v - m) for v in row))


def _rows(fn: Callable[[list[float]], list[float]], x, axis: int) -> numpy.ndarray:
    """Apply ``fn`` to every 1-D slice of ``x`` along ``axis``."""
    moved = numpy.moveaxis(numpy.asarray(x, dtype=numpy.float64), axis, -1)
    out = numpy.empty(moved.shape, dtype=numpy.float64)
    for idx in numpy.ndindex(moved.shape[:-1]):
        out[idx] = fn([float(v) for v in moved[idx]])
    return numpy.moveaxis(out, -1, axis)


def log_softmax(x, axis: int = 1) -> numpy.ndarray:
    def row_fn(row):
        lse = _logsumexp(row)
        return [v - lse for v in row]
    return _rows(row_fn, x, axis)


def softmax(x, axis: int = 1) -> numpy.ndarray:
    def row_fn(row):
        lse = _logsumexp(row)
        return [math.exp(v - lse) for v in row]
    return _rows(row_fn, x, axis)


def target_distribution(target, num_classes: int, label_smoothing: float = 0.0) -> numpy.ndarray:
    """q (N, K): one-hot of integer labels, or the given probabilities, then (1 - e) q + e / K."""
    target = numpy.asarray(target)
    q = numpy.zeros((target.shape[0], num_classes), dtype=numpy.float64)
    for n in range(target.shape[0]):
        for k in range(num_classes):
            if target.dtype.kind in "iu":
                base = 1.0 if int(target[n]) == k else 0.0
            else:
                base = float(target[n, k])
            q[n, k] = (1.0 - label_smoothing) * base + label_smoothing / num_classes
    return q


def softmax_cross_entropy(logits, target, reduction: str = "mean",
                          label_smoothing: float = 0.0) -> tuple[float, numpy.ndarray]:
    """(loss, dlogits), sample by sample: loss_n = -sum_k q_nk (z_nk - lse_n)."""
    logits = numpy.asarray(logits, dtype=numpy.float64)
    N, K = logits.shape
    q = target_distribution(target, K, label_smoothing)
    losses = []
    grad = numpy.empty((N, K), dtype=numpy.float64)
    for n in range(N):
        row = [float(v) for v in logits[n]]
        lse = _logsumexp(row)
        losses.append(-math.fsum(q[n, k] * (row[k] - lse) for k in range(K) if q[n, k] != 0))
        for k in range(K):
            grad[n, k] = math.exp(row[k] - lse) - q[n, k]
    if reduction == "mean":
        return math.fsum(losses) / N, grad / N
    return math.fsum(losses), grad


def mse(pred, target, reduction: str = "mean") -> tuple[float, numpy.ndarray]:
    pred = numpy.asarray(pred, dtype=numpy.float64)
    target = numpy.asarray(target, dtype=numpy.float64)
    scale = 1.0 / pred.size if reduction == "mean" else 1.0
    terms, grad = [], numpy.empty(pred.shape, dtype=numpy.float64)
    for idx in numpy.ndindex(pred.shape):
        d = float(pred[idx]) - float(target[idx])
        terms.append(d * d)
        grad[idx] = 2.0 * d * scale
    return math.fsum(terms) * scale, grad


def _log_sigmoid(v: float) -> float:
    return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))


def binary_cross_entropy_with_logits(logits, target, reduction: str = "mean") -> tuple[float, numpy.ndarray]:
    """-(t log sigmoid(z) + (1 - t) log sigmoid(-z)) per element, and (sigmoid(z) - t) * scale."""
    logits = numpy.asarray(logits, dtype=numpy.float64)
    target = numpy.asarray(target, dtype=numpy.float64)
    scale = 1.0 / logits.size if reduction == "mean" else 1.0
    terms, grad = [], numpy.empty(logits.shape, dtype=numpy.float64)
    for idx in numpy.ndindex(logits.shape):
        z, t = float(logits[idx]), float(target[idx])
        terms.append(-(t * _log_sigmoid(z) + (1.0 - t) * _log_sigmoid(-z)))
        grad[idx] = (_sigmoid(z) - t) * scale
    return math.fsum(terms) * scale, grad


def channel_stats(x) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Per-channel (mean, biased variance, unbiased variance) of an (N, C, H, W) array."""
    x = numpy.asarray(x, dtype=numpy.float64)
    C = x.shape[1]
    mean, var, unbiased = (numpy.empty(C) for _ in range(3))
    for c in range(C):
        values = [float(v) for v in x[:, c].ravel()]
        m = math.fsum(values) / len(values)
        ss = math.fsum((v - m) ** 2 for v in values)
        mean[c], var[c] = m, ss / len(values)
        unbiased[c] = ss / (len(values) - 1) if len(values) > 1 else math.nan
    return mean, var, unbiased


def batch_norm2d(x, gamma, beta, running_mean=None, running_var=None, train: bool = True,
                 eps: float = 1e-5) -> numpy.ndarray:
    """y = gamma (x - mu) / sqrt(var + eps) + beta, channel by channel (batch stats when ``train``)."""
    x = numpy.asarray(x, dtype=numpy.float64)
    batch_mean, batch_var, _ = channel_stats(x)
    y = numpy.empty(x.shape, dtype=numpy.float64)
    for c in range(x.shape[1]):
        m = batch_mean[c] if train else float(running_mean[c])
        v = batch_var[c] if train else float(running_var[c])
        s = 1.0 / math.sqrt(v + eps)
        for idx in numpy.ndindex(x.shape[0], x.shape[2], x.shape[3]):
            n, h, w = idx
            y[n, c, h, w] = float(gamma[c]) * (float(x[n, c, h, w]) - m) * s + float(beta[c])
    return y


def running_stats(running_mean, running_var, x, momentum: float) -> tuple[numpy.ndarray, numpy.ndarray]:
    """PyTorch's rule: r <- (1 - momentum) r + momentum * batch stat, variance unbiased (M / (M - 1))."""
    batch_mean, _, unbiased = channel_stats(x)
    C = len(batch_mean)
    new_mean, new_var = numpy.empty(C), numpy.empty(C)
    for c in range(C):
        new_mean[c] = (1 - momentum) * float(running_mean[c]) + momentum * batch_mean[c]
        new_var[c] = (1 - momentum) * float(running_var[c]) + momentum * unbiased[c]
    return new_mean, new_var
