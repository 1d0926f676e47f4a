"""Interop: safetensors weights both ways, ONNX export checked by onnx.checker and onnxruntime,
and the torch.nn route (each part skips where its optional package is not installed)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet
from xpnet import layers as L
from xpnet.cli import main
from xpnet.models import lenet5, resnet_mnist

ROOT = Path(__file__).resolve().parents[1]


def mnist_batch(n):
    (x, _), _ = xpnet.datasets.load_mnist()
    return x[:n]


def trained(model):
    """A model whose batch-norm statistics and weights moved off their initial values."""
    (x, y), _ = xpnet.datasets.load_mnist()
    model.compile(xpnet.optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    model.fit(x[:128], y[:128], epochs=1, batch_size=64, verbose=0)
    return model


# --- safetensors ---------------------------------------------------------------------------
def test_safetensors_round_trip_keeps_every_array(tmp_path):
    pytest.importorskip("safetensors")
    model = trained(resnet_mnist(seed=1))
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    other = resnet_mnist(seed=2)
    other.load_weights(path)
    for (name, want), got in zip(model.state_dict().items(), other.state_dict().values()):
        numpy.testing.assert_array_equal(got, want, err_msg=name)
    from safetensors.numpy import load_file
    stored = load_file(str(path))
    assert set(stored) == set(model.state_dict()) and stored["1.num_batches_tracked"].dtype == numpy.int64


def test_safetensors_mismatch_changes_nothing_and_lists_the_problems(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "lenet.safetensors"
    lenet5(seed=0).save_weights(path)
    victim = xpnet.Sequential(L.Conv2d(1, 6, 5, padding=2), L.ReLU(), L.Flatten(), L.Linear(6 * 28 * 28, 10), seed=3)
    before = victim.state_dict()
    with pytest.raises(xpnet.ModelFileError, match=r"lenet\.safetensors: does not fit this model: .*nothing was "
                                                  r"loaded: .*unexpected keys .*size mismatch for 3\.weight"):
        victim.load_weights(path)
    for name, value in victim.state_dict().items():
        numpy.testing.assert_array_equal(value, before[name])


def test_a_corrupt_safetensors_file_is_a_model_file_error(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(xpnet.ModelFileError, match="bad.safetensors: not a readable safetensors file"):
        lenet5().load_weights(path)


def test_safetensors_without_the_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match=r'pip install "xpnet\[safetensors\]"'):
        lenet5().save_weights(tmp_path / "w.safetensors")


def test_safetensors_written_by_torch_loads_and_ours_loads_into_torch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file, save_file

    from benchmarks.torch_models import to_torch
    model = trained(resnet_mnist(seed=4))
    model.save_weights(tmp_path / "ours.safetensors")
    net = to_torch(resnet_mnist(seed=9), torch)
    net.load_state_dict(load_file(str(tmp_path / "ours.safetensors")), strict=True)
    net.eval()
    x = mnist_batch(32)
    with torch.no_grad():
        numpy.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), model.predict(x), rtol=1e-4, atol=1e-4)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "theirs.safetensors"))
    back = resnet_mnist(seed=5).load_weights(tmp_path / "theirs.safetensors")
    numpy.testing.assert_array_equal(back.predict(x), model.predict(x))  # the same weights, the same ops


# --- ONNX --------------------------------------------------------------------------------------
def _run_onnx(path, x):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


LAYERS = {  # every layer type, in a small model: (layers, per-sample input shape)
    "Conv2d same stride 2": ([L.Conv2d(3, 4, 3, stride=2, padding="same"),
                              L.Conv2d(4, 2, (2, 3), padding=((0, 1), (2, 0)))], (3, 9, 8)),
    "Conv2d groups dilation": ([L.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, bias=False)], (4, 7, 7)),
    "ConvTranspose2d": ([L.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
                         L.ConvTranspose2d(6, 2, (2, 3), stride=(3, 1), padding=(0, 1), output_padding=(2, 0),
                                           dilation=(1, 2), bias=False)], (4, 5, 3)),
    "MaxPool2d padded": ([L.MaxPool2d(3, stride=2, padding=1)], (2, 7, 6)),
    "MinPool2d": ([L.MinPool2d(2)], (2, 6, 6)),
    "AvgPool2d counting pads": ([L.AvgPool2d(3, stride=2, padding=1)], (2, 7, 7)),
    "AvgPool2d not counting pads": ([L.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)], (2, 5, 5)),
    "GlobalAvgPool2d": ([L.GlobalAvgPool2d(), L.Linear(3, 2)], (3, 5, 4)),
    "GlobalAvgPool2d keepdims": ([L.GlobalAvgPool2d(keepdims=True)], (3, 5, 4)),
    "AdaptiveAvgPool2d uniform bins": ([L.AdaptiveAvgPool2d((3, 2))], (2, 6, 8)),
    "AdaptiveAvgPool2d 1x1": ([L.AdaptiveAvgPool2d(1), L.Flatten(), L.Linear(3, 2)], (3, 5, 7)),
    "AdaptiveAvgPool2d None": ([L.AdaptiveAvgPool2d((None, 2))], (2, 5, 6)),
    "Linear Flatten": ([L.Flatten(), L.Linear(2 * 3 * 3, 4), L.Linear(4, 3, bias=False)], (2, 3, 3)),
    "BatchNorm2d Dropout": ([L.BatchNorm2d(3), L.Dropout(0.5)], (3, 4, 4)),
    "BatchNorm1d": ([L.Flatten(), L.Linear(12, 5), L.BatchNorm1d(5), L.BatchNorm1d(5, affine=False)], (3, 2, 2)),
    "BatchNorm1d (N, C, L)": ([L.BatchNorm1d(3), L.BatchNorm1d(3, affine=False, eps=1e-3)], (3, 7)),
    "LayerNorm": ([L.LayerNorm((2, 4, 4)), L.LayerNorm(4, bias=False),
                   L.LayerNorm((4, 4), elementwise_affine=False)], (2, 4, 4)),
    "GroupNorm": ([L.Conv2d(2, 6, 3, padding=1), L.GroupNorm(3, 6), L.GroupNorm(6, 6, affine=False)], (2, 5, 4)),
    "Identity Dropout2d": ([L.Identity(), L.Dropout2d(0.5), L.Conv2d(2, 3, 1)], (2, 4, 4)),
    "activations": ([L.ReLU(), L.LeakyReLU(0.2), L.Sigmoid(), L.Tanh()], (2, 3, 3)),
    "GELU": ([L.GELU()], (2, 3, 3)),
    "GELU tanh": ([L.GELU(approximate="tanh")], (2, 3, 3)),
    "Softmax": ([L.Flatten(), L.Softmax()], (2, 2, 2)),
    "Softmax channels": ([L.Softmax(axis=1)], (3, 2, 2)),
    "Upsample": ([L.Upsample((2, 3))], (2, 3, 2)),
    "Residual Concat Sequential": ([L.Residual(L.Sequential(L.Conv2d(2, 2, 3, padding=1), L.ReLU())),
                                    L.Concat(L.Conv2d(2, 3, 1), L.MaxPool2d(3, 1, 1)),
                                    L.Residual(L.Conv2d(5, 4, 3, stride=2, padding=1), L.Conv2d(5, 4, 1, stride=2))],
                                   (2, 6, 6)),
}


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_onnx_export_of_every_layer_matches_predict(case, tmp_path):
    onnx = pytest.importorskip("onnx")
    layers, shape = LAYERS[case]
    model = xpnet.Sequential(*layers, seed=3)
    if any(isinstance(layer, (L.BatchNorm2d, L.BatchNorm1d, L.LayerNorm, L.GroupNorm))
           for _, layer in model.named_layers()):
        for name, value in model.state_dict().items():  # non-trivial statistics and scales
            if "running" in name or name.endswith("weight"):
                spread = numpy.linspace(0.5, 1.5, value.size).reshape(value.shape)
                model.load_state_dict({name: numpy.abs(value) + spread}, strict=False)
    path = tmp_path / "model.onnx"
    model.export(path, shape)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    names = {init.name for init in proto.graph.initializer}
    assert {k for k in model.state_dict() if not k.endswith("num_batches_tracked")} <= names
    rng = numpy.random.default_rng(0)
    for batch in (1, 64):
        x = rng.standard_normal((batch, *shape)).astype(numpy.float32)
        numpy.testing.assert_allclose(_run_onnx(path, x), model.predict(x), rtol=1e-4, atol=1e-4, err_msg=case)


@pytest.mark.parametrize("build", [lenet5, resnet_mnist])
def test_onnx_export_of_trained_lenet_and_resnet(build, tmp_path):
    pytest.importorskip("onnx")
    model = trained(build(seed=0))
    model.export(tmp_path / "m.onnx", (1, 28, 28))
    for batch in (1, 64):
        x = mnist_batch(batch)
        numpy.testing.assert_allclose(_run_onnx(tmp_path / "m.onnx", x), model.predict(x), rtol=1e-4, atol=1e-4)


def test_export_refuses_unknown_formats_and_bad_shapes(tmp_path):
    model = lenet5()
    with pytest.raises(ValueError, match=r"unknown format '\.tflite'; supported: \.onnx"):
        model.export(tmp_path / "m.tflite", (1, 28, 28))
    pytest.importorskip("onnx")
    with pytest.raises(xpnet.ShapeError, match=r"input samples of shape \(1, 20, 20\) do not fit the model"):
        model.export(tmp_path / "m.onnx", (1, 20, 20))
    assert not (tmp_path / "m.onnx").exists()


def test_a_layer_without_a_mapping_is_named(tmp_path, monkeypatch):
    pytest.importorskip("onnx")

    class Square(L.Layer):
        def forward(self, x, train=False):
            return x * x
    with pytest.raises(NotImplementedError, match=r"odd \(Square\) cannot be exported to ONNX"):
        xpnet.Sequential(L.ReLU(), Square(name="odd"), seed=0).export(tmp_path / "m.onnx", (3,))


def test_adaptive_pooling_with_bins_onnx_cannot_express_is_refused(tmp_path):
    pytest.importorskip("onnx")
    model = xpnet.Sequential(L.Conv2d(1, 2, 3), L.AdaptiveAvgPool2d((2, 3), name="adapt"), seed=0)
    with pytest.raises(NotImplementedError, match=r"adapt \(AdaptiveAvgPool2d\) cannot be exported to ONNX for "
                                                  r"input H x W 5x7: its 2x3 bins are not uniform"):
        model.export(tmp_path / "m.onnx", (1, 7, 9))
    assert not (tmp_path / "m.onnx").exists()
    model.export(tmp_path / "m.onnx", (1, 8, 8))  # 6 x 6 after the convolution: uniform bins


def test_onnx_without_the_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "xpnet\[onnx\]"'):
        lenet5().export(tmp_path / "m.onnx", (1, 28, 28))


def test_cli_exports_a_model_file(tmp_path, capsys):
    pytest.importorskip("onnx")
    model = trained(resnet_mnist(seed=2))
    model.save(tmp_path / "resnet.xpnet")
    assert main(["export", str(tmp_path / "resnet.xpnet"), str(tmp_path / "resnet.onnx")]) == 0
    assert "saved" in capsys.readouterr().out
    x = mnist_batch(8)
    numpy.testing.assert_allclose(_run_onnx(tmp_path / "resnet.onnx", x), model.predict(x), rtol=1e-4, atol=1e-4)
    assert main(["export", str(tmp_path / "resnet.xpnet"), str(tmp_path / "x.onnx"), "--input-shape", "3,9,9"]) == 2
    assert re.search(r"xpnet export: error: input samples of shape \(3, 9, 9\)", capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["export", "m.xpnet", "o.onnx", "--input-shape", "1,x,28"])


# --- PyTorch, without a dependency ------------------------------------------------------------
def test_the_torch_interop_example_runs():
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "torch_interop.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "outputs agree" in result.stdout and "max |difference|" in result.stdout
