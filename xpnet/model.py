"""Model: a tree of layers under one root container, plus a device, a dtype and a seed.

The tree is the one structure: every traversal (parameters, named variables, train/eval mode,
device moves, casts, state_dict, summary) walks it through ``Layer.children()``.  Variable
names are the paths ``torch.nn`` gives the same tree ("0.weight", "3.body.1.running_var"), so a
state_dict moves between xpnet and PyTorch unchanged.  The Keras-style training API
(compile/fit/evaluate/predict/save) is added by :class:`xpnet.training.Sequential`, which is
what users build.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy

from .backend import Array, Device, get_device, get_xp, to_device, to_numpy
from .errors import ShapeError
from .layers import Layer
from .layers.containers import Sequential as SequentialLayer
from .parameter import Parameter


def _snake(name: str) -> str:
    """"MaxPool2d" -> "max_pool2d", "LeakyReLU" -> "leaky_relu"."""
    name = name.replace("ReLU", "Relu").replace("GELU", "Gelu")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def name_layers(layers: list[Layer]) -> None:
    """Give default-named layers unique Keras-like names: conv2d, conv2d_1, ... (for summaries,
    reports and feature maps; files and state_dicts use paths).

    Names the user chose are kept (and must be unique); default names skip them.  Naming twice
    changes nothing.
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


