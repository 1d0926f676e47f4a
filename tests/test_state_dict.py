"""state_dict / load_state_dict with torch.nn's names, model files of layer trees (format 2 and the
format 1 files of earlier versions), and, where PyTorch is installed, the same residual CNN built
in torch.nn: its state_dict loads strictly, outputs and three SGD-momentum steps agree in float64."""

import json
import zipfile

import numpy
import pytest

import xpnet
from xpnet import layers as L
from xpnet import optim
from xpnet.io import save_archive
from xpnet.models import lenet5, mobilenet_mnist, resnet_mnist


def tree_model(seed=0, dtype="float32"):
    """Nested Sequential, projection and identity shortcuts, Concat, BatchNorm, depthwise and
    pointwise convolutions: the architecture of the cross-check."""
    stem = L.Sequential(L.Conv2d(1, 4, 3, padding=1, bias=False), L.BatchNorm2d(4), L.ReLU())
    down = L.Residual(L.Sequential(L.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), L.BatchNorm2d(8), L.ReLU(),
                                   L.Conv2d(8, 8, 3, padding=1, groups=8), L.Conv2d(8, 8, 1)),
                      L.Sequential(L.Conv2d(4, 8, 1, stride=2, bias=False), L.BatchNorm2d(8)))
    same = L.Residual(L.Sequential(L.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), L.BatchNorm2d(8)))
    mix = L.Concat(L.Conv2d(8, 4, 1), L.Sequential(L.Conv2d(8, 4, 3, padding=1), L.Tanh()))
    return xpnet.Sequential(stem, down, L.ReLU(), same, mix, L.GlobalAvgPool2d(), L.Flatten(), L.Linear(8, 10),
                            seed=seed, dtype=dtype)


EXPECTED_KEYS = [
    "0.0.weight", "0.1.weight", "0.1.bias", "0.1.running_mean", "0.1.running_var", "0.1.num_batches_tracked",
    "1.body.0.weight", "1.body.1.weight", "1.body.1.bias", "1.body.1.running_mean", "1.body.1.running_var",
    "1.body.1.num_batches_tracked", "1.body.3.weight", "1.body.3.bias", "1.body.4.weight", "1.body.4.bias",
    "1.shortcut.0.weight", "1.shortcut.1.weight", "1.shortcut.1.bias", "1.shortcut.1.running_mean",
    "1.shortcut.1.running_var", "1.shortcut.1.num_batches_tracked",
    "3.body.0.weight", "3.body.1.weight", "3.body.1.bias", "3.body.1.running_mean", "3.body.1.running_var",
    "3.body.1.num_batches_tracked",
    "4.branches.0.weight", "4.branches.0.bias", "4.branches.1.0.weight", "4.branches.1.0.bias",
    "7.weight", "7.bias",
]


def test_state_dict_names_shapes_and_dtypes_are_torchs():
    sd = tree_model().state_dict()
    assert list(sd) == EXPECTED_KEYS
    assert sd["1.body.3.weight"].shape == (8, 1, 3, 3)  # depthwise: (C_out, C_in / groups, KH, KW)
    assert sd["0.1.num_batches_tracked"].shape == () and sd["0.1.num_batches_tracked"].dtype == numpy.int64
    assert all(type(v) is numpy.ndarray for v in sd.values())
    assert list(lenet5().state_dict())[:4] == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_state_dict_is_a_copy_and_round_trips_into_another_model():
    a, b = tree_model(seed=1), tree_model(seed=2)
    sd = a.state_dict()
    sd["7.bias"][...] = 99.0
    assert not numpy.any(a.state_dict()["7.bias"] == 99.0)
    assert b.load_state_dict(a.state_dict()) == ([], [])
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        numpy.testing.assert_array_equal(va, vb, err_msg=name)


def test_load_state_dict_checks_everything_first_and_changes_nothing():
    model = tree_model()
    before = model.state_dict()
    bad = dict(before)
    bad["7.weight"] = numpy.zeros((10, 9), numpy.float32)          # wrong shape
    bad["0.1.num_batches_tracked"] = numpy.array(1.5)                # wrong kind
    del bad["3.body.0.weight"]
    bad["extra.weight"] = numpy.zeros(3)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    for part in ("nothing was loaded", "missing keys ['3.body.0.weight']", "unexpected keys ['extra.weight']",
                 "size mismatch for 7.weight: given (10, 9), model (10, 8)",
                 "dtype mismatch for 0.1.num_batches_tracked: given float64, model int64"):
        assert part in message, message
    for name, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, before[name], err_msg=name)


def test_load_state_dict_non_strict_returns_missing_and_unexpected_keys():
    model, other = tree_model(seed=0), tree_model(seed=5)
    partial = {k: v for k, v in other.state_dict().items() if k.startswith("1.")}
    partial["head.weight"] = numpy.zeros(2)
    result = model.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ["head.weight"] and "7.weight" in result.missing_keys
    assert not any(k.startswith("1.") for k in result.missing_keys)
    numpy.testing.assert_array_equal(model.state_dict()["1.body.0.weight"], other.state_dict()["1.body.0.weight"])
    with pytest.raises(TypeError, match="must be a mapping"):
        model.load_state_dict([1, 2])


