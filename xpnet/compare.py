r"""Run one model on two configurations and compare what they compute.

``compare(model=None, a="cpu:float32", b="auto", steps=100, ...)`` answers "does the GPU
(or float32) compute the same thing as the CPU (or float64)?".  A configuration is
``"device:dtype"`` (``"cpu:float32"``, ``"cuda:float32"``, ``"cuda:1:float64"``, ``"cpu"``
means float32), an xpnet :class:`~xpnet.backend.Device`, or a ``(device, dtype)`` pair.
``b="auto"`` is ``"cuda:float32"`` when a GPU can be used and ``"cpu:float64"`` otherwise, so
the tool is useful everywhere: CPU against GPU, or float32 against a float64 reference.
``"cuda"`` without a usable GPU falls back to the CPU with one ``RuntimeWarning``; the
result says which device actually ran (``result.b["device"]``).

How the two runs are made comparable
------------------------------------
* One model: LeNet-5 (:func:`xpnet.models.lenet5` with ``seed``) by default, a saved model
  file (read with :func:`xpnet.load`), or a :class:`~xpnet.Sequential`.  Its parameters are
  copied to the host once; each run rebuilds the layers from their configs and casts those
  host arrays to its dtype (float32 -> float64 is exact), then moves them to its device.
  So both runs start from bit-identical weights.  The source model is not modified.
* One batch order: a host generator seeded with ``seed`` shuffles the training images
  (a fresh permutation for every pass over them); both runs see the same batches.
  Dropout masks are drawn on the host from the model seed, so they agree too.
* Plain SGD (no momentum, no weight decay) with learning rate ``lr`` on the mean
  cross-entropy loss, so the model must output class scores (N, K).  Data: the first
  ``train_images`` training and ``test_images`` test images of the built-in MNIST subset
  (or of ``data``).

Ties
----
ReLU and max pooling have kinks: where two window values (or a value and 0) agree to
within rounding, the two runs can legitimately route a gradient to different elements
(e.g. 1.00268642 and 1.00268654 in float64 are one value in float32, and the first of
equal values wins).  On MNIST, float32 against float64, this happens in about one step in
ten, and each such *tie-break* changes a few weights by ~1e-5; after it the free-running
trajectories drift apart (over ten seeds, 4 of 10 runs of 100 steps ended with loss gaps
of 1e-2..3e-1, the other 6 stayed below 2e-6).
A tie-break is seen as an element that is exactly zero in one run only, in a layer output
(ReLU-like layers) or a layer's input gradient (max/min pooling routes to one element).
Therefore:

* the per-layer check uses the first of up to 8 training batches on which the runs break
  no tie differently (the skipped ones are named in ``result.notes``);
* training runs a and b in lockstep, and after a step with a tie-break, run a takes b's
  weights again (cast to its dtype) when ``resync`` is True (the default; ``xpnet compare
  --no-resync`` turns it off).  The steps are listed in ``training["tie_break_steps"]``.
  Between them the runs train independently, and a step's loss is computed before its
  update, so drift that builds up between two re-synchronisations (a wrong update rule,
  say) still shows in the loss curves.

What is compared
----------------
1. *Per layer, one batch* (the first tie-free candidate batch, training mode): every
   layer's output, the gradient with respect to its input (for the first layer too) and
   the gradient of every parameter, after one forward and backward pass.
2. *Training*: ``steps`` SGD steps; the loss and the accuracy of each training batch (from
   the forward pass before its update) give two loss curves and two accuracy curves;
   afterwards the largest difference of every parameter (reported, not judged; since the
   last re-synchronisation when there was one).
3. *Predictions*: after training, the share of held-out images whose predicted class
   (argmax) is the same in both runs, each run's accuracy and the largest logit difference
   (reported, not judged).

Tolerances (reliability.md §B; ``b`` is the reference)
-----------------------------------------------------
For arrays a and b of one tensor, with ``s = max(max|a|, max|b|)``, an element passes when
``|a - b| <= atol + rtol * |b|``:

=================  ========  ===========================
quantity           rtol      atol
=================  ========  ===========================
forward outputs    1e-4      1e-5 * max(1, s)
gradients          1e-3      1e-4 * s_layer
=================  ========  ===========================

Gradients of a mean loss are often 1e-3 in size or smaller, so a floor of 1 would let any
difference through; their atol scales with the layer's own gradients instead.  For a
parameter gradient ``s_layer`` is the largest value of any parameter gradient of that layer
(a conv bias followed by batch norm has an analytically zero gradient: its float32 rounding
noise of ~1e-6 is measured against the weight gradient, not against itself); for an input
gradient it is the largest value of that gradient and of the gradient the layer received
(dL/d output).  Loss curves pass when
``max_t |loss_a[t] - loss_b[t]| / max(1, |loss_b[t]|) <= 1e-4`` over all ``steps`` steps
(absolute for losses below 1, relative above).  Output shapes must agree and every layer
output must have its run's dtype.  NaN or infinity count as an infinite difference unless
both runs hold the same value at that place.

Reported per tensor: ``max_abs = max |a - b|``; ``max_rel = max |a - b| / max(|b|, atol/rtol)``
(relative to b, but never to less than the noise floor atol/rtol, so near-zero entries do
not dominate); ``ratio = max |a - b| / (atol + rtol |b|)``, the worst element's share of
its allowance: the tensor passes when ``ratio <= 1``.

``result.passed`` is True when the forward, gradient, loss-curve and dtype checks pass;
``result.failures`` lists each failing tensor (first the layer where a forward difference
starts) and ``xpnet compare`` exits 1 then.  :func:`format_table` prints the report,
``result.to_json()`` writes it, :func:`plot_losses` draws the two loss curves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy

from ._version import __version__
from .backend import Array, Device, get_device, gpu_available, gpu_devices, gpu_versions, to_numpy
from .datasets import load_mnist
from .errors import DTypeError, ShapeError
from .io import layer_from_config
from .losses import LOSSES, correct_count
from .models import lenet5
from .optim import SGD
from .training import Sequential, load

__all__ = ["Comparison", "Config", "Tolerances", "compare", "difference", "format_table", "parse_config",
           "plot_losses", "resolve_config"]

DTYPES = {"float32": "float32", "f32": "float32", "float": "float32",
          "float64": "float64", "f64": "float64", "double": "float64"}
_DEVICE_SPEC = re.compile(r"^(cpu|auto|(cuda|gpu)(:\d+)?)$")
CHECK_CANDIDATES = 8  # batches tried for the per-layer check


# --- tolerances and differences ----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Tolerances:
    """The pass/fail bar (see the module docstring)."""

    forward_rtol: float = 1e-4
    forward_atol: float = 1e-5   # times max(1, s)
    grad_rtol: float = 1e-3
    grad_atol: float = 1e-4      # times s
    loss: float = 1e-4           # on max |loss_a - loss_b| / max(1, |loss_b|)

    def forward(self, scale: float) -> tuple[float, float]:
        """(rtol, atol) for forward outputs whose largest magnitude is ``scale``."""
        return self.forward_rtol, self.forward_atol * max(1.0, scale)

    def gradient(self, scale: float) -> tuple[float, float]:
        """(rtol, atol) for gradients whose largest magnitude is ``scale``."""
        return self.grad_rtol, self.grad_atol * scale


def _largest(a: numpy.ndarray) -> float:
    finite = numpy.abs(a[numpy.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0


def _safe_divide(num: numpy.ndarray, den: numpy.ndarray) -> numpy.ndarray:
    """num / den with 0/0 = 0 and x/0 = inf."""
    out = numpy.where(num == 0, 0.0, numpy.inf)
    numpy.divide(num, den, out=out, where=den > 0)
    return out


def difference(a: Any, b: Any, kind: str = "forward", tolerances: Tolerances | None = None,
               scale: float = 0.0) -> dict[str, Any]:
    """How far tensor ``a`` is from the reference ``b`` (host or device arrays).

    ``kind`` is "forward" or "gradient" and picks the tolerance; its atol scales with
    ``s = max(max|a|, max|b|, scale)``.  Returns plain data: shape, dtypes, ``max_abs``,
    ``max_rel``, ``ratio`` (<= 1 passes), the worst element (``index``, ``a``, ``b``),
    ``rtol``, ``atol`` and ``passed``.
    """
    tol = tolerances or Tolerances()
    a_host, b_host = to_numpy(a), to_numpy(b)
    result: dict[str, Any] = {"shape": list(b_host.shape), "dtype_a": str(a_host.dtype), "dtype_b": str(b_host.dtype)}
    if a_host.shape != b_host.shape:
        result.update(shape_a=list(a_host.shape), max_abs=math.inf, max_rel=math.inf, ratio=math.inf,
                      index=None, a=None, b=None, rtol=None, atol=None, passed=False)
        return result
    a64, b64 = a_host.astype(numpy.float64), b_host.astype(numpy.float64)
    scale = max(_largest(a64), _largest(b64), float(scale))
    rtol, atol = tol.forward(scale) if kind == "forward" else tol.gradient(scale)
    with numpy.errstate(invalid="ignore", over="ignore"):
        same = (a64 == b64) | (numpy.isnan(a64) & numpy.isnan(b64))
        diff = numpy.where(same, 0.0, numpy.abs(a64 - b64))
    diff[numpy.isnan(diff)] = numpy.inf
    magnitude = numpy.abs(numpy.where(numpy.isfinite(b64), b64, 0.0))
    ratios = _safe_divide(diff, atol + rtol * magnitude)
    relative = _safe_divide(diff, numpy.maximum(magnitude, atol / rtol))
    worst = int(numpy.argmax(ratios)) if ratios.size else None
    index = None if worst is None else [int(i) for i in numpy.unravel_index(worst, ratios.shape)]
    result.update(
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=float(relative.max()) if relative.size else 0.0,
        ratio=float(ratios.max()) if ratios.size else 0.0,
        index=index,
        a=None if worst is None else float(a64.flat[worst]),
        b=None if worst is None else float(b64.flat[worst]),
        rtol=rtol, atol=atol,
    )
    result["passed"] = bool(result["ratio"] <= 1.0)
    return result


# --- configurations --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    """A resolved configuration: where a run computes and in which dtype."""

    device: Device
    dtype: numpy.dtype
    requested: str
    fallback: str = ""  # the warning's text when a requested GPU could not be used

    def describe(self) -> dict[str, Any]:
        name = ""
        if self.device.type == "cuda":
            name = dict(gpu_devices()).get(self.device.index, "")
        return {"requested": self.requested, "device": str(self.device), "dtype": str(self.dtype),
                "device_name": name, "fallback": self.fallback}


ConfigSpec = str | Device | tuple


def parse_config(spec: ConfigSpec) -> tuple[str | Device, numpy.dtype]:
    """Split a configuration into (device spec or Device, dtype) without touching any device.

    ValueError/TypeError on anything unknown.  ``"auto"`` alone means "cuda:float32" when a
    GPU can be used and "cpu:float64" otherwise.
    """
    if isinstance(spec, Device):
        return spec, numpy.dtype(numpy.float32)
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError(f"a configuration pair must be (device, dtype); received {spec!r}")
        device, dtype = spec
        name = numpy.dtype(dtype).name if not isinstance(dtype, str) else dtype.strip().lower()
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} in configuration {spec!r}; expected float32 or float64")
        if isinstance(device, Device):
            return device, numpy.dtype(DTYPES[name])
        parsed, _ = parse_config(str(device))
        return parsed, numpy.dtype(DTYPES[name])
    if not isinstance(spec, str):
        raise TypeError(f"a configuration must be a str like 'cpu:float32', a Device or a (device, dtype) "
                        f"pair; received {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "auto":
        return ("cuda", numpy.dtype(numpy.float32)) if gpu_available() else ("cpu", numpy.dtype(numpy.float64))
    device, _, tail = text.rpartition(":")
    if tail in DTYPES and device:
        dtype = DTYPES[tail]
    else:
        device, dtype = text, "float32"
    if not _DEVICE_SPEC.match(device):
        raise ValueError(f"unknown configuration {spec!r}; expected DEVICE[:DTYPE] with DEVICE one of cpu, "
                         "cuda, cuda:N, auto and DTYPE float32 or float64 (e.g. 'cuda:float32', 'cpu:float64')")
    return device, numpy.dtype(dtype)


def resolve_config(spec: ConfigSpec) -> Config:
    """Parse and resolve a configuration; a GPU that cannot be used gives one RuntimeWarning."""
    device_spec, dtype = parse_config(spec)
    requested = spec if isinstance(spec, str) else f"{device_spec}:{dtype}"
    if isinstance(device_spec, Device):
        return Config(device_spec, dtype, requested)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = get_device(device_spec)
    fallback = ""
    for warning in caught:  # re-issued, so the caller sees exactly one warning per fallback
        fallback = str(warning.message)
        warnings.warn(fallback, warning.category, stacklevel=3)
    return Config(device, dtype, requested, fallback)


# --- the model and the data ---------------------------------------------------------------
@dataclasses.dataclass
class _Template:
    """A model as plain data: layer configs and host copies of every array."""

    source: str
    layers: list[dict[str, Any]]
    arrays: dict[str, numpy.ndarray]
    seed: int

    def build(self, config: Config) -> Sequential:
        layers = [layer_from_config(Path(self.source), entry) for entry in self.layers]
        model = Sequential(*layers, seed=self.seed, dtype=config.dtype)
        for name, variable in model.variables():
            variable.apply(lambda old, a=self.arrays[name]: a.astype(config.dtype))  # a copy, even for float32
        return model.to(config.device)


def _template(model: Any, seed: int) -> _Template:
    if model is None:
        source = lenet5(seed=seed)
        name = f"LeNet-5 (xpnet.models.lenet5, seed {seed})"
    elif isinstance(model, (str, os.PathLike)):
        source = load(model)
        name = str(model)
    elif isinstance(model, Sequential):
        source = model
        name = f"Sequential ({len(model.layers)} layers)"
    else:
        raise TypeError(f"model must be None (LeNet-5), a model file path or an xpnet Sequential; "
                        f"received {type(model).__name__}")
    arrays = {name_: numpy.array(to_numpy(v.value)) for name_, v in source.variables()}
    return _Template(name, source.get_config()["layers"], arrays, seed)


def _load_data(data: Any) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray, str]:
    if data is None or isinstance(data, (str, os.PathLike)):
        (x, y), (xt, yt) = load_mnist(data)
        return x, y, xt, yt, "built-in MNIST subset" if data is None else str(data)
    try:
        (x, y), (xt, yt) = data
    except (TypeError, ValueError):
        raise TypeError("data must be None, an MNIST folder or ((x_train, y_train), (x_test, y_test))") from None
    return numpy.asarray(x), numpy.asarray(y), numpy.asarray(xt), numpy.asarray(yt), "arrays"


def _check_data(model: Sequential, x: numpy.ndarray, y: numpy.ndarray, what: str) -> None:
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"{what} images must hold real numbers; got dtype {x.dtype}")
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
        raise ValueError(f"{what} labels must be {len(x)} integers; got dtype {y.dtype} and shape {y.shape}")
    out_shape = model.check_input_shape(x.shape[1:])
    if len(out_shape) != 1:
        raise ShapeError(f"the model outputs per-sample shape {out_shape}; compare needs class scores (K,)")
    bad = (y < 0) | (y >= out_shape[0])
    if bad.any():
        raise ValueError(f"{what} labels must be in [0, {out_shape[0]}); got {sorted(set(y[bad].tolist()))[:10]}")


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}")
    return int(value)


def _batch_order(n: int, count: int, seed: int) -> numpy.ndarray:
    """``count`` sample indices: host permutations of range(n), one after the other."""
    rng = numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(1)[0])
    passes = math.ceil(count / n)
    return numpy.concatenate([rng.permutation(n) for _ in range(passes)])[:count]


def _to(config: Config, host: numpy.ndarray, cast: bool = True) -> Array:
    if cast:
        host = host.astype(config.dtype)
    return config.device.asarray(numpy.ascontiguousarray(host))


# --- the two runs ------------------------------------------------------------------------
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


# --- the result ----------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Plain JSON data: non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, numpy.generic):
        return _jsonable(value.item())
    return value


@dataclasses.dataclass
class Comparison:
    """The report of :func:`compare`, as plain data (see the module docstring for each part).

    ``to_dict``/``to_json`` give JSON (non-finite numbers as null); ``from_dict``/``from_json``
    read it back; ``str(result)`` is the table.
    """

    a: dict[str, Any]
    b: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    tolerances: dict[str, Any]
    layers: list[dict[str, Any]]
    training: dict[str, Any]
    predictions: dict[str, Any]
    checks: dict[str, Any]
    failures: list[str]
    notes: list[str]
    passed: bool
    environment: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def to_json(self, path: str | Path | None = None, indent: int = 1) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"not a comparison report: missing {', '.join(missing)}")
        return cls(**{n: data[n] for n in names})

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Comparison:
        text = text_or_path
        if isinstance(text_or_path, Path) or not str(text_or_path).lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        return format_table(self)


def _scale(*arrays: numpy.ndarray | None) -> float:
    return max((_largest(numpy.asarray(a, dtype=numpy.float64)) for a in arrays if a is not None), default=0.0)


def _layer_rows(batch_a: dict, batch_b: dict, model: Sequential, tol: Tolerances) -> list[dict[str, Any]]:
    """Per-layer differences.  Gradient atols scale with the layer's largest gradient of the
    same kind: parameter gradients with its largest parameter gradient, the input gradient
    with itself and the gradient the layer received (dL/dy)."""
    rows = []
    n = len(model.layers)
    for i, layer in enumerate(model.layers):
        grad_a, grad_b = batch_a["input_grads"][i], batch_b["input_grads"][i]
        received = [batch["input_grads"][i + 1] if i + 1 < n else batch["loss_grad"] for batch in (batch_a, batch_b)]
        input_grad = None if grad_a is None or grad_b is None else \
            difference(grad_a, grad_b, "gradient", tol, scale=_scale(*received))
        params_a, params_b = batch_a["params"][i], batch_b["params"][i]
        param_scale = _scale(*params_a.values(), *params_b.values())
        rows.append({
            "name": layer.name, "type": type(layer).__name__,
            "output": difference(batch_a["outputs"][i], batch_b["outputs"][i], "forward", tol),
            "input_grad": input_grad,
            "param_grads": {name: difference(g, params_b[name], "gradient", tol, scale=param_scale)
                            for name, g in params_a.items()},
        })
    return rows


def _describe_failure(row: dict, what: str, diff: dict) -> str:
    if diff.get("shape_a") is not None:
        return (f"{row['name']} ({row['type']}) {what}: shapes differ, "
                f"a {tuple(diff['shape_a'])} b {tuple(diff['shape'])}")
    return (f"{row['name']} ({row['type']}) {what}: max |a-b| = {diff['max_abs']:.3g}, "
            f"{diff['ratio']:.3g} x the allowed {diff['atol']:.2g} + {diff['rtol']:.0e}|b| "
            f"(at {tuple(diff['index'] or ())}: a = {diff['a']:.7g}, b = {diff['b']:.7g})")


def _checks(rows: list[dict], training: dict, configs: tuple[Config, Config], tol: Tolerances
            ) -> tuple[dict[str, Any], list[str]]:
    failures: list[str] = []
    forward_bad = [r for r in rows if not r["output"]["passed"]]
    failures += [_describe_failure(r, "output", r["output"]) for r in forward_bad]
    grad_bad = []
    for r in reversed(rows):  # backward order: from the loss towards the input
        tensors = [("d input", r["input_grad"])] if r["input_grad"] is not None else []
        tensors += [(f"d {name}", d) for name, d in r["param_grads"].items()]
        for what, d in tensors:
            if not d["passed"]:
                grad_bad.append(f"{r['name']} {what}")
                failures.append(_describe_failure(r, what, d))
    dtype_bad = [f"{r['name']}: a {r['output']['dtype_a']}, b {r['output']['dtype_b']}" for r in rows
                 if (r["output"]["dtype_a"], r["output"]["dtype_b"]) != (str(configs[0].dtype), str(configs[1].dtype))]
    failures += [f"output dtype differs from the run's dtype ({configs[0].dtype}/{configs[1].dtype}) at {d}"
                 for d in dtype_bad]
    loss_ok = training["loss_diff"] is not None and training["loss_diff"] <= tol.loss
    if not loss_ok:
        events = training["tie_break_steps"]
        why = ""
        if events and not training["resynchronised"]:
            why = (f"; the runs first broke a tie differently at step {events[0]['step']} "
                   f"({_tie_text(events[0]['tie_breaks'])}) and were not re-synchronised")
        failures.append(f"loss curves: max |loss_a - loss_b| / max(1, |loss_b|) = {training['loss_diff']} at step "
                        f"{training['loss_diff_step']} exceeds {tol.loss:g}{why}")
    forward_ratios = [r["output"]["ratio"] for r in rows]
    grad_ratios = [d["ratio"] for r in rows for d in ([r["input_grad"]] if r["input_grad"] else [])
                   + list(r["param_grads"].values())]
    checks = {
        "forward": {"passed": not forward_bad, "worst_ratio": max(forward_ratios),
                    "first_divergent_layer": forward_bad[0]["name"] if forward_bad else None,
                    "tolerance": f"rtol {tol.forward_rtol:g}, atol {tol.forward_atol:g} * max(1, s)"},
        "gradients": {"passed": not grad_bad, "worst_ratio": max(grad_ratios, default=0.0),
                      "failing": grad_bad,
                      "tolerance": f"rtol {tol.grad_rtol:g}, atol {tol.grad_atol:g} * s"},
        "loss_curve": {"passed": loss_ok, "value": training["loss_diff"], "step": training["loss_diff_step"],
                       "tolerance": f"max |loss_a - loss_b| / max(1, |loss_b|) <= {tol.loss:g}"},
        "dtypes": {"passed": not dtype_bad, "mismatches": dtype_bad},
    }
    return checks, failures


def _tie_text(breaks: dict[str, int]) -> str:
    return ", ".join(f"{where}: {count}" for where, count in breaks.items())


def _training_summary(run_a: dict, run_b: dict, resync: bool) -> dict[str, Any]:
    la, lb = numpy.array(run_a["loss"]), numpy.array(run_b["loss"])
    with numpy.errstate(invalid="ignore"):
        gaps = numpy.abs(la - lb) / numpy.maximum(1.0, numpy.abs(lb))
    gaps[~numpy.isfinite(gaps)] = numpy.inf
    step = int(numpy.argmax(gaps))
    weights = {name: difference(w, run_b["weights"][name], "gradient")["max_abs"]
               for name, w in run_a["weights"].items()}
    worst = max(weights, key=weights.get) if weights else None
    return {
        "loss_a": run_a["loss"], "loss_b": run_b["loss"],
        "accuracy_a": run_a["accuracy"], "accuracy_b": run_b["accuracy"],
        "loss_diff": float(gaps[step]) if numpy.isfinite(gaps[step]) else None, "loss_diff_step": step + 1,
        "accuracy_steps_equal": int(numpy.sum(numpy.array(run_a["accuracy"]) == numpy.array(run_b["accuracy"]))),
        "weights_max_abs": weights[worst] if worst else 0.0, "weights_worst": worst, "weights": weights,
        "seconds_a": run_a["seconds"], "seconds_b": run_b["seconds"],
        "tie_break_steps": run_a["events"], "resynchronised": resync,
    }


def _predictions(model_a: Sequential, model_b: Sequential, xt: numpy.ndarray, yt: numpy.ndarray) -> dict:
    out_a, out_b = model_a.predict(xt), model_b.predict(xt)
    pa, pb = out_a.argmax(axis=1), out_b.argmax(axis=1)
    same = int(numpy.sum(pa == pb))
    return {"images": len(xt), "identical": same, "share": same / len(xt),
            "accuracy_a": float(numpy.mean(pa == yt)), "accuracy_b": float(numpy.mean(pb == yt)),
            "max_logit_diff": difference(out_a, out_b)["max_abs"]}


def _notes(configs: Sequence[Config], skipped: list[dict], check_batch: int) -> list[str]:
    """Skipped check batches, device fallbacks, TF32, identical configurations."""
    if any(entry["batch"] == check_batch for entry in skipped):
        notes = [f"all {len(skipped)} candidate batches broke ties differently; batch {check_batch} has the fewest "
                 f"({_tie_text(skipped[check_batch - 1]['tie_breaks'])}): gradient differences at and upstream "
                 "of those elements are expected"]
    else:
        notes = [f"batch {entry['batch']} was not used for the per-layer check: the runs broke ties differently "
                 f"({_tie_text(entry['tie_breaks'])})" for entry in skipped]
    for name, config in zip("ab", configs):
        if config.fallback:
            notes.append(f"{name}: {config.fallback}")
        if config.device.type == "cuda" and os.environ.get("CUPY_TF32", "0") not in ("", "0"):
            notes.append(f"{name}: CUPY_TF32 is set, so cuBLAS may use TF32; expect differences near 1e-3")
    if (configs[0].device, configs[0].dtype) == (configs[1].device, configs[1].dtype):
        notes.append(f"a and b both ran on {configs[0].device} in {configs[0].dtype}: "
                     "this compares the implementation with itself")
    return notes


def _environment() -> dict[str, Any]:
    return {"xpnet": __version__, "numpy": numpy.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cupy": gpu_versions().get("cupy", ""),
            "gpus": [name for _, name in gpu_devices()], "CUPY_TF32": os.environ.get("CUPY_TF32", "")}


def compare(model: Any = None, a: ConfigSpec = "cpu:float32", b: ConfigSpec = "auto", steps: int = 100,
            batch_size: int = 32, lr: float = 0.05, seed: int = 0, data: Any = None,
            train_images: int = 2048, test_images: int = 1000, resync: bool = True,
            tolerances: Tolerances | None = None) -> Comparison:
    """Run ``model`` on configurations ``a`` and ``b`` and compare them (see the module docstring).

    ``model``: None (LeNet-5), a model file path or a Sequential.  ``a``/``b``: "device:dtype",
    a Device, or (device, dtype); ``b="auto"`` is cuda:float32 with a usable GPU, else cpu:float64.
    ``data``: None (built-in MNIST), an MNIST folder, or ((x, y), (x_test, y_test)).
    ``resync``: after a step where the runs broke a tie differently, a takes b's weights.
    Raises ValueError/TypeError (bad arguments), ShapeError (the data do not fit the model)
    or ModelFileError; a difference beyond tolerance is reported in the result, not raised.
    """
    started = time.perf_counter()
    steps, batch_size = _positive(steps, "steps"), _positive(batch_size, "batch_size")
    train_images, test_images = _positive(train_images, "train_images"), _positive(test_images, "test_images")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a positive number; received lr={lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; received seed={seed!r}")
    tol = tolerances or Tolerances()
    parse_config(a), parse_config(b)  # every argument is checked before a device is touched
    loss_fn = LOSSES["cross_entropy"]  # labels are checked once on the host, in _check_data
    template = _template(model, int(seed))
    x, y, xt, yt, data_name = _load_data(data)
    x, y, xt, yt = x[:train_images], y[:train_images], xt[:test_images], yt[:test_images]
    configs = (resolve_config(a), resolve_config(b))
    models = [template.build(c) for c in configs]
    _check_data(models[0], x, y, "training")
    _check_data(models[0], xt, yt, "test")
    order = _batch_order(len(x), max(steps, CHECK_CANDIDATES) * batch_size, int(seed))
    check_batch, batches, skipped = _check_batch(template, configs, x, y, order, batch_size, loss_fn)
    rows = _layer_rows(*batches, models[0], tol)
    runs = _train_pair(models, configs, x, y, order, steps, batch_size, lr, loss_fn, bool(resync))
    training = _training_summary(*runs, bool(resync))
    predictions = _predictions(*models, xt, yt)
    checks, failures = _checks(rows, training, configs, tol)
    return Comparison(
        a=configs[0].describe(), b=configs[1].describe(),
        model={"source": template.source, "layers": [f"{r['name']} ({r['type']})" for r in rows],
               "parameters": models[0].num_parameters()},
        settings={"steps": steps, "batch_size": batch_size, "lr": float(lr), "optimizer": "SGD",
                  "loss": "cross_entropy", "seed": int(seed), "data": data_name,
                  "train_images": len(x), "test_images": len(xt), "check_batch": check_batch,
                  "resync": bool(resync)},
        tolerances=dataclasses.asdict(tol), layers=rows, training=training, predictions=predictions,
        checks=checks, failures=failures, notes=_notes(configs, skipped, check_batch), passed=not failures,
        environment=_environment(),
        seconds=time.perf_counter() - started,
    )


# --- output ----------------------------------------------------------------------------------
def _num(value: Any, spec: str = ".2e") -> str:
    if value is None:
        return "inf"
    return format(value, spec) if math.isfinite(value) else str(value)


def _status(diff: dict | None) -> str:
    return "" if diff is None else ("ok" if diff["passed"] else "FAIL")


def _config_name(config: dict) -> str:
    text = f"{config['device']} {config['dtype']}"
    if config.get("device_name"):
        text += f" ({config['device_name']})"
    if config.get("fallback"):
        text += f" [requested {config['requested']}: fell back]"
    return text


def format_table(result: Comparison) -> str:
    """A readable report: per-layer differences, training curves, predictions, verdict."""
    s, t, p = result.settings, result.training, result.predictions
    lines = [f"xpnet compare: {result.model['source']}, {result.model['parameters']:,} parameters",
             f"  a = {_config_name(result.a)}",
             f"  b = {_config_name(result.b)}  (reference)",
             f"one batch of {s['batch_size']} training images (batch {s['check_batch']}), training mode; "
             "a tensor passes when every |a-b| <= atol + rtol*|b| (ratio <= 1)"]
    header = ("layer", "tensor", "shape", "max|a-b|", "max rel", "ratio", "")
    table = [header]
    for row in result.layers:
        label = f"{row['name']} ({row['type']})"
        entries = [("output", row["output"])]
        entries.append(("d input", row["input_grad"]))
        entries += [(f"d {name}", d) for name, d in row["param_grads"].items()]
        for k, (what, d) in enumerate(entries):
            name = label if k == 0 else ""
            if d is None:
                table.append((name, what, "-", "-", "-", "-", ""))
                continue
            table.append((name, what, str(tuple(d["shape"])), _num(d["max_abs"]), _num(d["max_rel"]),
                          _num(d["ratio"], ".2g"), _status(d)))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    lines.append(
        f"training: {s['steps']} {s['optimizer']} steps (lr {s['lr']:g}, batch {s['batch_size']}, seed {s['seed']}) "
        f"on {s['train_images']:,} images of the {s['data']}")
    la, lb = t["loss_a"], t["loss_b"]
    for name, losses in (("a", la), ("b", lb)):
        acc, sec = t[f"accuracy_{name}"], t[f"seconds_{name}"]
        lines.append(f"  {name}: loss {_num(losses[0], '.5f')} -> {_num(losses[-1], '.5f')}, "
                     f"batch accuracy {acc[0]:.1%} -> {acc[-1]:.1%} (last 10 steps {numpy.mean(acc[-10:]):.1%}); "
                     f"{sec:.2f} s")
    lines.append(f"  loss curves: max |loss_a - loss_b| / max(1, |loss_b|) = {_num(t['loss_diff'])} at step "
                 f"{t['loss_diff_step']} (allowed {result.tolerances['loss']:g})  "
                 f"{'ok' if result.checks['loss_curve']['passed'] else 'FAIL'}")
    lines.append(f"  accuracy curves: equal at {t['accuracy_steps_equal']}/{len(la)} steps")
    events = t["tie_break_steps"]
    if events:
        steps = ", ".join(str(e["step"]) for e in events[:10]) + (" ..." if len(events) > 10 else "")
        after = "a took b's weights again after each" if t["resynchronised"] else "not re-synchronised"
        lines.append(f"  ties broken differently at {len(events)} step(s): {steps} ({after}); "
                     f"first: {_tie_text(events[0]['tie_breaks'])}")
    else:
        lines.append("  ties broken differently: never (a and b trained independently throughout)")
    lines.append(f"  weights after training: max |a-b| = {_num(t['weights_max_abs'])} ({t['weights_worst']})")
    lines.append(f"held-out predictions: {p['identical']:,}/{p['images']:,} identical ({p['share']:.2%}); "
                 f"accuracy a {p['accuracy_a']:.2%}, b {p['accuracy_b']:.2%}; "
                 f"max logit |a-b| = {_num(p['max_logit_diff'])}")
    verdicts = []
    for name, check in result.checks.items():
        extra = f" (worst ratio {_num(check['worst_ratio'], '.2g')})" if "worst_ratio" in check else ""
        verdicts.append(f"{name} {'ok' if check['passed'] else 'FAIL'}{extra}")
    lines.append("checks: " + "; ".join(verdicts))
    for note in result.notes:
        lines.append(f"note: {note}")
    if result.passed:
        lines.append(f"PASS: a and b agree within the tolerances of reliability.md §B ({result.seconds:.1f} s)")
    else:
        first = result.checks["forward"]["first_divergent_layer"]
        where = f"; the forward pass first diverges at layer {first}" if first else ""
        lines.append(f"FAIL: {len(result.failures)} difference(s) beyond tolerance{where}:")
        lines += [f"  - {f}" for f in result.failures[:20]]
        if len(result.failures) > 20:
            lines.append(f"  ... and {len(result.failures) - 20} more")
    return "\n".join(lines)


def plot_losses(result: Comparison, path: str | Path) -> Path:
    """PNG of the two loss curves (left) and their gap against the tolerance (right).

    Needs matplotlib (``pip install "xpnet[viz]"``); draws on a plain Figure (Agg, no pyplot state).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('plot_losses needs matplotlib: pip install "xpnet[viz]"') from exc
    t = result.training
    steps = numpy.arange(1, len(t["loss_a"]) + 1)
    la = numpy.array([numpy.nan if v is None else v for v in t["loss_a"]], dtype=float)
    lb = numpy.array([numpy.nan if v is None else v for v in t["loss_b"]], dtype=float)
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(steps, la, "-", label=f"a: {result.a['device']} {result.a['dtype']}")
    left.plot(steps, lb, "--", label=f"b: {result.b['device']} {result.b['dtype']}")
    left.set_title("training loss")
    with numpy.errstate(invalid="ignore"):
        gap = numpy.abs(la - lb) / numpy.maximum(1.0, numpy.abs(lb))
    right.semilogy(steps, numpy.maximum(gap, 1e-17), "-", label="|loss_a - loss_b| / max(1, |loss_b|)")
    right.axhline(result.tolerances["loss"], color="red", linestyle=":", label="tolerance")
    right.set_title("gap between the curves (1e-17 = equal)")
    for ax in (left, right):
        ax.set_xlabel("SGD step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"xpnet compare: {result.model['source']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
