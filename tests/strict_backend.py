"""A strict, device-like array backend for tests (never shipped as a device).

Its arrays live "on another device" that happens to be host memory: like cupy's, they
refuse to mix with numpy arrays and refuse implicit conversion (``numpy.asarray(a)``
raises ``TypeError``).  Only the explicit transfers count: ``strict.asarray(host)``
(host to device) and ``a.get()``/``float(a)``/``a.item()`` (device to host).  Running the
op and layer suites on it catches transfer leaks on a machine without a GPU.

It offers exactly what CuPy 14 offers, no more: every name of the module (and of ``linalg``,
``random``, ``fft``), every array attribute, every ufunc method and every NumPy function reached
through ``__array_function__`` is checked against a snapshot of CuPy's API
(tests/cupy_api/cupy-14.json, written by tests/cupy_api/snapshot.py), and so are the parameters
of each call whose CuPy signature is known.  Anything else is refused with a message naming the
missing name, so an op that would break on the first GPU fails here.  ``strict.random`` returns
device arrays, as ``cupy.random`` does.

``TRANSFERS`` counts the transfers, so a test can bound them.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

from xpnet.backend import Device

CUPY_API = json.loads((Path(__file__).parent / "cupy_api" / "cupy-14.json").read_text(encoding="utf-8"))
CUPY = f"CuPy {CUPY_API['cupy_version']}"
MODULE_NAMES = {sub: frozenset(names) for sub, names in CUPY_API["modules"].items()}
NDARRAY_NAMES = frozenset(CUPY_API["ndarray"])
UFUNC_METHODS = frozenset(CUPY_API["ufunc_methods"]) | {"__call__"}


class NotInCupyError(AttributeError, TypeError):
    """A name or call that CuPy does not offer (an AttributeError for lookups, a TypeError for calls)."""


def _qualified(sub: str, name: str) -> str:
    return f"{sub}.{name}" if sub else name


def require_cupy_name(sub: str, name: str) -> None:
    """Refuse ``xp.<sub>.<name>`` unless CuPy has it."""
    if name not in MODULE_NAMES[sub]:
        raise NotInCupyError(f"strict backend: {CUPY} has no xp.{_qualified(sub, name)}; "
                             "an op that uses it would fail on a GPU")


class _Default:
    def __repr__(self) -> str:
        return "..."


_DEFAULT = _Default()  # stands for CuPy's default values, which the snapshot does not record


@functools.cache
def _cupy_signature(qualified: str) -> inspect.Signature | None:
    params = CUPY_API["signatures"].get(qualified)
    if params is None:
        return None
    empty = inspect.Parameter.empty
    return inspect.Signature([inspect.Parameter(name, kind, default=_DEFAULT if has_default else empty)
                              for name, kind, has_default in params])


def check_cupy_call(sub: str, name: str, args: tuple, kwargs: dict) -> None:
    """Refuse a call to ``xp.<sub>.<name>`` whose arguments CuPy's function would not take."""
    require_cupy_name(sub, name)
    signature = _cupy_signature(_qualified(sub, name))
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise NotInCupyError(f"strict backend: {CUPY}'s xp.{_qualified(sub, name)}{signature} does not take "
                             f"these arguments ({exc}); the call would fail on a GPU") from None


def _numpy_submodule(func: Any) -> str:
    """Where a NumPy function lives, as a key of the snapshot ("" for the top level)."""
    module = getattr(func, "__module__", "") or ""
    sub = module.removeprefix("numpy").lstrip(".")
    return sub if sub in MODULE_NAMES else ""


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
        require_cupy_name("", ufunc.__name__)
        if method not in UFUNC_METHODS:
            raise NotInCupyError(f"strict backend: {CUPY} ufuncs have no method {method!r}")
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **{k: _unwrap(v) if k != "out" else v
                                                               for k, v in kwargs.items()})
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        check_cupy_call(_numpy_submodule(func), func.__name__, args, kwargs)
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
        if name not in NDARRAY_NAMES:
            raise NotInCupyError(f"strict backend: {CUPY} arrays have no attribute {name!r}; "
                                 "an op that uses it would fail on a GPU")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
        return method

    def __repr__(self) -> str:
        return f"strict.array({self._a!r})"


