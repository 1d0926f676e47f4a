"""Plots for looking inside a model (needs matplotlib: ``pip install "xpnet[viz]"``).

    plot_history(history, path)                 loss and accuracy per epoch (a History or its dict)
    plot_filters(conv_layer, path)              the learned kernels of a Conv2d, one panel each
    plot_feature_maps(model, image, path)       what one image becomes after every layer
    confusion_matrix(y_true, y_pred, classes)   a (K, K) count array: rows true class, columns predicted
    plot_confusion_matrix(y_true, y_pred, classes, path)

Every ``plot_*`` function saves a PNG (or any format matplotlib knows, from the suffix) and
returns its path; the ``*_figure`` functions return the matplotlib ``Figure`` instead (for a
notebook or for further drawing); ``filter_weights`` and ``feature_maps`` return the plotted
data as numpy arrays.  Figures are drawn with matplotlib's object API on the Agg canvas: no
pyplot state, no window, no display needed, and the global backend is left alone.

Models and layers may live on any device: the plotted values are host copies taken with
:func:`xpnet.to_numpy`, so a model trained on the GPU plots as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy

from .backend import to_numpy
from .errors import ShapeError

DEFAULT_DPI = 100


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('xpnet.viz needs matplotlib: pip install "xpnet[viz]"') from exc
    return Figure


def _new_figure(figsize: tuple[float, float]) -> Any:
    return _figure_class()(figsize=figsize)


def _save(fig: Any, path: str | Path, dpi: float) -> Path:
    """Save with the Agg canvas at exactly figsize * dpi pixels; return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


# --- training curves ---------------------------------------------------------------
def history_figure(history: Any, title: str = "Training", *, figsize: tuple[float, float] = (9, 3.5)) -> Any:
    """Figure with loss (left) and accuracy (right) per epoch: training, validation and test (when logged)."""
    logs = history.history if hasattr(history, "history") else dict(history)
    fig = _new_figure(figsize)
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s"), ("test_", ":^")):
            values = logs.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: Any, path: str | Path, title: str = "Training", *,
                 figsize: tuple[float, float] = (9, 3.5), dpi: float = DEFAULT_DPI) -> Path:
    """Loss (left) and accuracy (right) per epoch, training and validation; saved as a PNG."""
    return _save(history_figure(history, title, figsize=figsize), path, dpi)


# --- learned filters -----------------------------------------------------------------
def filter_weights(layer: Any) -> numpy.ndarray:
    """A host copy of a Conv2d's weight, (C_out, C_in / groups, KH, KW); TypeError for other layers."""
    from .layers import Conv2d

    if not isinstance(layer, Conv2d):
        raise TypeError(f"plot_filters needs a Conv2d layer (weight (C_out, C_in, KH, KW)); "
                        f"got {type(layer).__name__}")
    return numpy.array(to_numpy(layer.weight.value), copy=True)


def _filter_grid(c_out: int, c_in: int) -> tuple[int, int]:
    """Rows x columns: one row per output channel, one column per input channel; a near-square
    grid when there is a single input channel."""
    if c_in > 1:
        return c_out, c_in
    cols = math.ceil(math.sqrt(c_out))
    return math.ceil(c_out / cols), cols


