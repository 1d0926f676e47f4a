"""im2col and col2im: turning windowed ops into one matrix product.

Notation used in every op module:

    N          batch size
    C          input channels            H, W    input height and width
    KH, KW     kernel (window) size      SH, SW  stride
    DH, DW     dilation                  (PT, PB), (PL, PR)  padding top/bottom, left/right
    OH, OW     output size: OH = (H + PT + PB - DH * (KH - 1) - 1) // SH + 1

``im2col`` gathers, for every output pixel, the KH x KW input values it sees:
``cols[n, c, i, j, oh, ow] = x_padded[n, c, oh * SH + i * DH, ow * SW + j * DW]``.
It is a loop over the KH x KW kernel positions, each one a strided slice copy of the
whole batch, so it works unchanged on numpy and cupy.  With ``batch_last=True`` the
columns are laid out as (C, KH, KW, N, OH, OW) instead: then a convolution over the
whole batch is a single matrix product (C_out, C*KH*KW) @ (C*KH*KW, N*OH*OW), which
BLAS runs much faster than N small products.  ``col2im`` is its adjoint:
the same loop with ``+=``.  Within one statement the written positions are distinct,
so the sums are deterministic (no ``add.at``, no atomics).

For stride 1 there is a copy-friendlier layout, the *grid* layout: with the image padded
to Hp x Wp and flattened to ``grid (C, N*Hp*Wp)``, kernel tap (i, j) is the same grid shifted
by ``i*DH*Wp + j*DW``, so ``cols[c, i, j, :]`` is one contiguous run instead of N*C*OH short
strided ones.  Its columns are the Hp x Wp grid positions rather than the OH x OW outputs;
the extra ones straddle a row or image edge.  ``col2im_grid`` (the adjoint) is what the
convolution's input gradient uses, with zeros in those extra columns.
"""

from __future__ import annotations

import math

from ..backend import Array, get_xp
from ..errors import ShapeError
from ._args import Pads


def output_size(size: int, kernel: int, stride: int, pads: tuple[int, int], dilation: int = 1) -> int:
    """Output length of a window op along one axis (may be < 1 for an input that is too small)."""
    return (size + pads[0] + pads[1] - dilation * (kernel - 1) - 1) // stride + 1


def output_hw(hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              pads: Pads, dilation: tuple[int, int] = (1, 1), who: str = "window op") -> tuple[int, int]:
    """(OH, OW) of a window op; ShapeError when the padded input is smaller than the window."""
    oh, ow = (output_size(hw[a], kernel[a], stride[a], pads[a], dilation[a]) for a in (0, 1))
    if oh < 1 or ow < 1:
        padded = (hw[0] + sum(pads[0]), hw[1] + sum(pads[1]))
        span = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
        raise ShapeError(
            f"{who}: padded input {padded[0]}x{padded[1]} is smaller than the "
            f"{'dilated ' if span != tuple(kernel) else ''}kernel {span[0]}x{span[1]} "
            f"(output would be {oh}x{ow}); input H x W was {hw[0]}x{hw[1]}")
    return oh, ow


def pad_input(x: Array, pads: Pads, value: float = 0.0) -> Array:
    """x (N, C, H, W) -> (N, C, PT + H + PB, PL + W + PR), borders filled with ``value``."""
    if pads == ((0, 0), (0, 0)):
        return x
    xp = get_xp(x)
    N, C, H, W = x.shape
    (pt, pb), (pl, pr) = pads
    padded = xp.empty((N, C, pt + H + pb, pl + W + pr), dtype=x.dtype)
    padded[:, :, :pt] = value  # the border only: the inside is written once, below
    padded[:, :, pt + H:] = value
    padded[:, :, pt:pt + H, :pl] = value
    padded[:, :, pt:pt + H, pl + W:] = value
    padded[:, :, pt:pt + H, pl:pl + W] = x
    return padded


