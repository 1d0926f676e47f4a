"""Callbacks for ``fit``: History, EarlyStopping, ModelCheckpoint, CSVLogger, ReduceLROnPlateau.

A callback sees the model (``self.model``) and the per-epoch ``logs`` dict (plain floats:
``loss``, ``accuracy``, ``val_loss``, ..., ``lr``), the same numbers the progress display shows.
"""

from __future__ import annotations

import csv
import math
import string
import warnings
from pathlib import Path
from typing import Any

from .errors import NonFiniteError
from .io import check_writable


class Callback:
    """Base class; override the hooks you need."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self, logs: dict[str, float] | None = None) -> None: ...


class History(Callback):
    """Per-epoch lists of every logged value; ``fit`` returns it.

    ``nonfinite`` holds ``{"epoch", "batch", "loss"}`` (1-based) when a non-finite loss stopped training.
    """

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.nonfinite: dict[str, Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class _Monitor(Callback):
    """Shared logic: which logged value to watch and whether bigger is better."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max'; received {mode!r}")
        self.monitor = monitor
        self.bigger_is_better = mode == "max" or (mode == "auto" and "acc" in monitor)
        self.min_delta = abs(min_delta)
        self.best = -math.inf if self.bigger_is_better else math.inf
        self._warned = False

    def _value(self, logs: dict[str, float]) -> float | None:
        if self.monitor not in logs:
            if not self._warned:
                warnings.warn(f"{type(self).__name__} monitors {self.monitor!r}, which is not logged "
                              f"(available: {', '.join(logs)})", RuntimeWarning, stacklevel=3)
                self._warned = True
            return None
        return logs[self.monitor]

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.bigger_is_better:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has gone more than ``patience`` epochs without improving (``patience=0``
    stops at the first epoch that does not improve); optionally restore the best weights."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = int(patience)
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best_weights: list[Any] | None = None
        self.stopped_epoch: int | None = None

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_weights = 0, None, None
        self.best = -math.inf if self.bigger_is_better else math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        value = self._value(logs)
        if value is None:
            return
        if self._improved(value):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = [v.value.copy() for _, v in self.model.variables()]
            return
        self.wait += 1
        if self.wait > self.patience:
            self.model.stop_training = True
            self.stopped_epoch = epoch

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            for (_, variable), best in zip(self.model.variables(), self.best_weights):
                variable.value[...] = best


class ModelCheckpoint(_Monitor):
    """Save the model after every epoch, or only when ``monitor`` improves (``save_best_only``).

    ``filepath`` may contain ``{epoch}`` (1-based) and any logged key, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.xpnet"``; its keys and folder are checked when training
    begins.  With ``include_optimizer`` (default) the file is a full checkpoint that
    ``xpnet.load`` resumes from.  An epoch that ended on a non-finite loss, or with non-finite
    weights, is not saved (a ``RuntimeWarning`` says so): the last good checkpoint is kept.
    """

    def __init__(self, filepath: str | Path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", include_optimizer: bool = True) -> None:
        super().__init__(monitor, mode, 0.0)
        self.filepath = str(filepath)
        self.save_best_only = save_best_only
        self.include_optimizer = include_optimizer
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        keys = getattr(self.model, "log_keys", None)
        fields = {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(self.filepath) if f}
        if keys is not None and fields - {"epoch", *keys}:
            raise ValueError(f"ModelCheckpoint({self.filepath!r}): {', '.join(sorted(fields - {'epoch', *keys}))} "
                             f"will not be logged; available: epoch, {', '.join(keys)}")
        if "{" not in str(Path(self.filepath).parent):
            check_writable(self.filepath)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if not math.isfinite(logs.get("loss", 0.0)):
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} ended on a non-finite loss; not saved "
                          "(the last good checkpoint is kept)", RuntimeWarning, stacklevel=2)
            return
        if self.save_best_only:
            value = self._value(logs)
            if value is None or not self._improved(value):
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        try:
            self.model.save(path, include_optimizer=self.include_optimizer)
        except NonFiniteError as exc:
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} not saved: {exc}", RuntimeWarning, stacklevel=2)
            return
        self.saved.append(path)


class CSVLogger(Callback):
    """Append one row per epoch (epoch and every logged value) to a CSV file."""

    def __init__(self, filename: str | Path, append: bool = False) -> None:
        self.filename = Path(filename)
        self.append = append
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self._keys = None
        if not self.append and self.filename.exists():
            self.filename.unlink()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        new_file = not self.filename.exists()
        if self._keys is None:
            self._keys = list(logs)
        with self.filename.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(["epoch", *self._keys])
            writer.writerow([epoch + 1, *(repr(float(logs.get(k, math.nan))) for k in self._keys)])


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has gone more than ``patience`` epochs
    without improving; then wait ``cooldown`` epochs before counting again (PyTorch's semantics)."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, mode: str = "auto", min_lr: float = 0.0, cooldown: int = 0) -> None:
        super().__init__(monitor, mode, min_delta)
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau factor must be in (0, 1); received factor={factor!r}")
        self.factor, self.patience, self.min_lr, self.cooldown = factor, int(patience), min_lr, int(cooldown)
        self.wait = self.cooldown_left = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        value = self._value(logs)
        if value is None:
            return
        in_cooldown = self.cooldown_left > 0
        if in_cooldown:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
            return
        if in_cooldown:  # epochs in cooldown do not count towards patience
            return
        self.wait += 1
        optimizer = self.model.optimizer
        if self.wait > self.patience and optimizer.current_lr() > self.min_lr:
            new_lr = max(optimizer.current_lr() * self.factor, self.min_lr)
            optimizer.lr_scale *= new_lr / optimizer.current_lr()
            self.wait, self.cooldown_left = 0, self.cooldown
