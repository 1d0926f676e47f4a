"""Model files (docs/reliability.md §E): round trips, checkpoints, canaries, corruption, atomic saves.

Every rejected file must raise ModelFileError naming the path and the cause, run no code,
and leave a model it was loaded into (``load_weights``) bit-identical.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pathlib
import pickle
import re
import zipfile
from pathlib import Path

import numpy
import pytest

import xpnet
from tests.strict_backend import STRICT_DEVICE
from xpnet import layers as L
from xpnet import optim
from xpnet.io import FORMAT_VERSION, read_archive

SOURCES = Path(xpnet.__file__).parent


# --- fixtures and helpers -----------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    """64 real MNIST images and labels (the built-in subset)."""
    (x, y), _ = xpnet.datasets.load_mnist()
    return x[:64], y[:64]


def conv_model(device="cpu", seed=3, dtype=numpy.float32, classes=10, extra=()):
    """A small CNN with a parameter of every kind: conv, batch-norm (with buffers), dropout, linear."""
    return xpnet.Sequential(
        L.Conv2d(1, 4, 3), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2), L.Flatten(), L.Dropout(0.25),
        L.Linear(4 * 13 * 13, classes), *extra, seed=seed, device=device, dtype=dtype)


def host_vars(model):
    """{name: host copy} of every parameter and buffer."""
    return {name: xpnet.to_numpy(v.value).copy() for name, v in model.variables()}


def assert_same_vars(actual, expected):
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name].dtype == expected[name].dtype, name
        numpy.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def assert_resumed_matches(device, resumed, straight, h_resumed, h_straight, keys):
    """Bitwise on numpy and the strict backend (resuming promises the uninterrupted run's computation,
    batch for batch); close on a GPU, where reductions may reorder sums."""
    if device.type != "cuda":
        for key in keys:
            assert h_resumed.history[key] == h_straight.history[key][1:], key
        assert_same_vars(host_vars(resumed), host_vars(straight))
        return
    for key in keys:
        numpy.testing.assert_allclose(h_resumed.history[key], h_straight.history[key][1:], rtol=1e-5, err_msg=key)
    for name, expected in host_vars(straight).items():
        numpy.testing.assert_allclose(host_vars(resumed)[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)


def assert_rejected(path, victim, *patterns):
    """xpnet.load and victim.load_weights both raise ModelFileError naming ``path`` and every pattern;
    the victim model is left bit-identical."""
    before = host_vars(victim)
    for load in (lambda: xpnet.load(path), lambda: victim.load_weights(path)):
        with pytest.raises(xpnet.ModelFileError) as info:
            load()
        message = str(info.value)
        assert str(path) in message
        assert "not found" not in message  # the file exists (the Keras pitfall)
        for pattern in patterns:
            assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert_same_vars(host_vars(victim), before)


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    numpy.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def spec_of(array):
    return {"shape": list(array.shape), "dtype": str(array.dtype),
            "sha256": hashlib.sha256(numpy.ascontiguousarray(array).tobytes()).hexdigest()}


def rewrite(src, dst, edit_config=None, replace=None, drop=(), add=None, compression=zipfile.ZIP_STORED):
    """Copy the model zip ``src`` to ``dst`` with changes: ``edit_config(config)`` edits config.json
    in place, ``replace``/``add`` map member names to bytes, ``drop`` lists members to leave out."""
    with zipfile.ZipFile(src) as zin:
        members = {name: zin.read(name) for name in zin.namelist()}
    if edit_config is not None:
        config = json.loads(members["config.json"])
        edit_config(config)
        members["config.json"] = json.dumps(config).encode()
    members.update(replace or {})
    members.update(add or {})
    with zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for name, raw in members.items():
            if name not in drop:
                zout.writestr(name, raw)
    return dst


class Touch:
    """Unpickling this creates ``path`` (a live canary: the test checks it does with pickle itself)."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.fixture
def saved(tmp_path):
    """(path, model): a weights-only file of a trained-looking conv model, and the model."""
    model = conv_model(seed=11)
    model.layers[1].running_mean.value[...] = numpy.arange(4, dtype=numpy.float32)  # non-trivial buffers
    path = tmp_path / "model.xpnet"
    model.save(path)
    return path, model


@pytest.fixture
def victim():
    """A model of the same architecture with other weights: a wrongly accepted file would change it."""
    return conv_model(seed=99)


