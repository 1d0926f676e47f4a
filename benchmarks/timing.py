"""Timing: alternating repeats of two contenders, calibrated call counts, median/min/max.

A *contender* is one side of a comparison (xpnet or PyTorch): a function doing one unit of
work (one forward+backward, one epoch of ``fit``...) and a ``sync`` that waits for the
device (a no-op on the CPU).  Each contender is warmed up, then the repeats alternate
between the contenders, swapping which one goes first on every repeat (A B, B A, A B ...),
so a slow drift of the machine (another process, thermal state) hits both sides alike.

Before each warm-up, and whenever the timing switches library, the process sleeps
``settle`` seconds.  After a call, a BLAS's worker threads keep spinning for a while
(OpenBLAS up to ~0.1 s, OpenMP briefly) before they sleep; on a 2-core machine a PyTorch
GEMM started right after a numpy GEMM ran at about 40% of its speed, and numpy after
PyTorch lost about 20%.  The pause lets each library run as it would alone.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def no_sync() -> None:
    """The CPU needs no synchronisation."""


@dataclass
class Contender:
    """One side of a comparison: ``fn()`` does one unit of work; ``sync()`` waits for the device."""

    name: str
    fn: Callable[[], Any]
    sync: Callable[[], None] = no_sync


@dataclass
class Samples:
    """Seconds per call of each timed repeat, and how many calls each repeat made."""

    seconds: list[float] = field(default_factory=list)
    calls: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_calls(contender: Contender, calls: int) -> float:
    """Seconds per call, averaged over ``calls`` back-to-back calls."""
    contender.sync()
    start = time.perf_counter()
    for _ in range(calls):
        contender.fn()
    contender.sync()
    return (time.perf_counter() - start) / calls


SETTLE = 0.3  # seconds of sleep whenever the timing switches library


def calibrate(contender: Contender, min_time: float, warmup: int = 1, settle: float = SETTLE) -> int:
    """Warm up, then the number of calls that makes one repeat last at least ``min_time`` seconds."""
    time.sleep(settle)
    for _ in range(warmup):
        time_calls(contender, 1)
    if min_time <= 0:
        return 1
    once = time_calls(contender, 1)
    return max(1, math.ceil(min_time / max(once, 1e-9)))


def alternate(contenders: Sequence[Contender], repeats: int, min_time: float = 0.0,
              warmup: int = 1, settle: float = SETTLE) -> dict[str, Samples]:
    """Time every contender ``repeats`` times, alternating the order on each repeat."""
    samples = {c.name: Samples(calls=calibrate(c, min_time, warmup, settle)) for c in contenders}
    order, previous = list(contenders), contenders[-1].name
    for _ in range(repeats):
        for contender in order:
            if contender.name != previous:
                time.sleep(settle)
            samples[contender.name].seconds.append(time_calls(contender, samples[contender.name].calls))
            previous = contender.name
        order.reverse()
    return samples


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw values (rounded for the JSON file)."""
    return {"median": _round(statistics.median(values)), "min": _round(min(values)), "max": _round(max(values)),
            "values": [_round(v) for v in values]}


def _round(value: float) -> float:
    """Four significant digits: enough for timings that vary by a percent or more."""
    return float(f"{value:.4g}")
