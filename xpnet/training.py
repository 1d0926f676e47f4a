"""Sequential: the model users build (any layer tree), with Keras-style compile/fit/evaluate/predict
and save/load.

Data stays on the host until a batch is needed: each batch is cast to the model's dtype
and copied to the model's device once.  Loss and metric sums stay on the device and are
brought to the host once per log interval (every batch on the CPU, where that is free).
Inputs are checked by :mod:`xpnet.inputs`, files written and read by :mod:`xpnet.model_files`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy

from . import interop, model_files
from .backend import Array, Device, to_device, to_numpy
from .callbacks import Callback, History
from .distributed import (
    Communicator,
    RanksDisagree,
    StepReducer,
    broadcast_model,
    broadcast_optimizer,
    model_fingerprint,
)
from .errors import ModelFileError, NonFiniteError
from .inputs import check_positive_int, check_x, check_y, is_one_sample, rows_of
from .layers import Layer, Softmax
from .losses import get_loss
from .metrics import check_outputs, get_metric
from .model import Network
from .optim import Optimizer, get_optimizer, optimizer_from_config
from .progress import Progress

SYNC_INTERVAL = 20  # batches between host syncs on a GPU


class Sequential(Network):
    """The model: layers in order (any of them a container, so any tree), plus the training API.

    >>> model = Sequential(layers.Conv2d(1, 6, 5), layers.ReLU(), ..., seed=0, device="cpu")
    >>> model.compile(optimizer=optim.Adam(lr=1e-3), loss="cross_entropy", metrics=["accuracy"])
    >>> history = model.fit(x, y, epochs=3, batch_size=128, validation_split=0.1)
    """

    def __init__(self, *layers: Layer, seed: int | None = 0, device: str | Device = "cpu",
                 dtype: Any = numpy.float32) -> None:
        self.optimizer: Optimizer | None = None
        self.loss_name: str | None = None
        self.metric_names: list[str] = []
        self._metrics: list[Any] = []  # the metric_names resolved by compile
        self._classes = 1  # outputs per sample of the data last checked by _prepare
        self.epoch = 0  # index of the last completed epoch + 1 (saved in checkpoints)
        self.stop_training = False
        self.comm: Communicator | None = None  # set by compile(distributed=...)
        super().__init__(*layers, seed=seed, device=device, dtype=dtype)

    # --- setup ----------------------------------------------------------------------
    def compile(self, optimizer: str | Optimizer = "adam", loss: Any = "cross_entropy",
                metrics: Sequence[str] | None = None,
                distributed: Communicator | None = None) -> Sequential:
        """Choose optimizer, loss ("cross_entropy", "mse", "binary_cross_entropy") and metrics; returns self.

        Passing the model's own optimizer again keeps its state (momentum, Adam moments), as
        after :func:`load` of a checkpoint.  ``distributed`` (from :func:`xpnet.distributed.init`)
        trains data-parallel: every rank must call ``compile`` with the same architecture and
        settings (checked here), and gets rank 0's weights and optimizer state; see docs/distributed.md.
        """
        metric_names = list(metrics or [])
        resolved = [get_metric(name) for name in metric_names]
        loss_name, loss_fn = get_loss(loss)
        optimizer = get_optimizer(optimizer)  # resolve everything before changing the model
        if distributed is not None and not isinstance(distributed, Communicator):
            raise TypeError(f"distributed must be a communicator from xpnet.distributed.init(), "
                            f"got {type(distributed).__name__}")
        self.loss_name, self._loss_fn = loss_name, loss_fn
        trainable = [p for p in self.parameters() if p.trainable]
        keep = optimizer is self.optimizer and [id(p) for p in optimizer.params] == [id(p) for p in trainable]
        self.optimizer = optimizer if keep else optimizer.bind(self.parameters())
        self.metric_names, self._metrics = metric_names, resolved
        self.comm = None
        if distributed is not None:
            self._join(distributed)
        return self

    def _join(self, comm: Communicator) -> None:
        """Check that every rank built the same model and compile settings, then take rank 0's weights."""
        settings = (model_fingerprint(self), self.loss_name, self.metric_names,
                    repr(self.optimizer.config()))
        comm.check_same("the model architecture or compile settings", settings)
        broadcast_model(comm, self)
        broadcast_optimizer(comm, self.optimizer)
        for _, layer in self.named_layers():  # dropout masks: an independent stream on each rank
            if comm.rank and isinstance(getattr(layer, "rng", None), numpy.random.Generator):
                layer.rng = numpy.random.Generator(layer.rng.bit_generator.jumped(comm.rank))
        self.comm, self._reducer = comm, StepReducer(comm, self)

    @property
    def is_root(self) -> bool:
        """True where this process writes files and prints: always, except on ranks > 0 of a distributed run."""
        return self.comm is None or self.comm.rank == 0

    @contextlib.contextmanager
    def _one_rank_fails_all(self):
        """In a distributed run, an exception on this rank alone (the others would wait for it in
        the next collective call) stops every rank; errors every rank raises alike pass through."""
        try:
            yield
        except (RanksDisagree, NonFiniteError):
            raise
        except BaseException as exc:
            if self.comm is not None and self.comm.size > 1:
                self.comm.abort(f"{type(exc).__name__}: {exc}")
            raise

    @contextlib.contextmanager
    def _alone(self):
        """Run rank 0's callbacks as in one process: evaluate, predict and save inside them do not wait
        for the other ranks (which do not run callbacks)."""
        comm, self.comm = self.comm, None
        try:
            yield
        finally:
            self.comm = comm

    def to(self, device: str | Device, strict: bool = False) -> Sequential:
        super().to(device, strict)
        if self.optimizer is not None:
            self.optimizer.apply(lambda a: to_device(a, self.device))
        return self

    def cast(self, dtype: Any) -> Sequential:
        super().cast(dtype)
        if self.optimizer is not None:
            self.optimizer.apply(lambda a: a.astype(dtype))
        return self

    def _require_compiled(self, what: str) -> None:
        if self.optimizer is None:
            raise RuntimeError(f"call compile() before {what}()")

    # --- input checks (all on the host, before anything touches the device) ----------
    def _prepare(self, x: Any, y: Any, what: str, finite: bool = True) -> tuple[numpy.ndarray, numpy.ndarray]:
        x, out_shape = check_x(self, x, what, finite)
        self._classes = out_shape[0] if out_shape else 1  # K, the outputs per sample
        check_outputs(self.metric_names, self._classes)
        return x, check_y(self.loss_name, y, len(x), out_shape, self.dtype, what)

    # --- batches ------------------------------------------------------------------
    def _to_model(self, host: numpy.ndarray, cast: bool = True) -> Array:
        """One host batch onto the model's device (cast to the model dtype for inputs)."""
        if cast and host.dtype != self.dtype:
            host = host.astype(self.dtype)
        return self.device.asarray(numpy.ascontiguousarray(host))

    def _sync_every(self) -> int:
        return 1 if self.device.type == "cpu" else SYNC_INTERVAL

    def _batch_stats(self, out: Array, target: Array, loss: Array) -> Array:
        """[loss * n, each metric's counts...] as one 1-d device array (summed without a host sync)."""
        xp = self.device.xp
        parts = [(loss * out.shape[0]).reshape(1)] + [metric.batch(out, target) for metric in self._metrics]
        return xp.concatenate(parts, dtype=xp.float64)

    def _stats_size(self) -> int:
        """The length of :meth:`_batch_stats` for the K outputs per sample that :meth:`_prepare` found."""
        return 1 + sum(metric.size(self._classes) for metric in self._metrics)

    def _metric_logs(self, totals: numpy.ndarray, n: int, prefix: str = "") -> dict[str, float]:
        """{"loss": ..., metric: ...} from stats summed over ``n`` samples."""
        logs, start = {f"{prefix}loss": float(totals[0] / n)}, 1
        k = self._classes
        for name, metric in zip(self.metric_names, self._metrics):
            logs[f"{prefix}{name}"] = metric.result(totals[start:start + metric.size(k)], n)
            start += metric.size(k)
        return logs

    # --- training ----------------------------------------------------------------
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32, validation_split: float = 0.0,
            validation_data: tuple[Any, Any] | None = None, shuffle: bool = True,
            callbacks: Iterable[Callback] | None = None, verbose: int = 1,
            initial_epoch: int = 0, on_nonfinite: str = "stop", check_finite: bool = True,
            augment: Callable[[numpy.ndarray, numpy.random.Generator], numpy.ndarray] | None = None,
            validation_name: str = "val") -> History:
        """Train from epoch ``initial_epoch`` up to ``epochs`` (as in Keras: each call trains
        ``epochs - initial_epoch`` epochs; resume a checkpoint with ``initial_epoch=model.epoch``).

        ``validation_split`` holds out a random fraction drawn from the model's seed (the same
        split on every call).  A non-finite loss stops training (recorded in ``history.nonfinite``)
        or, with ``on_nonfinite="raise"``, raises :class:`NonFiniteError`.  ``augment(images, rng)``
        (e.g. :class:`xpnet.augment.RandomShift`) transforms each host training batch, with
        randomness from the model's generator.  ``validation_name`` prefixes the held-out keys of
        the logs and History (``val_loss`` by default; ``"test"`` gives ``test_loss`` when
        ``validation_data`` is a test set, as ``xpnet train`` reports).
        """
        self._require_compiled("fit")
        epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size")
        if on_nonfinite not in ("stop", "raise"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'raise'; received {on_nonfinite!r}")
        if not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1); received {validation_split!r}")
        if not isinstance(validation_name, str) or not validation_name.isidentifier():
            raise ValueError(f"validation_name must be a name such as 'val' or 'test'; received {validation_name!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, numpy.integer)) or initial_epoch < 0:
            raise ValueError(f"initial_epoch must be an int >= 0; received initial_epoch={initial_epoch!r}")
        with self._one_rank_fails_all():
            x, y = self._prepare(x, y, "fit", check_finite)
            x, y, validation = self._split(x, y, validation_split, validation_data, check_finite)
            if self.comm is not None:
                self._check_ranks_agree(x, validation, (epochs, batch_size, shuffle, int(initial_epoch),
                                                        augment is None))
            self.log_keys = self._log_keys(validation_name if validation is not None else None)
            history = History()
            callbacks = [history, *((callbacks or []) if self.is_root else [])]  # rank 0's alone
            return self._fit_epochs(x, y, validation, validation_name, callbacks, history, range(int(initial_epoch),
                                    epochs), batch_size, shuffle, verbose if self.is_root else 0, on_nonfinite, augment)

    def _fit_epochs(self, x: numpy.ndarray, y: numpy.ndarray, validation: tuple | None, validation_name: str,
                    callbacks: list[Callback], history: History, epochs: range, batch_size: int, shuffle: bool,
                    verbose: int, on_nonfinite: str, augment: Callable | None) -> History:
        """The epoch loop of :meth:`fit`, on checked data."""
        self.stop_training = False
        with self._alone():
            for cb in callbacks:
                cb.set_model(self)
                cb.on_train_begin()
        for epoch in epochs:
            with self._alone():
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
            progress = Progress(math.ceil(len(x) / batch_size), f"Epoch {epoch + 1}/{epochs.stop}", verbose)
            logs = self._train_epoch(x, y, batch_size, shuffle, epoch, progress, on_nonfinite, history, augment)
            if validation is not None:
                held_out = self._evaluate_arrays(*validation, batch_size)
                logs.update({f"{validation_name}_{k}": v for k, v in held_out.items()})
            if self.comm is not None:  # the same History everywhere: rank 0's images/s
                logs = self.comm.bcast_obj(logs)
            progress.close(logs)
            self.epoch = epoch + 1
            with self._alone():
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
            self._follow_root()
            if self.stop_training:
                break
        with self._alone():
            for cb in callbacks:
                cb.on_train_end()
        if self.comm is not None:  # a callback on rank 0 may have restored other weights
            broadcast_model(self.comm, self)
        return history

    def _check_ranks_agree(self, x: numpy.ndarray, validation: tuple | None, settings: tuple) -> None:
        """Fail on every rank, before the first step, unless all ranks hold the same data and settings."""
        probe = numpy.asarray(x[::max(1, len(x) // 16)], dtype=numpy.float64)
        data = (len(x), x.shape[1:], round(float(probe.sum()), 6), None if validation is None else len(validation[0]))
        self.comm.check_same("the training data (length, sample shape, a checksum of 16 samples, "
                             "validation length)", data)
        self.comm.check_same("fit's arguments (epochs, batch_size, shuffle, initial_epoch, no augment)", settings)
        broadcast_model(self.comm, self)

    def _follow_root(self) -> None:
        """Callbacks run on rank 0 only: every rank takes its decision to stop and its learning-rate scale."""
        if self.comm is not None:
            self.stop_training, self.optimizer.lr_scale = self.comm.bcast_obj(
                (self.stop_training, self.optimizer.lr_scale))

    def _log_keys(self, validation: str | None) -> list[str]:
        """The keys of the per-epoch logs that callbacks see."""
        keys = ["loss", *self.metric_names, "lr", "images_per_s"]
        return keys + ([f"{validation}_{k}" for k in ("loss", *self.metric_names)] if validation else [])

    def _split(self, x: numpy.ndarray, y: numpy.ndarray, fraction: float,
               validation_data: tuple[Any, Any] | None, finite: bool) -> tuple:
        if validation_data is not None:
            return x, y, self._prepare(*validation_data, "validation_data", finite)
        if fraction == 0:
            return x, y, None
        n_val = int(round(len(x) * fraction))
        if n_val < 1 or n_val >= len(x):
            raise ValueError(f"validation_split={fraction} leaves {len(x) - n_val} training and "
                             f"{n_val} validation samples; both need at least one")
        order = numpy.random.default_rng(numpy.random.SeedSequence(self.seed).spawn(3)[2]).permutation(len(x))
        val, train = order[:n_val], order[n_val:]
        return rows_of(x, train), y[train], (rows_of(x, val), y[val])

    def _train_epoch(self, x: numpy.ndarray, y: numpy.ndarray, batch_size: int, shuffle: bool, epoch: int,
                     progress: Progress, on_nonfinite: str, history: History,
                     augment: Callable | None = None) -> dict[str, float]:
        self.train()
        order = self.rng.permutation(len(x)) if shuffle else numpy.arange(len(x))
        totals = numpy.zeros(self._stats_size())
        seen, pending, started = 0, [], time.perf_counter()
        n_batches = math.ceil(len(x) / batch_size)
        for b in range(n_batches):
            pending.append(self._train_step(x, y, order[b * batch_size:(b + 1) * batch_size], augment))
            if len(pending) < self._sync_every() and b + 1 < n_batches:
                continue
            values = to_numpy(self.device.xp.stack(pending)).astype(numpy.float64)  # (batches, stats): one sync
            first = b + 1 - len(pending)
            sizes = numpy.array([min(batch_size, len(x) - (first + i) * batch_size) for i in range(len(pending))])
            bad = ~numpy.isfinite(values[:, 0])
            totals += values.sum(axis=0)
            seen += int(sizes.sum())
            pending = []
            logs = self._epoch_logs(totals, seen, started)
            progress.update(len(sizes), logs)
            if bad.any():
                return self._nonfinite(epoch, first + int(numpy.argmax(bad)), values[bad][0, 0], logs,
                                       on_nonfinite, history)
        return self._epoch_logs(totals, seen, started)

    def _train_step(self, x: numpy.ndarray, y: numpy.ndarray, index: numpy.ndarray,
                    augment: Callable | None) -> Array:
        """One optimizer step on the samples ``index`` (this rank's slice of them when distributed);
        returns [loss * n, metric counts...] for all of ``index`` as a 1-d device array."""
        part = slice(None) if self.comm is None else self.comm.part(len(index))
        # with augment, every rank draws the randomness of the whole batch, as one process would
        x_host = x[index[part]] if augment is None else augment(x[index], self.rng)[part]
        self.optimizer.zero_grad()
        if len(x_host):
            xb, yb = self._to_model(x_host), self._to_model(y[index[part]], cast=False)
            out = self.forward(xb, train=True)
            loss, dout = self._loss_fn(out, yb)
            self.backward(dout)
            stats = self._batch_stats(out, yb, loss)
        else:  # a last batch smaller than the number of ranks leaves some ranks without samples
            stats = self.device.xp.zeros(self._stats_size())
        if self.comm is not None:
            stats = self._reducer.reduce(stats, len(x_host), len(index))
        self.optimizer.step()
        return stats

    def _epoch_logs(self, totals: numpy.ndarray, seen: int, started: float) -> dict[str, float]:
        logs = self._metric_logs(totals, seen)
        logs["lr"] = float(self.optimizer.current_lr())
        logs["images_per_s"] = seen / max(time.perf_counter() - started, 1e-9)
        return logs

    def _nonfinite(self, epoch: int, batch: int, loss_sum: float, logs: dict[str, float],
                   on_nonfinite: str, history: History) -> dict[str, float]:
        where = f"epoch {epoch + 1}, batch {batch + 1}"
        if on_nonfinite == "raise":
            raise NonFiniteError(f"Loss became {loss_sum} at {where} (lr={self.optimizer.current_lr():.3g}); "
                                 "training stopped")
        history.nonfinite = {"epoch": epoch + 1, "batch": batch + 1, "loss": float(loss_sum)}
        self.stop_training = True
        return logs

    # --- evaluation and prediction ------------------------------------------------
    def evaluate(self, x: Any, y: Any, batch_size: int = 256, verbose: int = 0) -> dict[str, float]:
        """Loss and metrics over (x, y) in evaluation mode: {"loss": ..., "accuracy": ...}.
        Distributed, every rank must call it (each computes a shard); all get the same result."""
        self._require_compiled("evaluate")
        batch_size = check_positive_int(batch_size, "batch_size")
        with self._one_rank_fails_all():
            x, y = self._prepare(x, y, "evaluate")
            logs = self._evaluate_arrays(x, y, batch_size)
        if verbose and self.is_root:
            Progress(0, "evaluate", 2).close(logs)
        return logs

    def _evaluate_arrays(self, x: numpy.ndarray, y: numpy.ndarray, batch_size: int) -> dict[str, float]:
        """Loss and metrics over all of (x, y); when distributed, each rank takes a contiguous shard
        and the sums are added over the ranks."""
        self.eval()
        n = len(x)
        if self.comm is not None:
            part = self.comm.part(n)
            x, y = rows_of(x, part), y[part]
        stats = []
        for start in range(0, len(x), batch_size):
            xb, yb = self._to_model(x[start:start + batch_size]), self._to_model(y[start:start + batch_size], False)
            out = self.forward(xb, train=False)
            loss, _ = self._loss_fn(out, yb)
            stats.append(self._batch_stats(out, yb, loss))
        self.clear_cache()
        totals = numpy.zeros(self._stats_size())
        if stats:
            totals += to_numpy(self.device.xp.stack(stats)).sum(axis=0)  # (batches, stats) -> (stats,)
        if self.comm is not None:
            self.comm.allreduce_sum(totals)
        return self._metric_logs(totals, n)

    def predict(self, x: Any, batch_size: int = 256) -> numpy.ndarray:
        """The last layer's outputs for x (logits for every built-in model), computed in batches in
        evaluation mode and returned as a host array; see :meth:`predict_proba` and
        :meth:`predict_classes` for class probabilities and labels.

        One unbatched sample (``(1, 28, 28)`` for LeNet-5) gives one unbatched result (``(10,)``),
        as PyTorch's layers do; uint8 input above 1 draws a warning (it is not scaled).
        Distributed, every rank must call it (each computes a shard); all get every output.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        if is_one_sample(self, x):
            return self.predict(to_numpy(x)[None], batch_size)[0]  # (C, H, W) -> (1, C, H, W) and back
        x, _ = check_x(self, x, "predict", finite=True)
        if self.comm is not None:  # each rank predicts a contiguous shard; every rank gets all of them
            with self._one_rank_fails_all():
                shards = self.comm.allgather_obj(self._predict_arrays(rows_of(x, self.comm.part(len(x))), batch_size))
            return numpy.concatenate([s for s in shards if s is not None])
        return self._predict_arrays(x, batch_size)

    def _predict_arrays(self, x: numpy.ndarray, batch_size: int) -> numpy.ndarray | None:
        self.eval()
        outputs = [to_numpy(self.forward(self._to_model(x[s:s + batch_size]), train=False))
                   for s in range(0, len(x), batch_size)]
        self.clear_cache()
        return numpy.concatenate(outputs) if outputs else None

    def predict_proba(self, x: Any, batch_size: int = 256) -> numpy.ndarray:
        """Class probabilities (N, K): the softmax of :meth:`predict`'s outputs (computed in float64
        with the maximum subtracted), or the outputs themselves when the model ends in a Softmax."""
        out = self.predict(x, batch_size)
        if isinstance(self.layers[-1], Softmax):
            return out
        shifted = out.astype(numpy.float64) - out.max(axis=-1, keepdims=True)
        e = numpy.exp(shifted)
        return (e / e.sum(axis=-1, keepdims=True)).astype(out.dtype)

    def predict_classes(self, x: Any, batch_size: int = 256) -> numpy.ndarray:
        """Predicted class labels (N,) as int64: the arg-max of :meth:`predict`'s outputs."""
        return self.predict(x, batch_size).argmax(axis=-1).astype(numpy.int64)

    # --- files --------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The architecture (a tree of layer entries) as plain data."""
        return model_files.model_config(self)

    def save(self, path: str | Path, include_optimizer: bool = False, allow_nonfinite: bool = False) -> None:
        """Write the model to ``path`` atomically; ``include_optimizer`` makes it a resumable checkpoint.

        Weights (or optimizer state) holding NaN or infinity are refused with
        :class:`NonFiniteError` and nothing is written, so a diverged run never replaces a good
        file; ``allow_nonfinite=True`` writes them anyway (to inspect a divergence).
        """
        if not self.is_root:
            return  # distributed: rank 0 writes every file
        training, extra = None, {}
        if include_optimizer:
            self._require_compiled("save(include_optimizer=True)")
            training = self._training_state()
            for i, state in enumerate(self.optimizer.state):
                extra.update({f"optimizer/{i}/{k}": to_numpy(a) for k, a in state.items()})
        elif self.optimizer is not None:
            training = {"loss": self.loss_name, "metrics": self.metric_names}
        model_files.write(self, path, training, extra, allow_nonfinite)

    def _training_state(self) -> dict[str, Any]:
        generators = {path: layer.rng.bit_generator.state for path, layer in self.named_layers()
                      if isinstance(getattr(layer, "rng", None), numpy.random.Generator)}
        return {"loss": self.loss_name, "metrics": self.metric_names, "optimizer": self.optimizer.config(),
                "iterations": self.optimizer.iterations, "lr_scale": self.optimizer.lr_scale,
                "epoch": self.epoch, "rng": self.rng.bit_generator.state, "layer_rngs": generators}

    def save_weights(self, path: str | Path) -> None:
        """Write the parameters and buffers: a ``.safetensors`` file (state_dict names; PyTorch's
        ``safetensors.torch.load_file`` reads it) or, for any other suffix, an xpnet model file."""
        if not self.is_root:
            return  # distributed: rank 0 writes every file
        if Path(path).suffix == ".safetensors":
            interop.save_safetensors(self, path)
        else:
            model_files.write(self, path)

    def load_weights(self, path: str | Path) -> Sequential:
        """Load parameters and buffers into this model (same architecture) from a ``.safetensors``
        file or an xpnet model file; every name and shape is checked first: all or nothing."""
        if Path(path).suffix == ".safetensors":
            interop.load_safetensors(self, path)
        else:
            model_files.assign(self, Path(path), model_files.read(path).model_arrays())
        return self

    def export(self, path: str | Path, input_shape: tuple[int, ...]) -> None:
        """Export for inference; the format comes from the suffix: ``.onnx`` (opset 17, dynamic
        batch, weights named by state_dict keys; see :mod:`xpnet.interop.onnx_export`)."""
        if Path(path).suffix != ".onnx":
            raise ValueError(f"export({str(path)!r}): unknown format {Path(path).suffix or '(no suffix)'!r}; "
                             "supported: .onnx")
        if not self.is_root:
            return  # distributed: rank 0 writes every file
        interop.export_onnx(self, path, input_shape)


def load(path: str | Path, device: str | Device = "cpu") -> Sequential:
    """Rebuild a model (and, for a checkpoint, its optimizer and progress) from ``path``."""
    path = Path(path)
    file = model_files.read(path)
    model_files.check_declared_shapes(path, file)
    layers = model_files.build_layers(path, file.entries)
    try:
        model = Sequential(*layers, seed=file.seed, dtype=file.dtype)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the layers do not form a model ({exc})") from None
    model_files.assign(model, path, file.model_arrays())
    if file.training is not None:
        _restore_training(model, path, file.training, file.arrays)
    return model.to(device)


def _restore_training(model: Sequential, path: Path, training: dict[str, Any],
                      arrays: dict[str, numpy.ndarray]) -> None:
    try:
        if "optimizer" not in training:
            model.compile(loss=training.get("loss", "cross_entropy"), metrics=training.get("metrics"))
            return
        model.compile(optimizer_from_config(training["optimizer"]), training["loss"], training["metrics"])
        opt = model.optimizer
        names = opt.state_names
        if any(f"optimizer/0/{k}" in arrays for k in names):
            opt.state = [{k: _state_array(path, arrays, f"optimizer/{i}/{k}", p) for k in names}
                         for i, p in enumerate(opt.params)]
        opt.iterations, opt.lr_scale = _count(training["iterations"], "iterations"), float(training["lr_scale"])
        model.epoch = _count(training["epoch"], "epoch")
        model.rng.bit_generator.state = training["rng"]
        for layer_path, layer in model.named_layers():
            if layer_path in training.get("layer_rngs", {}):
                layer.rng.bit_generator.state = training["layer_rngs"][layer_path]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path}: invalid training state ({exc.__class__.__name__}: {exc})") from None


def _count(value: Any, name: str) -> int:
    """A checkpoint's epoch or step count: an int >= 0 (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _state_array(path: Path, arrays: dict[str, numpy.ndarray], name: str, param: Any) -> numpy.ndarray:
    """An optimizer state array from a checkpoint, which must match its parameter's shape."""
    if name not in arrays:
        raise ModelFileError(f"{path}: checkpoint lacks optimizer state {name!r}")
    if arrays[name].shape != param.shape:
        raise ModelFileError(f"{path}: optimizer state {name!r} has shape {arrays[name].shape}, "
                             f"but its parameter has shape {param.shape}")
    return arrays[name].astype(param.value.dtype)
