"""Devices and array modules: the only module of xpnet that imports cupy.

Everything else takes its array module from the data (``xp = get_xp(x)``), so the
same code runs on numpy (CPU) and cupy (NVIDIA GPU).  Transfers between host and
device are explicit: :func:`to_device` and :func:`to_numpy`.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy

from .errors import DeviceError

Array = Any  # numpy.ndarray | cupy.ndarray (or a test backend's array)

__all__ = [
    "Array", "Device", "get_device", "get_xp", "to_device", "to_numpy",
    "gpu_available", "gpu_unavailable_reason", "device_of", "gpu_devices", "gpu_versions",
]


INSTALL_HINT = ('pip install "xpnet[cuda12]" (or "xpnet[cuda13]"), which brings CuPy 14 with the CUDA '
                'libraries it needs (cupy-cuda12x[ctk])')

# What the smoke test runs on the GPU, and the CUDA library each step needs: (what, library, step).
# Each step takes (cupy, host array (3, 4)) and returns a device array; the copy back is its .get().
_SMOKE_STEPS = (
    ("copying an array to the GPU and back", "the CUDA runtime", lambda cp, h: cp.asarray(h)),
    ("an elementwise kernel", "NVRTC (libnvrtc), which compiles CuPy's kernels", lambda cp, h: cp.asarray(h) * 2 + 1),
    ("a matrix product", "cuBLAS (libcublas)", lambda cp, h: cp.matmul(cp.asarray(h), cp.asarray(h).T)),
    ("a reduction", "NVRTC/CUB", lambda cp, h: cp.asarray(h).sum(axis=1)),
)


def _smoke_test(cupy: ModuleType) -> str:
    """Run a few kernels on the current GPU: "" when all work and give the right numbers, else why not."""
    host = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)  # (3, 4)
    expected = (host, host * 2 + 1, host @ host.T, host.sum(axis=1))
    for (what, library, step), want in zip(_SMOKE_STEPS, expected):
        try:
            got = step(cupy, host).get()
        except Exception as exc:  # ImportError: libcublas.so.12, CompileException, CUDARuntimeError, ...
            return (f"{what} failed on the GPU ({exc.__class__.__name__}: {exc}); {library} is missing or "
                    f"broken: {INSTALL_HINT}")
        if not numpy.allclose(got, want):
            return f"{what} gave wrong numbers on the GPU (got {got.ravel()[:4]}, expected {want.ravel()[:4]})"
    return ""


@functools.lru_cache(maxsize=1)
def _import_cupy() -> tuple[ModuleType | None, str]:
    """Return ``(cupy, "")`` when a GPU can be used, else ``(None, why not)``.

    Usable means: cupy imports, the driver answers, a device exists, and the smoke test (copy,
    elementwise kernel, matmul, reduction, copy back) passes on it.  Runs once per process.
    """
    try:
        import cupy
    except ModuleNotFoundError as exc:
        if exc.name != "cupy":
            return None, f"cupy failed to import ({exc.__class__.__name__}: {exc}); {INSTALL_HINT}"
        return None, f"cupy is not installed ({INSTALL_HINT})"
    except Exception as exc:  # a broken CUDA library at import
        return None, f"cupy failed to import ({exc.__class__.__name__}: {exc}); {INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, driver too old, ...
        return None, f"the CUDA driver cannot be used ({exc.__class__.__name__}: {exc})"
    if count < 1:
        return None, "cupy found no CUDA device"
    why = _smoke_test(cupy)
    return (None, why) if why else (cupy, "")


def gpu_available() -> bool:
    """True when cupy imports, a CUDA device exists and a smoke test of its kernels passes (never raises)."""
    return _import_cupy()[0] is not None


def gpu_unavailable_reason() -> str:
    """Why :func:`gpu_available` is False ("" when it is True)."""
    return _import_cupy()[1]


def _gpu_count() -> int:
    cupy = _import_cupy()[0]
    return 0 if cupy is None else int(cupy.cuda.runtime.getDeviceCount())


def _current_gpu() -> int:
    """The index of CuPy's current device: where every kernel runs."""
    return int(_import_cupy()[0].cuda.runtime.getDevice())


