"""The command line: `xpnet info`, `xpnet train` on a small IDX folder, bad arguments, the console script."""

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy
import pytest

import xpnet
from tests.test_datasets import write_mnist
from tests.test_training import mnist
from xpnet.cli import main

no_gpu = pytest.mark.skipif(xpnet.gpu_available(), reason="checks the CPU fallback without a usable GPU")


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory):
    """A folder with the four IDX files of 600 training and 200 test images from the built-in data."""
    (x, y), (xt, yt) = mnist()
    as_raw = lambda a: numpy.rint(a[:, 0] * 255).astype(numpy.uint8)  # noqa: E731
    folder = tmp_path_factory.mktemp("mnist")
    return write_mnist(folder, as_raw(x[:600]), y[:600].astype(numpy.uint8),
                       as_raw(xt[:200]), yt[:200].astype(numpy.uint8))


def test_info_prints_versions_and_devices(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^xpnet\s+{re.escape(xpnet.__version__)}$", out, re.M)
    assert re.search(rf"^numpy\s+{re.escape(numpy.__version__)} \(BLAS: .+\)$", out, re.M)
    assert re.search(r"^python\s+\d+\.\d+", out, re.M)
    assert re.search(r"^cupy\s+", out, re.M)
    assert re.search(r"^device\s+cpu$", out, re.M)
    if not xpnet.gpu_available():
        assert "not usable" in out


def test_train_writes_a_loadable_model_and_a_plot(tmp_path, small_mnist, capsys):
    out_file = tmp_path / "model.xpnet"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the default device "auto" falls back silently
        code = main(["train", "--epochs", "3", "--data", str(small_mnist), "--out", str(out_file),
                     "--verbose", "0", "--batch-size", "32"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Training LeNet-5 on 600 images" in out and "testing on 200" in out and "3 epochs, batch 32" in out
    match = re.search(r"test accuracy (\d+\.\d+)% \(loss (\d+\.\d+)\); training ([\d,]+) images/s", out)
    assert match, out
    accuracy = float(match.group(1)) / 100
    assert accuracy > 0.5  # LeNet-5 learns something from 600 images in three epochs
    assert int(match.group(3).replace(",", "")) > 0
    assert f"saved {out_file}" in out
    model = xpnet.load(out_file)
    assert model.num_parameters() == 61706
    (_, _), (xt, yt) = xpnet.datasets.load_mnist(small_mnist)
    assert model.evaluate(xt, yt)["accuracy"] == pytest.approx(accuracy, abs=5e-5)
    png = out_file.with_suffix(".png")
    if importlib.util.find_spec("matplotlib") is None:
        assert not png.exists()
        return
    assert f"saved {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.png", "model.xpnet"]


@no_gpu
def test_train_device_cuda_falls_back_with_a_warning(tmp_path, capsys):
    (x, y), (xt, yt) = mnist()
    as_raw = lambda a: numpy.rint(a[:, 0] * 255).astype(numpy.uint8)  # noqa: E731
    folder = write_mnist(tmp_path / "tiny", as_raw(x[:64]), y[:64].astype(numpy.uint8),
                         as_raw(xt[:32]), yt[:32].astype(numpy.uint8))
    plot = tmp_path / "curves.png"
    with pytest.warns(RuntimeWarning, match="'cuda'.*using the CPU") as caught:
        code = main(["train", "--device", "cuda", "--epochs", "1", "--data", str(folder),
                     "--out", str(tmp_path / "m.xpnet"), "--plot", str(plot), "--verbose", "0"])
    assert code == 0 and len([w for w in caught if w.category is RuntimeWarning]) == 1
    out, err = capsys.readouterr()
    assert "device cpu" in out and "test accuracy" in out
    assert (tmp_path / "m.xpnet").is_file()
    if importlib.util.find_spec("matplotlib") is None:  # an optional extra: the plot is skipped, saying why
        assert not plot.exists() and '--plot needs matplotlib: pip install "xpnet[viz]"' in err
    else:
        assert plot.is_file()


@pytest.mark.parametrize("argv", [
    [], ["bogus"], ["train", "--epochs", "abc"], ["train", "--epochs", "0"], ["train", "--epochs", "-1"],
    ["train", "--batch-size", "0"], ["train", "--lr", "0"], ["train", "--lr", "nan"], ["train", "--verbose", "5"],
    ["train", "--unknown-flag"], ["info", "extra"],
    ["compare", "--steps", "0"], ["compare", "--steps", "x"], ["compare", "--a", "tpu"],
    ["compare", "--b", "cpu:int8"], ["compare", "--lr", "-1"], ["compare", "--seed", "-1"],
    ["compare", "--batch-size", "0"], ["compare", "--bogus"], ["compare", "extra"],
])
def test_bad_arguments_exit_with_usage_error(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: xpnet" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


@pytest.mark.parametrize("make, match", [
    (lambda tmp: ["--data", str(tmp / "no-such-folder")], "no-such-folder"),
    (lambda tmp: ["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_data_or_device_fail_cleanly(make, match, tmp_path, capsys):
    code = main(["train", "--epochs", "1", "--out", str(tmp_path / "m.xpnet"), *make(tmp_path)])
    assert code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "m.xpnet").exists()


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"xpnet {xpnet.__version__}"


def _installed() -> bool:
    """True when this Python has xpnet installed (pip install), not merely a build's xpnet.egg-info in
    the checkout, which pytest's pythonpath puts on sys.path."""
    sites = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return any(Path(dist.locate_file("")).resolve() in sites for dist in importlib.metadata.distributions(name="xpnet"))


def test_module_entry_points():
    for module in ("xpnet", "xpnet.cli"):
        result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"xpnet {xpnet.__version__}"


@pytest.mark.skipif(not _installed(), reason="xpnet is not installed (pip install -e .): no console script to find")
def test_console_script_entry_point():
    beside = Path(sys.executable).with_name("xpnet")  # a venv's bin, activated or not
    script = str(beside) if beside.is_file() else shutil.which("xpnet")
    assert script is not None, "xpnet is installed but its console script `xpnet` is not"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"xpnet {xpnet.__version__}"


@pytest.mark.parametrize("model, title", [("resnet", "ResNet"), ("mobilenet", "MobileNet")])
def test_train_other_models_writes_a_loadable_tree(model, title, tmp_path, small_mnist, capsys):
    code = main(["train", "--model", model, "--epochs", "1", "--data", str(small_mnist), "--verbose", "0",
                 "--out", str(tmp_path / f"{model}.xpnet"), "--device", "cpu"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"Training {title} on 600 images" in out and "1 epochs, batch 64" in out
    loaded = xpnet.load(tmp_path / f"{model}.xpnet")
    assert any(layer.children() for layer in loaded.layers)  # a tree, not a flat list


@pytest.mark.parametrize("command", ["train", "compare", "export"])
def test_every_option_says_what_it_does_and_its_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    body = text.split("options:", 1)[1]
    options = re.findall(r"(--[a-z-]+)", body)
    for option in sorted(set(options) - {"--help", "--no-resync"}):
        after = body.split(f"{option} ", 1)[1][:220]
        assert "default" in after, f"{command} {option}: {after}"
