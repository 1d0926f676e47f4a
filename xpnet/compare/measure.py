"""Tolerances and the difference of two tensors (see :mod:`xpnet.compare` for the bar)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy

from ..backend import to_numpy


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """The pass/fail bar (see the :mod:`xpnet.compare` docstring)."""

    forward_rtol: float = 1e-4
    forward_atol: float = 1e-5   # times max(1, s)
    grad_rtol: float = 1e-3
    grad_atol: float = 1e-4      # times s
    loss: float = 1e-4           # on max |loss_a - loss_b| / max(1, |loss_b|)

    def forward(self, scale: float) -> tuple[float, float]:
        """(rtol, atol) for forward outputs whose largest magnitude is ``scale``."""
        return self.forward_rtol, self.forward_atol * max(1.0, scale)

    def gradient(self, scale: float) -> tuple[float, float]:
        """(rtol, atol) for gradients whose largest magnitude is ``scale``."""
        return self.grad_rtol, self.grad_atol * scale


def _largest(a: numpy.ndarray) -> float:
    finite = numpy.abs(a[numpy.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0


def _safe_divide(num: numpy.ndarray, den: numpy.ndarray) -> numpy.ndarray:
    """num / den with 0/0 = 0 and x/0 = inf."""
    out = numpy.where(num == 0, 0.0, numpy.inf)
    numpy.divide(num, den, out=out, where=den > 0)
    return out


def difference(a: Any, b: Any, kind: str = "forward", tolerances: Tolerances | None = None,
               scale: float = 0.0) -> dict[str, Any]:
    """How far tensor ``a`` is from the reference ``b`` (host or device arrays).

    ``kind`` is "forward" or "gradient" and picks the tolerance; its atol scales with
    ``s = max(max|a|, max|b|, scale)``.  Returns plain data: shape, dtypes, ``max_abs``,
    ``max_rel``, ``ratio`` (<= 1 passes), the worst element (``index``, ``a``, ``b``),
    ``rtol``, ``atol`` and ``passed``.
    """
    tol = tolerances or Tolerances()
    a_host, b_host = to_numpy(a), to_numpy(b)
    result: dict[str, Any] = {"shape": list(b_host.shape), "dtype_a": str(a_host.dtype), "dtype_b": str(b_host.dtype)}
    if a_host.shape != b_host.shape:
        result.update(shape_a=list(a_host.shape), max_abs=math.inf, max_rel=math.inf, ratio=math.inf,
                      index=None, a=None, b=None, rtol=None, atol=None, passed=False)
        return result
    a64, b64 = a_host.astype(numpy.float64), b_host.astype(numpy.float64)
    scale = max(_largest(a64), _largest(b64), float(scale))
    rtol, atol = tol.forward(scale) if kind == "forward" else tol.gradient(scale)
    with numpy.errstate(invalid="ignore", over="ignore"):
        same = (a64 == b64) | (numpy.isnan(a64) & numpy.isnan(b64))
        diff = numpy.where(same, 0.0, numpy.abs(a64 - b64))
    diff[numpy.isnan(diff)] = numpy.inf
    magnitude = numpy.abs(numpy.where(numpy.isfinite(b64), b64, 0.0))
    ratios = _safe_divide(diff, atol + rtol * magnitude)
    relative = _safe_divide(diff, numpy.maximum(magnitude, atol / rtol))
    worst = int(numpy.argmax(ratios)) if ratios.size else None
    index = None if worst is None else [int(i) for i in numpy.unravel_index(worst, ratios.shape)]
    result.update(
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=float(relative.max()) if relative.size else 0.0,
        ratio=float(ratios.max()) if ratios.size else 0.0,
        index=index,
        a=None if worst is None else float(a64.flat[worst]),
        b=None if worst is None else float(b64.flat[worst]),
        rtol=rtol, atol=atol,
    )
    result["passed"] = bool(result["ratio"] <= 1.0)
    return result


def _scale(*arrays: numpy.ndarray | None) -> float:
    return max((_largest(numpy.asarray(a, dtype=numpy.float64)) for a in arrays if a is not None), default=0.0)
