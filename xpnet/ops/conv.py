r"""2-D convolution (cross-correlation, as in every deep-learning library).

Forward, for output channel o of group g (``Cg = C / groups`` input channels each):

    y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] * x_pad[n, g*Cg + c, p*SH + i*DH, q*SW + j*DW]

With im2col in its batch-last layout this is one matrix product per group for the whole
batch: ``cols (G, Cg*KH*KW, N*OH*OW)``, ``w (G, O/G, Cg*KH*KW)``, ``y = w @ cols``.

Backward, given ``dy = dL/dy`` of shape (N, O, OH, OW):

    dL/db[o]          = sum_{n, p, q} dy[n, o, p, q]
    dL/dw[o, c, i, j] = sum_{n, p, q} dy[n, o, p, q] * x_pad[n, c, p*SH + i*DH, q*SW + j*DW]
                      (= dy @ cols^T, with dy as (G, O/G, N*OH*OW))
    dL/dx             = col2im(w^T @ dy)

The input gradient is a *full* correlation of ``dy`` with the kernel rotated by 180
degrees; a stride S > 1 first spreads ``dy`` out with S - 1 zeros between its
entries (zero-dilation).  ``col2im`` computes exactly that without building the
zero-dilated array: each kernel tap adds its slice of ``w^T @ dy`` back to the
input pixels it came from.  For stride 1, dy is first spread onto the padded Hp x Wp grid
(zeros where no output is) and ``col2im_grid`` adds long contiguous runs instead of many
OW-long ones; that costs ``Hp*Wp / (OH*OW)`` times more GEMM columns, so ``input_grad_on_grid``
uses it only on the CPU, where the copying it saves outweighs that (``grid_gradient_pays``).

Workspace: the im2col matrix holds ``N * C * KH * KW * OH * OW`` values.  The batch is
processed in chunks of samples, which gives the same result (each sample's computation
is independent) with bounded memory.  ``max_workspace_bytes`` is the hard limit on the
columns (and on the grid columns of the input gradient).  On the CPU, chunks are sized for
speed below it: a columns matrix of at most ``KEEP_COLUMNS_BYTES`` is built once for the
whole batch and kept for the backward pass; a larger one (and any one when
``need_backward`` is False, as in inference) is built ``CACHE_CHUNK_BYTES`` at a time, so
that copying it and multiplying it happen while it is still in the CPU cache, and the
backward pass rebuilds it chunk by chunk.  On a GPU the whole batch goes in one piece
whenever the budget allows (fewer, larger kernels).  The measured effect is in
``benchmarks/results/``.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, computes_on_host, get_xp
from ..errors import DTypeError, ShapeError
from ._args import IntPair, Padding, Pads, as_pair, check_float, resolve_pads
from .im2col import col2im, col2im_grid, im2col, output_hw, padded_hw

DEFAULT_WORKSPACE_BYTES = 256 * 2**20
KEEP_COLUMNS_BYTES = 16 * 2**20  # columns up to this size are built once and kept for backward
CACHE_CHUNK_BYTES = 4 * 2**20    # otherwise about this many bytes at a time (best of 1-8 MiB on the CI CPU)


class ConvCache(NamedTuple):
    """What conv2d_backward needs from the forward pass."""

    x: Array
    weight: Array
    has_bias: bool
    stride: tuple[int, int]
    pads: Pads
    dilation: tuple[int, int]
    groups: int
    cols: Array | None  # (G, Cg*KH*KW, N*OH*OW), kept only when the batch was not chunked
    chunk: int          # samples per im2col pass
    budget: int         # max_workspace_bytes of the forward call


def check_conv_input(x: Array, weight_shape: tuple[int, ...], groups: int, who: str = "conv2d") -> None:
    """ShapeError/DTypeError unless x is a float (N, C, H, W) array with C = weight C_in * groups."""
    check_float(x, f"{who} input")
    if x.ndim != 4:
        raise ShapeError(f"{who} expects 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != weight_shape[1] * groups:
        raise ShapeError(
            f"{who} expects {weight_shape[1] * groups} input channels (weight shape "
            f"{tuple(weight_shape)}, groups={groups}), got input shape {tuple(x.shape)}")


def _check_weight(x: Array, weight: Array, bias: Array | None, groups: int) -> None:
    if weight.ndim != 4:
        raise ShapeError(f"conv2d weight must be 4-D (C_out, C_in/groups, KH, KW), got shape {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"conv2d groups must be a positive int dividing C_out={weight.shape[0]}; "
                         f"received groups={groups!r}")
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise DTypeError(f"conv2d input, weight and bias must share one dtype; got input {x.dtype}, "
                         f"weight {weight.dtype}, bias {None if bias is None else bias.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ShapeError(f"conv2d bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def _chunk_size(x: Array, weight: Array, out_hw: tuple[int, int], budget: int, need_backward: bool) -> int:
    """Samples per im2col pass; never more than ``budget`` bytes of columns.

    On the CPU: the whole batch when its columns are small enough to keep for the backward
    pass, else about CACHE_CHUNK_BYTES.  On a GPU: as many samples as the budget allows.
    """
    N = x.shape[0]
    per_sample = max(x.shape[1] * weight.shape[2] * weight.shape[3] * out_hw[0] * out_hw[1] * x.itemsize, 1)
    within_budget = max(1, min(N, budget // per_sample))
    if not computes_on_host(get_xp(x)):
        return within_budget
    if need_backward and N * per_sample <= min(budget, KEEP_COLUMNS_BYTES):
        return max(N, 1)
    return max(1, min(within_budget, CACHE_CHUNK_BYTES // per_sample))


def _grouped_cols(x: Array, geometry: tuple, kernel: tuple[int, int]) -> Array:
    """im2col of x, as (G, Cg*KH*KW, N*OH*OW); geometry is (stride, pads, dilation, groups)."""
    stride, pads, dilation, groups = geometry
    cols = im2col(x, kernel, stride, pads, dilation, batch_last=True)  # (C, KH, KW, N, OH, OW)
    return cols.reshape(groups, -1, cols.shape[3] * cols.shape[4] * cols.shape[5])  # (G, Cg*KH*KW, N*OH*OW)


GRID_GRADIENT_LIMIT = 64.0


def grid_gradient_pays(x_shape: tuple[int, ...], weight_shape: tuple[int, ...], stride: tuple[int, int],
                       pads: Pads, out_hw: tuple[int, int], groups: int) -> bool:
    """Whether, on the CPU, dx of this convolution is faster through the padded grid.

    Only for stride 1.  Per column of ``w^T @ dy``, col2im_grid saves about 2 ns of short strided
    adds (2-core CPU, measured), while each of the ``Hp*Wp - OH*OW`` extra columns costs about
    C_out/G * 0.015 ns of GEMM: so grid when ``(Hp*Wp / (OH*OW) - 1) * C_out/G <= 64``.
    """
    if stride != (1, 1):
        return False
    Hp, Wp = padded_hw(x_shape, pads)
    return (Hp * Wp / (out_hw[0] * out_hw[1]) - 1) * weight_shape[0] / groups <= GRID_GRADIENT_LIMIT


def input_grad_on_grid(cache: ConvCache, out_hw: tuple[int, int]) -> bool:
    """Route dx through the padded grid: on the CPU, where it pays, if its columns fit the budget."""
    x, weight = cache.x, cache.weight
    if not computes_on_host(get_xp(x)):
        return False
    if not grid_gradient_pays(x.shape, weight.shape, cache.stride, cache.pads, out_hw, cache.groups):
        return False
    Hp, Wp = padded_hw(x.shape, cache.pads)
    grid_bytes = x.shape[1] * weight.shape[2] * weight.shape[3] * cache.chunk * Hp * Wp * x.itemsize
    return grid_bytes <= cache.budget


def _dy_on_padded_grid(dy: Array, groups: int, grid_hw: tuple[int, int]) -> Array:
    """dy (n, C_out, OH, OW) -> (G, O/G, n*Hp*Wp): spread onto the padded grid, zeros elsewhere."""
    n, C_out, OH, OW = dy.shape
    grid = get_xp(dy).zeros((C_out, n, *grid_hw), dtype=dy.dtype)
    grid[:, :, :OH, :OW] = dy.transpose(1, 0, 2, 3)  # (n, C_out, OH, OW) -> (C_out, n, OH, OW)
    return grid.reshape(groups, C_out // groups, -1)  # (C_out, n, Hp, Wp) -> (G, O/G, n*Hp*Wp)


def _input_grad(dy: Array, dy_g: Array, w_t: Array, x_shape: tuple[int, ...], cache: ConvCache,
                grid: bool) -> Array:
    """dx (n, C, H, W) = col2im(w^T @ dy) for one chunk; dy_g is dy as (G, O/G, n*OH*OW)."""
    KH, KW = cache.weight.shape[2], cache.weight.shape[3]
    if grid:
        grid = _dy_on_padded_grid(dy, cache.groups, padded_hw(x_shape, cache.pads))
        dcols = get_xp(dy).matmul(w_t, grid)  # (G, Cg*KH*KW, n*Hp*Wp)
        return col2im_grid(dcols.reshape(x_shape[1], KH, KW, -1), x_shape, cache.pads, cache.dilation)
    dcols = get_xp(dy).matmul(w_t, dy_g)  # (G, Cg*KH*KW, n*OH*OW)
    dcols = dcols.reshape(x_shape[1], KH, KW, dy.shape[0], *dy.shape[2:])  # (C, KH, KW, n, OH, OW)
    return col2im(dcols, x_shape, cache.stride, cache.pads, cache.dilation, batch_last=True)


SPLIT_WEIGHT_GRAD_MAX = 512    # (O/G) * (Cg*KH*KW) up to this: dweight's long reduction goes in blocks
SPLIT_WEIGHT_GRAD_BLOCK = 1024  # columns per block


def _weight_grad(dy_g: Array, cols: Array) -> Array:
    """dy_g (G, O/G, P) @ cols^T (G, P, K) -> (G, O/G, K).

    For a tiny (O/G) x K result (LeNet's first layer: 6 x 25) the product is one long
    reduction over P, which OpenBLAS runs at a fraction of its speed (measured: 1.54 ms for
    6 x 25 x 100,352 with the SkylakeX kernel, 1.19 with Haswell).  Cut into blocks of P that
    one batched product handles and summed, it takes 0.30 and 1.01 ms.  Grouped (depthwise)
    layers keep one product: there the blocks measured slower (1.48 against 0.72 ms, 64 groups).
    """
    xp = get_xp(dy_g, cols)
    G, M, P = dy_g.shape
    K = cols.shape[1]
    B = P // SPLIT_WEIGHT_GRAD_BLOCK
    if G > 1 or M * K > SPLIT_WEIGHT_GRAD_MAX or B < 8 or not computes_on_host(xp):  # not depthwise: slower
        return xp.matmul(dy_g, cols.swapaxes(1, 2))
    head = B * SPLIT_WEIGHT_GRAD_BLOCK
    blocks_dy = dy_g[:, :, :head].reshape(G, M, B, -1).transpose(0, 2, 1, 3)  # (G, M, B, p) -> (G, B, M, p)
    blocks_cols = cols[:, :, :head].reshape(G, K, B, -1).transpose(0, 2, 3, 1)  # (G, K, B, p) -> (G, B, p, K)
    grad = xp.matmul(blocks_dy, blocks_cols).sum(axis=1)  # (G, B, M, K) -> (G, M, K)
    if head < P:
        grad += xp.matmul(dy_g[:, :, head:], cols[:, :, head:].swapaxes(1, 2))
    return grad


def _to_groups(a: Array, groups: int) -> Array:
    """(n, C, H, W) -> (G, C/G, n*H*W): channels first, as the GEMMs want them (one copy)."""
    C = a.shape[1]
    return a.transpose(1, 0, 2, 3).reshape(groups, C // groups, -1)  # (C, n, H, W) -> (G, C/G, n*H*W)


def conv2d_forward(x: Array, weight: Array, bias: Array | None = None, stride: IntPair = 1,
                   padding: Padding = 0, dilation: IntPair = 1, groups: int = 1,
                   max_workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, need_backward: bool = True
                   ) -> tuple[Array, ConvCache]:
    """y (N, C_out, OH, OW) = conv2d(x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW)) + bias.

    ``need_backward=False`` (inference) never keeps the im2col columns in the cache; the
    backward pass still works, rebuilding them.

    ``padding`` is an int, a pair, ((top, bottom), (left, right)), "valid" or "same"
    (TensorFlow's rule: output ceil(H / stride), the odd extra pixel at the bottom/right).
    """
    _check_weight(x, weight, bias, groups)
    check_conv_input(x, weight.shape, groups)
    stride, dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    pads = resolve_pads(padding, x.shape[2:], kernel, stride, dilation)
    OH, OW = output_hw(x.shape[2:], kernel, stride, pads, dilation, who="conv2d")
    xp = get_xp(x, weight, bias)
    N, C_out, G = x.shape[0], weight.shape[0], groups
    w = weight.reshape(G, C_out // G, -1)  # (G, O/G, Cg*KH*KW)
    chunk = _chunk_size(x, weight, (OH, OW), max_workspace_bytes, need_backward)
    geometry = (stride, pads, dilation, groups)
    y = xp.empty((N, C_out, OH, OW), dtype=x.dtype)
    cols = None
    for start in range(0, N, chunk):
        cols = _grouped_cols(x[start:start + chunk], geometry, kernel)
        y_chunk = xp.matmul(w, cols)  # (G, O/G, n*OH*OW)
        n = cols.shape[2] // (OH * OW)
        y_chunk = y_chunk.reshape(C_out, n, OH, OW).transpose(1, 0, 2, 3)  # (n, C_out, OH, OW)
        if bias is None:
            y[start:start + n] = y_chunk
        else:  # the bias joins the copy into NCHW: one pass over y instead of two
            xp.add(y_chunk, bias.reshape(1, C_out, 1, 1), out=y[start:start + n])
    keep = cols if need_backward and chunk >= N else None
    return y, ConvCache(x, weight, bias is not None, stride, pads, dilation, groups, keep, chunk,
                        max_workspace_bytes)


def conv2d_backward(dy: Array, cache: ConvCache, need_input_grad: bool = True
                    ) -> tuple[Array | None, Array, Array | None]:
    """Gradients ``(dx, dweight, dbias)`` of conv2d; dx is None when not needed, dbias when no bias.

    With dy (N, C_out, OH, OW): ``dbias = sum_{n,p,q} dy``, ``dweight = dy @ cols^T`` and
    ``dx = col2im(w^T @ dy)``, which equals ``full_corr(dilate_S(dy), rot180(w))`` with the
    roles of C_in and C_out swapped (see the module docstring).
    """
    x, weight = cache.x, cache.weight
    xp = get_xp(dy, x)
    G = cache.groups
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    expected = (x.shape[0], weight.shape[0], *output_hw(x.shape[2:], kernel, cache.stride, cache.pads, cache.dilation))
    if tuple(dy.shape) != expected:  # a short batch would leave rows of dx uninitialised
        raise ShapeError(f"conv2d_backward expects dy of the forward output's shape {expected}, "
                         f"got {tuple(dy.shape)}")
    N, C_out, OH, OW = dy.shape
    geometry = (cache.stride, cache.pads, cache.dilation, G)
    w_t = weight.reshape(G, C_out // G, -1).swapaxes(1, 2)  # (G, Cg*KH*KW, O/G)
    dweight = xp.zeros((G, C_out // G, w_t.shape[1]), dtype=weight.dtype)  # (G, O/G, Cg*KH*KW)
    dx = xp.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    grid = input_grad_on_grid(cache, (OH, OW))
    for start in range(0, N, cache.chunk):
        stop = min(start + cache.chunk, N)
        cols = cache.cols if cache.cols is not None else _grouped_cols(x[start:stop], geometry, kernel)
        dy_g = _to_groups(dy[start:stop], G)  # (G, O/G, n*OH*OW)
        dweight += _weight_grad(dy_g, cols)  # (G, O/G, Cg*KH*KW)
        if need_input_grad:
            dx[start:stop] = _input_grad(dy[start:stop], dy_g, w_t, (stop - start, *x.shape[1:]), cache, grid)
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dweight.reshape(weight.shape), dbias
