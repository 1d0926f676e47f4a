"""The four MNIST architectures of the classic from-scratch CNN tutorials, trained with xpnet.

The tutorials build these Keras-like networks in pure Python, train them one image at a time
and report about 10,528 s for one epoch of 10,000 images (two conv layers) and 63% to 83%
validation accuracy after many epochs.  Here each one trains on whole batches (im2col + GEMM),
and the script prints a markdown table: parameters, seconds per epoch, test accuracy and the
speedup per image over the tutorials' figure.

    python examples/tutorial_models.py                    # all four, 3 epochs each
    python examples/tutorial_models.py --models 2,4 --epochs 5 --device cuda
    python examples/tutorial_models.py --limit 500        # a quick check on 500 images

Data: ../shared/data/mnist next to the repository when it exists (22,699 training and 5,000
test images), else the built-in subset (``xpnet.datasets.load_mnist()``); ``--data DIR`` picks
another folder of MNIST IDX files.

All four end in logits (no softmax layer) trained with softmax cross-entropy, and use 3x3
kernels without padding ("valid"), ReLU after every convolution, and Adam.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy

import xpnet
from xpnet import callbacks, layers, optim

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

# The tutorials' published figures (one image at a time, pure Python).
TUTORIAL_SECONDS, TUTORIAL_IMAGES = 10_528, 10_000   # one epoch, two conv layers
TUTORIAL_SECONDS_PER_IMAGE = TUTORIAL_SECONDS / TUTORIAL_IMAGES
TUTORIAL_ACCURACY = "63-83% (val, many epochs)"


def model_1(seed: int = 0, device: str = "cpu") -> xpnet.Sequential:
    """Conv2d(8, 3x3) relu -> Flatten -> Dense 10."""
    return xpnet.Sequential(
        layers.Conv2d(1, 8, 3), layers.ReLU(),
        layers.Flatten(),
        layers.Linear(8 * 26 * 26, 10),
        seed=seed, device=device,
    )


def model_2(seed: int = 0, device: str = "cpu") -> xpnet.Sequential:
    """Conv2d(8, 3x3) relu -> Conv2d(16, 3x3) relu -> Flatten -> Dense 10."""
    return xpnet.Sequential(
        layers.Conv2d(1, 8, 3), layers.ReLU(),
        layers.Conv2d(8, 16, 3), layers.ReLU(),
        layers.Flatten(),
        layers.Linear(16 * 24 * 24, 10),
        seed=seed, device=device,
    )


def model_3(seed: int = 0, device: str = "cpu") -> xpnet.Sequential:
    """Conv2d(4) relu -> MaxPool 2 -> Conv2d(8) relu -> Dropout 0.2 -> Flatten -> Dense 10."""
    return xpnet.Sequential(
        layers.Conv2d(1, 4, 3), layers.ReLU(),
        layers.MaxPool2d(2),
        layers.Conv2d(4, 8, 3), layers.ReLU(),
        layers.Dropout(0.2),
        layers.Flatten(),
        layers.Linear(8 * 11 * 11, 10),
        seed=seed, device=device,
    )


def model_4(seed: int = 0, device: str = "cpu") -> xpnet.Sequential:
    """Conv2d(4) relu -> Conv2d(8) relu -> MaxPool 2 -> Flatten -> Dense 64 relu -> Dropout 0.1 -> Dense 10."""
    return xpnet.Sequential(
        layers.Conv2d(1, 4, 3), layers.ReLU(),
        layers.Conv2d(4, 8, 3), layers.ReLU(),
        layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(8 * 12 * 12, 64), layers.ReLU(),
        layers.Dropout(0.1),
        layers.Linear(64, 10),
        seed=seed, device=device,
    )


MODELS: dict[int, Callable[..., xpnet.Sequential]] = {1: model_1, 2: model_2, 3: model_3, 4: model_4}
SHORT_NAMES = {
    1: "conv8 -> dense10",
    2: "conv8 -> conv16 -> dense10",
    3: "conv4 -> maxpool -> conv8 -> dropout -> dense10",
    4: "conv4 -> conv8 -> maxpool -> dense64 -> dropout -> dense10",
}


def load_data(directory: str | Path | None = None, limit: int | None = None):
    """((x_train, y_train), (x_test, y_test)) and where they came from; the first ``limit`` of each."""
    if directory is None and SHARED_MNIST.is_dir():
        directory = SHARED_MNIST
    (x_train, y_train), (x_test, y_test) = xpnet.datasets.load_mnist(directory)
    if limit is not None:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    source = str(directory) if directory is not None else "built-in subset"
    return ((x_train, y_train), (x_test, y_test)), source


class EpochTimer(callbacks.Callback):
    """Wall-clock seconds of every training epoch (the host syncs at the epoch end, so GPU work is counted)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def run_one(number: int, data, epochs: int, batch_size: int, lr: float, device: str, seed: int,
            verbose: int = 0) -> dict:
    """Train architecture ``number``; its parameters, seconds per epoch and test accuracy."""
    (x_train, y_train), (x_test, y_test) = data
    model = MODELS[number](seed=seed, device=device)
    model.compile(optimizer=optim.Adam(lr=lr), loss="cross_entropy", metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, callbacks=[timer], verbose=verbose)
    test = model.evaluate(x_test, y_test)
    return {
        "model": number, "name": SHORT_NAMES[number], "parameters": model.num_parameters(),
        "epoch_seconds": timer.seconds, "seconds_per_epoch": float(numpy.mean(timer.seconds)),
        "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "train_images": len(x_train), "test_images": len(x_test), "device": str(model.device),
    }


