"""The two runs' inputs: the model as plain data, the data set and the batch order."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy

from ..backend import to_numpy
from ..datasets import load_mnist
from ..errors import DTypeError, ShapeError
from ..io import layer_from_config
from ..models import lenet5
from ..training import Sequential, load
from .configs import Config


@dataclasses.dataclass
class _Template:
    """A model as plain data: layer configs and host copies of every array."""

    source: str
    layers: list[dict[str, Any]]
    arrays: dict[str, numpy.ndarray]
    seed: int

    def build(self, config: Config) -> Sequential:
        layers = [layer_from_config(Path(self.source), entry) for entry in self.layers]
        model = Sequential(*layers, seed=self.seed, dtype=config.dtype)
        for name, variable in model.variables():
            variable.apply(lambda old, a=self.arrays[name]:  # a copy, even for float32; counters stay ints
                           a.astype(config.dtype) if a.dtype.kind == "f" else a.copy())
        return model.to(config.device)


def _template(model: Any, seed: int) -> _Template:
    if model is None:
        source = lenet5(seed=seed)
        name = f"LeNet-5 (xpnet.models.lenet5, seed {seed})"
    elif isinstance(model, (str, os.PathLike)):
        source = load(model)
        name = str(model)
    elif isinstance(model, Sequential):
        source = model
        name = f"Sequential ({len(model.layers)} layers)"
    else:
        raise TypeError(f"model must be None (LeNet-5), a model file path or an xpnet Sequential; "
                        f"received {type(model).__name__}")
    arrays = {name_: numpy.array(to_numpy(v.value)) for name_, v in source.variables()}
    return _Template(name, source.get_config()["layers"], arrays, seed)


def _load_data(data: Any) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray, str]:
    if data is None or isinstance(data, (str, os.PathLike)):
        (x, y), (xt, yt) = load_mnist(data)
        return x, y, xt, yt, "built-in MNIST subset" if data is None else str(data)
    try:
        (x, y), (xt, yt) = data
    except (TypeError, ValueError):
        raise TypeError("data must be None, an MNIST folder or ((x_train, y_train), (x_test, y_test))") from None
    return numpy.asarray(x), numpy.asarray(y), numpy.asarray(xt), numpy.asarray(yt), "arrays"


def _check_data(model: Sequential, x: numpy.ndarray, y: numpy.ndarray, what: str) -> None:
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"{what} images must hold real numbers; got dtype {x.dtype}")
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
        raise ValueError(f"{what} labels must be {len(x)} integers; got dtype {y.dtype} and shape {y.shape}")
    out_shape = model.check_input_shape(x.shape[1:])
    if len(out_shape) != 1:
        raise ShapeError(f"the model outputs per-sample shape {out_shape}; compare needs class scores (K,)")
    bad = (y < 0) | (y >= out_shape[0])
    if bad.any():
        raise ValueError(f"{what} labels must be in [0, {out_shape[0]}); got {sorted(set(y[bad].tolist()))[:10]}")


def _batch_order(n: int, count: int, seed: int) -> numpy.ndarray:
    """``count`` sample indices: host permutations of range(n), one after the other."""
    rng = numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(1)[0])
    passes = math.ceil(count / n)
    return numpy.concatenate([rng.permutation(n) for _ in range(passes)])[:count]