def filters_figure(layer: Any, *, cmap: str = "gray", figsize: tuple[float, float] | None = None,
                   title: str | None = None, max_panels: int = 1024) -> Any:
    """Figure with one panel per kernel slice ``weight[o, c]`` (C_out * C_in panels).

    Panels are laid out as C_out rows by C_in columns (a near-square grid when C_in is 1), all on
    one colour scale symmetric around zero, so strong and weak filters can be compared.
    """
    weight = filter_weights(layer)
    c_out, c_in = weight.shape[:2]
    if c_out * c_in > max_panels:
        raise ValueError(f"{layer.name} has {c_out} x {c_in} = {c_out * c_in} kernels, more than "
                         f"max_panels={max_panels}; raise max_panels or plot a smaller layer")
    rows, cols = _filter_grid(c_out, c_in)
    if figsize is None:
        figsize = (max(2.0, 0.8 * cols + 0.6), max(1.5, 0.8 * rows + 0.6))
    fig = _new_figure(figsize)
    scale = float(numpy.abs(weight).max()) or 1.0
    for o in range(c_out):
        for c in range(c_in):
            index = o * cols + c if c_in > 1 else o
            ax = fig.add_subplot(rows, cols, index + 1)
            ax.imshow(weight[o, c], cmap=cmap, vmin=-scale, vmax=scale, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_label(f"{o},{c}")
            if c_in > 1 and c == 0:
                ax.set_ylabel(str(o), fontsize=7)
    fig.suptitle(title or f"{layer.name}: {c_out}x{c_in}x{weight.shape[2]}x{weight.shape[3]} "
                          f"(gray: -{scale:.2g} to {scale:.2g})", fontsize=9)
    return fig


def plot_filters(layer: Any, path: str | Path, *, cmap: str = "gray", figsize: tuple[float, float] | None = None,
                 dpi: float = DEFAULT_DPI, title: str | None = None, max_panels: int = 1024) -> Path:
    """Save a grid of a Conv2d's learned kernels (one panel per (output, input) channel pair)."""
    return _save(filters_figure(layer, cmap=cmap, figsize=figsize, title=title, max_panels=max_panels), path, dpi)


# --- feature maps -------------------------------------------------------------------
def _sample(model: Any, image: Any) -> numpy.ndarray:
    """One host sample from an image of the model's per-sample input shape, e.g. (C, H, W), or
    from a batch of one, (1, C, H, W); ShapeError otherwise."""
    host = to_numpy(image)
    if host.dtype.kind not in "biuf":
        raise TypeError(f"the image must hold real numbers; got dtype {host.dtype}")
    if host.ndim == 4:
        if host.shape[0] != 1:
            raise ShapeError(f"plot_feature_maps takes one image, (C, H, W) or (1, C, H, W); "
                             f"got a batch of shape {tuple(host.shape)}")
        host = host[0]
    model.check_input_shape(host.shape)  # ShapeError naming the layer that cannot take it
    return host


def feature_maps(model: Any, image: Any) -> list[tuple[str, numpy.ndarray]]:
    """[("input", image), (layer name, its output), ...] for one image, per sample, on the host.

    Runs the model's layers in evaluation mode on the model's device (one transfer in, one
    host copy out per layer).  Outputs keep their per-sample shape: (C, H, W) or (F,).
    """
    host = _sample(model, image)
    x = model.device.asarray(numpy.ascontiguousarray(host[None], dtype=model.dtype))
    maps = [("input", host.astype(model.dtype, copy=True))]
    try:
        for layer in model.layers:
            x = layer.forward(x, train=False)
            maps.append((layer.name, to_numpy(x)[0].copy()))
    finally:
        model.clear_cache()
    return maps


def _shown(model: Any, maps: list[tuple[str, numpy.ndarray]]) -> list[tuple[str, numpy.ndarray]]:
    """The maps worth a row: the input, every (C, H, W) output and every vector output except Flatten's."""
    from .layers import Flatten

    flatten = {layer.name for layer in model.layers if isinstance(layer, Flatten)}
    return [(name, m) for name, m in maps if m.ndim == 3 or (m.ndim == 1 and name not in flatten)]


def feature_maps_figure(model: Any, image: Any, *, max_channels: int = 16, cmap: str = "viridis",
                        figsize: tuple[float, float] | None = None) -> Any:
    """Figure: one row per layer output for one image.

    The input and every layer whose output is 4-D (N, C, H, W) get a row of panels, one per
    channel (the first ``max_channels``); vector outputs (Dense, activations after it) get a
    bar chart.  Flatten only reshapes, so it has no row.  Each panel's label (``ax.get_label()``)
    is the layer name; each channel is drawn on its own colour scale.
    """
    if isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1:
        raise ValueError(f"max_channels must be a positive int; received {max_channels!r}")
    rows = _shown(model, feature_maps(model, image))
    cols = max(min(m.shape[0], max_channels) if m.ndim == 3 else 1 for _, m in rows)
    cols = max(cols, 4)
    if figsize is None:
        figsize = (1.1 * cols + 1.2, 1.2 * len(rows) + 0.4)
    fig = _new_figure(figsize)
    grid = fig.add_gridspec(len(rows), cols, left=0.1, right=0.98, bottom=0.03, top=0.95,
                            wspace=0.1, hspace=0.45)
    for r, (name, m) in enumerate(rows):
        if m.ndim == 3:
            for c in range(min(m.shape[0], max_channels)):
                ax = fig.add_subplot(grid[r, c])
                ax.imshow(m[c], cmap=cmap, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_label(name)
                if c == 0:
                    ax.set_ylabel(f"{name}\n{'x'.join(map(str, m.shape))}", fontsize=7)
        else:
            ax = fig.add_subplot(grid[r, :])
            ax.bar(numpy.arange(m.shape[0]), m, width=0.8, color="tab:blue")
            ax.set_xlim(-0.5, m.shape[0] - 0.5)
            ax.tick_params(labelsize=6)
            ax.set_label(name)
            ax.set_ylabel(f"{name}\n{m.shape[0]}", fontsize=7)
    fig.suptitle("feature maps", fontsize=9)
    return fig


def plot_feature_maps(model: Any, image: Any, path: str | Path, *, max_channels: int = 16,
                      cmap: str = "viridis", figsize: tuple[float, float] | None = None,
                      dpi: float = DEFAULT_DPI) -> Path:
    """Save what one image becomes after every layer (see :func:`feature_maps_figure`)."""
    fig = feature_maps_figure(model, image, max_channels=max_channels, cmap=cmap, figsize=figsize)
    return _save(fig, path, dpi)


# --- confusion matrix ---------------------------------------------------------------
def _labels(y: Any, what: str) -> numpy.ndarray:
    """Integer class labels (N,) from labels or from scores (N, K) (their arg-max)."""
    host = to_numpy(y)
    if host.ndim == 2:
        host = host.argmax(axis=1)
    if host.ndim != 1:
        raise ShapeError(f"{what} must be labels (N,) or scores (N, K); got shape {tuple(host.shape)}")
    if host.dtype.kind == "f" and host.size and not numpy.array_equal(host, numpy.round(host)):
        raise TypeError(f"{what} must hold integer class labels; got non-integer values of dtype {host.dtype}")
    if host.dtype.kind not in "iuf" and host.size:
        raise TypeError(f"{what} must hold integer class labels; got dtype {host.dtype}")
    return host.astype(numpy.int64)


def _num_classes(classes: int | Sequence[Any] | None, *labels: numpy.ndarray) -> int:
    if classes is None:
        return int(max(int(lab.max()) for lab in labels)) + 1
    if isinstance(classes, (int, numpy.integer)) and not isinstance(classes, bool):
        if classes < 1:
            raise ValueError(f"classes must be positive; received {classes}")
        return int(classes)
    return len(classes)


def confusion_matrix(y_true: Any, y_pred: Any, classes: int | Sequence[Any] | None = None) -> numpy.ndarray:
    """Counts (K, K), int64: ``m[i, j]`` = samples of true class i predicted as class j.

    ``y_pred`` may be labels (N,) or scores (N, K) (logits or probabilities: the arg-max is taken);
    either may be on any device.  ``classes`` is the number of classes, their names, or None
    (the largest label + 1).  The matrix sums to N and its trace counts the correct predictions.
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} samples but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("confusion_matrix got 0 samples")
    k = _num_classes(classes, t, p)
    for what, lab in (("y_true", t), ("y_pred", p)):
        bad = (lab < 0) | (lab >= k)
        if bad.any():
            first = int(numpy.argmax(bad))
            raise ValueError(f"{what} holds labels outside [0, {k}) ({int(bad.sum())} values; "
                             f"first {int(lab[first])} at index {first})")
    return numpy.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(numpy.int64)


def confusion_matrix_figure(matrix: numpy.ndarray, classes: Sequence[Any] | None = None, *,
                            normalize: bool = False, title: str | None = None,
                            figsize: tuple[float, float] | None = None) -> Any:
    """Figure of a (K, K) confusion matrix; ``normalize`` shows each row as fractions of its true class."""
    matrix = numpy.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ShapeError(f"a confusion matrix is square (K, K); got shape {matrix.shape}")
    k = matrix.shape[0]
    named = classes is not None and not isinstance(classes, (int, numpy.integer))
    names = [str(c) for c in classes] if named else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    shown = matrix / numpy.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    if figsize is None:
        side = max(3.5, 0.45 * k + 2)
        figsize = (side + 0.8, side)
    fig = _new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        top = float(shown.max()) or 1.0
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else str(int(matrix[i, j]))
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > top / 2 else "black")
    accuracy = numpy.trace(matrix) / max(int(matrix.sum()), 1)
    ax.set_title(title or f"confusion matrix (accuracy {accuracy:.2%}, N={int(matrix.sum()):,})", fontsize=9)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(y_true: Any, y_pred: Any, classes: int | Sequence[Any] | None, path: str | Path, *,
                          normalize: bool = False, title: str | None = None,
                          figsize: tuple[float, float] | None = None, dpi: float = DEFAULT_DPI) -> Path:
    """Save the confusion matrix of labels ``y_true`` and predictions ``y_pred`` (labels or scores)."""
    matrix = confusion_matrix(y_true, y_pred, classes)
    fig = confusion_matrix_figure(matrix, classes, normalize=normalize, title=title, figsize=figsize)
    return _save(fig, path, dpi)
