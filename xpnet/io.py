"""Model files: a zip holding ``config.json`` and one ``.npy`` member per array.

Safety rules (docs/reliability.md §E):
- no pickle anywhere: arrays are read with ``allow_pickle=False``; layer and optimizer
  classes are resolved only through xpnet's own registries, never imported by name;
- every member is read and checked (shape, dtype, SHA-256, size limits) before anything
  is handed back, so a bad file changes nothing;
- members are stored uncompressed, so the arrays of a file are never larger than the file;
  the layers a config declares are checked against the stored arrays before any weights are
  drawn (xpnet.training.load);
- writes are atomic: a temporary file in the same folder, fsync, then ``os.replace``; a save
  keeps the permission bits of the file it replaces, writes through a symbolic link to the
  real file, removes its temporary file on any error, and removes the temporary files that
  killed saves of the same target left behind.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy

from . import layers as _layers
from .errors import ModelFileError

FORMAT_NAME = "xpnet-model"
FORMAT_VERSION = 2  # 2: layer trees, arrays named by state_dict paths; 1: a flat list, "layer/param" names
MAX_DEPTH = 64  # nesting of containers in a model file
MAX_CONFIG_BYTES = 1 << 20
LAYER_REGISTRY: dict[str, type] = {name: getattr(_layers, name) for name in _layers.__all__ if name != "Layer"}
ALLOWED_DTYPES = ("float32", "float64", "int64")  # int64: BatchNorm's num_batches_tracked
# what zipfile/zlib raise on damaged archives (bad headers, CRCs, flags, methods, sizes)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
               RuntimeError, zlib.error, struct.error)


def array_digest(array: numpy.ndarray) -> str:
    """SHA-256 of an array's C-order bytes."""
    return hashlib.sha256(numpy.ascontiguousarray(array).tobytes()).hexdigest()


def describe(arrays: dict[str, numpy.ndarray]) -> dict[str, dict[str, Any]]:
    """Shape, dtype and digest of each array, for config.json."""
    return {name: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": array_digest(a)}
            for name, a in arrays.items()}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: str | Path) -> Path:
    """The real file that a save to ``path`` would write (symbolic links followed), or an OSError
    naming ``path`` when it cannot be written: a missing or read-only folder, or a folder given as
    the file.  Call it before long work whose result goes to ``path``."""
    real = Path(os.path.realpath(path))
    if real.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of a file to write")
    if not real.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {real.parent} does not exist")
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: the folder {real.parent} is not writable")
    return real


def _tmp_name(target: Path) -> str:
    """A temporary file beside ``target`` that names the process writing it (for the clean-up)."""
    return f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.xpnet-tmp"


def _remove_stale_tmps(target: Path) -> None:
    """Remove temporary files of earlier saves of ``target`` whose process is gone (killed saves)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)-[0-9a-f]{{8}}\.xpnet-tmp")
    for entry in target.parent.glob(f".{glob.escape(target.name)}.*.xpnet-tmp"):
        match = pattern.fullmatch(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            entry.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` so readers see the old file or the new one, never a torn one.

    A symbolic link is followed (the real file is replaced, the link stays); an existing file's
    permission bits are kept; errors name ``path``, never the temporary file.
    """
    target = check_writable(path)
    tmp = target.parent / _tmp_name(target)
    # os.open with 0o666 (not tempfile.mkstemp, whose 0o600 would survive the rename): a new
    # file gets the permissions the umask gives any new file, like numpy.save or open(path, "wb").
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    _remove_stale_tmps(target)


def write_array(member: BinaryIO, array: numpy.ndarray) -> None:
    """One .npy member (no pickle)."""
    numpy.lib.format.write_array(member, numpy.require(array, requirements="C"), allow_pickle=False)  # 0-d stays 0-d


def save_archive(path: str | Path, config: dict[str, Any], arrays: dict[str, numpy.ndarray]) -> None:
    """Write config.json plus ``arrays/<name>.npy`` members atomically."""
    config = {**config, "arrays": describe(arrays)}

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("config.json", json.dumps(config, indent=1))
            for name, array in arrays.items():
                with zf.open(f"arrays/{name}.npy", "w", force_zip64=True) as member:
                    write_array(member, array)
    atomic_write(path, write)


def _fail(path: Path, cause: str) -> ModelFileError:
    return ModelFileError(f"{path}: {cause}")


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if not path.is_file():
        raise _fail(path, "not a regular file (a model file is a single .xpnet file)")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise _fail(path, "not an xpnet model file (not a zip archive: truncated, corrupt or another format)") from None
    except _ZIP_ERRORS as exc:
        raise _fail(path, f"cannot be read as a zip archive ({exc})") from None


