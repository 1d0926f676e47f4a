r"""Metrics for ``compile(metrics=[...])``, and the confusion matrix behind the macro scores.

A metric turns each batch into a short vector of counts on the device. The counts are added over
batches (and over ranks, when training is distributed) with no host sync, and turned into a number
once per log:

    accuracy            correct / n        (argmax of the outputs against the label or one-hot target)
    binary_accuracy     mean over samples of the share of correct 0/1 decisions (logit > 0)
    top_k_accuracy      samples whose label is among the k highest outputs / n (k=5; also
                        "top3_accuracy" etc.). Ties rank as argmax breaks them (the lower
                        index first), so top-1 accuracy equals accuracy.
    macro_precision     mean over classes c of TP_c / (TP_c + FP_c)
    macro_recall        mean over classes c of TP_c / (TP_c + FN_c)
    macro_f1            mean over classes c of 2 P_c R_c / (P_c + R_c)

The macro scores come from the confusion matrix C (C[i, j] = samples of class i predicted as j),
summed over the whole epoch: TP_c = C[c, c], FP_c = column sum - TP_c, FN_c = row sum - TP_c.
As in scikit-learn, the mean is over the classes that occur as a label or as a prediction,
and a ratio with a zero denominator counts as 0.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy

from .backend import Array, get_xp, to_numpy

__all__ = ["Metric", "get_metric", "METRICS", "confusion_matrix", "precision_recall_f1", "top_k_hits"]


@dataclass(frozen=True)
class Metric:
    """``batch(outputs, target)``: device counts for one batch, ``size(k)`` of them for k outputs;
    ``result(totals, n)``: the metric from the counts summed over ``n`` samples; ``min_outputs``:
    the fewest outputs per sample it means anything for (checked by :func:`check_outputs`)."""

    batch: Callable[[Array, Array], Array]
    size: Callable[[int], int]
    result: Callable[[numpy.ndarray, int], float]
    min_outputs: int = 1


def _labels(target: Array) -> Array:
    return target if target.ndim == 1 else target.argmax(axis=1)


def correct_count(pred: Array, target: Array) -> Array:
    """How many samples have argmax(pred) equal to the label (or to argmax of a one-hot target)."""
    xp = get_xp(pred, target)
    return xp.sum(pred.argmax(axis=1) == _labels(target))


def binary_correct_count(pred: Array, target: Array) -> Array:
    """Per-sample share of correct 0/1 decisions (logit > 0 vs target > 0.5), summed over samples."""
    hits = ((pred > 0) == (target > 0.5)).reshape(pred.shape[0], -1)  # (N, values per sample)
    return hits.mean(axis=1).sum()


def top_k_hits(pred: Array, target: Array, k: int) -> Array:
    """Per sample (N,), whether the label is among the k highest outputs: fewer than k outputs rank
    above it, where an equal output ranks above when its index is lower (as argmax breaks ties)."""
    xp = get_xp(pred, target)
    labels = _labels(target).reshape(-1, 1)  # (N,) -> (N, 1)
    label_score = xp.take_along_axis(pred, labels, axis=1)  # (N, 1)
    before = xp.arange(pred.shape[1]).reshape(1, -1) < labels  # (1, K) < (N, 1) -> (N, K)
    return ((pred > label_score) | ((pred == label_score) & before)).sum(axis=1) < k


def confusion_counts(pred: Array, target: Array) -> Array:
    """The (K * K,) flattened confusion matrix of one batch: entry i*K + j counts label i predicted as j."""
    xp = get_xp(pred, target)
    k = pred.shape[1]
    return xp.bincount(_labels(target).astype(xp.int64) * k + pred.argmax(axis=1), minlength=k * k)


def confusion_matrix(y_true: Array, y_pred: Array, num_classes: int | None = None) -> numpy.ndarray:
    """(K, K) int64 host array: C[i, j] = samples with label i predicted as j. ``y_true`` holds
    labels (N,) (whole numbers, as ``fit`` takes) or one-hot rows (N, K); ``y_pred`` labels (N,)
    or scores (N, K), whose argmax is taken; K is ``num_classes`` or 1 + the largest label."""
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ValueError(f"confusion_matrix: num_classes must be a positive int; received {num_classes!r}")
    y_true, y_pred = to_numpy(y_true), to_numpy(y_pred)
    if y_pred.ndim == 2:
        num_classes = num_classes or y_pred.shape[1]
        y_pred = y_pred.argmax(axis=1)
    if y_true.ndim == 2:  # one-hot
        y_true = y_true.argmax(axis=1)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.dtype.kind == "f" and (labels != numpy.round(labels)).any():
            raise ValueError(f"confusion_matrix: {name} must hold whole-number labels; found "
                             f"{float(labels[labels != numpy.round(labels)][0])!r}")
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"confusion_matrix needs labels of shape (N,) on both sides; received {y_true.shape} "
                         f"and {y_pred.shape}")
    k = int(num_classes or 1 + max(int(y_true.max(initial=0)), int(y_pred.max(initial=0))))
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= k):
        raise ValueError(f"confusion_matrix: labels must be in [0, {k}); found {min(y_true.min(), y_pred.min())}"
                         f"..{max(y_true.max(), y_pred.max())}")
    flat = numpy.bincount(y_true.astype(numpy.int64) * k + y_pred.astype(numpy.int64), minlength=k * k)
    return flat.reshape(k, k)  # (K * K,) -> (K, K)


def precision_recall_f1(confusion: numpy.ndarray) -> dict[str, numpy.ndarray | float]:
    """Per-class precision, recall and F1 (arrays of K) and their macro means, from a confusion matrix."""
    c = numpy.asarray(confusion, dtype=numpy.float64)
    tp, predicted, actual = numpy.diag(c), c.sum(axis=0), c.sum(axis=1)
    precision = numpy.divide(tp, predicted, out=numpy.zeros_like(tp), where=predicted > 0)
    recall = numpy.divide(tp, actual, out=numpy.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = numpy.divide(2 * precision * recall, both, out=numpy.zeros_like(tp), where=both > 0)
    present = (predicted + actual) > 0
    macro = (lambda a: float(a[present].mean()) if present.any() else 0.0)  # noqa: E731
    return {"precision": precision, "recall": recall, "f1": f1, "macro_precision": macro(precision),
            "macro_recall": macro(recall), "macro_f1": macro(f1)}


def _macro(key: str) -> Metric:
    def result(totals: numpy.ndarray, n: int) -> float:
        k = int(round(len(totals) ** 0.5))
        return precision_recall_f1(totals.reshape(k, k))[key]  # (K * K,) -> (K, K)
    return Metric(confusion_counts, lambda k: k * k, result, min_outputs=2)


def _count(fn: Callable[[Array, Array], Array], min_outputs: int = 1) -> Metric:
    return Metric(lambda pred, target: fn(pred, target).reshape(1), lambda k: 1,  # () -> (1,)
                  lambda totals, n: float(totals[0] / n), min_outputs)


def _top_k(k: int) -> Metric:
    return _count(lambda pred, target: top_k_hits(pred, target, k).sum(), min_outputs=k + 1)


def check_outputs(names: list[str], outputs: int) -> None:
    """ValueError when a metric means nothing for a model with ``outputs`` outputs per sample
    (accuracy of one logit is always 1; top-5 of 5 classes too)."""
    for name in names:
        need = get_metric(name).min_outputs
        if outputs < need:
            hint = "; use 'binary_accuracy' for one logit per sample" if outputs == 1 else ""
            raise ValueError(f"metric {name!r} needs at least {need} outputs per sample, but the model gives "
                             f"{outputs}{hint}")


METRICS: dict[str, Metric] = {
    "accuracy": _count(correct_count, min_outputs=2),
    "binary_accuracy": _count(binary_correct_count),
    "top_k_accuracy": _top_k(5),
    "macro_precision": _macro("macro_precision"),
    "macro_recall": _macro("macro_recall"),
    "macro_f1": _macro("macro_f1"),
}
_TOP_K = re.compile(r"top_?(\d+)_accuracy")


def get_metric(name: str) -> Metric:
    """A metric by name: one of :data:`METRICS`, or ``"top<k>_accuracy"`` for another k."""
    if isinstance(name, str) and name in METRICS:
        return METRICS[name]
    match = _TOP_K.fullmatch(name) if isinstance(name, str) else None
    if match and int(match.group(1)) >= 1:
        return _top_k(int(match.group(1)))
    close = difflib.get_close_matches(str(name), list(METRICS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown metric {name!r}. Available: {', '.join(sorted(METRICS))}, "
                     f"top<k>_accuracy.{hint}")
