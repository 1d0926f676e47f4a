"""Naive loop references (host numpy, float64) for pooling, global average pooling and nearest upsampling."""

from __future__ import annotations

import numpy


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def windows(shape, kernel_size, stride=None, padding=0):
    """(OH, OW) and, per output pixel (a, b), the real input cells of its window in row-major window order.

    Cells that fall on the padding are left out: they never win a max/min, and for average
    pooling they only count in the divisor.
    """
    _, _, h, w = shape
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    assert oh >= 1 and ow >= 1, "reference called with an empty output"
    cells = {}
    for a in range(oh):
        for b in range(ow):
            cells[a, b] = [(a * sh + di - ph, b * sw + dj - pw)
                           for di in range(kh) for dj in range(kw)
                           if 0 <= a * sh + di - ph < h and 0 <= b * sw + dj - pw < w]
            assert cells[a, b], "a window holds padding only"
    return (oh, ow), cells


def _gather(x, cells):
    """(N, C, K): the values of x at the K given cells."""
    return numpy.stack([x[:, :, i, j] for i, j in cells], axis=-1)


def extreme_pool(x, kernel_size, stride=None, padding=0, largest=True):
    """Max (largest=True) or min pooling of x (N, C, H, W); padding never wins."""
    x = numpy.asarray(x, dtype=numpy.float64)
    (oh, ow), cells = windows(x.shape, kernel_size, stride, padding)
    y = numpy.empty(x.shape[:2] + (oh, ow))
    for (a, b), window in cells.items():
        values = _gather(x, window)
        y[:, :, a, b] = values.max(axis=-1) if largest else values.min(axis=-1)
    return y


def extreme_pool_backward(x, dy, kernel_size, stride=None, padding=0, largest=True):
    """dL/dx: each dy goes to the FIRST arg-max (arg-min) of its window, in row-major window order."""
    x = numpy.asarray(x, dtype=numpy.float64)
    dy = numpy.asarray(dy, dtype=numpy.float64)
    _, cells = windows(x.shape, kernel_size, stride, padding)
    dx = numpy.zeros_like(x)
    n, c = x.shape[:2]
    for (a, b), window in cells.items():
        values = _gather(x, window)
        for s in range(n):
            for ch in range(c):
                row = list(values[s, ch])
                best = max(row) if largest else min(row)
                i, j = window[row.index(best)]
                dx[s, ch, i, j] += dy[s, ch, a, b]
    return dx


def max_pool(x, kernel_size, stride=None, padding=0):
    return extreme_pool(x, kernel_size, stride, padding, largest=True)


def min_pool(x, kernel_size, stride=None, padding=0):
    return extreme_pool(x, kernel_size, stride, padding, largest=False)


def max_pool_backward(x, dy, kernel_size, stride=None, padding=0):
    return extreme_pool_backward(x, dy, kernel_size, stride, padding, largest=True)


def min_pool_backward(x, dy, kernel_size, stride=None, padding=0):
    return extreme_pool_backward(x, dy, kernel_size, stride, padding, largest=False)


def _divisor(window, kernel_size, count_include_pad):
    kh, kw = _pair(kernel_size)
    return kh * kw if count_include_pad else len(window)


def avg_pool(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling: window sum over KH*KW (padding counted) or over the real cells only."""
    x = numpy.asarray(x, dtype=numpy.float64)
    (oh, ow), cells = windows(x.shape, kernel_size, stride, padding)
    y = numpy.empty(x.shape[:2] + (oh, ow))
    for (a, b), window in cells.items():
        total = numpy.zeros(x.shape[:2])
        for i, j in window:
            total += x[:, :, i, j]
        y[:, :, a, b] = total / _divisor(window, kernel_size, count_include_pad)
    return y


def avg_pool_backward(x_shape, dy, kernel_size, stride=None, padding=0, count_include_pad=True):
    """dL/dx of average pooling: dy / divisor added to every real cell of the window."""
    dy = numpy.asarray(dy, dtype=numpy.float64)
    _, cells = windows(x_shape, kernel_size, stride, padding)
    dx = numpy.zeros(x_shape)
    for (a, b), window in cells.items():
        share = dy[:, :, a, b] / _divisor(window, kernel_size, count_include_pad)
        for i, j in window:
            dx[:, :, i, j] += share
    return dx


def global_avg_pool(x, keepdims=False):
    """Mean over H and W, pixel by pixel: (N, C) or (N, C, 1, 1)."""
    x = numpy.asarray(x, dtype=numpy.float64)
    n, c, h, w = x.shape
    total = numpy.zeros((n, c))
    for i in range(h):
        for j in range(w):
            total += x[:, :, i, j]
    y = total / (h * w)
    return y.reshape(n, c, 1, 1) if keepdims else y


def global_avg_pool_backward(x_shape, dy):
    """Every pixel of channel (n, c) gets dy[n, c] / (H * W)."""
    n, c, h, w = x_shape
    dy = numpy.asarray(dy, dtype=numpy.float64).reshape(n, c)
    dx = numpy.zeros(x_shape)
    for i in range(h):
        for j in range(w):
            dx[:, :, i, j] = dy / (h * w)
    return dx


def upsample_nearest(x, scale_factor):
    """y[n, c, h, w] = x[n, c, h // SH, w // SW]."""
    x = numpy.asarray(x, dtype=numpy.float64)
    sh, sw = _pair(scale_factor)
    n, c, h, w = x.shape
    y = numpy.empty((n, c, h * sh, w * sw))
    for i in range(h * sh):
        for j in range(w * sw):
            y[:, :, i, j] = x[:, :, i // sh, j // sw]
    return y


def upsample_nearest_backward(dy, scale_factor):
    """dL/dx[n, c, i, j]: the sum of dy over the SH x SW block copied from x[n, c, i, j]."""
    dy = numpy.asarray(dy, dtype=numpy.float64)
    sh, sw = _pair(scale_factor)
    n, c, hs, ws = dy.shape
    dx = numpy.zeros((n, c, hs // sh, ws // sw))
    for i in range(hs):
        for j in range(ws):
            dx[:, :, i // sh, j // sw] += dy[:, :, i, j]
    return dx
