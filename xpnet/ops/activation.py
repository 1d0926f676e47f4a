r"""Elementwise activations and softmax, each with its derivative.

    relu        y = max(x, 0)                          dx = dy * [x > 0]
    leaky_relu  y = x if x > 0 else a*x                dx = dy * (1 if x > 0 else a)
    sigmoid     y = 1 / (1 + exp(-x))                  dx = dy * y * (1 - y)
    tanh        y = tanh(x)                            dx = dy * (1 - y^2)
    gelu        y = x * Phi(x)                         dx = dy * (Phi(x) + x * phi(x))
    softmax     y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j
                                                       dx = y * (dy - sum_j dy_j y_j)
    log_softmax y_i = x_i - m - log sum_j exp(x_j - m) dx = dy - exp(y) * sum_j dy_j

Phi and phi are the standard normal CDF and density.  Subtracting the row maximum m
keeps softmax finite for logits of any size; sigmoid uses exp(-|x|), which never
overflows.  Every op is finite for |x| up to 1e4 (and beyond) in float32 and float64.
"""

from __future__ import annotations

import math

from ..backend import Array, get_xp
from ._args import check_float


def relu_forward(x: Array) -> tuple[Array, Array]:
    """y = max(x, 0); the cache is y (its positive entries mark where x > 0)."""
    check_float(x, "relu input")
    y = get_xp(x).maximum(x, 0)
    return y, y


def relu_backward(dy: Array, cache: Array) -> Array:
    """dx = dy where x > 0, else 0."""
    return dy * (cache > 0)


def leaky_relu_forward(x: Array, negative_slope: float = 0.01) -> tuple[Array, tuple[Array, float]]:
    """y = x for x > 0, negative_slope * x otherwise."""
    check_float(x, "leaky_relu input")
    xp = get_xp(x)
    positive = x > 0
    return xp.where(positive, x, x * negative_slope), (positive, negative_slope)


def leaky_relu_backward(dy: Array, cache: tuple[Array, float]) -> Array:
    """dx = dy for x > 0, negative_slope * dy otherwise."""
    positive, slope = cache
    return get_xp(dy).where(positive, dy, dy * slope)


def sigmoid_forward(x: Array) -> tuple[Array, Array]:
    """y = 1 / (1 + exp(-x)), computed from exp(-|x|) so it never overflows."""
    check_float(x, "sigmoid input")
    xp = get_xp(x)
    e = xp.exp(-xp.abs(x))
    y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return y, y


def sigmoid_backward(dy: Array, cache: Array) -> Array:
    """dx = dy * y * (1 - y)."""
    return dy * cache * (1 - cache)


def tanh_forward(x: Array) -> tuple[Array, Array]:
    """y = tanh(x)."""
    check_float(x, "tanh input")
    y = get_xp(x).tanh(x)
    return y, y


def tanh_backward(dy: Array, cache: Array) -> Array:
    """dx = dy * (1 - y^2)."""
    return dy * (1 - cache * cache)


def _erfc(x: Array) -> Array:
    """Complementary error function, |relative error| < 1.2e-7 (Chebyshev fit, Numerical Recipes 6.2).

    numpy has no erf, and xpnet must not need scipy; this formula is enough for float32
    and smooth, so its own derivative matches the analytic one used in gelu_backward.
    """
    xp = get_xp(x)
    z = xp.abs(x)
    t = 1 / (1 + 0.5 * z)
    poly = -0.82215223 + t * 0.17087277
    for c in (1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        poly = c + t * poly
    tail = t * xp.exp(-z * z - 1.26551223 + t * poly)
    return xp.where(x >= 0, tail, 2 - tail)


_TANH_C = math.sqrt(2 / math.pi)


def gelu_forward(x: Array, approximate: str = "none") -> tuple[Array, tuple[Array, str]]:
    """y = x * Phi(x); ``approximate="tanh"`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    check_float(x, "gelu input")
    xp = get_xp(x)
    if approximate == "tanh":
        y = 0.5 * x * (1 + xp.tanh(_TANH_C * (x + 0.044715 * x ** 3)))
    elif approximate == "none":
        y = x * (0.5 * _erfc(-x / math.sqrt(2)))
    else:
        raise ValueError(f"gelu approximate must be 'none' or 'tanh'; received {approximate!r}")
    return y.astype(x.dtype, copy=False), (x, approximate)


def gelu_backward(dy: Array, cache: tuple[Array, str]) -> Array:
    """dx = dy * d/dx[x Phi(x)] (or of the tanh form)."""
    x, approximate = cache
    xp = get_xp(x)
    if approximate == "tanh":
        t = xp.tanh(_TANH_C * (x + 0.044715 * x ** 3))
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _TANH_C * (1 + 3 * 0.044715 * x * x)
    else:
        cdf = 0.5 * _erfc(-x / math.sqrt(2))
        slope = cdf + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return (dy * slope).astype(dy.dtype, copy=False)


def softmax_forward(x: Array, axis: int = 1) -> tuple[Array, tuple[Array, int]]:
    """y = exp(x - max) / sum(exp(x - max)) along ``axis`` (the class axis, 1 by default)."""
    check_float(x, "softmax input")
    xp = get_xp(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return y, (y, axis)


def softmax_backward(dy: Array, cache: tuple[Array, int]) -> Array:
    """dx = y * (dy - sum(dy * y))."""
    y, axis = cache
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax_forward(x: Array, axis: int = 1) -> tuple[Array, tuple[Array, int]]:
    """y = x - max - log(sum(exp(x - max))) along ``axis``."""
    check_float(x, "log_softmax input")
    xp = get_xp(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return y, (y, axis)


def log_softmax_backward(dy: Array, cache: tuple[Array, int]) -> Array:
    """dx = dy - softmax(x) * sum(dy)."""
    y, axis = cache
    return dy - get_xp(y).exp(y) * dy.sum(axis=axis, keepdims=True)
