"""The loss registry for ``compile(loss=...)`` (metrics: :mod:`xpnet.metrics`).

A loss is ``fn(prediction, target) -> (loss, dprediction)`` on device arrays (see
:mod:`xpnet.ops.loss`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial

from .backend import Array
from .ops.loss import binary_cross_entropy_with_logits, mse, softmax_cross_entropy

LossFn = Callable[[Array, Array], tuple[Array, Array]]

# Labels are range-checked once on the host by fit/evaluate, so the per-batch check
# (a GPU sync) is off here.
LOSSES: dict[str, LossFn] = {
    "cross_entropy": partial(softmax_cross_entropy, validate=False),
    "mse": mse,
    "binary_cross_entropy": binary_cross_entropy_with_logits,
}
ALIASES = {"softmax_cross_entropy": "cross_entropy", "categorical_crossentropy": "cross_entropy",
           "sparse_categorical_crossentropy": "cross_entropy", "mean_squared_error": "mse",
           "bce": "binary_cross_entropy", "binary_crossentropy": "binary_cross_entropy"}


def _unknown(kind: str, name: object, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}. Available: {', '.join(sorted(known))}.{hint}")


def get_loss(name: str | LossFn) -> tuple[str, LossFn]:
    """(name, loss function) from a registered name or a callable."""
    if callable(name):
        return getattr(name, "__name__", "custom_loss"), name
    key = ALIASES.get(name, name)
    if key not in LOSSES:
        raise _unknown("loss", name, list(LOSSES) + list(ALIASES))
    return key, LOSSES[key]
