"""A tour of xpnet in one script: build, train, inspect, save, load and compare a CNN.

    python examples/tour.py                   # about half a minute on a laptop CPU
    python examples/tour.py --out pictures --device cuda
    python examples/tour.py --quick           # a few hundred images: a smoke test in seconds

It writes into --out (default ``tour-output``): history.png (training curves), filters_*.png
(the learned kernels of each Conv2d), feature_maps.png (one test digit after every layer),
confusion_matrix.png, and the trained model tour.xpnet; then it reloads the model, checks it
predicts the same, and runs ``xpnet.compare`` on it (CPU against GPU, or float32 against
float64).  Pictures need matplotlib (``pip install "xpnet[viz]"``); without it the tour runs
and skips them.

Data: ../shared/data/mnist next to the repository when it exists, else the built-in MNIST
subset; ``--data DIR`` reads another folder of MNIST IDX files.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy

import xpnet
from xpnet import layers, optim

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def build(seed: int = 0, device: str = "cpu") -> xpnet.Sequential:
    """Two 3x3 conv blocks and a small classifier: 28x28 -> 26 -> 13 -> 11 -> 5, then 400 -> 64 -> 10."""
    return xpnet.Sequential(
        layers.Conv2d(1, 8, 3), layers.ReLU(), layers.MaxPool2d(2),
        layers.Conv2d(8, 16, 3), layers.ReLU(), layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(16 * 5 * 5, 64), layers.ReLU(),
        layers.Dropout(0.1),
        layers.Linear(64, 10),  # logits: softmax is part of the loss
        seed=seed, device=device,
    )


def step(title: str) -> None:
    print(f"\n== {title}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tour-output", help="folder for the pictures and the model")
    parser.add_argument("--data", default=None, help="folder of MNIST IDX files")
    parser.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    parser.add_argument("--train", type=int, default=10000, help="training images to use (default 10000)")
    parser.add_argument("--test", type=int, default=1000, help="test images to use (default 1000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="300 training images, 200 test images, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs = 300, 200, 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict = {"pictures": []}

    step("1. Data")
    folder = args.data or (SHARED_MNIST if SHARED_MNIST.is_dir() else None)
    (x_train, y_train), (x_test, y_test) = xpnet.datasets.load_mnist(folder)
    x_train, y_train = x_train[:args.train], y_train[:args.train]
    x_test, y_test = x_test[:args.test], y_test[:args.test]
    print(f"{folder or 'built-in MNIST subset'}: x_train {x_train.shape} {x_train.dtype}, "
          f"y_train {y_train.shape}, x_test {x_test.shape}")

    step("2. Build")
    model = build(args.seed, args.device)
    model.summary(input_shape=(1, 28, 28))
    print(f"device: {model.device}")

    step("3. Train")
    model.compile(optimizer=optim.Adam(lr=2e-3), loss="cross_entropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, validation_split=0.1, verbose=2)
    test = model.evaluate(x_test, y_test)
    results["test"] = test
    print(f"test: loss {test['loss']:.4f}, accuracy {test['accuracy']:.2%} on {len(x_test)} images")

    step("4. Inspect")
    scores = model.predict(x_test)  # a host (numpy) array, whatever the device
    predicted = scores.argmax(axis=1)
    try:
        from xpnet import viz
        pictures = [viz.plot_history(history, out / "history.png", "tour: training curves")]
        convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2d)]
        pictures += [viz.plot_filters(conv, out / f"filters_{conv.name}.png") for conv in convs]
        pictures.append(viz.plot_feature_maps(model, x_test[0], out / "feature_maps.png"))
        pictures.append(viz.plot_confusion_matrix(y_test, scores, 10, out / "confusion_matrix.png"))
    except ImportError as exc:  # matplotlib is an optional extra
        print(f"skipping the pictures: {exc}")
        pictures = []
    matrix_note = ""
    if pictures:
        matrix = viz.confusion_matrix(y_test, scores, 10)
        off = matrix - numpy.diag(numpy.diag(matrix))
        true, guess = numpy.unravel_index(int(off.argmax()), off.shape)
        matrix_note = f"; most frequent mistake: {true} read as {guess} ({off[true, guess]} times)"
        for path in pictures:
            print(f"wrote {path}")
    results["pictures"] = [str(p) for p in pictures]
    print(f"first test digit: label {y_test[0]}, predicted {predicted[0]}{matrix_note}")

    step("5. Save, load, compare")
    path = out / "tour.xpnet"
    model.save(path)
    reloaded = xpnet.load(path, device="cpu")
    again = reloaded.predict(x_test)
    same_labels = float((again.argmax(axis=1) == predicted).mean())
    largest = float(numpy.abs(again - scores).max())
    identical = all(numpy.array_equal(xpnet.to_numpy(a.value), xpnet.to_numpy(b.value))
                    for a, b in zip(model.parameters(), reloaded.parameters()))
    print(f"saved {path} ({path.stat().st_size:,} bytes) and loaded it on {reloaded.device}")
    print(f"parameters identical: {identical}; predictions agree on {same_labels:.1%} of {len(x_test)} "
          f"test images; largest logit difference {largest:.2e}")
    results.update(same_labels=same_labels, largest_difference=largest, identical_parameters=identical)

    step("6. Compare two devices (or float32 against float64)")
    if hasattr(xpnet, "compare"):
        # Runs the saved model on two configurations from the same weights and batches: CPU
        # against GPU when one is usable, else float32 against a float64 reference on the CPU.
        report = xpnet.compare(str(path), steps=5 if args.quick else 20, train_images=min(640, len(x_train)),
                               test_images=min(200, len(x_test)),
                               data=((x_train, y_train), (x_test, y_test)))
        print(report)
        results["compare_passed"] = bool(report.passed)
    else:
        print("xpnet.compare is not available in this version; the reload check above compared "
              "the predictions instead")
    print(f"\ntour done in {time.perf_counter() - started:.1f} s; files in {out}/")
    return results


if __name__ == "__main__":
    main()
