"""Train LeNet-5 from images on disk that are never loaded whole: a memory-mapped ``.npy`` file.

    python examples/train_from_memmap.py                 # writes the built-in MNIST subset to a
                                                         # memory-mapped file, trains from it
    python examples/train_from_memmap.py --images big.npy --labels big-labels.npy

``fit``, ``evaluate`` and ``predict`` take any indexable of samples with ``len()``. That can be
a ``numpy.memmap`` (``numpy.load(path, mmap_mode="r")``), an h5py dataset, or an object of your
own whose ``x[i]`` returns one sample. They read one batch at a time, so the data may be far larger
than memory. Labels are small and are read into memory. Here the uint8 images stay in a memmap.
A ten-line class around it (``ScaledImages``) scales each batch to float32 in [0, 1] as it is
read, taking the index array ``fit`` asks for in one call. With ``--dataset-object``, a class
that returns one sample at a time (``ImageFile``) is used instead. That is the whole protocol
for data that lives anywhere.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy

import xpnet
from xpnet import models, optim


class ImageFile:
    """The smallest dataset object: ``len()`` and ``[i]`` -> one (1, 28, 28) float32 sample in [0, 1]."""

    def __init__(self, images: numpy.ndarray) -> None:
        self.images = images  # (N, 1, 28, 28) uint8, e.g. a memmap

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> numpy.ndarray:
        return self.images[i].astype(numpy.float32) / 255  # one sample, scaled on the fly


class ScaledImages(ImageFile):
    """The same, also taking an index array: ``x[index]`` reads a whole batch of rows in one call."""

    def __getitem__(self, index: int | numpy.ndarray) -> numpy.ndarray:
        return numpy.asarray(self.images[index], dtype=numpy.float32) / 255  # one sample or a batch


def write_builtin(folder: Path) -> tuple[Path, Path]:
    """The built-in training images as a (N, 1, 28, 28) uint8 .npy file, written in chunks, plus labels."""
    (x, y), _ = xpnet.datasets.load_mnist(dtype="uint8")
    images = numpy.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=numpy.uint8, shape=x.shape)
    for start in range(0, len(x), 4096):
        images[start:start + 4096] = x[start:start + 4096]
    images.flush()
    numpy.save(folder / "labels.npy", y)
    return folder / "images.npy", folder / "labels.npy"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=None, help="(N, 1, 28, 28) uint8 .npy (default: built-in)")
    parser.add_argument("--labels", type=Path, default=None, help="(N,) integer .npy")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--dataset-object", action="store_true", help="read through the ImageFile class")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = (args.images, args.labels) if args.images else write_builtin(Path(tmp))
        on_disk = numpy.load(images, mmap_mode="r")[:args.limit]  # a numpy.memmap: nothing read yet
        y = numpy.load(labels)[:args.limit]
        x = ImageFile(on_disk) if args.dataset_object else ScaledImages(on_disk)
        model = models.lenet5(seed=0).compile(optim.Adam(lr=2e-3), "cross_entropy", ["accuracy"])
        started = time.perf_counter()
        history = model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=2)
        seconds = time.perf_counter() - started
        (_, _), (x_test, y_test) = xpnet.datasets.load_mnist()
        result = model.evaluate(x_test, y_test)
        del x, on_disk  # close the file before the folder goes
    print(f"trained on {len(y):,} images read from disk by batch; test accuracy {result['accuracy']:.2%}; "
          f"{seconds:.1f} s")
    return {"history": history.history, "test": result}


if __name__ == "__main__":
    main()
