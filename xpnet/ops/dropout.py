r"""Inverted dropout.

In training, each value is kept with probability 1 - p and scaled by 1 / (1 - p), so
the expected output equals the input and evaluation needs no rescaling:

    y = x * m / (1 - p),   m ~ Bernoulli(1 - p)     dx = dy * m / (1 - p)

The keep-mask is either passed in or drawn on the host from a ``numpy.random.Generator``
and then copied to the input's device, so the same seed drops the same units on the CPU
and on the GPU.  In evaluation (``train=False``) and for p = 0, dropout is the identity.
"""

from __future__ import annotations

import numpy

from ..backend import Array, get_xp
from ..errors import ShapeError
from ._args import check_float


def check_rate(p: float, who: str = "dropout") -> float:
    """ValueError unless 0 <= p < 1."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{who} rate must be in [0, 1); received p={p!r}")
    return float(p)


def dropout_mask(shape: tuple[int, ...], p: float, rng: numpy.random.Generator) -> numpy.ndarray:
    """A host boolean keep-mask: True with probability 1 - p."""
    return rng.random(shape, dtype=numpy.float32) >= p


def dropout_forward(x: Array, p: float, mask: Array | numpy.ndarray | None = None,
                    rng: numpy.random.Generator | None = None, train: bool = True
                    ) -> tuple[Array, Array | None]:
    """y = x * mask / (1 - p) in training; x in evaluation. The cache is the scaled mask (or None)."""
    check_float(x, "dropout input")
    p = check_rate(p)
    if not train or p == 0:
        return x, None
    if mask is None:
        if rng is None:
            raise ValueError("dropout needs a mask or a numpy.random.Generator to draw one")
        mask = dropout_mask(tuple(x.shape), p, rng)
    if tuple(mask.shape) != tuple(x.shape):
        raise ShapeError(f"dropout mask shape {tuple(mask.shape)} does not match input shape {tuple(x.shape)}")
    xp = get_xp(x)
    scaled = xp.asarray(mask).astype(x.dtype) * (1 / (1 - p))  # host mask -> x's device, once
    return x * scaled, scaled


def dropout_backward(dy: Array, cache: Array | None) -> Array:
    """dx = dy * mask / (1 - p) (dy itself in evaluation)."""
    return dy if cache is None else dy * cache
