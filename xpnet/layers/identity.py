"""Identity: the layer that returns its input (torch.nn.Identity)."""

from __future__ import annotations

from ..backend import Array
from ..ops._args import check_float
from .base import Layer


class Identity(Layer):
    """y = x and dL/dx = dL/dy, for any shape (N, ...); no parameters.

    A placeholder where a layer is optional (a shortcut, a switched-off normalisation) that keeps
    the tree's names, as torch.nn.Identity.  The input is returned itself, not copied.
    """

    def forward(self, x: Array, train: bool = False) -> Array:
        check_float(x, f"{self.name} input")
        self._cache = ()  # nothing to keep; marks that backward may run
        return x

    def backward(self, dy: Array) -> Array:
        self._cached()
        return dy
