"""Dropout2d: channel dropout, whole (n, c) feature maps zeroed together."""

from __future__ import annotations

from ..backend import Array
from ..ops.dropout2d import dropout2d_forward
from .base import Shape
from .dropout import Dropout


class Dropout2d(Dropout):
    r"""Zero each channel of (N, C, H, W) with probability ``p`` in training; scale the rest by 1 / (1 - p).

    ``y[n, c] = x[n, c] * m[n, c] / (1 - p)`` with m ~ Bernoulli(1 - p) drawn once per (n, c),
    as torch.nn.Dropout2d (for 4-D input; 3-D input is refused rather than guessed at).  The
    (N, C) mask is drawn on the host from the layer's ``numpy.random.Generator`` (re-seeded by the
    model's seed, saved in checkpoints, as Dropout's) and moved to the input's device, so a seed
    drops the same channels on the CPU and on the GPU.  Identity in evaluation.
    """

    def sample_shape(self) -> tuple[int | None, ...]:
        return (None, None, None)

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(input_shape, 3, "C, H, W")
        return tuple(input_shape)

    def forward(self, x: Array, train: bool = False, mask: Array | None = None) -> Array:
        """Apply channel dropout when ``train``; ``mask`` (a boolean (N, C) keep-mask) overrides the generator."""
        y, scaled_mask = dropout2d_forward(x, self.p, mask=mask, rng=self.rng, train=train, who=self.name)
        self._cache = (scaled_mask,)  # None inside means identity (evaluation)
        return y

