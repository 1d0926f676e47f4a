r"""Channel dropout (PyTorch's ``dropout2d``): whole feature maps are dropped together.

In training each channel (n, c) of x (N, C, H, W) is kept with probability 1 - p and scaled by
1 / (1 - p), so the expected output equals the input:

    y[n, c] = x[n, c] * m[n, c] / (1 - p),   m ~ Bernoulli(1 - p)     dx[n, c] = dy[n, c] * m[n, c] / (1 - p)

The (N, C) keep-mask is either passed in or drawn on the host from a ``numpy.random.Generator``
(as :func:`.dropout.dropout_mask` draws Dropout's) and copied to x's device once, as (N, C, 1, 1),
which broadcasts over H and W.  In evaluation (``train=False``) and for p = 0 it is the identity.
"""

from __future__ import annotations

import numpy

from ..backend import Array, get_xp
from ..errors import ShapeError
from ._args import check_float
from .dropout import check_rate, dropout_backward, dropout_mask


def dropout2d_forward(x: Array, p: float, mask: Array | numpy.ndarray | None = None,
                      rng: numpy.random.Generator | None = None, train: bool = True, who: str = "dropout2d"
                      ) -> tuple[Array, Array | None]:
    """y = x * mask[:, :, None, None] / (1 - p) in training, x in evaluation; the cache is the
    scaled (N, C, 1, 1) mask (or None).  ``mask`` is a boolean (N, C) keep-mask."""
    check_float(x, f"{who} input")
    if x.ndim != 4:
        raise ShapeError(f"{who} expects 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    p = check_rate(p, who)
    if not train or p == 0:
        return x, None
    N, C = x.shape[:2]
    if mask is None:
        if rng is None:
            raise ValueError(f"{who} needs a mask or a numpy.random.Generator to draw one")
        mask = dropout_mask((N, C), p, rng)
    if tuple(mask.shape) != (N, C):
        raise ShapeError(f"{who} mask shape {tuple(mask.shape)} does not match (N, C) = {(N, C)} "
                         f"of input shape {tuple(x.shape)}")
    xp = get_xp(x)
    scaled = xp.asarray(mask).astype(x.dtype).reshape(N, C, 1, 1) * (1 / (1 - p))  # (N, C) -> (N, C, 1, 1)
    return x * scaled, scaled


def dropout2d_backward(dy: Array, cache: Array | None) -> Array:
    """dx = dy * mask / (1 - p), the (N, C, 1, 1) mask broadcast over H and W (dy itself in evaluation)."""
    return dropout_backward(dy, cache)
