"""Train the small ResNet of ``xpnet.models.resnet_mnist`` on MNIST and report test accuracy and speed.

    python examples/resnet_mnist.py                  # built-in MNIST subset, 8 epochs
    python examples/resnet_mnist.py --epochs 1       # a quick look
    python examples/resnet_mnist.py --model mobilenet

The model is a tree: residual blocks (``layers.Residual``) of ``layers.Sequential`` conv-bn pairs,
identity and strided 1x1-projection shortcuts, global average pooling.  Adam with a cosine
learning-rate decay and random 2-pixel shifts, as ``xpnet train`` does.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy

import xpnet
from xpnet import optim
from xpnet.augment import RandomShift
from xpnet.models import MODELS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-images", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--test-images", type=int, default=None, help="test on only the first N test images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    (x, y), (x_test, y_test) = xpnet.datasets.load_mnist()
    x, y = x[:args.train_images], y[:args.train_images]
    x_test, y_test = x_test[:args.test_images], y_test[:args.test_images]
    model = MODELS[args.model](seed=args.seed, device=args.device)
    steps = args.epochs * math.ceil(len(x) / args.batch_size)
    model.compile(optim.Adam(lr=optim.CosineDecay(args.lr, total_steps=steps)), "cross_entropy", ["accuracy"])
    print(f"{args.model}: {model.num_parameters():,} parameters, {len(model.state_dict())} state_dict entries; "
          f"{len(x):,} training images, device {model.device}")
    started = time.perf_counter()
    history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, augment=RandomShift(2), verbose=1)
    seconds = time.perf_counter() - started
    result = model.evaluate(x_test, y_test)
    speed = float(numpy.mean(history["images_per_s"]))
    print(f"test accuracy {result['accuracy']:.2%} on {len(x_test):,} images; {seconds:.0f} s, {speed:,.0f} images/s")
    return {"accuracy": result["accuracy"], "seconds": seconds, "images_per_s": speed}


if __name__ == "__main__":
    main()
