"""The two runs: the per-layer pass on one batch, SGD training in lockstep, tie-breaks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy

from ..backend import Array, to_numpy
from ..losses import correct_count
from ..optim import SGD
from ..training import Sequential
from .configs import Config
from .inputs import _Template

CHECK_CANDIDATES = 8  # batches tried for the per-layer check


def _to(config: Config, host: numpy.ndarray, cast: bool = True) -> Array:
    if cast:
        host = host.astype(config.dtype)
    return config.device.asarray(numpy.ascontiguousarray(host))


def _one_batch(model: Sequential, config: Config, xb: numpy.ndarray, yb: numpy.ndarray, loss_fn: Any) -> dict:
    """Every layer's output, input gradient and parameter gradients for one batch (host arrays)."""
    model.layers[0].need_input_grad = True
    model.zero_grad()
    x = _to(config, xb)
    outputs = []
    for layer in model.layers:
        x = layer.forward(x, train=True)
        outputs.append(x)
    _, dy = loss_fn(x, _to(config, yb, cast=False))
    loss_grad = to_numpy(dy)
    input_grads: list[Any] = [None] * len(model.layers)
    for i in reversed(range(len(model.layers))):
        dy = model.layers[i].backward(dy)
        input_grads[i] = dy
    model.clear_cache()
    return {"outputs": [to_numpy(o) for o in outputs], "loss_grad": loss_grad,
            "input_grads": [None if g is None else to_numpy(g) for g in input_grads],
            "params": [{p.name: to_numpy(p.grad) for p in layer.parameters()} for layer in model.layers]}


def _zero_patterns(outputs: Sequence[Any], input_grads: Sequence[Any]) -> list[numpy.ndarray | None]:
    """Where each layer output and input gradient is exactly zero (host booleans): the
    decisions of ReLU-like layers and of max/min-pool gradient routing."""
    return [None if a is None else to_numpy(a == 0) for a in (*outputs, *input_grads)]


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
    """One SGD step, layer by layer: (loss, correct count) as device scalars, and the zero patterns."""
    h, target = _to(config, xb), _to(config, yb, cast=False)
    outputs = []
    for layer in model.layers:
        h = layer.forward(h, train=True)
        outputs.append(h)
    loss, dy = loss_fn(h, target)
    correct = correct_count(h, target)
    optimizer.zero_grad()
    input_grads: list[Any] = [None] * len(model.layers)
    for i in reversed(range(len(model.layers))):
        dy = model.layers[i].backward(dy)
        input_grads[i] = dy
    optimizer.step()
    return loss, correct, _zero_patterns(outputs, input_grads)


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
    names = [layer.name for layer in models[0].layers]
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
    for k in range(min(CHECK_CANDIDATES, candidates)):
        index = order[k * batch_size:(k + 1) * batch_size]
        batches = [_one_batch(template.build(c), c, x[index], y[index], loss_fn) for c in configs]
        names = [entry["name"] for entry in template.layers]
        breaks = _tie_breaks(names, *(_zero_patterns(b["outputs"], b["input_grads"]) for b in batches))
        if not breaks:
            return k + 1, batches, skipped
        skipped.append({"batch": k + 1, "tie_breaks": breaks})
        if best is None or sum(breaks.values()) < best[0]:
            best = (sum(breaks.values()), k + 1, batches)
    return best[1], best[2], skipped
