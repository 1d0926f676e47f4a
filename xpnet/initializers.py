"""Weight initialisers, drawn on the host from a seeded ``numpy.random.Generator``.

Drawing on the host (and moving the result later) makes one seed give bit-identical
weights on every device.  ``fan_in``/``fan_out`` of a conv weight (C_out, C_in/g, KH, KW)
are C_in/g*KH*KW and C_out*KH*KW, as in PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy

Initializer = Callable[[tuple[int, ...], numpy.random.Generator, numpy.dtype], numpy.ndarray]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of PyTorch layout (out, in, *kernel)."""
    if len(shape) < 2:
        return (shape[0] if shape else 1,) * 2
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _uniform(shape: tuple[int, ...], bound: float, rng: numpy.random.Generator, dtype) -> numpy.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _normal(shape: tuple[int, ...], std: float, rng: numpy.random.Generator, dtype) -> numpy.ndarray:
    return (rng.standard_normal(size=shape) * std).astype(dtype)


def kaiming_uniform(shape, rng, dtype=numpy.float32) -> numpy.ndarray:
    """He et al. 2015 for ReLU: U(-b, b) with b = sqrt(6 / fan_in)."""
    return _uniform(shape, math.sqrt(6 / fans(shape)[0]), rng, dtype)


def kaiming_normal(shape, rng, dtype=numpy.float32) -> numpy.ndarray:
    """He et al. 2015 for ReLU: N(0, 2 / fan_in)."""
    return _normal(shape, math.sqrt(2 / fans(shape)[0]), rng, dtype)


def glorot_uniform(shape, rng, dtype=numpy.float32) -> numpy.ndarray:
    """Glorot & Bengio 2010: U(-b, b) with b = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return _uniform(shape, math.sqrt(6 / (fan_in + fan_out)), rng, dtype)


def glorot_normal(shape, rng, dtype=numpy.float32) -> numpy.ndarray:
    """Glorot & Bengio 2010: N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return _normal(shape, math.sqrt(2 / (fan_in + fan_out)), rng, dtype)


def zeros(shape, rng=None, dtype=numpy.float32) -> numpy.ndarray:
    """All zeros (the default for biases)."""
    return numpy.zeros(shape, dtype=dtype)


def ones(shape, rng=None, dtype=numpy.float32) -> numpy.ndarray:
    """All ones (the default for batch-norm scales)."""
    return numpy.ones(shape, dtype=dtype)


INITIALIZERS: dict[str, Initializer] = {
    "kaiming_uniform": kaiming_uniform, "kaiming_normal": kaiming_normal,
    "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
    "zeros": zeros, "ones": ones,
}


def get_initializer(name: str | Initializer) -> Initializer:
    """Look an initialiser up by name (or pass a callable through)."""
    if callable(name):
        return name
    if name not in INITIALIZERS:
        raise ValueError(f"Unknown initializer {name!r}. Available: {', '.join(sorted(INITIALIZERS))}")
    return INITIALIZERS[name]
