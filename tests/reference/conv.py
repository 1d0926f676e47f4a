"""Naive loop references for 2-D convolution, im2col/col2im and TF-style "same" padding (float64, host only)."""

from __future__ import annotations

import math

import numpy


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def explicit_pads(padding):
    """int | (ph, pw) | ((pt, pb), (pl, pr)) -> ((pt, pb), (pl, pr))."""
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    first, second = padding
    if isinstance(first, int):
        return (first, first), (second, second)
    return tuple(first), tuple(second)


def span(kernel, dilation):
    return dilation * (kernel - 1) + 1


def out_len(size, kernel, stride, pad_total, dilation=1):
    """Count the window start positions p*stride (p = 0, 1, ...) that fit in the padded input."""
    count, start = 0, 0
    while start + span(kernel, dilation) <= size + pad_total:
        count += 1
        start += stride
    return count


def same_pads_ref(size, kernel, stride, dilation=1):
    """TF "same": the least total padding giving ceil(size / stride) outputs, the extra pixel at the end."""
    target = math.ceil(size / stride)
    total = 0
    while out_len(size, kernel, stride, total, dilation) < target:
        total += 1
    return total // 2, total - total // 2


def pad(x, pads):
    (pt, pb), (pl, pr) = pads
    N, C, H, W = x.shape
    out = numpy.zeros((N, C, pt + H + pb, pl + W + pr), dtype=numpy.float64)
    for h in range(H):
        for w in range(W):
            out[:, :, pt + h, pl + w] = x[:, :, h, w]
    return out


def conv2d(x, weight, bias=None, stride=1, pads=0, dilation=1, groups=1):
    """y[n, o, p, q] = b[o] + sum_{c,i,j} w[o,c,i,j] * xpad[n, g*Cg + c, p*SH + i*DH, q*SW + j*DW], in float64."""
    x = numpy.asarray(x, dtype=numpy.float64)
    weight = numpy.asarray(weight, dtype=numpy.float64)
    (SH, SW), (DH, DW) = pair(stride), pair(dilation)
    pads = explicit_pads(pads)
    N, C, H, W = x.shape
    C_out, Cg, KH, KW = weight.shape
    assert C == Cg * groups and C_out % groups == 0
    OH = out_len(H, KH, SH, sum(pads[0]), DH)
    OW = out_len(W, KW, SW, sum(pads[1]), DW)
    xpad = pad(x, pads)
    per_group = C_out // groups
    y = numpy.zeros((N, C_out, OH, OW), dtype=numpy.float64)
    for n in range(N):
        for o in range(C_out):
            g = o // per_group
            for p in range(OH):
                for q in range(OW):
                    total = 0.0 if bias is None else float(bias[o])
                    for c in range(Cg):
                        for i in range(KH):
                            for j in range(KW):
                                total += weight[o, c, i, j] * xpad[n, g * Cg + c, p * SH + i * DH, q * SW + j * DW]
                    y[n, o, p, q] = total
    return y


def im2col(x, kernel, stride, pads, dilation=(1, 1), pad_value=0.0):
    """cols[n, c, i, j, oh, ow] = xpad[n, c, oh*SH + i*DH, ow*SW + j*DW] by direct loops."""
    x = numpy.asarray(x)
    (KH, KW), (SH, SW), (DH, DW) = kernel, stride, dilation
    (pt, pb), (pl, pr) = pads
    N, C, H, W = x.shape
    OH = out_len(H, KH, SH, pt + pb, DH)
    OW = out_len(W, KW, SW, pl + pr, DW)
    xpad = numpy.full((N, C, pt + H + pb, pl + W + pr), pad_value, dtype=x.dtype)
    xpad[:, :, pt:pt + H, pl:pl + W] = x
    cols = numpy.zeros((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            for oh in range(OH):
                for ow in range(OW):
                    cols[:, :, i, j, oh, ow] = xpad[:, :, oh * SH + i * DH, ow * SW + j * DW]
    return cols


def col2im(cols, x_shape, stride, pads, dilation=(1, 1)):
    """Adds every cols entry back to the input pixel it was read from (padding dropped)."""
    cols = numpy.asarray(cols)
    N, C, KH, KW, OH, OW = cols.shape
    (SH, SW), (DH, DW) = stride, dilation
    (pt, pb), (pl, pr) = pads
    H, W = x_shape[2], x_shape[3]
    xpad = numpy.zeros((N, C, pt + H + pb, pl + W + pr), dtype=cols.dtype)
    for i in range(KH):
        for j in range(KW):
            for oh in range(OH):
                for ow in range(OW):
                    xpad[:, :, oh * SH + i * DH, ow * SW + j * DW] += cols[:, :, i, j, oh, ow]
    return xpad[:, :, pt:pt + H, pl:pl + W].copy()
