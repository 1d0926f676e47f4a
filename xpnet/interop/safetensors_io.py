"""Weights as safetensors files (the Hugging Face format), keyed by state_dict names.

``safetensors.torch.load_file(path)`` loads a file written here into the equivalent ``torch.nn``
model with ``strict=True``, and a file written from a PyTorch model's state_dict loads here.
The format holds only a JSON header and raw little-endian bytes: nothing in it is ever executed.
Loading is all-or-nothing (:meth:`xpnet.Sequential.load_state_dict` checks every name, shape and
dtype first).  ``safetensors`` is an optional extra, imported here only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy

from .._version import __version__
from ..errors import ModelFileError
from ..io import check_writable


def _numpy_api() -> Any:
    try:
        from safetensors import numpy as safetensors_numpy
    except ImportError:
        raise ImportError('.safetensors files need the safetensors package: pip install "xpnet[safetensors]"') \
            from None
    return safetensors_numpy


def save_safetensors(model: Any, path: str | Path) -> None:
    """Write the model's state_dict to ``path`` (C-contiguous little-endian arrays, atomically)."""
    api = _numpy_api()
    real = check_writable(path)
    arrays = {k: numpy.require(v, dtype=v.dtype.newbyteorder("<"), requirements="C")  # 0-d stays 0-d
              for k, v in model.state_dict().items()}
    tmp = real.parent / f".{real.name}.{os.getpid()}.safetensors-tmp"
    try:
        api.save_file(arrays, str(tmp), metadata={"format": "pt", "producer": f"xpnet {__version__}"})
        os.replace(tmp, real)
    finally:
        tmp.unlink(missing_ok=True)


def load_safetensors(model: Any, path: str | Path) -> None:
    """Load a safetensors file into ``model``: every name, shape and dtype checked first, all or nothing."""
    api = _numpy_api()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        arrays = api.load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError for a corrupt header or data
        raise ModelFileError(f"{path}: not a readable safetensors file ({exc.__class__.__name__}: {exc})") from None
    try:
        model.load_state_dict(arrays, strict=True)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: does not fit this model: {exc}") from None
