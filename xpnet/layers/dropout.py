"""Dropout: inverted dropout with masks drawn from the layer's host generator."""

from __future__ import annotations

from typing import Any

import numpy

from ..backend import Array
from ..ops._args import check_float
from ..ops.dropout import check_rate, dropout_backward, dropout_forward
from .base import Layer, as_rng


class Dropout(Layer):
    """Zero each value with probability ``p`` in training and scale the rest by 1 / (1 - p).

    Masks come from a ``numpy.random.Generator`` on the host (re-seeded by the model's
    seed), so a seed drops the same units on the CPU and on the GPU.  Identity in evaluation.
    """

    def __init__(self, p: float = 0.5, seed: numpy.random.Generator | int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.p = check_rate(p, self.name)
        self.rng = as_rng(seed)

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        """Take a fresh mask generator derived from ``rng``."""
        self.rng = numpy.random.default_rng(as_rng(rng).integers(2**63))

    def forward(self, x: Array, train: bool = False, mask: Array | None = None) -> Array:
        """Apply dropout when ``train``; ``mask`` (a boolean keep-mask) overrides the generator."""
        check_float(x, f"{self.name} input")
        y, scaled_mask = dropout_forward(x, self.p, mask=mask, rng=self.rng, train=train)
        self._cache = (scaled_mask,)  # None inside means identity (evaluation)
        return y

    def backward(self, dy: Array) -> Array:
        (scaled_mask,) = self._cached()
        return dropout_backward(dy, scaled_mask)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}
