"""Host-side data augmentation for ``fit(..., augment=...)``.

An augmentation is a callable ``augment(images, rng) -> images`` on a host (numpy) batch
of shape (N, C, H, W).  ``fit`` applies it to training batches only, drawing randomness
from the model's generator, so a seed (and a checkpoint) reproduces it exactly.
"""

from __future__ import annotations

import numpy


class RandomShift:
    """Translate each image by its own random offset of up to ``max_shift`` pixels per axis.

    Pixels shifted in from outside are ``fill`` (0: background for MNIST-like data).
    """

    def __init__(self, max_shift: int = 2, fill: float = 0.0) -> None:
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"RandomShift max_shift must be a non-negative int; received {max_shift!r}")
        self.max_shift, self.fill = max_shift, fill

    def __call__(self, images: numpy.ndarray, rng: numpy.random.Generator) -> numpy.ndarray:
        if images.ndim != 4:
            raise ValueError(f"RandomShift expects images (N, C, H, W), got shape {images.shape}")
        s = self.max_shift
        if s == 0 or len(images) == 0:
            return images
        N, C, H, W = images.shape
        padded = numpy.pad(images, ((0, 0), (0, 0), (s, s), (s, s)), constant_values=self.fill)
        top = rng.integers(0, 2 * s + 1, N)   # offset of each crop in the padded image
        left = rng.integers(0, 2 * s + 1, N)
        rows = top[:, None] + numpy.arange(H)   # (N, H)
        cols = left[:, None] + numpy.arange(W)  # (N, W)
        n = numpy.arange(N)[:, None, None, None]
        c = numpy.arange(C)[None, :, None, None]
        return padded[n, c, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift}, fill={self.fill})"