def _read_member(path: Path, zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _fail(path, f"missing member {name!r}") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise _fail(path, f"member {name!r} is compressed; xpnet model files store their members uncompressed")
    if info.file_size > limit or info.file_size > info.compress_size:
        raise _fail(path, f"member {name!r} declares {info.file_size} bytes, which is too large")
    try:
        return zf.read(name)
    except _ZIP_ERRORS as exc:
        raise _fail(path, f"member {name!r} is corrupt ({exc})") from None


def _read_config(path: Path, zf: zipfile.ZipFile) -> dict[str, Any]:
    raw = _read_member(path, zf, "config.json", MAX_CONFIG_BYTES)
    try:
        config = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, an integer of over 4300 digits
        raise _fail(path, f"config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise _fail(path, f"config.json does not describe an {FORMAT_NAME} file")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise _fail(path, f"written by xpnet format {version}; this xpnet reads format <= {FORMAT_VERSION}")
    if not isinstance(config.get("arrays"), dict) or not isinstance(config.get("layers"), list):
        raise _fail(path, "config.json lacks its 'layers' list or 'arrays' table")
    for entry in config["layers"]:  # every class is checked, also by load_weights, which builds none
        _check_layer_entry(path, entry)
    return config


def _check_layer_entry(path: Path, entry: Any, depth: int = 0) -> None:
    """A layer entry (and, for a container, its children's, to MAX_DEPTH) names a known class."""
    if depth > MAX_DEPTH:
        raise _fail(path, f"layers nested deeper than {MAX_DEPTH} levels")
    children = entry.get("children", []) if isinstance(entry, dict) else None
    if (not isinstance(entry, dict) or not isinstance(entry.get("config", {}), dict)
            or not isinstance(entry.get("name"), (str, type(None))) or not isinstance(children, list)
            or not all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in children)):
        raise _fail(path, f"invalid layer entry {str(entry)[:200]}")
    name = entry.get("class")
    if not isinstance(name, str) or name not in LAYER_REGISTRY:
        raise _fail(path, f"unknown layer class {name!r}; known: {', '.join(sorted(LAYER_REGISTRY))}")
    for _, child in children:
        _check_layer_entry(path, child, depth + 1)


def _read_array(path: Path, zf: zipfile.ZipFile, name: str, spec: Any) -> numpy.ndarray:
    if (not isinstance(spec, dict) or spec.get("dtype") not in ALLOWED_DTYPES or not isinstance(spec.get("shape"), list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in spec["shape"])):
        raise _fail(path, f"array {name!r} has an invalid description in config.json: {spec!r}")
    shape = tuple(spec["shape"])
    expected_bytes = math.prod(shape) * numpy.dtype(spec["dtype"]).itemsize  # Python ints: no overflow
    raw = _read_member(path, zf, f"arrays/{name}.npy", expected_bytes + 4096)
    try:
        array = numpy.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise _fail(path, f"array {name!r} cannot be read safely ({exc})") from None
    if array.dtype.hasobject or str(array.dtype) != spec["dtype"] or array.shape != shape:
        raise _fail(path, f"truncated or corrupt: array {name!r} expected {spec['dtype']} {shape}, "
                          f"file holds {array.dtype} {array.shape}")
    if array_digest(array) != spec.get("sha256"):
        raise _fail(path, f"array {name!r} does not match its SHA-256 checksum (corrupt file)")
    return array


def read_archive(path: str | Path) -> tuple[dict[str, Any], dict[str, numpy.ndarray]]:
    """Read and validate a whole model file: (config, arrays). Raises ModelFileError on any problem."""
    path = Path(path)
    with _open_zip(path) as zf:
        config = _read_config(path, zf)
        expected = {"config.json"} | {f"arrays/{name}.npy" for name in config["arrays"]}
        present = set(zf.namelist())
        if present != expected:
            extra, missing = sorted(present - expected), sorted(expected - present)
            raise _fail(path, f"unexpected members {extra} / missing members {missing}")
        arrays = {name: _read_array(path, zf, name, spec) for name, spec in config["arrays"].items()}
    return config, arrays


def layer_entry(layer: Any) -> dict[str, Any]:
    """A layer (and its subtree) as plain data: class, name, config and, for a container, children."""
    entry = {"class": type(layer).__name__, "name": layer.name, "config": layer.config()}
    if layer.children():
        entry["children"] = [[name, layer_entry(child)] for name, child in layer.children()]
    return entry


def layer_from_config(path: Path, entry: Any) -> Any:
    """Build a layer (and its subtree) from its entry; every class must be one of xpnet's own layers."""
    _check_layer_entry(path, entry)
    cls = LAYER_REGISTRY[entry["class"]]
    children = [(name, layer_from_config(path, child)) for name, child in entry.get("children", [])]
    try:
        if children or hasattr(cls, "from_children"):
            return cls.from_children(children, name=entry.get("name"), **entry.get("config", {}))
        return cls(**entry.get("config", {}), name=entry.get("name"))
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        raise _fail(path, f"invalid config for layer {entry.get('name')!r} ({exc})") from None
