"""Containers: layers whose children are layers, so that a model can be any tree.

- ``Sequential(*layers)``: the children in order; children are named "0", "1", ...
- ``Residual(body, shortcut=None)``: ``y = body(x) + shortcut(x)`` (identity shortcut when None);
  children "body" and "shortcut".  The activation after the sum is the next layer's job.
- ``Concat(*branches, axis=1)``: the branches' outputs concatenated along ``axis`` (channels);
  children "branches.0", "branches.1", ...

Backward follows the chain rule through the tree: a Sequential runs its children backwards; a
branching container gives each branch its part of dL/dy and sums the branches' input gradients
(dL/dx = sum over branches).  Nothing is copied that NumPy can view: an identity shortcut and
the body share dL/dy itself, Concat's gradient parts are views of dL/dy, and the branches' input
gradients are summed in place into a branch's own array when it aliases nothing else.  (The
forward sum is a new array: the body's output may be held by its last layer for backward.)
"""

from __future__ import annotations

from typing import Any

from ..backend import Array, get_xp
from ..errors import DTypeError, ShapeError
from .base import Layer, Shape


def add_gradients(total: Array, part: Array, upstream: Array) -> Array:
    """``total + part``, in place into ``total`` when it is a branch's own array (it shares memory
    with neither ``part`` nor the gradient the container received)."""
    xp = get_xp(total, part)
    if xp.may_share_memory(total, upstream) or xp.may_share_memory(total, part):
        return total + part
    total += part
    return total


def _forward(child: Layer, x: Array, train: bool) -> Array:
    """A child's forward inside a container whose input was checked: nested containers skip their check."""
    return child._run(x, train) if isinstance(child, Container) else child.forward(x, train=train)


def _expect_names(cls: type, children: list[tuple[str, Layer]], names: list[str]) -> list[Layer]:
    """The layers of ``children`` (from a model file), whose names must be ``names``."""
    given = [name for name, _ in children]
    if given != names:
        raise ValueError(f"{cls.__name__} children must be named {names}, got {given}")
    return [layer for _, layer in children]


def _check_children(who: str, layers: tuple[Any, ...]) -> list[Layer]:
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"{who}: child #{i} is a {type(layer).__name__}, not an xpnet Layer")
    return list(layers)


class Container(Layer):
    """A layer whose children are layers.  Its input is checked whole before any child runs
    (dtype, and every child's shape through ``output_shape``), so a bad input changes nothing.
    The check is made once, by the container called from outside: nested containers run
    unchecked (``_run``), their parent's check having covered them."""

    def forward(self, x: Array, train: bool = False) -> Array:
        self._check_input(x)
        return self._run(x, train)

    def _run(self, x: Array, train: bool) -> Array:
        """The forward pass on an input already checked."""
        raise NotImplementedError

    def _check_input(self, x: Array) -> None:
        if x.dtype.kind != "f":
            raise DTypeError(f"{self.name} input must be a float32 or float64 array; got {x.dtype}")
        self._check_dtype(x)
        try:
            self.output_shape(tuple(x.shape[1:]))
        except ShapeError as exc:
            raise ShapeError(f"{self.name}: input of shape {tuple(x.shape)} does not fit: {exc}") from None


class Sequential(Container):
    """Children applied in order; usable anywhere a layer is, nested to any depth."""

    def __init__(self, *layers: Layer, name: str | None = None) -> None:
        super().__init__(name)
        self.layers = _check_children(self.name, layers)

    def children(self) -> list[tuple[str, Layer]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    @classmethod
    def from_children(cls, children: list[tuple[str, Layer]], name: str | None = None) -> Sequential:
        return cls(*_expect_names(cls, children, [str(i) for i in range(len(children))]), name=name)

    def input_children(self) -> list[Layer]:
        return self.layers[:1]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index: int | slice) -> Any:
        return Sequential(*self.layers[index]) if isinstance(index, slice) else self.layers[index]

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def _run(self, x: Array, train: bool) -> Array:
        for layer in self.layers:
            x = _forward(layer, x, train)
        self._cache = True
        return x

    def backward(self, dy: Array) -> Array | None:
        self._cached()
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy


