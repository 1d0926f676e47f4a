"""Naive loop reference for the 2-D transposed convolution (float64, host only)."""

from __future__ import annotations

import numpy


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def scatter_reference(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Naive loop: every input pixel adds its value times the kernel into the output (float64, host)."""
    (SH, SW), (PH, PW), (OPH, OPW), (DH, DW) = (_pair(v) for v in (stride, padding, output_padding, dilation))
    N, C_in, H, W = x.shape
    _, Og, KH, KW = w.shape
    Cg = C_in // groups
    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1
    OW = (W - 1) * SW - 2 * PW + DW * (KW - 1) + OPW + 1
    y = numpy.zeros((N, Og * groups, OH, OW))
    for n in range(N):
        for c in range(C_in):
            g = c // Cg
            for p in range(H):
                for q in range(W):
                    for o in range(Og):
                        for i in range(KH):
                            for j in range(KW):
                                r, s = p * SH + i * DH - PH, q * SW + j * DW - PW
                                if 0 <= r < OH and 0 <= s < OW:
                                    y[n, g * Og + o, r, s] += x[n, c, p, q] * w[c, o, i, j]
    return y if b is None else y + numpy.asarray(b).reshape(1, -1, 1, 1)