# --- 1. round trips -----------------------------------------------------------------
def test_round_trip_is_bit_identical_on_every_backend(device, data, tmp_path):
    x, y = data
    model = conv_model(device).compile(optim.Adam(lr=1e-3), "cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # trained weights and batch-norm statistics
    expected = host_vars(model)
    assert numpy.abs(expected["1.running_mean"]).max() > 0
    path = tmp_path / "model.xpnet"
    model.save(path)

    loaded = xpnet.load(path, device=device)
    assert loaded.device == device
    for name, v in loaded.variables():
        assert xpnet.device_of(v.value) == device, name
        assert xpnet.device_of(v.grad) == device, name
    assert_same_vars(host_vars(loaded), expected)
    # bit-exact: a round trip gives the same weights, so predict repeats the same ops on the same shapes
    numpy.testing.assert_array_equal(loaded.predict(x[:24]), model.predict(x[:24]))

    fresh = conv_model(device, seed=99)
    assert not numpy.array_equal(host_vars(fresh)["0.weight"], expected["0.weight"])
    assert fresh.load_weights(path) is fresh
    assert_same_vars(host_vars(fresh), expected)
    assert all(xpnet.device_of(v.value) == device for _, v in fresh.variables())
    numpy.testing.assert_array_equal(fresh.predict(x[:24]), model.predict(x[:24]))


def test_float64_model_round_trips_as_float64(device, data, tmp_path):
    x, y = data
    model = conv_model(device, dtype=numpy.float64).compile("sgd", "cross_entropy")
    model.fit(x[:32], y[:32], epochs=1, batch_size=16, verbose=0)
    expected = host_vars(model)
    assert all(a.dtype == numpy.float64 for name, a in expected.items() if not name.endswith("num_batches_tracked"))
    assert expected["1.num_batches_tracked"].dtype == numpy.int64  # a counter stays an int (torch's too)
    path = tmp_path / "model64.xpnet"
    model.save(path)
    config, arrays = read_archive(path)
    assert config["dtype"] == "float64"
    assert {spec["dtype"] for spec in config["arrays"].values()} == {"float64", "int64"}
    loaded = xpnet.load(path, device=device)
    assert loaded.dtype == numpy.float64
    assert_same_vars(host_vars(loaded), expected)
    numpy.testing.assert_array_equal(loaded.predict(x[:8]), model.predict(x[:8]))  # round trip, same shapes


def test_model_trained_on_strict_backend_loads_on_numpy(data, tmp_path):
    x, y = data
    model = conv_model(STRICT_DEVICE).compile(optim.Adam(lr=1e-3), "cross_entropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "strict.xpnet"
    model.save(path)
    on_cpu = xpnet.load(path, device="cpu")
    assert on_cpu.device == xpnet.get_device("cpu")
    assert all(type(v.value) is numpy.ndarray for _, v in on_cpu.variables())
    assert_same_vars(host_vars(on_cpu), host_vars(model))
    # bit-exact: numpy vs the strict backend, which calls numpy with the same shapes
    numpy.testing.assert_array_equal(on_cpu.predict(x[:16]), model.predict(x[:16]))
    # and back: numpy -> file -> strict
    back_path = tmp_path / "back.xpnet"
    on_cpu.save(back_path)
    back = xpnet.load(back_path, device=STRICT_DEVICE)
    assert back.device == STRICT_DEVICE
    assert_same_vars(host_vars(back), host_vars(model))


@pytest.mark.skipif(xpnet.gpu_available(), reason="tests the CPU fallback of a machine without a GPU")
def test_load_on_unavailable_cuda_falls_back_to_cpu_with_a_warning(saved):
    path, model = saved
    with pytest.warns(RuntimeWarning, match="using the CPU"):
        loaded = xpnet.load(path, device="cuda")
    assert loaded.device == xpnet.get_device("cpu")
    assert_same_vars(host_vars(loaded), host_vars(model))


def test_config_json_describes_the_model(saved):
    path, model = saved
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        config = json.loads(zf.read("config.json"))
        members = {n: numpy.load(io.BytesIO(zf.read(n)), allow_pickle=False) for n in names if n != "config.json"}
    assert names[0] == "config.json"
    assert config["format"] == "xpnet-model"
    assert config["format_version"] == FORMAT_VERSION and type(config["format_version"]) is int
    assert config["xpnet_version"] == xpnet.__version__
    assert config["dtype"] == "float32"
    assert [layer["class"] for layer in config["layers"]] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Dropout", "Linear"]
    assert config["layers"][0]["config"]["out_channels"] == 4
    assert config["layers"][5]["config"]["p"] == 0.25
    assert config["layers"][6]["config"]["in_features"] == 676
    expected = host_vars(model)
    assert set(members) == {f"arrays/{name}.npy" for name in expected}
    assert list(config["arrays"]) == list(expected)
    for name, array in expected.items():
        spec = config["arrays"][name]
        assert spec["shape"] == list(array.shape) and spec["dtype"] == str(array.dtype)
        assert spec["dtype"] == ("int64" if name == "1.num_batches_tracked" else "float32")
        assert spec["sha256"] == hashlib.sha256(array.tobytes()).hexdigest()
        numpy.testing.assert_array_equal(members[f"arrays/{name}.npy"], array)
    assert "training" not in config  # not compiled: nothing to resume


def test_saved_file_gets_the_usual_permissions(saved):
    path, _ = saved
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not 0o600 from a temp-file helper


# --- 2. checkpoints -----------------------------------------------------------------
def _fit(model, data, epochs, split):
    x, y = data
    return model.fit(x, y, epochs=epochs, initial_epoch=model.epoch, batch_size=16, validation_split=split,
                     verbose=0)


@pytest.mark.parametrize("split", [0.0, 0.25])
def test_resumed_training_equals_uninterrupted(device, data, tmp_path, split):
    def fresh():
        return conv_model(device).compile(optim.Adam(lr=2e-3), "cross_entropy", ["accuracy"])

    straight = fresh()
    h_straight = _fit(straight, data, 2, split)
    first = fresh()
    _fit(first, data, 1, split)
    path = tmp_path / "ckpt.xpnet"
    first.save(path, include_optimizer=True)

    resumed = xpnet.load(path, device=device)
    assert resumed.epoch == 1 and resumed.optimizer.iterations == first.optimizer.iterations
    assert all(xpnet.device_of(a) == device for s in resumed.optimizer.state for a in s.values())
    h_resumed = _fit(resumed, data, 2, split)
    assert h_resumed.epoch == [1]
    keys = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if split else [])
    assert_resumed_matches(device, resumed, straight, h_resumed, h_straight, keys)

    # control: the same weights without the optimizer and generator state train differently
    control = fresh()
    control.load_weights(path)
    control.epoch = 1
    _fit(control, data, 2, split)
    assert not numpy.array_equal(host_vars(control)["6.weight"], host_vars(straight)["6.weight"])


@pytest.mark.parametrize("make_optimizer", [
    lambda: optim.SGD(lr=optim.StepDecay(0.05, step_size=3, gamma=0.5), momentum=0.9, nesterov=True,
                      weight_decay=1e-4),
    lambda: optim.RMSprop(lr=1e-3, momentum=0.5, clip_norm=1.0),
    lambda: optim.AdamW(lr=optim.CosineDecay(2e-3, total_steps=10, warmup_steps=2), weight_decay=0.05),
], ids=["sgd-nesterov-step", "rmsprop-momentum-clip", "adamw-cosine"])
def test_resumed_training_equals_uninterrupted_for_each_optimizer(device, data, tmp_path, make_optimizer):
    def fresh():
        return conv_model(device).compile(make_optimizer(), "cross_entropy")

    straight = fresh()
    h_straight = _fit(straight, data, 2, 0.0)
    first = fresh()
    _fit(first, data, 1, 0.0)
    first.save(tmp_path / "ckpt.xpnet", include_optimizer=True)
    resumed = xpnet.load(tmp_path / "ckpt.xpnet", device=device)
    assert type(resumed.optimizer) is type(straight.optimizer)
    h_resumed = _fit(resumed, data, 2, 0.0)
    assert_resumed_matches(device, resumed, straight, h_resumed, h_straight, ["loss", "lr"])


def test_checkpoint_keeps_loss_metrics_and_optimizer_hyperparameters(data, tmp_path):
    x, y = data
    onehot = numpy.eye(10, dtype=numpy.float32)[y]
    opt = optim.SGD(lr=optim.StepDecay(0.05, step_size=3, gamma=0.5), momentum=0.9, nesterov=True,
                    weight_decay=1e-4, clip_norm=2.0)
    model = conv_model().compile(opt, loss="mse", metrics=["accuracy"])
    model.fit(x, onehot, epochs=1, batch_size=16, verbose=0)
    model.optimizer.lr_scale = 0.5  # as ReduceLROnPlateau leaves it
    path = tmp_path / "ckpt.xpnet"
    model.save(path, include_optimizer=True)

    loaded = xpnet.load(path)
    assert loaded.loss_name == "mse" and loaded.metric_names == ["accuracy"]
    o = loaded.optimizer
    assert type(o) is optim.SGD
    assert (o.momentum, o.nesterov, o.weight_decay, o.clip_norm) == (0.9, True, 1e-4, 2.0)
    assert type(o.lr) is optim.StepDecay and (o.lr.lr, o.lr.step_size, o.lr.gamma) == (0.05, 3, 0.5)
    assert o.iterations == 4 and o.lr_scale == 0.5
    assert o.current_lr() == model.optimizer.current_lr()
    assert [len(o.params), len(o.state)] == [len(model.optimizer.params)] * 2
    for mine, theirs in zip(o.state, model.optimizer.state, strict=True):
        numpy.testing.assert_array_equal(mine["velocity"], theirs["velocity"])
    assert loaded.evaluate(x, onehot) == model.evaluate(x, onehot)  # round trip, same shapes: bit-exact

    # weights-only save of a compiled model keeps loss and metrics (a fresh default optimizer)
    model.save(tmp_path / "weights.xpnet")
    light = xpnet.load(tmp_path / "weights.xpnet")
    assert light.loss_name == "mse" and light.metric_names == ["accuracy"]
    assert light.optimizer is not None and light.optimizer.iterations == 0


def test_checkpoint_before_compile_raises_and_writes_nothing(tmp_path):
    model = conv_model()
    with pytest.raises(RuntimeError, match=r"compile\(\)"):
        model.save(tmp_path / "ckpt.xpnet", include_optimizer=True)
    assert list(tmp_path.iterdir()) == []
    model.save(tmp_path / "plain.xpnet")  # a plain save needs no compile
    assert xpnet.load(tmp_path / "plain.xpnet").optimizer is None


# --- 3. canaries: files that try to run code or smuggle in bad data ---------------------
def test_canary_pickle_file_runs_no_code(tmp_path, victim):
    live = tmp_path / "live_sentinel"
    pickle.loads(pickle.dumps(Touch(live)))  # the canary is live: unpickling does create the file
    assert live.exists()
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "model.xpnet"
    path.write_bytes(pickle.dumps(Touch(sentinel)))
    assert_rejected(path, victim, "not an xpnet model file|not a zip")
    assert not sentinel.exists()


def test_canary_pickle_inside_a_model_zip_runs_no_code(saved, tmp_path, victim):
    path, _ = saved
    sentinel = tmp_path / "sentinel"
    payload = pickle.dumps(Touch(sentinel))
    extra = rewrite(path, tmp_path / "extra.xpnet", add={"data.pkl": payload})  # torch-style member
    assert_rejected(extra, victim, r"unexpected members \['data.pkl'\]")
    as_npy = rewrite(path, tmp_path / "as_npy.xpnet", replace={"arrays/6.bias.npy": payload})
    assert_rejected(as_npy, victim, "'6.bias'", "cannot be read safely")
    assert not sentinel.exists()


@pytest.mark.parametrize("declared", ["float32", "object", "|O"])
def test_canary_object_dtype_member_runs_no_code(saved, tmp_path, victim, declared):
    path, model = saved
    live, sentinel = tmp_path / "live_sentinel", tmp_path / "sentinel"
    numpy.load(io.BytesIO(npy_bytes(numpy.array([Touch(live)] * 10, dtype=object), True)), allow_pickle=True)
    assert live.exists()  # the canary is live under allow_pickle=True
    evil = npy_bytes(numpy.array([Touch(sentinel)] * 10, dtype=object), allow_pickle=True)

    def edit(config):
        config["arrays"]["6.bias"]["dtype"] = declared

    bad = rewrite(path, tmp_path / "bad.xpnet", edit, replace={"arrays/6.bias.npy": evil})
    assert_rejected(bad, victim, "'6.bias'", "cannot be read safely|invalid description")
    assert not sentinel.exists()


@pytest.mark.parametrize("cls", ["os.system", "builtins.eval", "Conv2d ", "conv2d", "Layer", "xpnet.layers.ReLU",
                                 "", None, ["ReLU"], {"ReLU": 1}])
def test_canary_unregistered_layer_class(saved, tmp_path, victim, cls):
    path, _ = saved
    sentinel = tmp_path / "sentinel"

    def edit(config):
        entry = config["layers"][2]
        assert entry["class"] == "ReLU"
        entry["class"] = cls
        entry["config"] = {"command": f"touch {sentinel}"}

    bad = rewrite(path, tmp_path / "bad.xpnet", edit)
    assert_rejected(bad, victim, "unknown layer class", re.escape(repr(cls)))
    assert not sentinel.exists()


@pytest.mark.parametrize("entry_edit, pattern", [
    (lambda e: e.update(config={"in_channels": 1, "out_channels": 4, "kernel_size": 3, "name": "x"}),
     "invalid config for layer 'conv2d'"),
    (lambda e: e.update(config={"in_channels": 1, "out_channels": 4, "kernel_size": 3, "bogus": 1}),
     "invalid config for layer 'conv2d'"),
    (lambda e: e.update(config=[1, 2]), "invalid layer entry"),
    (lambda e: e.update(name=["conv2d"]), "invalid layer entry"),
])
def test_bad_layer_config_is_rejected_by_load(saved, tmp_path, entry_edit, pattern):
    path, _ = saved
    bad = rewrite(path, tmp_path / "bad.xpnet", lambda c: entry_edit(c["layers"][0]))
    with pytest.raises(xpnet.ModelFileError, match=pattern) as info:
        xpnet.load(bad)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("version, pattern", [
    (99, rf"written by xpnet format 99; this xpnet reads format <= {FORMAT_VERSION}"),
    (FORMAT_VERSION + 1, rf"format {FORMAT_VERSION + 1}; this xpnet reads format <= {FORMAT_VERSION}"),
    ("1", "invalid format_version '1'"),
    (True, "invalid format_version True"),
    (0, "invalid format_version 0"),
    (1.0, "invalid format_version 1.0"),
    (None, "invalid format_version None"),
])
def test_unknown_format_version(saved, tmp_path, victim, version, pattern):
    path, _ = saved
    bad = rewrite(path, tmp_path / "bad.xpnet", lambda c: c.update(format_version=version))
    assert_rejected(bad, victim, pattern)


@pytest.mark.parametrize("edit, pattern", [
    (lambda c: c.update(format="keras"), "does not describe an xpnet-model file"),
    (lambda c: c.pop("arrays"), "lacks its 'layers' list or 'arrays' table"),
    (lambda c: c.update(layers={"0": "Conv2d"}), "lacks its 'layers' list"),
])
def test_config_without_the_xpnet_header(saved, tmp_path, victim, edit, pattern):
    path, _ = saved
    assert_rejected(rewrite(path, tmp_path / "bad.xpnet", edit), victim, pattern)


def test_missing_and_extra_members(saved, tmp_path, victim):
    path, _ = saved
    missing = rewrite(path, tmp_path / "missing.xpnet", drop=["arrays/6.bias.npy"])
    assert_rejected(missing, victim, r"missing members \['arrays/6.bias.npy'\]")
    no_config = rewrite(path, tmp_path / "no_config.xpnet", drop=["config.json"])
    assert_rejected(no_config, victim, "missing member 'config.json'")
    extra = rewrite(path, tmp_path / "extra.xpnet", add={"arrays/6.extra.npy": npy_bytes(numpy.zeros(3))})
    assert_rejected(extra, victim, r"unexpected members \['arrays/6.extra.npy'\]")
    # described in config.json but absent from the zip
    described = rewrite(path, tmp_path / "described.xpnet",
                        lambda c: c["arrays"].update({"6.extra": spec_of(numpy.zeros(3, "float32"))}))
    assert_rejected(described, victim, r"missing members \['arrays/6.extra.npy'\]")


def _set_spec(name, **changes):
    return lambda config: config["arrays"][name].update(changes)


@pytest.mark.parametrize("edit, pattern", [
    (_set_spec("6.weight", shape=[9, 676]),
     r"truncated or corrupt: array '6.weight' expected float32 \(9, 676\), file holds float32 \(10, 676\)"),
    (_set_spec("6.weight", shape=[6760]), r"array '6.weight' expected float32 \(6760,\)"),
    (_set_spec("6.weight", shape=[1]), "member 'arrays/6.weight.npy' declares .* too large"),
    (_set_spec("6.weight", dtype="float64"), r"expected float64 \(10, 676\), file holds float32"),
    (_set_spec("6.weight", sha256="0" * 64), "'6.weight' does not match its SHA-256"),
    (_set_spec("6.weight", shape=["10", 676]), "'6.weight' has an invalid description"),
    (_set_spec("6.weight", shape=[-10, -676]), "'6.weight' has an invalid description"),
    (_set_spec("6.weight", shape=[10.0, 676]), "'6.weight' has an invalid description"),
    (_set_spec("6.weight", shape=[10**40, 676]), "'6.weight' expected float32"),
    (_set_spec("6.weight", dtype="float16"), "'6.weight' has an invalid description"),
    (lambda c: c["arrays"].update({"6.weight": [10, 676]}), "'6.weight' has an invalid description"),
])
def test_config_disagreeing_with_stored_arrays(saved, tmp_path, victim, edit, pattern):
    path, _ = saved
    assert_rejected(rewrite(path, tmp_path / "bad.xpnet", edit), victim, pattern)


def test_npy_header_claiming_more_data_than_stored(saved, tmp_path, victim):
    path, model = saved
    weight = host_vars(model)["6.weight"]
    raw = npy_bytes(weight)
    header_end = raw.index(b"\n") + 1
    header = raw[:header_end].replace(b"(10, 676)", b"(20, 676)")
    assert len(header) == header_end  # same header length: only the claimed shape changed
    edit = _set_spec("6.weight", shape=[20, 676])
    bad = rewrite(path, tmp_path / "bad.xpnet", edit, replace={"arrays/6.weight.npy": header + raw[header_end:]})
    assert_rejected(bad, victim, "'6.weight' cannot be read safely")


def test_value_changed_without_updating_the_checksum(saved, tmp_path, victim):
    path, model = saved
    weight = host_vars(model)["6.weight"]
    weight[3, 5] += 1
    bad = rewrite(path, tmp_path / "bad.xpnet", replace={"arrays/6.weight.npy": npy_bytes(weight)})
    assert_rejected(bad, victim, "'6.weight' does not match its SHA-256 checksum")


def test_config_over_one_megabyte(saved, tmp_path, victim):
    path, _ = saved
    bad = rewrite(path, tmp_path / "big.xpnet", lambda c: c.update(padding="x" * (1 << 20)))
    assert_rejected(bad, victim, "member 'config.json' declares 10[0-9]{5} bytes, which is too large")


def test_deeply_nested_config_json(saved, tmp_path, victim):
    path, _ = saved
    bad = rewrite(path, tmp_path / "deep.xpnet", replace={"config.json": b"[" * 200_000 + b"]" * 200_000})
    assert_rejected(bad, victim, "config.json is not valid JSON")


def test_zip_bomb_member_is_refused_before_inflating(saved, tmp_path, victim, monkeypatch):
    path, _ = saved
    n = 12_500_000  # 50 MB of float32 zeros; deflates to about 50 kB
    header = npy_bytes(numpy.zeros(0, numpy.float32)).replace(b"(0,)", f"({n},)".encode())
    header = header[:header.index(b"\n") + 1]
    bomb = header + bytes(4 * n)
    edit = _set_spec("6.weight", shape=[n])  # the declared shape allows 50 MB: only the compression refuses it
    bad = rewrite(path, tmp_path / "bomb.xpnet", edit, replace={"arrays/6.weight.npy": bomb},
                  compression=zipfile.ZIP_DEFLATED)
    info = zipfile.ZipFile(bad).getinfo("arrays/6.weight.npy")
    assert info.file_size > 100 * info.compress_size
    inflated = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, pwd=None: inflated.append(name)
                        or real_read(self, name, pwd))
    # xpnet stores members uncompressed, so a stored array is never larger than the file
    assert_rejected(bad, victim, "member '(config.json|arrays/6.weight.npy)' is compressed; xpnet model files "
                                 "store their members uncompressed")
    assert "arrays/6.weight.npy" not in inflated