class Residual(Container):
    """``y = body(x) + shortcut(x)``: the shortcut is the identity when None, else a layer (a
    strided 1x1 convolution and batch norm, say) that brings x to the body's output shape."""

    def __init__(self, body: Layer, shortcut: Layer | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.body = _check_children(self.name, (body,))[0]
        self.shortcut = None if shortcut is None else _check_children(self.name, (shortcut,))[0]

    def children(self) -> list[tuple[str, Layer]]:
        return [("body", self.body)] + ([("shortcut", self.shortcut)] if self.shortcut is not None else [])

    @classmethod
    def from_children(cls, children: list[tuple[str, Layer]], name: str | None = None) -> Residual:
        names = ["body", "shortcut"][:max(1, len(children))]
        return cls(*_expect_names(cls, children, names), name=name)

    def input_children(self) -> list[Layer]:
        return [child for _, child in self.children()]

    def output_shape(self, input_shape: Shape) -> Shape:
        body = self.body.output_shape(input_shape)
        short = tuple(input_shape) if self.shortcut is None else self.shortcut.output_shape(input_shape)
        if body != short:
            what = "identity shortcut" if self.shortcut is None else f"shortcut {type(self.shortcut).__name__}"
            raise ShapeError(f"{self.name}: the body gives per-sample shape {body} but the {what} gives {short}; "
                             "they must match to be added (give a shortcut that maps the input to the body's shape)")
        return body

    def _run(self, x: Array, train: bool) -> Array:
        y = _forward(self.body, x, train)
        short = x if self.shortcut is None else _forward(self.shortcut, x, train)
        self._cache = True
        return y + short

    def backward(self, dy: Array) -> Array | None:
        self._cached()
        dx = self.body.backward(dy)  # both paths get dL/dy itself: the sum's gradient
        d_short = dy if self.shortcut is None else self.shortcut.backward(dy)
        return add_gradients(dx, d_short, dy) if self.need_input_grad else None


class Concat(Container):
    """The branches' outputs (all from the same input) concatenated along ``axis`` (1: channels)."""

    def __init__(self, *branches: Layer, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        if len(branches) < 1:
            raise ValueError(f"{self.name}: needs at least one branch")
        self.branches = _check_children(self.name, branches)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis < 1:
            raise ValueError(f"{self.name}: axis must be an int >= 1 (0 is the batch); received axis={axis!r}")
        self.axis = axis

    def children(self) -> list[tuple[str, Layer]]:
        return [(f"branches.{i}", branch) for i, branch in enumerate(self.branches)]

    @classmethod
    def from_children(cls, children: list[tuple[str, Layer]], name: str | None = None, axis: int = 1) -> Concat:
        names = [f"branches.{i}" for i in range(len(children))]
        return cls(*_expect_names(cls, children, names), axis=axis, name=name)

    def input_children(self) -> list[Layer]:
        return list(self.branches)

    def output_shape(self, input_shape: Shape) -> Shape:
        shapes = [branch.output_shape(input_shape) for branch in self.branches]
        k = self.axis - 1  # the axis in a per-sample shape
        first = shapes[0]
        for i, shape in enumerate(shapes):
            if len(shape) != len(first) or len(shape) <= k or shape[:k] + shape[k + 1:] != first[:k] + first[k + 1:]:
                raise ShapeError(f"{self.name}: branch 0 gives per-sample shape {first} but branch {i} gives {shape}; "
                                 f"they must agree on every axis but {self.axis} to be concatenated")
        return first[:k] + (sum(shape[k] for shape in shapes),) + first[k + 1:]

    def _run(self, x: Array, train: bool) -> Array:
        outputs = [_forward(branch, x, train) for branch in self.branches]
        self._cache = [o.shape[self.axis] for o in outputs]
        return get_xp(*outputs).concatenate(outputs, axis=self.axis)

    def backward(self, dy: Array) -> Array | None:
        dx, start = None, 0
        widths = self._cached()
        for branch, width in zip(self.branches, widths):
            part = dy[(slice(None),) * self.axis + (slice(start, start + width),)]  # a view of dy
            start += width
            d = branch.backward(part)
            if self.need_input_grad:
                dx = d if dx is None else add_gradients(dx, d, dy)
        return dx

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}
