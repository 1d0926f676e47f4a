"""Progress display for fit/evaluate: a tqdm bar when tqdm is installed, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

try:
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # tqdm is optional
    _tqdm = None


def format_logs(logs: dict[str, float]) -> str:
    """'loss 0.1234 · accuracy 0.9700 · 1,234 img/s'."""
    parts = []
    for key, value in logs.items():
        if key == "images_per_s":
            parts.append(f"{value:,.0f} img/s")
        elif key == "lr":
            parts.append(f"lr {value:.3g}")
        else:
            parts.append(f"{key} {value:.4f}")
    return " · ".join(parts)


class Progress:
    """One epoch's display. verbose 0: silent; 1: live bar; 2: one line at the end."""

    def __init__(self, total: int, description: str, verbose: int, stream: Any = None) -> None:
        self.verbose, self.description = verbose, description
        self.stream = stream or sys.stdout
        self.bar = None
        if verbose == 1 and _tqdm is not None:
            self.bar = _tqdm(total=total, desc=description, unit="batch", leave=True,
                             file=self.stream, dynamic_ncols=True)

    def update(self, batches: int, logs: dict[str, float]) -> None:
        """Advance by ``batches`` and show the running values."""
        if self.bar is not None:
            self.bar.set_postfix_str(format_logs(logs), refresh=False)
            self.bar.update(batches)

    def close(self, logs: dict[str, float]) -> None:
        """Show the final values of the epoch (the same numbers History records)."""
        if self.bar is not None:
            self.bar.set_postfix_str(format_logs(logs), refresh=False)
            self.bar.close()
        elif self.verbose:
            print(f"{self.description}: {format_logs(logs)}", file=self.stream, flush=True)
