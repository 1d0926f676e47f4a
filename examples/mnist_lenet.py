"""Train LeNet-5 on MNIST with xpnet's public API, evaluate it, save it and load it back.

    python examples/mnist_lenet.py                      # built-in MNIST subset, CPU or GPU (auto)
    python examples/mnist_lenet.py --data DIR --epochs 5 --device cuda
"""

from __future__ import annotations

import argparse
import math

import xpnet
from xpnet import callbacks, layers, optim


def build(seed: int, device: str) -> xpnet.Sequential:
    return xpnet.Sequential(
        layers.Conv2d(1, 6, kernel_size=5, padding=2), layers.ReLU(), layers.MaxPool2d(2),
        layers.Conv2d(6, 16, kernel_size=5), layers.ReLU(), layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(16 * 5 * 5, 120), layers.ReLU(),
        layers.Linear(120, 84), layers.ReLU(),
        layers.Linear(84, 10),
        seed=seed, device=device,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="folder with the four MNIST IDX files (default: built-in)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="lenet5.xpnet")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = xpnet.datasets.load_mnist(args.data)
    model = build(args.seed, args.device)
    model.summary(input_shape=(1, 28, 28))
    steps = args.epochs * math.ceil(len(x_train) / args.batch_size)
    model.compile(optimizer=optim.Adam(lr=optim.CosineDecay(args.lr, total_steps=steps)),
                  loss="cross_entropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(x_test, y_test),
                        callbacks=[callbacks.CSVLogger("lenet5-history.csv")])
    print("test:", model.evaluate(x_test, y_test))
    print("history:", {k: [round(v, 4) for v in vs] for k, vs in history.history.items() if "acc" in k})

    model.save(args.out)
    reloaded = xpnet.load(args.out, device="cpu")
    same = (reloaded.predict(x_test[:256]).argmax(1) == model.predict(x_test[:256]).argmax(1)).mean()
    print(f"saved {args.out}; the reloaded model agrees on {same:.0%} of 256 test predictions")


if __name__ == "__main__":
    main()
