"""The two runs: the per-layer pass on one batch, SGD training in lockstep, tie-breaks.

"Per layer" means every leaf of the layer tree (containers are only their children), named by
its path and name: a :class:`_Recorder` wraps the leaves while the whole model runs forward and
backward, so residual sums and concatenations run exactly as in training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy

from ..backend import Array, to_numpy
from ..metrics import correct_count
from ..optim import SGD
from ..training import Sequential
from .configs import Config
from .inputs import _Template

CHECK_CANDIDATES = 8  # batches tried for the per-layer check


def _to(config: Config, host: numpy.ndarray, cast: bool = True) -> Array:
    if cast:
        host = host.astype(config.dtype)
    return config.device.asarray(numpy.ascontiguousarray(host))


def leaves(model: Sequential) -> list[tuple[str, Any]]:
    """(path, layer) of every layer without children, in forward order for a chain of containers."""
    return [(path, layer) for path, layer in model.named_layers() if not layer.children()]


def leaf_label(path: str, layer: Any) -> str:
    """A leaf's name in reports: its name, prefixed by its path inside a container ("3.body.0 conv2d_1")."""
    return layer.name if "." not in path else f"{path} {layer.name}"


class _Recorder:
    """While active, every leaf's output, the gradient it received (dL/dy) and its input gradient
    (dL/dx) are kept, as ``keep(array)``, keyed by path (the leaves' methods are wrapped on the
    instances and restored on exit)."""

    def __init__(self, model: Sequential, keep: Any) -> None:
        self.leaves, self.keep = leaves(model), keep
        self.outputs: dict[str, Any] = {}
        self.output_grads: dict[str, Any] = {}
        self.input_grads: dict[str, Any] = {}

    def __enter__(self) -> _Recorder:
        for path, layer in self.leaves:
            layer.forward = self._forward(path, layer.forward)
            layer.backward = self._backward(path, layer.backward)
        return self

    def _forward(self, path: str, forward: Any) -> Any:
        def record(x: Array, train: bool = False) -> Array:
            y = forward(x, train=train)
            self.outputs[path] = self.keep(y)
            return y
        return record

    def _backward(self, path: str, backward: Any) -> Any:
        def record(dy: Array) -> Array | None:
            self.output_grads[path] = self.keep(dy)
            dx = backward(dy)
            self.input_grads[path] = None if dx is None else self.keep(dx)  # before a container adds into it
            return dx
        return record

    def __exit__(self, *exc: Any) -> None:
        for _, layer in self.leaves:
            del layer.forward, layer.backward  # back to the class's methods

    def in_order(self, table: dict[str, Any]) -> list[Any]:
        return [table.get(path) for path, _ in self.leaves]


def _one_batch(model: Sequential, config: Config, xb: numpy.ndarray, yb: numpy.ndarray, loss_fn: Any) -> dict:
    """Every leaf layer's output, received and input gradients, and parameter gradients for one
    batch (host arrays, in leaf order)."""
    model.root.need_input_grad = True
    model.zero_grad()
    with _Recorder(model, to_numpy) as seen:
        out = model.forward(_to(config, xb), train=True)
        _, dy = loss_fn(out, _to(config, yb, cast=False))
        model.backward(dy)
    model.clear_cache()
    return {"outputs": seen.in_order(seen.outputs), "loss_grad": to_numpy(dy),
            "input_grads": seen.in_order(seen.input_grads), "output_grads": seen.in_order(seen.output_grads),
            "params": [{p.name: to_numpy(p.grad) for p in layer.own_variables() if p.trainable}
                       for _, layer in seen.leaves]}


def _zero_patterns(outputs: Sequence[Any], input_grads: Sequence[Any]) -> list[numpy.ndarray | None]:
    """Where each layer output and input gradient is exactly zero (host booleans): the
    decisions of ReLU-like layers and of max/min-pool gradient routing."""
    return [None if a is None else to_numpy(a == 0) for a in (*outputs, *input_grads)]


def _is_zero(array: Array) -> Array:
    return array == 0


def _tie_breaks(names: Sequence[str], pa: Sequence[Any], pb: Sequence[Any]) -> dict[str, int]:
    """{"layer output" or "layer d input": number of elements zero in one run only}."""
    labels = [f"{n} output" for n in names] + [f"{n} d input" for n in names]
    found = {}
    for label, a, b in zip(labels, pa, pb):
        if a is not None and b is not None and a.shape == b.shape:
            count = int(numpy.count_nonzero(a != b))
            if count:
                found[label] = count
    return found


def _tie_text(breaks: dict[str, int]) -> str:
    return ", ".join(f"{where}: {count}" for where, count in breaks.items())


