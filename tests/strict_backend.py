"""A strict, device-like array backend for tests (never shipped as a device).

Its arrays live "on another device" that happens to be host memory: like cupy's, they
refuse to mix with numpy arrays and refuse implicit conversion (``numpy.asarray(a)``
raises ``TypeError``).  Only the explicit transfers count: ``strict.asarray(host)``
(host to device) and ``a.get()``/``float(a)``/``a.item()`` (device to host).  Running the
op and layer suites on it catches transfer leaks on a machine without a GPU.

``TRANSFERS`` counts the transfers, so a test can bound them.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

from xpnet.backend import Device

TRANSFERS = {"to_device": 0, "to_host": 0}


def _unwrap(obj: Any) -> Any:
    """Strip StrictArray wrappers; refuse raw numpy arrays (the mixing cupy refuses)."""
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, numpy.ndarray):
        raise TypeError(f"strict backend: a numpy.ndarray of shape {obj.shape} was mixed with "
                        "strict device arrays; transfer it explicitly first")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    return obj


def _wrap(obj: Any) -> Any:
    """Wrap numpy results (arrays and numpy scalars, as cupy returns 0-d arrays)."""
    if isinstance(obj, numpy.ndarray):
        return StrictArray(obj)
    if isinstance(obj, numpy.generic):
        return StrictArray(numpy.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


class StrictArray(NDArrayOperatorsMixin):
    """A numpy array behind a wall: arithmetic works, implicit conversion does not."""

    __slots__ = ("_a",)

    def __init__(self, array: numpy.ndarray) -> None:
        self._a = array

    # what get_xp / device_of look for
    @property
    def __xpnet_array_module__(self) -> types.ModuleType:
        return strict

    @property
    def __xpnet_device__(self) -> Device:
        return STRICT_DEVICE

    def __array__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("strict backend: implicit conversion to a NumPy array is not allowed; "
                        "use xpnet.to_numpy() (as cupy requires .get())")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **{k: _unwrap(v) if k != "out" else v
                                                               for k, v in kwargs.items()})
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        out = kwargs.get("out")
        result = func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        return out if out is not None else _wrap(result)

    # explicit device-to-host transfers (each one counted)
    def get(self) -> numpy.ndarray:
        TRANSFERS["to_host"] += 1
        return self._a.copy()

    def item(self) -> Any:
        TRANSFERS["to_host"] += 1
        return self._a.item()

    def tolist(self) -> Any:
        TRANSFERS["to_host"] += 1
        return self._a.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    # array protocol
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StrictArray(self._a.T))

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __getitem__(self, key: Any) -> StrictArray:
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # no __array_interface__ & co: no back door to numpy
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
        return method

    def __repr__(self) -> str:
        return f"strict.array({self._a!r})"


def _asarray(obj: Any, dtype: Any = None, **_: Any) -> StrictArray:
    """The host-to-device transfer (numpy input is copied and counted)."""
    if isinstance(obj, StrictArray):
        return obj if dtype is None or obj.dtype == dtype else StrictArray(obj._a.astype(dtype))
    if isinstance(obj, numpy.ndarray):
        TRANSFERS["to_device"] += 1
        return StrictArray(numpy.array(obj, dtype=dtype, copy=True))
    return StrictArray(numpy.asarray(obj, dtype=dtype))


def _creator(fn):
    def create(*args: Any, **kwargs: Any) -> Any:
        return _wrap(fn(*_unwrap(args), **kwargs))
    create.__name__ = fn.__name__
    return create


class _StrictModule(types.ModuleType):
    """The strict backend's ``xp``: numpy's functions, with creators returning StrictArrays."""

    def __getattr__(self, name: str) -> Any:
        return getattr(numpy, name)


strict = _StrictModule("strict")
strict.ndarray = StrictArray
strict.asarray = _asarray
strict.array = _asarray
strict.ascontiguousarray = lambda a, dtype=None: StrictArray(numpy.ascontiguousarray(_unwrap(_asarray(a, dtype))))
for _name in ("empty", "zeros", "ones", "full", "arange", "eye", "linspace", "identity"):
    setattr(strict, _name, _creator(getattr(numpy, _name)))


@dataclass(frozen=True)
class StrictDevice(Device):
    """The device of the strict backend (xpnet.to_device(a, STRICT_DEVICE) moves arrays there)."""

    type: str = "strict"

    @property
    def xp(self) -> types.ModuleType:
        return strict

    def asarray(self, host_array: numpy.ndarray) -> StrictArray:
        return _asarray(host_array)

    def __str__(self) -> str:
        return "strict"


STRICT_DEVICE = StrictDevice()
