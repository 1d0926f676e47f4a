"""From the two runs to the report's parts: per-layer rows, checks and failures, notes."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

import numpy

from .._version import __version__
from ..backend import gpu_devices, gpu_versions
from ..training import Sequential
from .configs import Config
from .measure import Tolerances, _scale, difference
from .runs import _tie_text, leaf_label, leaves


def _layer_rows(batch_a: dict, batch_b: dict, model: Sequential, tol: Tolerances) -> list[dict[str, Any]]:
    """Per-layer differences.  Gradient atols scale with the layer's largest gradient of the
    same kind: parameter gradients with its largest parameter gradient, the input gradient
    with itself and the gradient the layer received (dL/dy)."""
    rows = []
    for i, (path, layer) in enumerate(leaves(model)):
        grad_a, grad_b = batch_a["input_grads"][i], batch_b["input_grads"][i]
        received = [batch["output_grads"][i] for batch in (batch_a, batch_b)]
        input_grad = None if grad_a is None or grad_b is None else \
            difference(grad_a, grad_b, "gradient", tol, scale=_scale(*received))
        params_a, params_b = batch_a["params"][i], batch_b["params"][i]
        param_scale = _scale(*params_a.values(), *params_b.values())
        rows.append({
            "name": leaf_label(path, layer), "path": path, "type": type(layer).__name__,
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
