"""Datasets: an IDX (MNIST format) reader and the built-in MNIST subset.

Nothing here downloads: the built-in data ships inside the package (see
``xpnet/data/mnist/README.md`` for its source and license), and ``load_mnist(directory)``
reads the standard four IDX files from a folder you provide.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy

BUILTIN_MNIST = Path(__file__).parent / "data" / "mnist"
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
# IDX type codes -> big-endian numpy dtypes
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


MAX_IDX_BYTES = 1 << 30  # 1 GiB: full MNIST is 55 MB uncompressed; anything bigger is refused before reading


def _open(path: Path) -> tuple[BinaryIO, int]:
    """The file as a stream of its (decompressed) bytes, and its length: the file's size, or for
    gzip the uncompressed size that the gzip trailer records (modulo 2**32, RFC 1952)."""
    with path.open("rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            return path.open("rb"), path.stat().st_size
        try:
            raw.seek(-4, os.SEEK_END)
        except OSError:
            raise ValueError(f"{path}: corrupt or truncated gzip data (no trailer)") from None
        length = int.from_bytes(raw.read(4), "little")
    return gzip.open(path, "rb"), length


def _read(path: Path, stream: BinaryIO, n: int) -> bytes:
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a bad deflate stream is zlib.error
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def _read_header(path: Path, stream: BinaryIO) -> tuple[numpy.dtype, tuple[int, ...]]:
    """Magic number, type code and shape, read from the first 4 + 4 * ndim bytes."""
    head = _read(path, stream, 4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
    if head[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{head[2]:02x}")
    dims = _read(path, stream, 4 * head[3])
    if len(dims) < 4 * head[3]:
        raise ValueError(f"{path}: truncated IDX header ({4 + len(dims)} bytes, expected {4 + 4 * head[3]})")
    return numpy.dtype(IDX_DTYPES[head[2]]), tuple(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))


def read_idx(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> numpy.ndarray:
    """Read one IDX file (gzip-compressed or raw) into a native-endian numpy array.

    The header is read and checked first: magic number, type code, and the size its shape
    declares against ``max_bytes`` and against the length of the file (for gzip, the length
    its trailer records), so a forged or bomb-like file is refused before its data is
    decompressed.  Then exactly the declared bytes are read, and the data must end there.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    stream, length = _open(path)
    with stream:
        dtype, shape = _read_header(path, stream)
        header = 4 + 4 * len(shape)
        total = header + math.prod(shape) * dtype.itemsize
        if total > max_bytes:
            raise ValueError(f"{path}: header declares shape {shape} ({total:,} bytes), more than the "
                             f"{max_bytes:,} allowed (read_idx(max_bytes=...))")
        if total % 2**32 != length:
            gzipped = isinstance(stream, gzip.GzipFile)
            raise ValueError(f"{path}: {'corrupt or truncated gzip data, or a wrong header: ' if gzipped else ''}"
                             f"header says shape {shape} ({total} bytes in all) but the file holds {length} bytes"
                             f"{' (as its gzip trailer records)' if gzipped else ''}")
        data = _read(path, stream, total - header)
        if len(data) != total - header or _read(path, stream, 1):
            raise ValueError(f"{path}: corrupt or truncated gzip data: the data does not end where the header's "
                             f"shape {shape} says")
    return numpy.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


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