def window_slices(i: int, j: int, out_hw: tuple[int, int], stride: tuple[int, int],
                   dilation: tuple[int, int]) -> tuple[slice, slice]:
    """Rows/columns of the padded input that kernel position (i, j) sees, for every output pixel."""
    top, left = i * dilation[0], j * dilation[1]
    return (slice(top, top + stride[0] * (out_hw[0] - 1) + 1, stride[0]),
            slice(left, left + stride[1] * (out_hw[1] - 1) + 1, stride[1]))


ROW_PASS_BYTES = 4 * 2**20  # im2col/col2im go in two passes when the intermediate fits in cache


def _tap(axis: int, k: int) -> tuple:
    """Index of kernel tap k along ``axis`` (the KH axis of cols, the KW axis of the row buffer)."""
    return (slice(None),) * axis + (k,)


def _row_buffer_shape(lead: tuple[int, int], KW: int, Hp: int, OW: int, batch_last: bool) -> tuple[int, ...]:
    """(C, KW, N, Hp, OW) with ``batch_last``, else (N, C, KW, Hp, OW): cols without KH, Hp for OH."""
    return (lead[0], KW, lead[1], Hp, OW) if batch_last else (*lead, KW, Hp, OW)


def im2col(x: Array, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
           dilation: tuple[int, int] = (1, 1), pad_value: float = 0.0, batch_last: bool = False) -> Array:
    """x (N, C, H, W) -> cols (N, C, KH, KW, OH, OW), or (C, KH, KW, N, OH, OW) with ``batch_last``.

    When the intermediate fits in ``ROW_PASS_BYTES`` it goes in two passes: KW column-shifted
    copies of the whole padded image (rows kept, Hp x OW each), then KH row shifts of those,
    whose copies are runs of OH*OW (for row stride 1) instead of OW: far fewer short runs.
    """
    xp = get_xp(x)
    N, C, H, W = x.shape
    KH, KW = kernel
    OH, OW = output_hw((H, W), kernel, stride, pads, dilation)
    if batch_last:
        x = x.transpose(1, 0, 2, 3)  # (N, C, H, W) -> (C, N, H, W), a view
        if pads == ((0, 0), (0, 0)):  # with padding, pad_input makes the contiguous copy
            x = xp.ascontiguousarray(x)  # slicing a contiguous copy keeps every copy below sequential
    padded = pad_input(x, pads, pad_value)  # (C, N, Hp, Wp) or (N, C, Hp, Wp)
    lead, Hp = padded.shape[:2], padded.shape[2]
    axis = 1 if batch_last else 2  # of KH in cols and of KW in the row buffer
    cols = xp.empty((C, KH, KW, N, OH, OW) if batch_last else (N, C, KH, KW, OH, OW), dtype=x.dtype)
    row_shape = _row_buffer_shape(lead, KW, Hp, OW, batch_last)
    if math.prod(row_shape) * x.itemsize <= ROW_PASS_BYTES:
        shifted = xp.empty(row_shape, dtype=x.dtype)
        for j in range(KW):
            shifted[_tap(axis, j)] = padded[:, :, :, window_slices(0, j, (OH, OW), stride, dilation)[1]]
        for i in range(KH):
            cols[_tap(axis, i)] = shifted[:, :, :, window_slices(i, 0, (OH, OW), stride, dilation)[0]]
        return cols
    for i in range(KH):
        for j in range(KW):
            rows, columns = window_slices(i, j, (OH, OW), stride, dilation)
            cols[_tap(axis, i) + (j,)] = padded[:, :, rows, columns]
    return cols


