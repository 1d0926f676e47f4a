"""Layer: the base class of every layer.

A layer owns its :class:`~xpnet.parameter.Parameter` list, checks its input, and calls
the pure ops of :mod:`xpnet.ops`.  ``forward`` keeps the op's cache on the layer and
``backward`` uses it, accumulating parameter gradients and returning dL/dx.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import numpy

from ..backend import Array, get_xp
from ..errors import DTypeError, ShapeError
from ..parameter import Parameter

Shape = tuple[int, ...]


def positive_int(value: Any, name: str, who: str, minimum: int = 1) -> int:
    """``value`` as an int, or ValueError naming the layer and argument."""
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{who}: {name} must be {kind}; received {name}={value!r}")
    return int(value)


def float_dtype(dtype: Any, who: str) -> numpy.dtype:
    """``dtype`` as a numpy dtype, or DTypeError unless it is float32 or float64."""
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise DTypeError(f"{who}: parameters must be float32 or float64; received {dtype}")
    return dtype


_SHAPES_ONLY = contextvars.ContextVar("xpnet_shapes_only", default=False)


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Layers built inside hold memory-free placeholders (zero-strided views) and draw nothing.

    What a model file's loader uses to learn the shapes a config declares before it allocates
    anything (like PyTorch's meta device); such layers can report shapes but not compute.
    """
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def new_parameter(shape: Shape, dtype: numpy.dtype, name: str, fill: float = 0.0,
                  trainable: bool = True) -> Parameter:
    """A host parameter of ``shape`` filled with ``fill`` (a placeholder inside :func:`shapes_only`)."""
    if _SHAPES_ONLY.get():
        placeholder = numpy.broadcast_to(numpy.full((), fill, dtype=dtype), shape)  # no memory of its own
        return Parameter(placeholder, name, trainable, grad=placeholder)
    return Parameter(numpy.full(shape, fill, dtype=dtype), name, trainable)


def draw_into(param: Parameter, init: Callable, rng: numpy.random.Generator) -> None:
    """Draw ``init(shape, rng, dtype)`` on the host and put it where ``param`` lives."""
    if _SHAPES_ONLY.get():
        return
    host = init(param.shape, rng, param.value.dtype)
    param.apply(lambda old: get_xp(old).asarray(host))


def as_rng(seed: numpy.random.Generator | int | None) -> numpy.random.Generator:
    """A numpy Generator from a seed (or the Generator itself)."""
    return seed if isinstance(seed, numpy.random.Generator) else numpy.random.default_rng(seed)


