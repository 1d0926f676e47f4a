r"""2-D transposed convolution (PyTorch's ``conv_transpose2d``), the adjoint of :mod:`.conv`.

Weight layout (C_in, C_out/G, KH, KW), as torch.nn.ConvTranspose2d; ``Cg = C_in / G`` input and
``Og = C_out / G`` output channels per group g.  Every input pixel scatters its values times the
kernel into the output:

    y[n, g*Og + o, p*SH + i*DH - PT, q*SW + j*DW - PL] += x[n, g*Cg + c, p, q] * w[g*Cg + c, o, i, j]

plus ``b[g*Og + o]`` everywhere; writes that land outside the output are dropped.  ``padding``
trims both sides (PT = PB = PH, PL = PR = PW) and the output size is

    OH = (H - 1)*SH - PT - PB + DH*(KH - 1) + OPH + 1            (the same for OW)

``output_padding`` (OPH, OPW) only extends the output at the bottom and right; as in PyTorch it
must be smaller than the stride or the dilation along its axis.

It is the input gradient of a convolution with the same stride, padding, dilation and groups,
taken as a forward pass: one GEMM ``cols = w^T @ x`` per group, ``w^T (G, Og*KH*KW, Cg)`` by
``x (G, Cg, N*H*W)``, then ``y = col2im(cols)`` sums every kernel tap back onto the output
(no Python loop over pixels or samples, no atomics).  The backward pass is that convolution's
forward and weight gradient, through the same columns of ``dy``:

    dcols = im2col(dy)                           (G, Og*KH*KW, N*H*W)
    dL/dx = w @ dcols                            (G, Cg, N*H*W)            = conv2d(dy, w)
    dL/dw = x @ dcols^T                          (G, Cg, Og*KH*KW)
    dL/db = sum_{n, p, q} dy[n, :, p, q]

Seen from the padded output, the writes span ``extent = (H - 1)*SH + DH*(KH - 1) + 1`` rows, of
which rows PT .. PT + OH - 1 are kept.  When ``PB >= OPH`` the padded canvas is exactly the extent
(bottom padding ``PB - OPH``); otherwise the last ``OPH - PB`` output rows receive no write at all
(only the bias), and ``dy`` is cut to the rows that do before im2col.

Workspace: the columns hold ``N * C_out * KH * KW * H * W`` values; the batch goes through in
chunks of samples so that they never exceed ``max_workspace_bytes`` (one chunk when they fit).
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, get_xp
from ..errors import DTypeError, ShapeError
from ._args import IntPair, Pads, as_pair, check_float
from .conv import DEFAULT_WORKSPACE_BYTES, _grouped_cols, _to_groups, _weight_grad
from .im2col import col2im


class ConvTransposeCache(NamedTuple):
    """What conv_transpose2d_backward needs from the forward pass."""

    x: Array
    weight: Array
    has_bias: bool
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    chunk: int  # samples per GEMM + col2im (im2col in backward) pass


def transposed_size(size: int, kernel: int, stride: int, padding: int, output_padding: int,
                    dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis (may be < 1 for bad arguments)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def check_output_padding(output_padding: tuple[int, int], stride: tuple[int, int],
                         dilation: tuple[int, int], who: str = "conv_transpose2d") -> None:
    """ValueError unless each output_padding is below its stride or its dilation (PyTorch's rule)."""
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{who}: output_padding must be smaller than either stride or dilation; received "
                         f"output_padding={output_padding}, stride={stride}, dilation={dilation}")


def transposed_hw(hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int], output_padding: tuple[int, int], dilation: tuple[int, int],
                  who: str = "conv_transpose2d") -> tuple[int, int]:
    """(OH, OW) of a transposed convolution; ShapeError when either is below 1."""
    oh, ow = (transposed_size(hw[a], kernel[a], stride[a], padding[a], output_padding[a], dilation[a])
              for a in (0, 1))
    if oh < 1 or ow < 1:
        raise ShapeError(f"{who}: input H x W {hw[0]}x{hw[1]} gives output {oh}x{ow}, below 1x1: size = "
                         f"(H - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1 with "
                         f"stride {stride}, padding {padding}, kernel {kernel}, dilation {dilation}, "
                         f"output_padding {output_padding}")
    return oh, ow