def _refused_operator(name: str):
    def refuse(self: StrictArray, *args: Any) -> Any:
        raise NotInCupyError(f"strict backend: {CUPY} arrays have no {name} (e.g. no in-place @=)")
    refuse.__name__ = name
    return refuse


for _name in list(vars(NDArrayOperatorsMixin)):  # the mixin's operators that cupy.ndarray lacks
    if _name.startswith("__") and callable(getattr(NDArrayOperatorsMixin, _name)) and _name not in NDARRAY_NAMES:
        setattr(StrictArray, _name, _refused_operator(_name))


def _asarray(obj: Any, dtype: Any = None, **_: Any) -> StrictArray:
    """The host-to-device transfer (numpy input is copied and counted)."""
    if isinstance(obj, StrictArray):
        return obj if dtype is None or obj.dtype == dtype else StrictArray(obj._a.astype(dtype))
    if isinstance(obj, numpy.ndarray):
        TRANSFERS["to_device"] += 1
        return StrictArray(numpy.array(obj, dtype=dtype, copy=True))
    return StrictArray(numpy.asarray(obj, dtype=dtype))


def _creator(fn: Any, sub: str = "") -> Any:
    """``fn`` (an array creator, or a random draw) checked against CuPy and returning device arrays."""
    def create(*args: Any, **kwargs: Any) -> Any:
        check_cupy_call(sub, fn.__name__, args, kwargs)
        return _wrap(fn(*_unwrap(args), **kwargs))
    create.__name__ = fn.__name__
    return create


class _StrictModule(types.ModuleType):
    """The strict backend's ``xp`` (or one of its submodules): NumPy's names that CuPy also has."""

    def __init__(self, name: str, numpy_module: types.ModuleType, sub: str = "") -> None:
        super().__init__(name)
        self._numpy_module, self._sub = numpy_module, sub

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        require_cupy_name(self._sub, name)
        return getattr(self._numpy_module, name)


class _StrictGenerator:
    """A random generator whose draws are device arrays and whose methods are CuPy's."""

    def __init__(self, generator: Any, kind: str) -> None:
        self._generator, self._kind = generator, kind

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in CUPY_API[f"random.{self._kind}"]:
            raise NotInCupyError(f"strict backend: {CUPY}'s random.{self._kind} has no {name!r}")
        attr = getattr(self._generator, name)
        return (lambda *a, **k: _wrap(attr(*_unwrap(a), **k))) if callable(attr) else attr


def _random_module() -> _StrictModule:
    """``strict.random``: CuPy's names, drawing on the host and returning device arrays."""
    module = _StrictModule("strict.random", numpy.random, "random")
    for name in MODULE_NAMES["random"] & set(dir(numpy.random)):
        member = getattr(numpy.random, name)
        if name in ("default_rng", "RandomState"):
            kind = "Generator" if name == "default_rng" else "RandomState"
            setattr(module, name, functools.partial(lambda f, k, *a, **kw: _StrictGenerator(f(*a, **kw), k),
                                                    member, kind))
        elif inspect.isroutine(member):  # the module-level draws are bound methods of a RandomState
            setattr(module, name, _creator(member, "random"))
    return module


strict = _StrictModule("strict", numpy)
strict.ndarray = StrictArray
strict.asarray = _asarray
strict.array = _asarray
strict.ascontiguousarray = lambda a, dtype=None: StrictArray(numpy.ascontiguousarray(_unwrap(_asarray(a, dtype))))
for _name in ("empty", "zeros", "ones", "full", "arange", "eye", "linspace", "identity"):
    setattr(strict, _name, _creator(getattr(numpy, _name)))
strict.linalg = _StrictModule("strict.linalg", numpy.linalg, "linalg")
strict.fft = _StrictModule("strict.fft", numpy.fft, "fft")
strict.random = _random_module()
strict.lib = types.SimpleNamespace(stride_tricks=_StrictModule("strict.lib.stride_tricks", numpy.lib.stride_tricks,
                                                                "lib.stride_tricks"))


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
