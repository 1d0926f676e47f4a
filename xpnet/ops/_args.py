"""Normalising the size arguments that conv and pooling ops accept."""

from __future__ import annotations

import numbers

from ..errors import DTypeError

IntPair = int | tuple[int, int]
Padding = int | str | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]]
# Resolved padding: ((top, bottom), (left, right))
Pads = tuple[tuple[int, int], tuple[int, int]]


def _is_int(value: object) -> bool:
    """Python or numpy integers, but not bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_pair(value: IntPair, name: str, minimum: int = 1) -> tuple[int, int]:
    """``3 -> (3, 3)``; a pair stays a pair; ValueError below ``minimum``."""
    if _is_int(value):
        pair = (value, value)
    elif isinstance(value, (tuple, list)):
        pair = tuple(value)
    else:
        pair = ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints; received {name}={value!r}")
    if min(pair) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {kind} integers; received {name}={value!r}")
    return int(pair[0]), int(pair[1])


def check_padding(padding: Padding, name: str = "padding") -> None:
    """Validate a padding argument without knowing the input size."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"{name} must be an int, a pair, 'valid' or 'same'; received {padding!r}")
        return
    if not _is_int(padding) and not isinstance(padding, (tuple, list)):
        raise ValueError(f"{name} must be an int, a pair, 'valid' or 'same'; received {padding!r}")
    if _is_int(padding) or (len(padding) == 2 and all(_is_int(p) for p in padding)):
        as_pair(padding, name, minimum=0)  # type: ignore[arg-type]
        return
    if len(padding) != 2:
        raise ValueError(f"{name} must be an int, a pair or ((top, bottom), (left, right)); received {padding!r}")
    for side in padding:
        if not isinstance(side, (tuple, list)):
            raise ValueError(f"{name} must be an int, a pair or ((top, bottom), (left, right)); "
                             f"received {padding!r}")
        as_pair(side, name, minimum=0)  # type: ignore[arg-type]


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow-style 'same': output ceil(size / stride), extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_pads(padding: Padding, size: tuple[int, int], kernel: tuple[int, int],
                 stride: tuple[int, int], dilation: tuple[int, int]) -> Pads:
    """Turn any padding argument into ((top, bottom), (left, right)) for an input (H, W)."""
    check_padding(padding)
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return (0, 0), (0, 0)
        return (same_pads(size[0], kernel[0], stride[0], dilation[0]),
                same_pads(size[1], kernel[1], stride[1], dilation[1]))
    if _is_int(padding) or all(_is_int(p) for p in padding):
        ph, pw = as_pair(padding, "padding", minimum=0)  # type: ignore[arg-type]
        return (ph, ph), (pw, pw)
    return tuple((int(side[0]), int(side[1])) for side in padding)  # type: ignore[return-value]


def check_float(x: object, what: str) -> None:
    """DTypeError unless ``x`` is a float32 or float64 array."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise DTypeError(f"{what} must be a float32 or float64 array; got "
                         f"{dtype if dtype is not None else type(x).__name__}")
