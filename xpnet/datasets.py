"""Datasets: an IDX (MNIST format) reader and the built-in MNIST subset.

Nothing here downloads: the built-in data ships inside the package (see
``xpnet/data/mnist/README.md`` for its source and license), and ``load_mnist(directory)``
reads the standard four IDX files from a folder you provide.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy

BUILTIN_MNIST = Path(__file__).parent / "data" / "mnist"
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
# IDX type codes -> big-endian numpy dtypes
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a bad deflate stream is zlib.error
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def read_idx(path: str | Path) -> numpy.ndarray:
    """Read one IDX file (gzip-compressed or raw) into a native-endian numpy array.

    Checks the magic number, the type code and that the data length matches the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, expected {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = numpy.dtype(IDX_DTYPES[code])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes in all) "
                         f"but the file holds {len(data)} bytes")
    return numpy.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: missing {stem}.gz (or {stem}); an MNIST folder holds "
                            f"{', '.join(f + '.gz' for f in MNIST_FILES.values())}")


def load_mnist(directory: str | Path | None = None, dtype: str = "float32"
               ) -> tuple[tuple[numpy.ndarray, numpy.ndarray], tuple[numpy.ndarray, numpy.ndarray]]:
    """((x_train, y_train), (x_test, y_test)) from MNIST IDX files; the built-in subset by default.

    Images come as (N, 1, 28, 28): float in [0, 1] for a float ``dtype``, raw 0..255 for
    "uint8".  Labels are int64.
    """
    folder = BUILTIN_MNIST if directory is None else Path(directory)
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
        if numpy.dtype(dtype).kind == "f":
            images = (images / 255.0).astype(dtype)
        arrays[f"x_{split}"] = images[:, None]  # (N, 28, 28) -> (N, 1, 28, 28)
        arrays[f"y_{split}"] = labels.astype(numpy.int64)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
