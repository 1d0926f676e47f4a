"""The result of a comparison (:class:`Comparison`), its table and its loss-curve plot."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy

from .runs import _tie_text


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
    """The report of :func:`compare`, as plain data (see the :mod:`xpnet.compare` docstring for each part).

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
    s = result.settings
    lines = [f"xpnet compare: {result.model['source']}, {result.model['parameters']:,} parameters",
             f"  a = {_config_name(result.a)}",
             f"  b = {_config_name(result.b)}  (reference)",
             f"one batch of {s['batch_size']} training images (batch {s['check_batch']}), training mode; "
             "a tensor passes when every |a-b| <= atol + rtol*|b| (ratio <= 1)"]
    lines += _layer_table(result.layers)
    lines += _training_lines(result)
    lines.append(_predictions_line(result.predictions))
    lines += _verdict_lines(result)
    return "\n".join(lines)


def _layer_table(layers: list[dict]) -> list[str]:
    """One line per tensor of every layer, in aligned columns."""
    header = ("layer", "tensor", "shape", "max|a-b|", "max rel", "ratio", "")
    table = [header]
    for row in layers:
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
    return ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in table]


def _training_lines(result: Comparison) -> list[str]:
    """The training settings, both loss and accuracy curves, the tie-breaks and the final weights."""
    s, t = result.settings, result.training
    lines = [
        f"training: {s['steps']} {s['optimizer']} steps (lr {s['lr']:g}, batch {s['batch_size']}, seed {s['seed']}) "
        f"on {s['train_images']:,} images of the {s['data']}"]
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
    lines.append(_tie_break_line(t))
    lines.append(f"  weights after training: max |a-b| = {_num(t['weights_max_abs'])} ({t['weights_worst']})")
    return lines


def _tie_break_line(training: dict) -> str:
    events = training["tie_break_steps"]
    if not events:
        return "  ties broken differently: never (a and b trained independently throughout)"
    steps = ", ".join(str(e["step"]) for e in events[:10]) + (" ..." if len(events) > 10 else "")
    after = "a took b's weights again after each" if training["resynchronised"] else "not re-synchronised"
    return (f"  ties broken differently at {len(events)} step(s): {steps} ({after}); "
            f"first: {_tie_text(events[0]['tie_breaks'])}")


def _predictions_line(p: dict) -> str:
    return (f"held-out predictions: {p['identical']:,}/{p['images']:,} identical ({p['share']:.2%}); "
            f"accuracy a {p['accuracy_a']:.2%}, b {p['accuracy_b']:.2%}; "
            f"max logit |a-b| = {_num(p['max_logit_diff'])}")


def _verdict_lines(result: Comparison) -> list[str]:
    """Each check's verdict, the notes, then PASS or FAIL with the first 20 failures."""
    verdicts = []
    for name, check in result.checks.items():
        extra = f" (worst ratio {_num(check['worst_ratio'], '.2g')})" if "worst_ratio" in check else ""
        verdicts.append(f"{name} {'ok' if check['passed'] else 'FAIL'}{extra}")
    lines = ["checks: " + "; ".join(verdicts)]
    for note in result.notes:
        lines.append(f"note: {note}")
    if result.passed:
        lines.append(f"PASS: a and b agree within the tolerances of docs/reliability.md §B ({result.seconds:.1f} s)")
        return lines
    first = result.checks["forward"]["first_divergent_layer"]
    where = f"; the forward pass first diverges at layer {first}" if first else ""
    lines.append(f"FAIL: {len(result.failures)} difference(s) beyond tolerance{where}:")
    lines += [f"  - {f}" for f in result.failures[:20]]
    if len(result.failures) > 20:
        lines.append(f"  ... and {len(result.failures) - 20} more")
    return lines


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
