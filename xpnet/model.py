"""Network: an ordered stack of layers with parameters, device moves, forward/backward and summary.

The Keras-style training API (compile/fit/evaluate/predict/save) is added on top of it
by :class:`xpnet.training.Sequential`, which is what users build.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy

from .backend import Array, Device, get_device, get_xp, to_device
from .errors import ShapeError
from .layers import Layer
from .parameter import Parameter


def _snake(name: str) -> str:
    """"MaxPool2d" -> "max_pool2d", "LeakyReLU" -> "leaky_relu"."""
    name = name.replace("ReLU", "Relu").replace("GELU", "Gelu")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def name_layers(layers: list[Layer]) -> None:
    """Give default-named layers unique Keras-like names: conv2d, conv2d_1, ...

    Names the user chose are kept (and must be unique); default names skip them, since
    parameters are saved and loaded under ``layer_name/param_name``.  Naming twice changes nothing.
    """
    chosen = [layer.name for layer in layers if layer.name != type(layer).__name__]
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        raise ValueError(f"layer names must be unique; {', '.join(map(repr, repeated))} used more than once")
    taken, seen = set(chosen), {}
    for layer in layers:
        if layer.name == type(layer).__name__:
            base = _snake(layer.name)
            count = seen.get(base, 0)
            while (name := base if count == 0 else f"{base}_{count}") in taken:
                count += 1
            layer.name = name
            taken.add(name)
            seen[base] = count + 1


class Network:
    """Layers applied in order. ``seed`` fixes the initial weights (drawn on the host) and the
    model's data generator (shuffling, validation split, dropout masks)."""

    def __init__(self, *layers: Layer, seed: int | None = 0, device: str | Device = "cpu",
                 dtype: Any = numpy.float32) -> None:
        if not layers:
            raise ValueError("a model needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer #{i} is a {type(layer).__name__}, not an xpnet Layer")
        self.layers = list(layers)
        self._name_layers()
        self.seed = seed
        init_seq, data_seq = numpy.random.SeedSequence(seed).spawn(2)
        init_rng = numpy.random.default_rng(init_seq)
        for layer in self.layers:
            layer.reset_parameters(init_rng)
        self.rng = numpy.random.default_rng(data_seq)
        self.layers[0].need_input_grad = False  # nobody needs dL/d(input images)
        self.training = False
        self._device = get_device("cpu")
        if numpy.dtype(dtype) != numpy.float32:
            self.cast(dtype)
        self.to(device)

    def _name_layers(self) -> None:
        name_layers(self.layers)

    # --- parameters and devices -------------------------------------------------
    def parameters(self) -> list[Parameter]:
        """Trainable parameters of every layer, in layer order."""
        return [p for layer in self.layers for p in layer.parameters()]

    def variables(self) -> list[tuple[str, Parameter]]:
        """(``layer_name/param_name``, parameter) for every array the model owns, in order."""
        return [(f"{layer.name}/{v.name}", v) for layer in self.layers for v in layer.variables()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    @property
    def device(self) -> Device:
        """The device the parameters live on."""
        return self._device

    @property
    def dtype(self) -> numpy.dtype:
        """The floating dtype of the parameters (float32 unless cast)."""
        for layer in self.layers:
            if layer.dtype is not None:
                return layer.dtype
        return getattr(self, "_dtype", numpy.dtype(numpy.float32))

    def _apply(self, fn: Callable[[Array], Array]) -> None:
        for layer in self.layers:
            layer.apply(fn)

    def to(self, device: str | Device, strict: bool = False) -> Network:
        """Move parameters and gradients (and optimizer state, once compiled) to ``device``; returns self.

        "cuda" without a usable GPU falls back to the CPU with one RuntimeWarning (or
        raises DeviceError when ``strict``).
        """
        target = get_device(device, strict=strict)
        variables = [v for layer in self.layers for v in layer.variables()]
        grads = [to_device(v.grad, target) for v in variables]  # Parameter.apply resets grads: keep them
        self._apply(lambda a: to_device(a, target))
        for variable, grad in zip(variables, grads, strict=True):
            variable.grad = grad
        self._device = target
        return self

    def cast(self, dtype: Any) -> Network:
        """Cast every parameter to float32 or float64; returns self."""
        for layer in self.layers:
            layer.cast(dtype)
        self._dtype = numpy.dtype(dtype)
        return self

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    # --- modes and computation --------------------------------------------------
    def train(self, mode: bool = True) -> Network:
        """Training mode (dropout active, batch statistics); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> Network:
        """Evaluation mode; returns self."""
        return self.train(False)

    def forward(self, x: Array, train: bool | None = None) -> Array:
        """Run every layer on x (a batch already on the model's device)."""
        train = self.training if train is None else train
        get_xp(x, self._first_array())  # refuses a batch on the wrong device
        for layer in self.layers:
            x = layer.forward(x, train=train)
        return x

    __call__ = forward

    def _first_array(self) -> Array | None:
        """Any one array of the model (enough to know its device), without building lists."""
        for layer in self.layers:
            for variable in layer.variables():
                return variable.value
        return None

    def backward(self, dy: Array) -> Array | None:
        """Back-propagate dL/d(output) through every layer, accumulating parameter gradients."""
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def clear_cache(self) -> None:
        for layer in self.layers:
            layer.clear_cache()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape; ShapeError naming the first layer that cannot take its input."""
        shape = tuple(int(s) for s in input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def summary(self, input_shape: tuple[int, ...], print_fn: Callable[[str], Any] | None = print) -> str:
        """A Keras-like table of layers, output shapes and parameter counts; printed and returned."""
        rows = [("Layer (type)", "Output shape", "Params")]
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None, *shape)),
                         f"{layer.num_parameters():,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        line = "-" * (sum(widths) + 6)
        fmt = lambda r: f"{r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:>{widths[2]}}"  # noqa: E731
        body = [fmt(rows[0]), line.replace("-", "=")] + [fmt(r) for r in rows[1:]]
        total = self.num_parameters()
        nbytes = sum(p.value.nbytes for p in self.parameters())
        text = "\n".join([line, *body, line.replace("-", "="),
                          f"Total params: {total:,} ({nbytes / 1024:.1f} KiB, {self.dtype})",
                          f"Trainable params: {total:,}", f"Input shape: {(None, *input_shape)}", line])
        if print_fn is not None:
            print_fn(text)
        return text

    def check_input_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape, or a ShapeError that says the input does not fit."""
        try:
            return self.output_shape(sample_shape)
        except ShapeError as exc:
            raise ShapeError(f"input samples of shape {tuple(sample_shape)} do not fit the model: {exc}") from None