def _sgd_step(model: Sequential, config: Config, optimizer: SGD, xb: numpy.ndarray, yb: numpy.ndarray,
              loss_fn: Any) -> tuple[Any, Any, list[numpy.ndarray | None]]:
    """One SGD step through the whole tree: (loss, correct count) as device scalars, and the zero
    patterns of every leaf's output and input gradient."""
    target = _to(config, yb, cast=False)
    optimizer.zero_grad()
    with _Recorder(model, _is_zero) as seen:
        out = model.forward(_to(config, xb), train=True)
        loss, dy = loss_fn(out, target)
        correct = correct_count(out, target)
        model.backward(dy)
    optimizer.step()
    return loss, correct, _zero_patterns(seen.in_order(seen.outputs), seen.in_order(seen.input_grads))


def _resynchronise(source: Sequential, target: Sequential, config: Config) -> None:
    """Copy every array of ``source`` into ``target`` (cast to its dtype), in place."""
    for (_, vs), (_, vt) in zip(source.variables(), target.variables()):
        vt.value[...] = config.device.asarray(to_numpy(vs.value).astype(config.dtype))


def _train_pair(models: Sequence[Sequential], configs: Sequence[Config], x: numpy.ndarray, y: numpy.ndarray,
                order: numpy.ndarray, steps: int, batch_size: int, lr: float, loss_fn: Any,
                resync: bool) -> list[dict]:
    """``steps`` plain SGD steps of both runs in lockstep (the same batch, a then b).

    After a step in which the runs decided a tie differently (a ReLU-like output or a
    max-pool gradient exactly zero in one run only), run a takes b's weights again when
    ``resync``; every such step is recorded.  Losses and accuracies stay on the devices
    until the end; the zero patterns come to the host every step.
    """
    optimizers = [SGD(lr=lr).bind(m.parameters()) for m in models]
    names = [leaf_label(path, layer) for path, layer in leaves(models[0])]
    runs = [{"loss": [], "correct": [], "seconds": 0.0} for _ in models]
    sizes, events = [], []
    for model in models:
        model.train()
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        patterns = []
        for model, config, optimizer, run in zip(models, configs, optimizers, runs):
            started = time.perf_counter()
            loss, correct, zeros = _sgd_step(model, config, optimizer, x[index], y[index], loss_fn)
            run["seconds"] += time.perf_counter() - started
            run["loss"].append(loss)
            run["correct"].append(correct)
            patterns.append(zeros)
        sizes.append(len(index))
        breaks = _tie_breaks(names, *patterns)
        if breaks:
            events.append({"step": step + 1, "tie_breaks": breaks})
            if resync:
                _resynchronise(models[1], models[0], configs[0])
    results = []
    for model, config, run in zip(models, configs, runs):
        xp = config.device.xp
        losses = to_numpy(xp.stack(run["loss"])).astype(numpy.float64)  # one sync per run
        correct = to_numpy(xp.stack(run["correct"])).astype(numpy.float64)
        model.clear_cache()
        results.append({"loss": losses.tolist(), "accuracy": (correct / numpy.array(sizes)).tolist(),
                        "seconds": run["seconds"], "events": events,
                        "weights": {name: to_numpy(v.value) for name, v in model.variables()}})
    return results


def _check_batch(template: _Template, configs: Sequence[Config], x: numpy.ndarray, y: numpy.ndarray,
                 order: numpy.ndarray, batch_size: int, loss_fn: Any) -> tuple[int, list[dict], list[dict]]:
    """The per-layer pass on the first candidate batch whose runs decide every tie alike.

    Returns (batch number, [batch_a, batch_b], skipped) where skipped lists the earlier
    candidates and their tie-breaks; when every candidate has some, the one with the fewest.
    """
    candidates, skipped, best = len(order) // batch_size, [], None
    names = None
    for k in range(min(CHECK_CANDIDATES, candidates)):
        index = order[k * batch_size:(k + 1) * batch_size]
        models = [template.build(c) for c in configs]
        names = names or [leaf_label(path, layer) for path, layer in leaves(models[0])]
        batches = [_one_batch(model, c, x[index], y[index], loss_fn) for model, c in zip(models, configs)]
        breaks = _tie_breaks(names, *(_zero_patterns(b["outputs"], b["input_grads"]) for b in batches))
        if not breaks:
            return k + 1, batches, skipped
        skipped.append({"batch": k + 1, "tie_breaks": breaks})
        if best is None or sum(breaks.values()) < best[0]:
            best = (sum(breaks.values()), k + 1, batches)
    return best[1], best[2], skipped