@dataclass(frozen=True)
class Device:
    """A place where arrays live: ``Device("cpu")`` or ``Device("cuda", index)``."""

    type: str
    index: int = 0

    @property
    def xp(self) -> ModuleType:
        """The array module of this device (numpy or cupy)."""
        if self.type == "cpu":
            return numpy
        cupy = _import_cupy()[0]
        if cupy is None:
            raise DeviceError(f"{self} cannot be used: {gpu_unavailable_reason()}")
        return cupy

    def asarray(self, host_array: numpy.ndarray) -> Array:
        """Copy a host array onto this device (the explicit transfer).

        A GPU must be CuPy's current device, where every later kernel on the array will run.
        """
        if self.type == "cpu":
            return numpy.asarray(host_array)
        xp = self.xp
        current = int(xp.cuda.runtime.getDevice())
        if self.index != current:
            raise DeviceError(f"{self} is not CuPy's current device (cuda:{current}), where every kernel runs; select "
                              f"it first: CUDA_VISIBLE_DEVICES={self.index}, or cupy.cuda.Device({self.index}).use()")
        return xp.asarray(host_array)

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"{self.type}:{self.index}"


CPU = Device("cpu")


def _parse(spec: str) -> tuple[str, int | None]:
    """Split "cuda:1" into ("cuda", 1) and "cuda" into ("cuda", None); raise ValueError on anything unknown."""
    name, _, index = spec.strip().lower().partition(":")
    if name in ("cpu", "auto") and not index:
        return name, None
    if name in ("cuda", "gpu") and (not index or index.isdigit()):
        return "cuda", int(index) if index else None
    raise ValueError(f"unknown device {spec!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def get_device(spec: str | Device | None = "cpu", strict: bool = False) -> Device:
    """Resolve a device name.

    ``"auto"`` takes the current GPU when one can be used, else the CPU, silently.
    ``"cuda"``/``"cuda:N"`` without a usable GPU (or without device N) falls back to the CPU with
    one ``RuntimeWarning`` saying why, or raises :class:`DeviceError` when ``strict``.
    ``"cuda"`` is CuPy's current device (0 unless changed); ``"cuda:N"`` must be that device,
    since CuPy runs every kernel on the current device: another N raises :class:`DeviceError`
    saying how to select it (``CUDA_VISIBLE_DEVICES=N`` or ``cupy.cuda.Device(N).use()``).
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return CPU
    if not isinstance(spec, str):
        raise TypeError(f"device must be a str or Device, got {type(spec).__name__}")
    name, index = _parse(spec)
    if name == "cpu":
        return CPU
    if name == "auto":
        return Device("cuda", _current_gpu()) if gpu_available() else CPU
    count = _gpu_count()
    if index is None:
        index = _current_gpu() if count else 0
    if index < count:
        current = _current_gpu()
        if index != current:
            raise DeviceError(
                f"device {spec!r}: CuPy runs every kernel on its current device, cuda:{current}; to train "
                f"on cuda:{index}, start Python with CUDA_VISIBLE_DEVICES={index} and use 'cuda', or call "
                f"cupy.cuda.Device({index}).use() first")
        return Device("cuda", index)
    why = gpu_unavailable_reason() or f"only {count} CUDA device(s) present"
    if strict:
        raise DeviceError(f"device {spec!r} was requested but cannot be used: {why}")
    warnings.warn(f"device {spec!r} was requested but cannot be used ({why}); using the CPU",
                  RuntimeWarning, stacklevel=2)
    return CPU


def _is_cupy(array: Any) -> bool:
    cupy = _import_cupy()[0]
    return cupy is not None and isinstance(array, cupy.ndarray)


def _module_of(array: Any) -> ModuleType | None:
    if isinstance(array, (numpy.ndarray, numpy.generic)):
        return numpy
    if _is_cupy(array):
        return _import_cupy()[0]
    # A test backend's arrays name their own module (see tests/strict_backend.py).
    return getattr(array, "__xpnet_array_module__", None)


def is_array(obj: Any) -> bool:
    """True for a numpy, cupy or test-backend array (what :func:`to_numpy` copies in one piece)."""
    return _module_of(obj) is not None


def get_xp(*arrays: Any) -> ModuleType:
    """The array module of the given arrays; None entries and Python scalars are skipped.

    Raises ``TypeError`` naming both types when arrays of two backends are mixed.
    """
    found: ModuleType | None = None
    first: Any = None
    for array in arrays:
        if array is None or isinstance(array, (bool, int, float)):
            continue
        module = _module_of(array)
        if module is None:
            raise TypeError(f"expected a numpy or cupy array, got {type(array).__name__}")
        if found is None:
            found, first = module, array
        elif module is not found:
            raise TypeError(
                f"arrays from two backends were mixed: {type(first).__module__}."
                f"{type(first).__name__} and {type(array).__module__}.{type(array).__name__}; "
                "move them to one device first (xpnet.to_device)")
    return numpy if found is None else found


def computes_on_host(xp: ModuleType) -> bool:
    """True when ``xp`` computes on the host CPU (numpy): there, ops size their work for the CPU
    caches and avoid short strided copies.  False for cupy (and the device-like test backend)."""
    return xp is numpy


def device_of(array: Array) -> Device:
    """The device an array lives on."""
    if isinstance(array, (numpy.ndarray, numpy.generic)):
        return CPU
    if _is_cupy(array):
        return Device("cuda", int(array.device.id))
    device = getattr(array, "__xpnet_device__", None)
    if device is None:
        raise TypeError(f"expected a numpy or cupy array, got {type(array).__name__}")
    return device


def to_numpy(array: Array) -> numpy.ndarray:
    """A host (numpy) copy of ``array``; numpy arrays are returned as they are."""
    if isinstance(array, numpy.ndarray):
        return array
    if isinstance(array, numpy.generic):
        return numpy.asarray(array)
    if hasattr(array, "get") and _module_of(array) is not None:
        return array.get()  # cupy's (and the test backend's) explicit device-to-host copy
    return numpy.asarray(array)


def to_device(array: Array, device: str | Device) -> Array:
    """``array`` on ``device``: unchanged when it is already there, else copied."""
    target = get_device(device)
    if device_of(array) == target:
        return array
    return target.asarray(to_numpy(array))


def gpu_devices() -> list[tuple[int, str]]:
    """(index, name) of every usable CUDA device; [] without a GPU."""
    cupy = _import_cupy()[0]
    if cupy is None:
        return []
    names = []
    for index in range(cupy.cuda.runtime.getDeviceCount()):
        name = cupy.cuda.runtime.getDeviceProperties(index)["name"]
        names.append((index, name.decode() if isinstance(name, bytes) else str(name)))
    return names


def gpu_versions() -> dict[str, str]:
    """Versions of cupy and of the CUDA runtime and driver ({} without a GPU)."""
    cupy = _import_cupy()[0]
    if cupy is None:
        return {}
    runtime = cupy.cuda.runtime
    return {"cupy": cupy.__version__, "cuda_runtime": str(runtime.runtimeGetVersion()),
            "cuda_driver": str(runtime.driverGetVersion())}


def nccl_module() -> ModuleType:
    """``cupy.cuda.nccl`` (NCCL through CuPy), for :mod:`xpnet.distributed`; DeviceError saying what is missing."""
    cupy, reason = _import_cupy()
    if cupy is None:
        raise DeviceError(f"NCCL needs a usable GPU: {reason}")
    try:
        from cupy.cuda import nccl
    except ImportError as exc:
        raise DeviceError(f"cupy.cuda.nccl cannot be imported ({exc}); NCCL comes with CuPy's [ctk] extra "
                          "or pip install nvidia-nccl-cu12 (nvidia-nccl-cu13 for CUDA 13)") from None
    if not getattr(nccl, "available", True):
        raise DeviceError("CuPy was built without NCCL (cupy.cuda.nccl.available is False)")
    return nccl


def use_gpu(index: int) -> None:
    """Make GPU ``index`` CuPy's current device (where every later kernel of this process runs)."""
    cupy = _import_cupy()[0]
    if cupy is None:
        raise DeviceError(f"cuda:{index} cannot be used: {gpu_unavailable_reason()}")
    cupy.cuda.Device(index).use()


def current_stream_ptr() -> int:
    """The raw handle of CuPy's current CUDA stream (0 on the CPU), for libraries such as NCCL."""
    cupy = _import_cupy()[0]
    return 0 if cupy is None else int(cupy.cuda.get_current_stream().ptr)


def gpu_count() -> int:
    """How many usable CUDA devices this process sees (0 without a GPU)."""
    return _gpu_count()
