"""xpnet: a readable CNN library written once for numpy (CPU) and cupy (NVIDIA GPU)."""

from . import initializers, layers, ops
from .backend import (
    Device, device_of, get_device, get_xp, gpu_available, gpu_unavailable_reason, to_device, to_numpy,
)
from .errors import DTypeError, DeviceError, ModelFileError, NonFiniteError, ShapeError, XpnetError
from .parameter import Parameter

__version__ = "0.1.0"

__all__ = [
    "DTypeError", "Device", "DeviceError", "ModelFileError", "NonFiniteError", "Parameter",
    "ShapeError", "XpnetError", "__version__", "device_of", "get_device", "get_xp", "gpu_available",
    "gpu_unavailable_reason", "initializers", "layers", "ops", "to_device", "to_numpy",
]