class Layer:
    """Base class: no parameters, identity shape, and the forward/backward protocol.

    Layers form a tree: a container (``layers.Sequential``, ``Residual``, ``Concat``) is a layer
    whose :meth:`children` are layers.  Every traversal (variables, names, modes, moves, casts)
    walks the tree through :meth:`children`, and a variable's name is its path from the root,
    joined with "." as ``torch.nn`` names the same tree (``"3.body.0.weight"``).
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__
        self._need_input_grad = True
        self._cache: Any = None

    # --- the tree -----------------------------------------------------------------
    def children(self) -> list[tuple[str, Layer]]:
        """(name, child) pairs in order: index strings in a Sequential, attribute names elsewhere."""
        return []

    def named_layers(self, prefix: str = "") -> list[tuple[str, Layer]]:
        """(path, layer) for this layer and every descendant, parents first ("" is this layer)."""
        found = [(prefix, self)]
        for name, child in self.children():
            found += child.named_layers(f"{prefix}.{name}" if prefix else name)
        return found

    def own_variables(self) -> list[Parameter]:
        """The arrays this layer itself owns (not its children's): parameters first, then buffers."""
        return []

    def named_variables(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        """(path.name, variable) for every array in the tree below this layer, as torch's state_dict keys."""
        dot = f"{prefix}." if prefix else ""
        return [(f"{dot}{v.name}", v) for v in self.own_variables()] + [
            item for name, child in self.children() for item in child.named_variables(f"{dot}{name}")]

    @property
    def need_input_grad(self) -> bool:
        """Whether backward computes dL/dx (the first layer of a model skips it)."""
        return self._need_input_grad

    @need_input_grad.setter
    def need_input_grad(self, value: bool) -> None:
        self._need_input_grad = bool(value)
        for child in self.input_children():
            child.need_input_grad = value

    def input_children(self) -> list[Layer]:
        """The children that receive this layer's input (a Sequential's first; every branch)."""
        return []

    # --- parameters ---------------------------------------------------------------
    def parameters(self) -> list[Parameter]:
        """Trainable parameters, in a fixed order."""
        return [v for v in self.variables() if v.trainable]

    def buffers(self) -> list[Parameter]:
        """Non-trainable state saved with the layer (batch-norm running statistics)."""
        return [v for v in self.variables() if not v.trainable]

    def variables(self) -> list[Parameter]:
        """Every array of the layer and its descendants, in the order of :meth:`named_variables`
        (without building the names: layers ask for it on every forward, through ``dtype``)."""
        return self.own_variables() + [v for _, child in self.children() for v in child.variables()]

    def num_parameters(self) -> int:
        """Number of trainable values (what a summary prints)."""
        return sum(p.size for p in self.parameters())

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        """Draw fresh initial values on the host (a container resets its children in order)."""
        rng = as_rng(rng)
        for _, child in self.children():
            child.reset_parameters(rng)

    def zero_grad(self) -> None:
        """Zero every parameter gradient in place."""
        for p in self.parameters():
            p.zero_grad()

    def apply(self, fn: Callable[[Array], Array]) -> Layer:
        """Replace every array the layer owns by ``fn(array)`` (a move or a cast); returns self."""
        for v in self.variables():
            v.apply(fn)
        self.clear_cache()
        return self

    def cast(self, dtype: Any) -> Layer:
        """Cast floating parameters and buffers to float32 or float64 (counters stay ints); returns self."""
        dtype = float_dtype(dtype, self.name)
        return self.apply(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)

    @property
    def dtype(self) -> numpy.dtype | None:
        """The dtype of the layer's floating parameters (None for a layer without any)."""
        for variable in self.variables():
            if variable.value.dtype.kind == "f":
                return numpy.dtype(variable.value.dtype)
        return None

    # --- computation -------------------------------------------------------------
    def forward(self, x: Array, train: bool = False) -> Array:
        """y = layer(x); keeps what backward needs."""
        raise NotImplementedError

    def backward(self, dy: Array) -> Array | None:
        """Given dL/dy, accumulate parameter gradients and return dL/dx."""
        raise NotImplementedError

    def __call__(self, x: Array, train: bool = False) -> Array:
        return self.forward(x, train=train)

    def output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape for a per-sample input shape (no batch axis)."""
        return tuple(input_shape)

    def sample_shape(self) -> tuple[int | None, ...] | None:
        """The per-sample input shape this layer takes, None for a free size ((1, None, None) for a
        convolution of one input channel, (400,) for a linear layer), or None when it takes any
        (activations, Flatten, containers: their first child decides)."""
        return None

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (for summaries and model files)."""
        return {}

    def clear_cache(self) -> None:
        """Drop what the last forward kept for backward (frees its memory), in the whole subtree."""
        self._cache = None
        for _, child in self.children():
            child.clear_cache()

    # --- helpers for subclasses --------------------------------------------------
    def _cached(self) -> Any:
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        return self._cache

    def _check_dtype(self, x: Array) -> None:
        """DTypeError unless x has the dtype of this layer's parameters."""
        dtype = self.dtype
        if dtype is not None and x.dtype != dtype:
            raise DTypeError(f"{self.name} has {dtype} parameters, got {x.dtype} input; "
                             f"cast one of them (layer.cast or x.astype)")

    def _check_rank(self, input_shape: Shape, rank: int, names: str) -> None:
        if len(input_shape) != rank:
            raise ShapeError(f"{self.name} expects {rank + 1}-D input (N, {names}), "
                             f"got per-sample shape {tuple(input_shape)}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
