"""Exception classes of xpnet.

Each subclasses the built-in exception a caller would already catch, so
``except ValueError`` still works for a :class:`ShapeError`.
"""

from __future__ import annotations


class XpnetError(Exception):
    """Base class of every error raised by xpnet on purpose."""


class ShapeError(XpnetError, ValueError):
    """An array has the wrong rank or size for the layer or op it was given to."""


class DTypeError(XpnetError, TypeError):
    """An array has a dtype the layer or op cannot take."""


class ModelFileError(XpnetError, ValueError):
    """A model or checkpoint file is missing, corrupt, unsafe or of an unknown version."""


class NonFiniteError(XpnetError, FloatingPointError):
    """A loss, output or gradient became NaN or infinite."""


class DeviceError(XpnetError, RuntimeError):
    """A device was requested strictly and cannot be used."""
