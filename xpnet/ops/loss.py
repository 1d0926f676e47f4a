r"""Losses.  Each returns ``(loss, dpred)``: a 0-d array and the gradient of the loss
with respect to the prediction, so a training step needs no separate backward call.

softmax_cross_entropy, on logits z (N, K) and target distribution q (N, K):

    loss_n = -sum_k q_nk * log_softmax(z_n)_k        dL/dz_n = softmax(z_n) - q_n

Integer labels t give q = onehot(t); label smoothing e gives q = (1 - e) q + e / K.
'mean' divides loss and gradient by N, 'sum' does not.

mse:  loss = mean((p - t)^2) over all elements,    dL/dp = 2 (p - t) / size
binary_cross_entropy_with_logits, z logits and t in [0, 1]:
      loss = mean(max(z, 0) - z t + log(1 + exp(-|z|))),   dL/dz = (sigmoid(z) - t) / size
(the log-sum-exp form, finite for any z).
"""

from __future__ import annotations

from ..backend import Array, get_xp
from ..errors import DTypeError, ShapeError
from ._args import check_float
from .activation import log_softmax_forward, sigmoid_forward

REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str, who: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{who} reduction must be 'mean' or 'sum'; received {reduction!r}")


def check_labels(labels: Array, num_classes: int, who: str = "softmax_cross_entropy") -> None:
    """ValueError unless every label is an integer in [0, num_classes) (syncs on a GPU)."""
    xp = get_xp(labels)
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        first = int(xp.argmax(bad))
        values = sorted(int(v) for v in xp.unique(labels[bad]).tolist())[:10]
        raise ValueError(f"{who}: labels must be integers in [0, {num_classes}); got values "
                         f"{values} (first at index {first})")


def _target_distribution(logits: Array, target: Array, label_smoothing: float, validate: bool) -> Array:
    """q (N, K) from integer labels (N,) or probabilities (N, K), smoothed."""
    xp = get_xp(logits, target)
    N, K = logits.shape
    if target.dtype.kind in "iu":
        if tuple(target.shape) != (N,):
            raise ShapeError(f"softmax_cross_entropy: integer labels must have shape ({N},), got {tuple(target.shape)}")
        if validate:
            check_labels(target, K)
        q = (target.reshape(N, 1) == xp.arange(K).reshape(1, K)).astype(logits.dtype)  # one-hot (N, K)
    elif target.dtype.kind == "f":
        if tuple(target.shape) != (N, K):
            raise ShapeError(f"softmax_cross_entropy: probability targets must have shape {(N, K)} "
                             f"like the logits, got {tuple(target.shape)}")
        q = target.astype(logits.dtype, copy=False)
    else:
        raise DTypeError("softmax_cross_entropy targets must be integer labels or float probabilities, "
                         f"got {target.dtype}")
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / K
    return q


def softmax_cross_entropy(logits: Array, target: Array, reduction: str = "mean",
                          label_smoothing: float = 0.0, validate: bool = True) -> tuple[Array, Array]:
    """Cross-entropy of softmax(logits (N, K)) against labels (N,) or probabilities (N, K).

    ``validate`` checks integer labels are in range (one host sync on a GPU); a caller
    that has checked them already, as ``fit`` does, can turn it off.
    """
    check_float(logits, "softmax_cross_entropy logits")
    _check_reduction(reduction, "softmax_cross_entropy")
    if logits.ndim != 2:
        raise ShapeError(f"softmax_cross_entropy expects logits of shape (N, K), got {tuple(logits.shape)}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1); received {label_smoothing!r}")
    if logits.shape[0] == 0:
        raise ShapeError("softmax_cross_entropy got 0 samples; the loss of an empty batch is undefined")
    xp = get_xp(logits, target)
    q = _target_distribution(logits, target, label_smoothing, validate)
    logp, _ = log_softmax_forward(logits)
    per_sample = -(q * xp.where(q != 0, logp, 0)).sum(axis=1)  # 0 * -inf counts as 0, without a NaN warning
    dlogits = xp.exp(logp) - q
    if reduction == "mean":
        return per_sample.mean(), dlogits / logits.shape[0]
    return per_sample.sum(), dlogits


def _check_pair(pred: Array, target: Array, who: str) -> Array:
    check_float(pred, f"{who} prediction")
    if tuple(pred.shape) != tuple(target.shape):
        raise ShapeError(f"{who}: prediction shape {tuple(pred.shape)} and target shape "
                         f"{tuple(target.shape)} must match")
    if pred.size == 0:
        raise ShapeError(f"{who} got an empty prediction; its loss is undefined")
    get_xp(pred, target)
    return target.astype(pred.dtype, copy=False)


def mse(pred: Array, target: Array, reduction: str = "mean") -> tuple[Array, Array]:
    """Mean (or sum) of squared errors over all elements, and its gradient."""
    _check_reduction(reduction, "mse")
    target = _check_pair(pred, target, "mse")
    diff = pred - target
    scale = 1 / pred.size if reduction == "mean" else 1
    return (diff * diff).sum() * scale, diff * (2 * scale)


def binary_cross_entropy_with_logits(logits: Array, target: Array, reduction: str = "mean"
                                     ) -> tuple[Array, Array]:
    """Binary cross-entropy on logits with targets in [0, 1], in the stable log-sum-exp form."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    target = _check_pair(logits, target, "binary_cross_entropy_with_logits")
    xp = get_xp(logits)
    per_value = xp.maximum(logits, 0) - logits * target + xp.log1p(xp.exp(-xp.abs(logits)))
    probability, _ = sigmoid_forward(logits)
    scale = 1 / logits.size if reduction == "mean" else 1
    return per_value.sum() * scale, (probability - target) * scale
