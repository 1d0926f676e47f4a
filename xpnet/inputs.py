"""Input validation for fit/evaluate/predict: everything on the host, before any device sees it.

Errors say what was expected and what was received (docs/reliability.md §D): x must hold real
numbers and fit the model's input; y must match x in length and the loss in kind (class labels
in range, one-hot rows, or regression targets of the output's shape); NaN and infinity are found
with their count and first index.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy

from .backend import is_array, to_numpy
from .errors import DTypeError, ShapeError
from .losses import LOSSES
from .model import Network, describe_sample_shape


def _first_bad(mask: numpy.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in numpy.unravel_index(int(numpy.argmax(mask)), mask.shape))


def check_finite(array: numpy.ndarray, what: str) -> None:
    """ValueError naming how many NaN/inf values ``array`` holds and where the first one is."""
    if array.dtype.kind != "f":
        return
    for label, mask in (("NaN", numpy.isnan(array)), ("infinity", numpy.isinf(array))):
        count = int(mask.sum())
        if count:
            raise ValueError(f"{what} contains {label} ({count} values; first at index {_first_bad(mask)})")


def _whole_labels(y: numpy.ndarray, classes: int, what: str) -> numpy.ndarray:
    """Float labels as int64 when every value is a whole number in [0, classes) (``y.astype(float)``)."""
    bad = (y != numpy.round(y)) | (y < 0) | (y >= classes)
    if bad.any():
        index = int(numpy.argmax(bad))
        raise ValueError(f"{what}: float labels must be whole numbers in [0, {classes}); got {float(y[index])!r} "
                         f"at index {index}")
    return y.astype(numpy.int64)


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}")
    return int(value)


def is_one_sample(model: Network, x: Any) -> bool:
    """True when ``x`` is one unbatched sample: its rank is that of the model's samples
    (``(1, 28, 28)`` for a convolutional model, ``(400,)`` for a linear one), as PyTorch's layers
    accept."""
    expected = model.sample_shape()  # e.g. (1, None, None): rank 3
    return expected is not None and getattr(x, "ndim", None) == len(expected)


def warn_unscaled_uint8(x: numpy.ndarray, what: str) -> None:
    """One warning when uint8 images in 0..255 are about to be used without scaling to [0, 1]."""
    if x.dtype == numpy.uint8 and x.size and int(x.max()) > 1:
        warnings.warn(f"{what}: x is uint8 with values up to {int(x.max())}; it is cast to float without "
                      "scaling (divide by 255 for images in [0, 1], as the built-in data are)",
                      RuntimeWarning, stacklevel=4)


class Samples:
    """Samples read one batch at a time from a ``numpy.memmap`` or any indexable with ``len()``.

    The protocol: ``len(data)`` is the number of samples and ``data[i]`` one sample (an array of
    the sample shape, e.g. (1, 28, 28)). When ``data`` also takes an integer index array and
    returns a batch, as numpy arrays, memmaps and h5py datasets do, each batch is one such call
    (made with increasing indices, which h5py needs). Otherwise the batch is stacked from
    ``data[i]`` one sample at a time. Nothing is read before it is needed. Each batch is checked
    for NaN and infinity as it is read, with the index of the first bad sample.
    """

    def __init__(self, data: Any, what: str, finite: bool = True) -> None:
        self.data, self.what, self.finite = data, what, finite
        self.rows = numpy.arange(len(data))
        sample = data[0]
        if isinstance(sample, (tuple, list)):
            raise TypeError(f"{what}: x[i] must return one sample (an array), got a {type(sample).__name__} of "
                            f"{len(sample)}; for a dataset of (image, label) pairs, pass the images as x and the "
                            "labels as y")
        first = numpy.asarray(sample)
        self.shape, self.dtype = (len(self.rows), *first.shape), first.dtype
        self.batched = isinstance(data, numpy.ndarray) or self._reads_batches(first)

    def _reads_batches(self, first: numpy.ndarray) -> bool:
        try:
            batch = numpy.asarray(self.data[numpy.array([int(self.rows[0])])])
        except Exception:  # a dataset object that takes one int index only
            return False
        return batch.shape == (1, *first.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, rows: numpy.ndarray | slice) -> Samples:
        """The samples at ``rows`` of these (nothing read)."""
        part = copy.copy(self)
        part.rows = self.rows[rows]
        part.shape = (len(part.rows), *self.shape[1:])
        return part

    def __getitem__(self, index: numpy.ndarray | slice) -> numpy.ndarray:
        """Read the samples at ``index`` (an index array or a slice) into one host array (N, ...)."""
        rows = self.rows[index]
        if not len(rows):
            return numpy.zeros((0, *self.shape[1:]), self.dtype)
        if self.batched:
            order = numpy.argsort(rows, kind="stable")
            batch = numpy.asarray(self.data[rows[order]])[numpy.argsort(order, kind="stable")]  # back to `rows` order
        else:
            batch = self._stack(rows)
        if batch.shape[1:] != self.shape[1:]:
            raise ShapeError(f"{self.what}: samples read from x have shape {batch.shape[1:]}, but the first sample "
                             f"has shape {self.shape[1:]}")
        if self.finite and batch.dtype.kind == "f" and not numpy.isfinite(batch).all():
            self._refuse_nonfinite(batch, rows)
        return batch

    def _refuse_nonfinite(self, batch: numpy.ndarray, rows: numpy.ndarray) -> None:
        """ValueError naming the first sample of ``batch`` with NaN or infinity, and where in it."""
        i = int(numpy.argmax(~numpy.isfinite(batch.reshape(len(batch), -1)).all(axis=1)))  # (n, size) -> (n,)
        sample = batch[i]
        kind = "NaN" if numpy.isnan(sample).any() else "infinity"
        where = _first_bad(~numpy.isfinite(sample))
        raise ValueError(f"{self.what}: input x contains {kind}: sample {int(rows[i])}, at {where} within the sample")


    def _stack(self, rows: numpy.ndarray) -> numpy.ndarray:
        """One sample at a time, each checked against the first sample's shape."""
        parts = [numpy.asarray(self.data[int(i)]) for i in rows]
        for i, part in zip(rows, parts):
            if part.shape != self.shape[1:]:
                raise ShapeError(f"{self.what}: sample {int(i)} of x has shape {part.shape}, but the first sample "
                                 f"has shape {self.shape[1:]}")
        return numpy.stack(parts)