def describe_sample_shape(shape: tuple[int | None, ...]) -> str:
    """(1, None, None) as "(1, H, W)", (None, None, None) as "(C, H, W)", (400,) as "(400,)"."""
    names = ("C", "H", "W") if len(shape) == 3 else tuple(f"d{i}" for i in range(len(shape)))
    parts = [name if size is None else str(size) for name, size in zip(names, shape)]
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` did not match (PyTorch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _as_host_array(value: Any, key: str) -> numpy.ndarray:
    """A host NumPy array from a NumPy or device array, a CPU torch tensor or anything array-like."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        get_xp(value)  # a NumPy, CuPy or test-backend array (or a Python scalar)
        return numpy.asarray(to_numpy(value))
    except TypeError:
        pass
    try:
        return numpy.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"state_dict[{key!r}] is not array-like ({type(value).__name__}: {exc})") from None


class Network:
    """A tree of layers (``self.root``, a ``layers.Sequential`` of the layers given). ``seed`` fixes
    the initial weights (drawn on the host) and the model's data generator (shuffling,
    validation split, dropout masks)."""

    def __init__(self, *layers: Layer, seed: int | None = 0, device: str | Device = "cpu",
                 dtype: Any = numpy.float32) -> None:
        if not layers:
            raise ValueError("a model needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer #{i} is a {type(layer).__name__}, not an xpnet Layer")
        self.root = SequentialLayer(*layers, name="model")
        name_layers([layer for _, layer in self.root.named_layers()[1:]])
        self.seed = seed
        init_seq, data_seq = numpy.random.SeedSequence(seed).spawn(2)
        self.root.reset_parameters(numpy.random.default_rng(init_seq))
        self.rng = numpy.random.default_rng(data_seq)
        self.root.need_input_grad = False  # nobody needs dL/d(input images)
        self.training = False
        self._device = get_device("cpu")
        if numpy.dtype(dtype) != numpy.float32:
            self.cast(dtype)
        self.to(device)

    # --- the tree ---------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The top-level layers, in order (``model.layers[3]``; nested ones through ``named_layers``)."""
        return self.root.layers

    def __len__(self) -> int:
        return len(self.root.layers)

    def __iter__(self):
        return iter(self.root.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.root.layers[index]

    def named_layers(self) -> list[tuple[str, Layer]]:
        """(path, layer) for every layer of the tree, parents first ("3", "3.body", "3.body.0", ...)."""
        return self.root.named_layers()[1:]

    def parameters(self) -> list[Parameter]:
        """Trainable parameters of the whole tree, in state_dict order."""
        return self.root.parameters()

    def variables(self) -> list[tuple[str, Parameter]]:
        """(state_dict name, variable) for every array the model owns: parameters and buffers."""
        return self.root.named_variables()

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # --- state_dict -------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, numpy.ndarray]:
        """Host NumPy copies of every parameter and buffer, keyed and shaped as in ``torch.nn``:
        ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`` loads it."""
        return OrderedDict((name, to_numpy(v.value).copy()) for name, v in self.variables())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (NumPy, a device's, or CPU torch tensors) into the model, in place.

        Every name, shape and dtype is checked first and nothing changes on failure: floating
        variables take any floating array (cast to the model's dtype, as ``torch`` copies do),
        integer buffers integer ones.  ``strict`` refuses missing and unexpected keys; without
        it they are returned, as PyTorch does.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
        variables = dict(self.variables())
        missing = [k for k in variables if k not in state_dict]
        unexpected = [k for k in state_dict if k not in variables]
        arrays, problems = {}, []
        for name, variable in variables.items():
            if name in state_dict:
                arrays[name] = _as_host_array(state_dict[name], name)
                problems += _mismatch(name, arrays[name], variable)
        if strict and (missing or unexpected):
            problems = [f"missing keys {missing}"] * bool(missing) + [f"unexpected keys {unexpected}"] * \
                bool(unexpected) + problems
        if problems:
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            raise ValueError(f"load_state_dict: nothing was loaded: {shown}")
        for name, array in arrays.items():
            variable = variables[name]
            variable.value[...] = to_device(array.astype(variable.value.dtype), self.device)
        return IncompatibleKeys(missing, unexpected)

    # --- devices and dtypes -----------------------------------------------------
    @property
    def device(self) -> Device:
        """The device the parameters live on."""
        return self._device

    @property
    def dtype(self) -> numpy.dtype:
        """The floating dtype of the parameters (float32 unless cast)."""
        dtype = self.root.dtype
        return dtype if dtype is not None else getattr(self, "_dtype", numpy.dtype(numpy.float32))

    def to(self, device: str | Device, strict: bool = False) -> Network:
        """Move parameters and gradients (and optimizer state, once compiled) to ``device``; returns self.

        "cuda" without a usable GPU falls back to the CPU with one RuntimeWarning (or
        raises DeviceError when ``strict``).
        """
        target = get_device(device, strict=strict)
        variables = self.root.variables()
        grads = [to_device(v.grad, target) for v in variables]  # Parameter.apply resets grads: keep them
        self.root.apply(lambda a: to_device(a, target))
        for variable, grad in zip(variables, grads, strict=True):
            variable.grad = grad
        self._device = target
        return self

    def cast(self, dtype: Any) -> Network:
        """Cast every floating parameter and buffer to float32 or float64; returns self."""
        self.root.cast(dtype)
        self._dtype = numpy.dtype(dtype)
        return self

    def zero_grad(self) -> None:
        self.root.zero_grad()

    # --- modes and computation --------------------------------------------------
    def train(self, mode: bool = True) -> Network:
        """Training mode (dropout active, batch statistics); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> Network:
        """Evaluation mode; returns self."""
        return self.train(False)

    def forward(self, x: Array, train: bool | None = None) -> Array:
        """Run the tree on x (a batch already on the model's device)."""
        train = self.training if train is None else train
        get_xp(x, self._first_array())  # refuses a batch on the wrong device
        return self.root.forward(x, train=train)

    __call__ = forward

    def _first_array(self) -> Array | None:
        """Any one array of the model (enough to know its device), found without walking the whole tree."""
        pending = [self.root]
        while pending:
            layer = pending.pop()
            own = layer.own_variables()
            if own:
                return own[0].value
            pending.extend(child for _, child in reversed(layer.children()))
        return None

    def backward(self, dy: Array) -> Array | None:
        """Back-propagate dL/d(output) through the tree, accumulating parameter gradients."""
        return self.root.backward(dy)

    def clear_cache(self) -> None:
        self.root.clear_cache()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape; ShapeError naming the first layer that cannot take its input."""
        return self.root.output_shape(tuple(int(s) for s in input_shape))

    def summary(self, input_shape: tuple[int, ...], print_fn: Callable[[str], Any] | None = print) -> str:
        """A table of layers with output shapes and parameter counts, the layers inside a container
        indented under it; printed and returned.

        Containers show their subtree's output shape and parameter count; a shape mismatch in a
        residual sum or a concatenation raises ShapeError naming the container and both shapes.
        """
        rows = [("Layer (type)", "Output shape", "Params")]
        self.root.output_shape(tuple(input_shape))  # every container checks its branches first
        _summary_rows(self.root, tuple(input_shape), 0, rows)
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

    def sample_shape(self) -> tuple[int | None, ...] | None:
        """The per-sample input shape the model takes ((1, None, None): 1 channel, any H and W), from
        its first layer that constrains it; None when no layer does."""
        for _, layer in self.root.named_layers():
            if not layer.children() and layer.sample_shape() is not None:
                return layer.sample_shape()
        return None

    def check_input_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape, or a ShapeError that says the input does not fit."""
        try:
            return self.output_shape(sample_shape)
        except ShapeError as exc:
            expected = self.sample_shape()
            wanted = f"the model takes samples of shape {describe_sample_shape(expected)}; " if expected else ""
            raise ShapeError(f"input samples of shape {tuple(sample_shape)} do not fit the model ({wanted}{exc})") \
                from None


def _summary_rows(container: Layer, shape: tuple[int, ...], depth: int, rows: list) -> tuple[int, ...]:
    """Append one row per child of ``container`` (indented by depth) and return the output shape."""
    for _, child in container.children():
        out = child.output_shape(shape)
        label = f"{'  ' * depth}{child.name} ({type(child).__name__})"
        rows.append((label, str((None, *out)), f"{child.num_parameters():,}"))
        _summary_rows(child, shape, depth + 1, rows)
        if isinstance(container, SequentialLayer):
            shape = out
    return shape


def _mismatch(name: str, array: numpy.ndarray, variable: Parameter) -> list[str]:
    """Why ``array`` cannot go into ``variable`` ([] when it can)."""
    want = variable.value.dtype
    if array.shape != variable.shape:
        return [f"size mismatch for {name}: given {array.shape}, model {variable.shape}"]
    if (want.kind == "f" and array.dtype.kind != "f") or (want.kind in "iu" and array.dtype.kind not in "iu"):
        return [f"dtype mismatch for {name}: given {array.dtype}, model {numpy.dtype(want)}"]
    return []

