"""Datasets: the built-in MNIST subset, the IDX reader (gzip and raw) and its errors, the license credit."""

import gzip
import struct
from pathlib import Path

import numpy
import pytest

import xpnet
from tests.test_training import mnist
from xpnet.datasets import MNIST_FILES, load_mnist, read_idx

IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def idx_bytes(array, code=None):
    """The IDX encoding of ``array``: 0, 0, type code, ndim, big-endian sizes, big-endian data."""
    array = numpy.asarray(array)
    code = IDX_CODES[array.dtype.name] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=None):
    data = idx_bytes(array)
    compress = str(path).endswith(".gz") if compress is None else compress
    Path(path).write_bytes(gzip.compress(data) if compress else data)
    return Path(path)


def write_mnist(folder, x_train, y_train, x_test, y_test, compress=True):
    """The four MNIST files (N, 28, 28) uint8 images and uint8 labels, like the official ones."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for key, stem in MNIST_FILES.items():
        write_idx(folder / (stem + (".gz" if compress else "")), numpy.asarray(arrays[key]))
    return folder


# --- the built-in data ------------------------------------------------------------------------------
def test_builtin_mnist_shapes_dtypes_and_ranges():
    (x, y), (xt, yt) = mnist()
    assert x.shape == (22699, 1, 28, 28) and xt.shape == (5000, 1, 28, 28)
    assert x.dtype == xt.dtype == numpy.float32
    assert y.shape == (22699,) and yt.shape == (5000,) and y.dtype == yt.dtype == numpy.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0 and float(xt.max()) == 1.0
    assert set(numpy.unique(y).tolist()) == set(range(10)) == set(numpy.unique(yt).tolist())
    counts = numpy.bincount(y, minlength=10)
    assert counts.min() > 1500  # every class is well represented
    assert x.flags.writeable and x.flags.c_contiguous


def test_builtin_mnist_uint8_is_raw_and_float_is_scaled():
    (xr, yr), (xtr, ytr) = load_mnist(dtype="uint8")
    (x, y), _ = mnist()
    assert xr.dtype == numpy.uint8 and xr.shape == (22699, 1, 28, 28) and int(xr.max()) == 255
    numpy.testing.assert_array_equal(yr, y)
    numpy.testing.assert_allclose(x[:100], xr[:100] / 255.0, rtol=1e-6)
    (x64, _), _ = load_mnist(dtype="float64")
    assert x64.dtype == numpy.float64
    numpy.testing.assert_array_equal(x64[:100], xr[:100] / 255.0)


def test_the_package_ships_the_license_credit():
    readme = Path(xpnet.datasets.BUILTIN_MNIST) / "README.md"
    text = readme.read_text()
    assert "LeCun" in text and "Creative Commons Attribution-Share Alike 3.0" in text
    for stem in MNIST_FILES.values():
        assert (Path(xpnet.datasets.BUILTIN_MNIST) / f"{stem}.gz").is_file()


# --- read_idx ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5), (2, 1, 3, 2), (0, 4)])
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trips_every_type_and_rank(tmp_path, rng, dtype, shape, compress):
    info = numpy.iinfo(dtype) if numpy.dtype(dtype).kind in "iu" else None
    if info is not None:
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        array = rng.standard_normal(shape).astype(dtype) * 1e3
    path = write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), array, compress=compress)
    out = read_idx(path)
    assert out.dtype == numpy.dtype(dtype) and out.dtype.isnative and out.shape == shape
    numpy.testing.assert_array_equal(out, array)
    assert read_idx(str(path)).shape == shape  # str paths too


def test_read_idx_reads_big_endian_values(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + b"\x01\x02\xff\xfe")
    numpy.testing.assert_array_equal(read_idx(path), numpy.array([258, -2], numpy.int16))


def _good():
    return idx_bytes(numpy.arange(12, dtype=numpy.uint8).reshape(3, 4))


@pytest.mark.parametrize("data, match", [
    (b"", r"not an IDX file \(bad magic number empty\)"),
    (b"\x00\x00", r"not an IDX file"),
    (b"\x01\x00\x08\x01" + b"\x00" * 8, r"not an IDX file \(bad magic number 01000801\)"),
    (b"\x00\x01\x08\x01\x00\x00\x00\x01\x05", r"not an IDX file"),
    (b"PK\x03\x04rest of a zip", r"not an IDX file"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", r"unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x03\x00\x00", r"truncated IDX header \(10 bytes, expected 16\)"),
    (_good()[:-1], r"header says shape \(3, 4\) \(24 bytes in all\) but the file holds 23 bytes"),
    (_good()[:12], r"header says shape \(3, 4\).*holds 12 bytes"),
    (_good() + b"\x00", r"header says shape \(3, 4\) \(24 bytes in all\) but the file holds 25 bytes"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_bad_files_naming_the_file(tmp_path, data, match, compress):
    path = tmp_path / "bad-file.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("corrupt", [
    lambda gz: gz[: len(gz) // 2],                      # truncated stream
    lambda gz: gz[:-4],                                  # size trailer cut
    lambda gz: gz[:-8] + b"\x00" * 8,                    # wrong CRC and size
    lambda gz: gz[:10] + b"\xff" * 20 + gz[30:],         # garbage in the deflate stream
    lambda gz: gz[:2],                                   # only the gzip magic
], ids=["half", "no-size", "bad-crc", "garbage", "magic-only"])
def test_read_idx_reports_corrupt_gzip_as_value_error(tmp_path, corrupt):
    gz = gzip.compress(idx_bytes(numpy.arange(400, dtype=numpy.int32)))
    path = tmp_path / "broken.gz"
    path.write_bytes(corrupt(gz))
    with pytest.raises(ValueError, match=r"broken\.gz: corrupt or truncated gzip data"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"IDX file not found: .*nothing-here"):
        read_idx(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        read_idx(tmp_path)  # a folder is not a file


# --- load_mnist(folder) ----------------------------------------------------------------------------
@pytest.fixture
def subset():
    (x, y), (xt, yt) = load_mnist(dtype="uint8")
    return x[:30, 0], y[:30].astype(numpy.uint8), xt[:10, 0], yt[:10].astype(numpy.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_from_a_folder(tmp_path, subset, compress):
    folder = write_mnist(tmp_path / "mnist", *subset, compress=compress)
    (x, y), (xt, yt) = load_mnist(folder)
    (bx, by), (bxt, byt) = mnist()
    assert x.shape == (30, 1, 28, 28) and xt.shape == (10, 1, 28, 28) and x.dtype == numpy.float32
    numpy.testing.assert_array_equal(x, bx[:30])
    numpy.testing.assert_array_equal(y, by[:30])
    numpy.testing.assert_array_equal(xt, bxt[:10])
    assert y.dtype == yt.dtype == numpy.int64
    (xr, _), _ = load_mnist(str(folder), dtype="uint8")
    numpy.testing.assert_array_equal(xr[:, 0], subset[0])


@pytest.mark.parametrize("missing", list(MNIST_FILES.values()))
def test_load_mnist_folder_missing_a_file_lists_the_expected_names(tmp_path, subset, missing):
    folder = write_mnist(tmp_path / "mnist", *subset)
    (folder / f"{missing}.gz").unlink()
    with pytest.raises(FileNotFoundError, match=rf"missing {missing}\.gz \(or {missing}\)") as info:
        load_mnist(folder)
    for stem in MNIST_FILES.values():
        assert f"{stem}.gz" in str(info.value)


def test_load_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        load_mnist(tmp_path / "no-such-folder")


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_image_and_label_counts_must_match(tmp_path, subset, split):
    x, y, xt, yt = subset
    if split == "train":
        y = y[:29]
    else:
        xt = xt[:9]
    folder = write_mnist(tmp_path / "mnist", x, y, xt, yt)
    with pytest.raises(ValueError, match=rf"{split} images \(\d+, 28, 28\) and labels \(\d+,\) do not match"):
        load_mnist(folder)


def test_load_mnist_rejects_labels_with_images_swapped(tmp_path, subset):
    x, y, xt, yt = subset
    folder = write_mnist(tmp_path / "mnist", x, y, xt, yt)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
    with pytest.raises(ValueError, match="do not match"):
        load_mnist(folder)