def rows_of(x: numpy.ndarray | Samples, rows: numpy.ndarray | slice) -> numpy.ndarray | Samples:
    """The samples ``rows`` of x: a copy of an in-memory array, a lazy subset of :class:`Samples`."""
    return x.subset(rows) if isinstance(x, Samples) else x[rows]


def _as_samples(x: Any, what: str, finite: bool) -> numpy.ndarray | Samples:
    """In-memory arrays as they are; memmaps and other indexables as :class:`Samples` (read by batch)."""
    if isinstance(x, numpy.ndarray) and not isinstance(x, numpy.memmap):
        return x
    if isinstance(x, numpy.memmap) or (not is_array(x) and not isinstance(x, (list, tuple))
                                       and hasattr(x, "__len__") and hasattr(x, "__getitem__")):
        if len(x) == 0:
            raise ValueError(f"{what} got 0 samples")
        return Samples(x, what, finite)  # h5py/zarr datasets too, though they could convert themselves whole
    return to_numpy(x)


def check_x(model: Network, x: Any, what: str, finite: bool) -> tuple[numpy.ndarray | Samples, tuple[int, ...]]:
    """(x as a host array or :class:`Samples`, the model's per-sample output shape for it)."""
    x = _as_samples(x, what, finite)
    if isinstance(x, Samples):
        if x.dtype.kind not in "biuf":
            raise DTypeError(f"{what} must hold real numbers; got samples of dtype {x.dtype}")
        warn_unscaled_uint8(x[:1], what)  # judged from the first sample
        return x, _output_shape(model, x, what)
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"{what} must hold real numbers; got dtype {x.dtype}")
    warn_unscaled_uint8(x, what)
    if x.ndim < 1:
        raise ShapeError(f"{what}: x must be an array of samples, shape (N, ...); got a scalar {x.item()!r}")
    if len(x) == 0:
        raise ValueError(f"{what} got 0 samples")
    if finite:
        check_finite(x, f"{what}: input x")
    return x, _output_shape(model, x, what)


def _output_shape(model: Network, x: numpy.ndarray | Samples, what: str) -> tuple[int, ...]:
    try:
        return model.output_shape(x.shape[1:])
    except ShapeError as exc:
        expected = model.sample_shape()
        expected = "?" if expected is None else describe_sample_shape(expected)
        one = ", or one sample" if what == "predict" else ""
        raise ShapeError(f"{what}: input samples of shape {tuple(x.shape[1:])} do not fit the model: x has shape "
                         f"{tuple(x.shape)} ({len(x)} samples), the model takes samples of shape {expected} (give a "
                         f"batch (N, *sample){one}); {exc}") from None


def check_y(loss_name: str | None, y: Any, n: int, out_shape: tuple[int, ...], dtype: numpy.dtype,
            what: str) -> numpy.ndarray:
    """y as a host array of the kind the loss takes (int64 labels, or targets in the model dtype)."""
    y = to_numpy(y) if not isinstance(y, numpy.ndarray) else y
    if len(y) != n:
        raise ValueError(f"{what}: x has {n} samples but y has {len(y)}")
    if y.dtype.kind not in "biuf":
        raise DTypeError(f"{what}: y must hold numbers; got dtype {y.dtype}")
    check_finite(y, f"{what}: y")
    custom_targets = loss_name not in LOSSES and y.shape[1:] == out_shape and y.dtype.kind == "f"
    if loss_name in ("mse", "binary_cross_entropy") or custom_targets:
        if y.shape[1:] != out_shape:
            raise ShapeError(f"{what}: y has per-sample shape {y.shape[1:]} but the model outputs {out_shape}")
        return y.astype(dtype, copy=False)
    classes = out_shape[-1]
    if y.ndim == 1 and y.dtype.kind == "f":
        y = _whole_labels(y, classes, what)
    if y.ndim == 2:
        if y.shape[1] != classes:
            raise ShapeError(f"{what}: y has {y.shape[1]} columns but the model outputs {classes} classes")
        return y.astype(dtype, copy=False)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"{what}: labels must be integers of shape (N,) or one-hot (N, {classes}); "
                         f"got dtype {y.dtype} and shape {y.shape}")
    bad = (y < 0) | (y >= classes)
    if bad.any():
        values = sorted(set(y[bad].tolist()))[:10]
        raise ValueError(f"{what}: labels must be integers in [0, {classes}); got values {values} "
                         f"(first at index {int(numpy.argmax(bad))})")
    return y.astype(numpy.int64, copy=False)
