r"""Fully connected layer: ``y = x @ weight.T + bias``.

Shapes: x (N, IN), weight (OUT, IN) as in PyTorch, bias (OUT,), y (N, OUT).

    dL/dx      = dy @ weight          (N, IN)
    dL/dweight = dy.T @ x             (OUT, IN)
    dL/dbias   = sum_n dy[n]          (OUT,)
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, get_xp
from ..errors import DTypeError, ShapeError
from ._args import check_float


class LinearCache(NamedTuple):
    """Inputs of the forward pass."""

    x: Array
    weight: Array
    has_bias: bool


def check_linear_input(x: Array, in_features: int, who: str = "linear") -> None:
    """ShapeError/DTypeError unless x is a float (N, in_features) array."""
    check_float(x, f"{who} input")
    if x.ndim != 2 or x.shape[1] != in_features:
        raise ShapeError(f"{who} expects input of shape (N, {in_features}), got shape {tuple(x.shape)}")


def linear_forward(x: Array, weight: Array, bias: Array | None = None) -> tuple[Array, LinearCache]:
    """y (N, OUT) = x (N, IN) @ weight.T (IN, OUT) + bias (OUT,)."""
    if weight.ndim != 2:
        raise ShapeError(f"linear weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    check_linear_input(x, weight.shape[1])
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ShapeError(f"linear bias must have shape ({weight.shape[0]},) to match weight shape "
                         f"{tuple(weight.shape)}, got shape {tuple(bias.shape)}")
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise DTypeError(f"linear input, weight and bias must share one dtype; got input {x.dtype}, "
                         f"weight {weight.dtype}, bias {None if bias is None else bias.dtype}")
    get_xp(x, weight, bias)  # refuses mixed backends
    y = x @ weight.T  # (N, OUT)
    if bias is not None:
        y += bias
    return y, LinearCache(x, weight, bias is not None)


def linear_backward(dy: Array, cache: LinearCache, need_input_grad: bool = True
                    ) -> tuple[Array | None, Array, Array | None]:
    """``(dx, dweight, dbias)``; dx is None when not needed, dbias None without bias."""
    dx = dy @ cache.weight if need_input_grad else None
    dweight = dy.T @ cache.x  # (OUT, N) @ (N, IN)
    dbias = dy.sum(axis=0) if cache.has_bias else None
    return dx, dweight, dbias