def test_load_state_dict_takes_float64_arrays_into_a_float32_model_and_moves_them(device):
    model = tree_model().to(device)
    source = tree_model(seed=3).state_dict()
    sd64 = {k: v.astype(numpy.float64) if v.dtype.kind == "f" else v for k, v in source.items()}
    model.load_state_dict(sd64)
    assert {xpnet.device_of(v.value) for _, v in model.variables()} == {device}
    got = model.state_dict()
    assert got["7.weight"].dtype == numpy.float32
    numpy.testing.assert_array_equal(got["7.weight"], sd64["7.weight"].astype(numpy.float32))


@pytest.mark.parametrize("build", [tree_model, resnet_mnist, mobilenet_mnist])
def test_tree_models_save_and_load_bit_identically(tmp_path, build):
    (x, y), _ = xpnet.datasets.load_mnist()
    model = build(seed=0).compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy", ["accuracy"])
    model.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "m.xpnet", include_optimizer=True)
    with zipfile.ZipFile(tmp_path / "m.xpnet") as zf:
        config = json.loads(zf.read("config.json"))
    assert config["format_version"] == 2 and list(config["arrays"])[:1] == [next(iter(model.state_dict()))]
    loaded = xpnet.load(tmp_path / "m.xpnet")
    for (name, want), got in zip(model.state_dict().items(), loaded.state_dict().values()):
        numpy.testing.assert_array_equal(got, want, err_msg=name)
    numpy.testing.assert_array_equal(loaded.predict(x[:16]), model.predict(x[:16]))  # same ops, same shapes
    assert loaded.summary((1, 28, 28), print_fn=None) == model.summary((1, 28, 28), print_fn=None)
    resumed = [loaded.fit(x[64:128], y[64:128], epochs=2, initial_epoch=1, batch_size=32, verbose=0)]
    straight = [model.fit(x[64:128], y[64:128], epochs=2, initial_epoch=1, batch_size=32, verbose=0)]
    assert resumed[0].history["loss"] == straight[0].history["loss"]  # resume equals uninterrupted: bit-exact


def test_format_1_files_of_earlier_versions_still_load(tmp_path):
    """A flat model written by xpnet 0.1 (format 1): "layer_name/param" keys, BatchNorm gamma/beta."""
    model = xpnet.Sequential(L.Conv2d(1, 2, 3), L.BatchNorm2d(2), L.ReLU(), L.Flatten(), L.Linear(2 * 26 * 26, 3),
                             seed=4)
    old_names = {"0.weight": "conv2d/weight", "0.bias": "conv2d/bias", "1.weight": "batch_norm2d/gamma",
                 "1.bias": "batch_norm2d/beta", "1.running_mean": "batch_norm2d/running_mean",
                 "1.running_var": "batch_norm2d/running_var", "4.weight": "linear/weight", "4.bias": "linear/bias"}
    sd = model.state_dict()
    sd["1.running_mean"] += 0.5
    config = {"format": "xpnet-model", "format_version": 1, "xpnet_version": "0.1.0", "dtype": "float32", "seed": 4,
              "layers": [{"class": type(layer).__name__, "name": layer.name, "config": layer.config()}
                         for layer in model.layers]}
    save_archive(tmp_path / "old.xpnet", config, {old: sd[new] for new, old in old_names.items()})
    loaded = xpnet.load(tmp_path / "old.xpnet")
    got = loaded.state_dict()
    for new in old_names:
        numpy.testing.assert_array_equal(got[new], sd[new], err_msg=new)
    assert got["1.num_batches_tracked"] == 0  # format 1 had no counter: it starts at 0, as torch's loader does
    fresh = xpnet.Sequential(*[type(layer)(**layer.config()) for layer in model.layers], seed=9)
    fresh.load_weights(tmp_path / "old.xpnet")
    numpy.testing.assert_array_equal(fresh.state_dict()["1.weight"], sd["1.weight"])


# --- the cross-check against torch.nn (runs where PyTorch is installed) ----------------------------
def torch_tree():
    nn = pytest.importorskip("torch").nn
    stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())

    class Residual(nn.Module):
        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    class Concat(nn.Module):
        def __init__(self, *branches):
            super().__init__()
            self.branches = nn.ModuleList(branches)

        def forward(self, x):
            import torch
            return torch.cat([b(x) for b in self.branches], dim=1)

    down = Residual(nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 8, 1)),
                    nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8)))
    same = Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)))
    mix = Concat(nn.Conv2d(8, 4, 1), nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.Tanh()))
    return nn.Sequential(stem, down, nn.ReLU(), same, mix, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_torch_loads_the_state_dict_strictly_and_three_sgd_momentum_steps_agree():
    torch = pytest.importorskip("torch")
    net = torch_tree().double()
    model = tree_model(seed=7, dtype="float64")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    (x, y), _ = xpnet.datasets.load_mnist(dtype="float64")
    x, y = x[:96], y[:96]
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    numpy.testing.assert_allclose(model.predict(x, batch_size=96), theirs, rtol=1e-10, atol=1e-12)

    model.compile(optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)  # three steps
    sgd = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    for start in range(0, 96, 32):
        sgd.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x[start:start + 32])),
                                                 torch.from_numpy(y[start:start + 32]))
        loss.backward()
        sgd.step()
    for name, value in net.state_dict().items():
        numpy.testing.assert_allclose(model.state_dict()[name], value.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)
    # and back: torch's trained weights into a fresh xpnet model, strictly
    fresh = tree_model(seed=0, dtype="float64")
    fresh.load_state_dict(net.state_dict())
    net.eval()
    with torch.no_grad():
        numpy.testing.assert_allclose(fresh.predict(x), net(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-12)
