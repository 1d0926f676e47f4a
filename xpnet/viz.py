"""Plots (needs matplotlib: ``pip install "xpnet[viz]"``). Rendered headless (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError('xpnet.viz needs matplotlib: pip install "xpnet[viz]"') from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_history(history: Any, path: str | Path, title: str = "Training") -> Path:
    """Loss (left) and accuracy (right) per epoch, training and validation; saved as a PNG."""
    plt = _pyplot()
    logs = history.history if hasattr(history, "history") else dict(history)
    epochs = range(1, len(logs.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if prefix + key in logs:
                ax.plot(epochs, logs[prefix + key], style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