def check_conv_transpose_input(x: Array, weight_shape: tuple[int, ...], groups: int,
                               who: str = "conv_transpose2d") -> None:
    """ShapeError/DTypeError unless x is a float (N, C, H, W) array with C = weight's C_in."""
    check_float(x, f"{who} input")
    if x.ndim != 4:
        raise ShapeError(f"{who} expects 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != weight_shape[0]:
        raise ShapeError(f"{who} expects {weight_shape[0]} input channels (weight shape {tuple(weight_shape)}, "
                         f"groups={groups}), got input shape {tuple(x.shape)}")


def _check_weight(x: Array, weight: Array, bias: Array | None, groups: int) -> None:
    who = "conv_transpose2d"
    if weight.ndim != 4:
        raise ShapeError(f"{who} weight must be 4-D (C_in, C_out/groups, KH, KW), got shape {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{who} groups must be a positive int dividing C_in={weight.shape[0]}; "
                         f"received groups={groups!r}")
    c_out = weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ShapeError(f"{who} bias must have shape ({c_out},), got {tuple(bias.shape)}")
    dtypes = {"input": x.dtype, "weight": weight.dtype, **({} if bias is None else {"bias": bias.dtype})}
    if len(set(dtypes.values())) > 1:
        raise DTypeError(f"{who} input, weight and bias must share one dtype; got "
                         + ", ".join(f"{k} {v}" for k, v in dtypes.items()))


def _extent(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Rows (columns) of the padded output that the scattered input reaches."""
    return (size - 1) * stride + dilation * (kernel - 1) + 1


def _chunk_size(n: int, per_sample: int, budget: int) -> int:
    """Samples per pass so that one pass's columns stay within ``budget`` bytes (at least one)."""
    return max(1, min(n, budget // max(per_sample, 1)))


def _grouped_weight(weight: Array, groups: int) -> Array:
    """(C_in, Og, KH, KW) -> (G, Cg, Og*KH*KW): the kernel of each input channel as one row."""
    return weight.reshape(groups, weight.shape[0] // groups, -1)  # (C_in, Og, KH, KW) -> (G, Cg, Og*KH*KW)


def _scatter(x: Array, w_t: Array, out_shape: tuple[int, ...], geometry: tuple) -> Array:
    """y (n, C_out, OH, OW) = col2im(w^T @ x) for one chunk of samples, without the bias."""
    kernel, stride, pads, dilation, groups = geometry
    n, _, H, W = x.shape
    cols = get_xp(x).matmul(w_t, _to_groups(x, groups))  # (G, Og*KH*KW, n*H*W)
    cols = cols.reshape(out_shape[1], *kernel, n, H, W)  # (G*Og, KH, KW, n, H, W) = (C_out, KH, KW, n, H, W)
    return col2im(cols, out_shape, stride, pads, dilation, batch_last=True)


def conv_transpose2d_forward(x: Array, weight: Array, bias: Array | None = None, stride: IntPair = 1,
                             padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1,
                             dilation: IntPair = 1, max_workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
                             ) -> tuple[Array, ConvTransposeCache]:
    """y (N, C_out, OH, OW) = conv_transpose2d(x (N, C_in, H, W), weight (C_in, C_out/groups, KH, KW)) + bias.

    The arguments, their order and their meaning are torch.nn.functional.conv_transpose2d's:
    ``padding`` (an int or a pair) removes rows and columns on both sides, ``output_padding``
    adds them at the bottom and right only.
    """
    _check_weight(x, weight, bias, groups)
    check_conv_transpose_input(x, weight.shape, groups)
    stride, dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
    padding = as_pair(padding, "padding", minimum=0)
    output_padding = as_pair(output_padding, "output_padding", minimum=0)
    check_output_padding(output_padding, stride, dilation)
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    N, _, H, W = x.shape
    OH, OW = transposed_hw((H, W), kernel, stride, padding, output_padding, dilation)
    C_out, G = weight.shape[1] * groups, groups
    # the padded canvas must hold every write: at least the extent, so bottom/right pad >= 0
    pads = tuple((padding[a], max(_extent(x.shape[2 + a], kernel[a], stride[a], dilation[a]) - padding[a]
                                  - (OH, OW)[a], 0)) for a in (0, 1))
    geometry = (kernel, stride, pads, dilation, G)
    w_t = _grouped_weight(weight, G).swapaxes(1, 2)  # (G, Cg, Og*KH*KW) -> (G, Og*KH*KW, Cg)
    chunk = _chunk_size(N, C_out * kernel[0] * kernel[1] * H * W * x.itemsize, max_workspace_bytes)
    if chunk >= N:
        y = _scatter(x, w_t, (N, C_out, OH, OW), geometry)  # (N, C_out, OH, OW), a fresh array
    else:
        y = get_xp(x).empty((N, C_out, OH, OW), dtype=x.dtype)
        for start in range(0, N, chunk):
            part = x[start:start + chunk]
            y[start:start + chunk] = _scatter(part, w_t, (part.shape[0], C_out, OH, OW), geometry)
    if bias is not None:
        y += bias.reshape(1, C_out, 1, 1)  # (C_out,) -> (1, C_out, 1, 1), broadcast over N, OH, OW
    return y, ConvTransposeCache(x, weight, bias is not None, stride, padding, output_padding, dilation, G, chunk)


def _dy_window(dy: Array, cache: ConvTransposeCache) -> tuple[Array, Pads] | None:
    """The part of dy that the input reaches, and the pads that make im2col of it (N, ..., H, W).

    Per axis the padded canvas is exactly the extent: bottom padding ``PB - OPH`` when that is
    >= 0, else dy cut to its first ``extent - PT`` rows (the rest only got the bias).  None when
    no output pixel depends on the input (every write lands in the padding).
    """
    kernel = cache.weight.shape[2:]
    keep, pads = [], []
    for a in (0, 1):
        extent = _extent(cache.x.shape[2 + a], kernel[a], cache.stride[a], cache.dilation[a])
        after = extent - cache.padding[a] - dy.shape[2 + a]
        keep.append(dy.shape[2 + a] + min(after, 0))
        pads.append((cache.padding[a], max(after, 0)))
    if min(keep) < 1:
        return None
    return dy[:, :, :keep[0], :keep[1]], (pads[0], pads[1])


def conv_transpose2d_backward(dy: Array, cache: ConvTransposeCache, need_input_grad: bool = True
                              ) -> tuple[Array | None, Array, Array | None]:
    """Gradients ``(dx, dweight, dbias)``; dx is None when not needed, dbias None without a bias.

    With ``dcols = im2col(dy)`` in groups (G, Og*KH*KW, N*H*W): ``dx = w @ dcols`` (a convolution
    of dy with the same weight), ``dweight = x @ dcols^T`` and ``dbias = sum_{n,p,q} dy``.
    """
    x, weight, G = cache.x, cache.weight, cache.groups
    xp = get_xp(dy, x)
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    expected = (x.shape[0], weight.shape[1] * G, *transposed_hw(
        x.shape[2:], kernel, cache.stride, cache.padding, cache.output_padding, cache.dilation))
    if tuple(dy.shape) != expected:
        raise ShapeError(f"conv_transpose2d_backward expects dy of the forward output's shape {expected}, "
                         f"got {tuple(dy.shape)}")
    N, C_in, H, W = x.shape
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    window = _dy_window(dy, cache)
    if window is None:  # every write landed in the padding: y is the bias alone
        dx = xp.zeros(x.shape, dtype=x.dtype) if need_input_grad else None
        return dx, xp.zeros(weight.shape, dtype=weight.dtype), dbias
    dy_in, pads = window
    w_g = _grouped_weight(weight, G)  # (G, Cg, Og*KH*KW)
    dweight = xp.zeros(w_g.shape, dtype=weight.dtype)
    dx = xp.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    for start in range(0, N, cache.chunk):
        stop = min(start + cache.chunk, N)
        geometry = (cache.stride, pads, cache.dilation, G)
        dcols = _grouped_cols(dy_in[start:stop], geometry, kernel)  # (G, Og*KH*KW, n*H*W)
        dweight += _weight_grad(_to_groups(x[start:stop], G), dcols)  # (G, Cg, Og*KH*KW)
        if need_input_grad:
            dx_g = xp.matmul(w_g, dcols).reshape(C_in, stop - start, H, W)  # (G, Cg, n*H*W) -> (C_in, n, H, W)
            dx[start:stop] = dx_g.transpose(1, 0, 2, 3)  # (C_in, n, H, W) -> (n, C_in, H, W)
    return dx, dweight.reshape(weight.shape), dbias  # (G, Cg, Og*KH*KW) -> (C_in, Og, KH, KW)
