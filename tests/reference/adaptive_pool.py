"""Naive loop reference for adaptive average pooling over PyTorch's bins (float64, host only)."""

from __future__ import annotations

import math

import numpy


def adaptive_reference(x, out_hw):
    """Naive loop over PyTorch's bins: start = floor(i*H/OH), end = ceil((i+1)*H/OH)."""
    N, C, H, W = x.shape
    OH, OW = (H if out_hw[0] is None else out_hw[0]), (W if out_hw[1] is None else out_hw[1])
    y = numpy.zeros((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            r0, r1 = math.floor(i * H / OH), math.ceil((i + 1) * H / OH)
            c0, c1 = math.floor(j * W / OW), math.ceil((j + 1) * W / OW)
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y
