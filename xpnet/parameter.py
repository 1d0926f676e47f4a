"""Parameter: an array, its gradient and a name."""

from __future__ import annotations

from collections.abc import Callable

from .backend import Array, get_xp


class Parameter:
    """A layer's array with the gradient that backward accumulates into it.

    ``trainable=False`` marks state that is saved and moved with the model but not
    updated by optimizers (batch-norm running statistics).
    """

    def __init__(self, value: Array, name: str, trainable: bool = True, grad: Array | None = None) -> None:
        self.name = name
        self.trainable = trainable
        self.value = value
        self.grad = get_xp(value).zeros_like(value) if grad is None else grad

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def size(self) -> int:
        return int(self.value.size)

    def zero_grad(self) -> None:
        """Set the gradient to zero in place."""
        self.grad[...] = 0

    def apply(self, fn: Callable[[Array], Array]) -> None:
        """Replace the value by ``fn(value)`` (a cast or a move) and reset the gradient like it."""
        self.value = fn(self.value)
        self.grad = get_xp(self.value).zeros_like(self.value)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.value.dtype})"