def col2im(cols: Array, x_shape: tuple[int, ...], stride: tuple[int, int], pads: Pads,
           dilation: tuple[int, int] = (1, 1), batch_last: bool = False) -> Array:
    """cols (N, C, KH, KW, OH, OW) (or (C, KH, KW, N, OH, OW) with ``batch_last``) -> (N, C, H, W).

    Sums every window value back to the pixel it came from (in two passes, the reverse of
    :func:`im2col`'s, when the intermediate fits in ``ROW_PASS_BYTES``).
    """
    xp = get_xp(cols)
    if batch_last:
        C, KH, KW, N, OH, OW = cols.shape
    else:
        N, C, KH, KW, OH, OW = cols.shape
    H, W = x_shape[2], x_shape[3]
    (pt, pb), (pl, pr) = pads
    lead = (C, N) if batch_last else (N, C)  # accumulate in the layout of cols: sequential adds
    axis = 1 if batch_last else 2
    padded = xp.zeros(lead + (pt + H + pb, pl + W + pr), dtype=cols.dtype)
    row_shape = _row_buffer_shape(lead, KW, pt + H + pb, OW, batch_last)
    if math.prod(row_shape) * cols.itemsize <= ROW_PASS_BYTES:
        shifted = xp.zeros(row_shape, dtype=cols.dtype)
        for i in range(KH):
            shifted[:, :, :, window_slices(i, 0, (OH, OW), stride, dilation)[0]] += cols[_tap(axis, i)]
        for j in range(KW):
            padded[:, :, :, window_slices(0, j, (OH, OW), stride, dilation)[1]] += shifted[_tap(axis, j)]
    else:
        for i in range(KH):
            for j in range(KW):
                rows, columns = window_slices(i, j, (OH, OW), stride, dilation)
                padded[:, :, rows, columns] += cols[_tap(axis, i) + (j,)]
    image = padded[:, :, pt:pt + H, pl:pl + W]
    if batch_last:
        image = image.transpose(1, 0, 2, 3)  # (C, N, H, W) -> (N, C, H, W)
    elif pads == ((0, 0), (0, 0)):
        return padded
    return xp.ascontiguousarray(image)


def padded_hw(x_shape: tuple[int, ...], pads: Pads) -> tuple[int, int]:
    """(Hp, Wp): height and width of an (N, C, H, W) input after padding."""
    return x_shape[2] + sum(pads[0]), x_shape[3] + sum(pads[1])


def _grid_offsets(kernel: tuple[int, int], dilation: tuple[int, int], Wp: int) -> list[tuple[int, int, int]]:
    """(i, j, offset) of every kernel tap: where its shifted copy of the flat grid starts."""
    return [(i, j, i * dilation[0] * Wp + j * dilation[1]) for i in range(kernel[0]) for j in range(kernel[1])]


def col2im_grid(cols: Array, x_shape: tuple[int, ...], pads: Pads, dilation: tuple[int, int] = (1, 1)) -> Array:
    """Stride-1 col2im in the grid layout: cols (C, KH, KW, N*Hp*Wp) -> (N, C, H, W).

    ``image_padded[c, m + i*DH*Wp + j*DW] += cols[c, i, j, m]`` over the flat padded grid (plus
    the largest tap offset as slack at the end), then the padding is cut off.  Column m = (n, p, q) is output
    pixel (p, q) of sample n when p < OH and q < OW; for col2im of a convolution's gradient
    the other columns must hold zeros.
    """
    xp = get_xp(cols)
    C, KH, KW, L = cols.shape
    N, H, W = x_shape[0], x_shape[2], x_shape[3]
    (pt, _), (pl, _) = pads
    Hp, Wp = padded_hw(x_shape, pads)
    offsets = _grid_offsets((KH, KW), dilation, Wp)
    grid = xp.zeros((C, N * Hp * Wp + offsets[-1][2]), dtype=cols.dtype)
    for i, j, offset in offsets:
        grid[:, offset:offset + L] += cols[:, i, j]
    image = grid[:, :N * Hp * Wp].reshape(C, N, Hp, Wp)[:, :, pt:pt + H, pl:pl + W]  # (C, N, H, W)
    return xp.ascontiguousarray(image.transpose(1, 0, 2, 3))  # (C, N, H, W) -> (N, C, H, W)