def markdown_table(results: list[dict]) -> str:
    """The results next to the tutorials' figures; speedup per image = tutorial s/image over ours."""
    n_train, n_test = results[0]["train_images"], results[0]["test_images"]
    tutorial_epoch = TUTORIAL_SECONDS_PER_IMAGE * n_train
    header = (f"| model | layers | parameters | s/epoch ({n_train:,} train images) "
              f"| test accuracy ({n_test:,} images) | tutorial s/epoch (scaled to {n_train:,}) "
              f"| speedup per epoch | tutorial accuracy |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        speedup = tutorial_epoch / r["seconds_per_epoch"]
        lines.append(f"| {r['model']} | {r['name']} | {r['parameters']:,} | {r['seconds_per_epoch']:.2f} "
                     f"| {100 * r['test_accuracy']:.2f}% | {tutorial_epoch:,.0f} | {speedup:,.0f}x "
                     f"| {TUTORIAL_ACCURACY} |")
    return "\n".join(lines)


def parse_models(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--models takes numbers 1-4 separated by commas, got {text!r}") from None
    if not numbers or any(n not in MODELS for n in numbers):
        raise argparse.ArgumentTypeError(f"--models takes numbers 1-4 separated by commas, got {text!r}")
    return numbers


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help=f"folder of MNIST IDX files (default: {SHARED_MNIST} "
                                                     "if present, else the built-in subset)")
    parser.add_argument("--models", type=parse_models, default=[1, 2, 3, 4], help="e.g. 1,3 (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test images")
    parser.add_argument("--verbose", type=int, default=0, help="fit's verbosity (0: quiet)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--epochs and --limit must be positive")

    data, source = load_data(args.data, args.limit)
    (x_train, _), (x_test, _) = data
    print(f"data: {source} ({len(x_train):,} train, {len(x_test):,} test images); "
          f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr}, device {args.device}")
    results = []
    for number in args.models:
        result = run_one(number, data, args.epochs, args.batch_size, args.lr, args.device, args.seed, args.verbose)
        per_epoch = ", ".join(f"{s:.2f}" for s in result["epoch_seconds"])
        print(f"model {number} ({result['name']}) on {result['device']}: {result['parameters']:,} parameters, "
              f"epochs took {per_epoch} s, test accuracy {100 * result['test_accuracy']:.2f}%", flush=True)
        results.append(result)
    print()
    print(markdown_table(results))
    print(f"\nTutorial figures: {TUTORIAL_SECONDS:,} s for one epoch of {TUTORIAL_IMAGES:,} images "
          f"({TUTORIAL_SECONDS_PER_IMAGE:.3f} s/image, scaled to the training set above); "
          f"accuracy {TUTORIAL_ACCURACY}.")
    return results


if __name__ == "__main__":
    main()
