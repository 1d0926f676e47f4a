"""``compare()``: check the arguments, make both runs, gather the report."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy

from ..losses import LOSSES
from .checks import _checks, _environment, _layer_rows, _notes, _predictions, _training_summary
from .configs import ConfigSpec, parse_config, resolve_config
from .inputs import _batch_order, _check_data, _load_data, _template
from .measure import Tolerances
from .report import Comparison
from .runs import CHECK_CANDIDATES, _check_batch, _train_pair


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}")
    return int(value)


def _check_lr_and_seed(lr: Any, seed: Any) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a positive number; received lr={lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; received seed={seed!r}")


def compare(model: Any = None, a: ConfigSpec = "cpu:float32", b: ConfigSpec = "auto", steps: int = 100,
            batch_size: int = 32, lr: float = 0.05, seed: int = 0, data: Any = None,
            train_images: int = 2048, test_images: int = 1000, resync: bool = True,
            tolerances: Tolerances | None = None) -> Comparison:
    """Run ``model`` on configurations ``a`` and ``b`` and compare them (see the :mod:`xpnet.compare` docstring).

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
    _check_lr_and_seed(lr, seed)
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
