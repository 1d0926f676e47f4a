"""Model files: a model's layer tree, seed, dtype and arrays to and from an ``.xpnet`` file.

Format 2 (written now): ``config.json`` holds the top-level layer entries, each with its class,
name and config and, for a container, its children ``[[name, entry], ...]``; arrays are keyed by
their state_dict names ("0.weight", "3.body.1.running_var") and optimizer state by
"optimizer/<i>/<name>".  Format 1 files (a flat layer list, "layer_name/param" keys, BatchNorm's
gamma/beta without a batch counter) are read and converted.  The archive itself (zip members,
checks, atomic writes) is :mod:`xpnet.io`; restoring an optimizer is :mod:`xpnet.training`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

from ._version import __version__
from .backend import to_device, to_numpy
from .errors import ModelFileError, NonFiniteError
from .io import FORMAT_NAME, FORMAT_VERSION, layer_entry, layer_from_config, read_archive, save_archive
from .layers import Layer
from .layers.base import shapes_only
from .layers.containers import Sequential as SequentialLayer
from .model import Network, name_layers

_V1_NAMES = {"gamma": "weight", "beta": "bias"}  # format 1's BatchNorm names -> torch's


@dataclass
class ModelFile:
    """What a model file holds, validated: top-level layer entries, settings, arrays, training state."""

    entries: list[Any]
    seed: Any
    dtype: str
    arrays: dict[str, numpy.ndarray]
    training: dict[str, Any] | None

    def model_arrays(self) -> dict[str, numpy.ndarray]:
        return {k: v for k, v in self.arrays.items() if not k.startswith("optimizer/")}


def model_config(model: Network) -> dict[str, Any]:
    """The architecture and settings as plain data."""
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "xpnet_version": __version__,
            "dtype": str(model.dtype), "seed": model.seed, "layers": [layer_entry(layer) for layer in model.layers]}


def write(model: Network, path: str | Path, training: dict[str, Any] | None = None,
          extra_arrays: dict[str, numpy.ndarray] | None = None, allow_nonfinite: bool = False) -> None:
    """Write the model (and optional training state and arrays) to ``path`` atomically.

    Refuses arrays holding NaN or infinity with :class:`NonFiniteError` unless ``allow_nonfinite``.
    """
    config = model_config(model)
    if training is not None:
        config["training"] = training
    arrays = {name: to_numpy(v.value) for name, v in model.variables()} | (extra_arrays or {})
    bad = [name for name, a in arrays.items() if not numpy.isfinite(a).all()]
    if bad and not allow_nonfinite:
        raise NonFiniteError(f"{path}: not saved: NaN or infinity in {', '.join(bad[:4])}"
                             f"{' and more' if len(bad) > 4 else ''} (the training diverged; "
                             "save(..., allow_nonfinite=True) writes them anyway)")
    save_archive(path, config, arrays)


def read(path: str | Path) -> ModelFile:
    """Read and check a model file (format 1 or 2), converting format 1 to format 2's names."""
    path = Path(path)
    config, arrays = read_archive(path)
    training = config.get("training") if isinstance(config.get("training"), dict) else None
    if config["format_version"] == 1:
        arrays, training = _from_version_1(config["layers"], arrays, training)
    return ModelFile(config["layers"], config.get("seed"), config.get("dtype", "float32"), arrays, training)


def _from_version_1(entries: list[Any], arrays: dict[str, numpy.ndarray],
                    training: dict[str, Any] | None) -> tuple[dict[str, numpy.ndarray], dict[str, Any] | None]:
    """Format 1's "layer_name/param" keys as state_dict names; BatchNorm's counter starts at 0."""
    index = {entry.get("name"): str(i) for i, entry in enumerate(entries)}
    converted = {}
    for key, array in arrays.items():
        layer, _, param = key.rpartition("/")
        converted[key if key.startswith("optimizer/") or layer not in index
                  else f"{index[layer]}.{_V1_NAMES.get(param, param)}"] = array
    for i, entry in enumerate(entries):
        if entry.get("class") == "BatchNorm2d":
            converted.setdefault(f"{i}.num_batches_tracked", numpy.zeros((), numpy.int64))
    if training is not None and isinstance(training.get("layer_rngs"), dict):
        training = {**training, "layer_rngs": {index.get(k, k): v for k, v in training["layer_rngs"].items()}}
    return converted, training


def build_layers(path: Path, entries: list[Any]) -> list[Layer]:
    """The top-level layers of a model file (call :func:`check_declared_shapes` first)."""
    return [layer_from_config(path, entry) for entry in entries]


def check_declared_shapes(path: Path, file: ModelFile) -> None:
    """ModelFileError unless the arrays are exactly those the config's layers declare, checked with
    memory-free placeholder layers before anything is allocated: a forged config declaring huge
    layers costs nothing (and the stored arrays are never larger than the file, see xpnet.io)."""
    with shapes_only():
        layers = build_layers(path, file.entries)
    root = SequentialLayer(*layers)
    try:
        name_layers([layer for _, layer in root.named_layers()[1:]])
    except ValueError as exc:
        raise ModelFileError(f"{path}: the layers do not form a model ({exc})") from None
    check_fit(path, dict(root.named_variables()), file.model_arrays(), "config")


def check_fit(path: Path, variables: dict[str, Any], arrays: dict[str, numpy.ndarray], what: str) -> None:
    """ModelFileError listing every missing, unexpected or misshapen array, unless all fit."""
    problems = [f"missing {name}" for name in variables if name not in arrays]
    problems += [f"unexpected {name}" for name in arrays if name not in variables]
    problems += [f"size mismatch for {name}: file {arrays[name].shape}, {what} {v.shape}"
                 for name, v in variables.items() if name in arrays and arrays[name].shape != v.shape]
    problems += [f"dtype mismatch for {name}: file {arrays[name].dtype}, {what} {v.value.dtype}"
                 for name, v in variables.items() if name in arrays and arrays[name].shape == v.shape
                 and (arrays[name].dtype.kind == "f") != (v.value.dtype.kind == "f")]
    if problems:
        raise ModelFileError(f"{path}: does not fit {'this model' if what == 'model' else 'its config'}: "
                             f"{'; '.join(problems)}")


def assign(model: Network, path: Path, arrays: dict[str, numpy.ndarray]) -> None:
    """Copy checked host arrays into the model; every name, shape and kind is checked first."""
    variables = dict(model.variables())
    check_fit(path, variables, arrays, "model")
    for name, variable in variables.items():
        variable.apply(lambda old, a=arrays[name]: to_device(a.astype(old.dtype), model.device))