# --- 4. corruption ------------------------------------------------------------------
def _positions(path):
    """Byte offsets worth flipping: zip directory fields, config.json text, array data."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        start_dir = zf.start_dir
        infos = {i.filename: i for i in zf.infolist()}

    def data_offset(name):
        info = infos[name]
        local = info.header_offset
        name_length = int.from_bytes(data[local + 26:local + 28], "little")
        extra_length = int.from_bytes(data[local + 28:local + 30], "little")
        return local + 30 + name_length + extra_length

    return {
        "local header magic": 0,
        "config.json text": data_offset("config.json") + 40,
        "array data (6.weight)": data_offset("arrays/6.weight.npy") + 500,
        "npy header (0.weight)": data_offset("arrays/0.weight.npy") + 20,
        "directory: entry magic": start_dir,
        "directory: compression method": start_dir + 10,
        "directory: CRC": start_dir + 16,
        "directory: name length": start_dir + 28,
        "directory: file name": start_dir + 46,
        "directory: local header offset": start_dir + 43,
        "end record: directory offset": len(data) - 22 + 17,
        "end record: directory size": len(data) - 22 + 13,
    }


@pytest.mark.parametrize("length", ["0", "8", "22", "half", "len-22", "len-1"])
def test_truncated_file(saved, tmp_path, victim, length):
    path, _ = saved
    data = path.read_bytes()
    n = {"0": 0, "8": 8, "22": 22, "half": len(data) // 2, "len-22": len(data) - 22, "len-1": len(data) - 1}[length]
    bad = tmp_path / "truncated.xpnet"
    bad.write_bytes(data[:n])
    assert_rejected(bad, victim, r"not an xpnet model file|corrupt|missing member")


@pytest.mark.parametrize("where", ["local header magic", "config.json text", "array data (6.weight)",
                                   "npy header (0.weight)", "directory: entry magic",
                                   "directory: compression method", "directory: CRC", "directory: name length",
                                   "directory: file name", "directory: local header offset",
                                   "end record: directory offset", "end record: directory size"])
@pytest.mark.parametrize("mask", [0xFF, 0x01])
def test_flipped_byte(saved, tmp_path, victim, where, mask):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[_positions(path)[where]] ^= mask
    bad = tmp_path / "flipped.xpnet"
    bad.write_bytes(bytes(data))
    assert_rejected(bad, victim, r"\S")


def test_flip_sweep_never_escapes_as_a_raw_error(tmp_path):
    """Every byte of the zip directory (and a sample elsewhere) flipped: ModelFileError or the exact arrays."""
    model = xpnet.Sequential(L.Conv2d(1, 2, 3), L.BatchNorm2d(2), L.Flatten(), L.Linear(2 * 6 * 6, 3), seed=1)
    path = tmp_path / "small.xpnet"
    model.save(path)
    data = path.read_bytes()
    _, expected = read_archive(path)
    start_dir = zipfile.ZipFile(path).start_dir
    rng = numpy.random.default_rng(0)
    positions = sorted(set(range(start_dir, len(data))) | set(rng.choice(start_dir, 150, replace=False).tolist()))
    bad = tmp_path / "bad.xpnet"
    raw_errors, wrong = [], []
    for i in positions:
        for mask in (0xFF, 0x01):
            flipped = bytearray(data)
            flipped[i] ^= mask
            bad.write_bytes(bytes(flipped))
            try:
                _, arrays = read_archive(bad)
            except xpnet.ModelFileError as exc:
                assert str(bad) in str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                raw_errors.append((i, mask, f"{type(exc).__name__}: {exc}"))
                continue
            if arrays.keys() != expected.keys() or any(not numpy.array_equal(arrays[k], expected[k]) for k in arrays):
                wrong.append((i, mask))
    assert raw_errors == [] and wrong == []


def test_missing_file_and_directory(tmp_path, victim):
    before = host_vars(victim)
    missing = tmp_path / "nope.xpnet"
    for load in (xpnet.load, victim.load_weights):
        with pytest.raises(FileNotFoundError, match="nope.xpnet"):
            load(missing)
    folder = tmp_path / "folder.xpnet"
    folder.mkdir()
    assert_rejected(folder, victim, "not a regular file")
    assert_same_vars(host_vars(victim), before)


# --- 5. atomic saves ----------------------------------------------------------------
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "KeyboardInterrupt"])
@pytest.mark.parametrize("include_optimizer", [False, True])
def test_failed_save_leaves_the_old_file_and_no_temporary_files(saved, monkeypatch, data, error, include_optimizer):
    path, model = saved
    old_bytes, listing = path.read_bytes(), sorted(os.listdir(path.parent))
    other = conv_model(seed=5).compile("adam", "cross_entropy")
    other.fit(*data, epochs=1, batch_size=32, verbose=0)
    written = []
    real = xpnet.io.write_array

    def fail_after_first(member, array):
        if written:
            raise error
        written.append(array.shape)
        real(member, array)

    monkeypatch.setattr(xpnet.io, "write_array", fail_after_first)
    with pytest.raises(type(error)):
        other.save(path, include_optimizer=include_optimizer)
    assert written == [(4, 1, 3, 3)]  # it failed half-way, after the first array
    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(path.parent)) == listing
    monkeypatch.undo()
    assert_same_vars(host_vars(xpnet.load(path)), host_vars(model))
    other.save(path, include_optimizer=include_optimizer)  # a save that works replaces the file
    assert_same_vars(host_vars(xpnet.load(path)), host_vars(other))
    assert sorted(os.listdir(path.parent)) == listing


def test_save_into_a_missing_folder_or_onto_a_directory_leaves_no_junk(tmp_path):
    model = conv_model()
    with pytest.raises(FileNotFoundError):
        model.save(tmp_path / "no" / "such" / "model.xpnet")
    assert list(tmp_path.iterdir()) == []
    target = tmp_path / "taken.xpnet"
    target.mkdir()
    with pytest.raises(OSError):
        model.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["taken.xpnet"] and list(target.iterdir()) == []


# --- 6. loading into a model of another architecture ------------------------------------------
def test_load_weights_into_a_different_architecture(saved):
    path, _ = saved
    narrow = conv_model(classes=5)
    before = host_vars(narrow)
    with pytest.raises(xpnet.ModelFileError) as info:
        narrow.load_weights(path)
    message = str(info.value)
    assert str(path) in message and "does not fit this model" in message
    assert r"size mismatch for 6.weight: file (10, 676), model (5, 676)" in message
    assert r"size mismatch for 6.bias: file (10,), model (5,)" in message
    assert_same_vars(host_vars(narrow), before)

    deeper = conv_model(extra=(L.ReLU(), L.Linear(10, 3)))
    before = host_vars(deeper)
    with pytest.raises(xpnet.ModelFileError, match="missing 8.weight; missing 8.bias"):
        deeper.load_weights(path)
    assert_same_vars(host_vars(deeper), before)


def test_load_weights_rejects_a_file_with_unexpected_arrays(tmp_path):
    bigger = conv_model(seed=5, extra=(L.ReLU(), L.Linear(10, 3)))
    path = tmp_path / "bigger.xpnet"
    bigger.save(path)
    model = conv_model()
    before = host_vars(model)
    try:
        with pytest.raises(xpnet.ModelFileError, match="unexpected 8.weight"):
            model.load_weights(path)
    finally:
        assert_same_vars(host_vars(model), before)


def test_checkpoint_with_optimizer_state_of_the_wrong_shape_is_rejected(tmp_path, data):
    model = conv_model().compile("adam", "cross_entropy")
    model.fit(*data, epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "ckpt.xpnet"
    model.save(path, include_optimizer=True)
    wrong = numpy.zeros(5, numpy.float32)
    bad = rewrite(path, tmp_path / "bad.xpnet", lambda c: c["arrays"].update({"optimizer/0/m": spec_of(wrong)}),
                  replace={"arrays/optimizer/0/m.npy": npy_bytes(wrong)})
    with pytest.raises(xpnet.ModelFileError, match="optimizer"):
        xpnet.load(bad)


# --- 7. no code execution paths in the loader -------------------------------------------
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve",
                     "importlib", "pydoc", "runpy"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "import_module", "load_source"}


@pytest.mark.parametrize("module", ["io.py", "model_files.py", "training.py"])
def test_loader_source_has_no_code_execution_paths(module):
    source = (SOURCES / module).read_text()
    assert "allow_pickle=True" not in source and "importlib" not in source and "__import__" not in source
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom):
            found += [node.module] if (node.module or "").split(".")[0] in FORBIDDEN_MODULES else []
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_MODULES | FORBIDDEN_CALLS:
            found.append(node.id)  # bare eval/exec/compile/pickle...: method calls like self.eval() are Attributes
        elif isinstance(node, ast.Attribute) and node.attr in {"loads", "load"} and \
                isinstance(node.value, ast.Name) and node.value.id in FORBIDDEN_MODULES:
            found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
                isinstance(node.value, ast.Constant) and node.value.value is False):
            found.append("allow_pickle not False")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and not any(k.arg == "allow_pickle" for k in node.keywords) and "numpy" in ast.unparse(node.func):
            found.append("numpy.load without allow_pickle=False")
    assert found == []
    assert "allow_pickle=False" in (SOURCES / "io.py").read_text()  # the reader states it explicitly
