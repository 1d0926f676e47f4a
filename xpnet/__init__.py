"""xpnet: a readable CNN library written once for numpy (CPU) and cupy (NVIDIA GPU)."""

from . import augment, callbacks, datasets, distributed, initializers, layers, ops, optim
from ._version import __version__
from .backend import (
    Device,
    device_of,
    get_device,
    get_xp,
    gpu_available,
    gpu_unavailable_reason,
    to_device,
    to_numpy,
)
from .compare import compare
from .errors import DeviceError, DTypeError, ModelFileError, NonFiniteError, ShapeError, XpnetError
from .parameter import Parameter
from .training import Sequential, load

__all__ = [
    "DTypeError", "Device", "DeviceError", "ModelFileError", "NonFiniteError", "Parameter",
    "Sequential", "ShapeError", "XpnetError", "__version__", "augment", "callbacks", "compare", "datasets", "device_of",
    "distributed",
    "get_device", "get_xp", "gpu_available", "gpu_unavailable_reason", "initializers", "layers",
    "load", "ops", "optim", "to_device", "to_numpy",
]
