"""Configurations: which device and dtype a run uses (``"cuda:float32"``, a Device, a pair)."""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any

import numpy

from ..backend import Device, get_device, gpu_available, gpu_devices

DTYPES = {"float32": "float32", "f32": "float32", "float": "float32",
          "float64": "float64", "f64": "float64", "double": "float64"}
_DEVICE_SPEC = re.compile(r"^(cpu|auto|(cuda|gpu)(:\d+)?)$")


@dataclasses.dataclass(frozen=True)
class Config:
    """A resolved configuration: where a run computes and in which dtype."""

    device: Device
    dtype: numpy.dtype
    requested: str
    fallback: str = ""  # the warning's text when a requested GPU could not be used

    def describe(self) -> dict[str, Any]:
        name = ""
        if self.device.type == "cuda":
            name = dict(gpu_devices()).get(self.device.index, "")
        return {"requested": self.requested, "device": str(self.device), "dtype": str(self.dtype),
                "device_name": name, "fallback": self.fallback}


ConfigSpec = str | Device | tuple


def parse_config(spec: ConfigSpec) -> tuple[str | Device, numpy.dtype]:
    """Split a configuration into (device spec or Device, dtype) without touching any device.

    ValueError/TypeError on anything unknown.  ``"auto"`` alone means "cuda:float32" when a
    GPU can be used and "cpu:float64" otherwise.
    """
    if isinstance(spec, Device):
        return spec, numpy.dtype(numpy.float32)
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError(f"a configuration pair must be (device, dtype); received {spec!r}")
        device, dtype = spec
        name = numpy.dtype(dtype).name if not isinstance(dtype, str) else dtype.strip().lower()
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} in configuration {spec!r}; expected float32 or float64")
        if isinstance(device, Device):
            return device, numpy.dtype(DTYPES[name])
        parsed, _ = parse_config(str(device))
        return parsed, numpy.dtype(DTYPES[name])
    if not isinstance(spec, str):
        raise TypeError(f"a configuration must be a str like 'cpu:float32', a Device or a (device, dtype) "
                        f"pair; received {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "auto":
        return ("cuda", numpy.dtype(numpy.float32)) if gpu_available() else ("cpu", numpy.dtype(numpy.float64))
    device, _, tail = text.rpartition(":")
    if tail in DTYPES and device:
        dtype = DTYPES[tail]
    else:
        device, dtype = text, "float32"
    if not _DEVICE_SPEC.match(device):
        raise ValueError(f"unknown configuration {spec!r}; expected DEVICE[:DTYPE] with DEVICE one of cpu, "
                         "cuda, cuda:N, auto and DTYPE float32 or float64 (e.g. 'cuda:float32', 'cpu:float64')")
    return device, numpy.dtype(dtype)


def resolve_config(spec: ConfigSpec) -> Config:
    """Parse and resolve a configuration; a GPU that cannot be used gives one RuntimeWarning."""
    device_spec, dtype = parse_config(spec)
    requested = spec if isinstance(spec, str) else f"{device_spec}:{dtype}"
    if isinstance(device_spec, Device):
        return Config(device_spec, dtype, requested)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = get_device(device_spec)
    fallback = ""
    for warning in caught:  # re-issued, so the caller sees exactly one warning per fallback
        fallback = str(warning.message)
        warnings.warn(fallback, warning.category, stacklevel=3)
    return Config(device, dtype, requested, fallback)
