"""The examples run end to end (tour.py --quick, tutorial_models.py on a tiny subset) and
docs/how-it-works.md agrees with the code: its shape table matches summary(), its links resolve
and its Python blocks run."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet
from xpnet import layers as L
from xpnet.models import lenet5

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "how-it-works.md"


def run_script(*args, timeout=120):
    """Run a script with this checkout's xpnet first on the path (as pytest's pythonpath does for the
    tests), installed or not."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- examples/tour.py ----------------------------------------------------------------
def test_tour_quick_writes_pictures_and_a_model(tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    out = tmp_path / "tour"
    result = run_script(EXAMPLES / "tour.py", "--quick", "--device", "cpu", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {  # name: (height, width) in pixels at 100 dpi
        "history.png": (350, 900),
        "filters_conv2d.png": (300, 300),      # 8 kernels 1x3x3 in a 3x3 grid
        "filters_conv2d_1.png": (1340, 700),   # 16 rows x 8 columns of 3x3 kernels
        "feature_maps.png": None,
        "confusion_matrix.png": None,
    }
    for name, size in expected.items():
        image = mpimg.imread(str(out / name))
        if size is not None:
            assert image.shape[:2] == size, name
        assert image.shape[0] > 100 and image.shape[1] > 100, name
        assert float(image[..., :3].var()) > 1e-4, f"{name} is blank"
    rows_of_maps = 1 + 6 + 4  # input, six (C, H, W) outputs, four vector outputs (Flatten has none)
    assert mpimg.imread(str(out / "feature_maps.png")).shape[0] == round(100 * (1.2 * rows_of_maps + 0.4))
    model = xpnet.load(out / "tour.xpnet")
    assert [type(layer).__name__ for layer in model.layers][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert "parameters identical: True; predictions agree on 100.0% of 200 test images" in result.stdout
    assert "x_train (300, 1, 28, 28)" in result.stdout
    assert "Epoch 1/1" in result.stdout and "Epoch 2/" not in result.stdout
    if hasattr(xpnet, "compare"):
        assert "PASS" in result.stdout


# --- examples/tutorial_models.py --------------------------------------------------------
TUTORIAL_PARAMETERS = {  # conv: C_out*C_in*9 + C_out; dense: out*in + out
    1: (8 * 9 + 8) + (10 * 8 * 26 * 26 + 10),
    2: (8 * 9 + 8) + (16 * 8 * 9 + 16) + (10 * 16 * 24 * 24 + 10),
    3: (4 * 9 + 4) + (8 * 4 * 9 + 8) + (10 * 8 * 11 * 11 + 10),
    4: (4 * 9 + 4) + (8 * 4 * 9 + 8) + (64 * 8 * 12 * 12 + 64) + (10 * 64 + 10),
}
TUTORIAL_LAYERS = {
    1: ["Conv2d", "ReLU", "Flatten", "Linear"],
    2: ["Conv2d", "ReLU", "Conv2d", "ReLU", "Flatten", "Linear"],
    3: ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Dropout", "Flatten", "Linear"],
    4: ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Dropout", "Linear"],
}


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_tutorial_architectures(number):
    module = load_example("tutorial_models")
    model = module.MODELS[number]()
    assert [type(layer).__name__ for layer in model.layers] == TUTORIAL_LAYERS[number]
    assert model.num_parameters() == TUTORIAL_PARAMETERS[number]
    assert model.output_shape((1, 28, 28)) == (10,)
    convs = [layer for layer in model.layers if isinstance(layer, L.Conv2d)]
    assert all(conv.kernel_size == (3, 3) for conv in convs)
    assert [layer.p for layer in model.layers if isinstance(layer, L.Dropout)] == {3: [0.2], 4: [0.1]}.get(number, [])


def parse_table(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) <= {" ", ""}
    return header, [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_tutorial_models_script_prints_the_table():
    result = run_script(EXAMPLES / "tutorial_models.py", "--epochs", "1", "--limit", "150", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    header, rows = parse_table(result.stdout)
    assert header[:5] == ["model", "layers", "parameters", "s/epoch (150 train images)",
                          "test accuracy (150 images)"]
    assert header[5:] == ["tutorial s/epoch (scaled to 150)", "speedup per epoch", "tutorial accuracy"]
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4]
    tutorial = 10_528 / 10_000 * 150
    for row in rows:
        number = int(row[0])
        assert int(row[2].replace(",", "")) == TUTORIAL_PARAMETERS[number]
        seconds = float(row[3])
        accuracy = float(row[4].rstrip("%"))
        assert 0 <= seconds < 60 and 0 <= accuracy <= 100  # printed as %.2f: an epoch under 5 ms shows 0.00
        assert row[5] == f"{tutorial:,.0f}"
        speedup = float(row[6].rstrip("x").replace(",", ""))
        assert tutorial / (seconds + 0.005) - 1 <= speedup <= tutorial / max(seconds - 0.005, 1e-9) + 1
        assert "63-83%" in row[7]
    assert "10,528 s for one epoch of 10,000 images" in result.stdout


def test_tutorial_models_script_selects_and_rejects_models():
    result = run_script(EXAMPLES / "tutorial_models.py", "--models", "3", "--epochs", "1", "--limit", "64",
                        "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    _, rows = parse_table(result.stdout)
    assert [row[0] for row in rows] == ["3"]
    bad = run_script(EXAMPLES / "tutorial_models.py", "--models", "5")
    assert bad.returncode == 2
    assert "--models takes numbers 1-4 separated by commas, got '5'" in bad.stderr


def test_tutorial_data_falls_back_to_the_built_in_subset(monkeypatch, tmp_path):
    module = load_example("tutorial_models")
    monkeypatch.setattr(module, "SHARED_MNIST", tmp_path / "missing")
    ((x, y), (xt, yt)), source = module.load_data(limit=10)
    assert source == "built-in subset"
    (bx, by), (bxt, byt) = xpnet.datasets.load_mnist()
    numpy.testing.assert_array_equal(x, bx[:10])
    numpy.testing.assert_array_equal(yt, byt[:10])


# --- docs/how-it-works.md --------------------------------------------------------------
SUMMARY_ROW = re.compile(r"^(\w+ \(\w+\))\s+\(None, ([\d, ]+)\)\s+([\d,]+)$")
DOC_ROW = re.compile(r"^\| (\w+ \(\w+\)) \| \(N, ([\d, ]+)\) \| ([\d,]+) \|")


def test_doc_shape_table_matches_summary():
    text = lenet5().summary((1, 28, 28), print_fn=None)
    printed = [m.groups() for m in map(SUMMARY_ROW.match, text.splitlines()) if m]
    documented = [m.groups() for m in map(DOC_ROW.match, DOC.read_text().splitlines()) if m]
    assert len(printed) == 12
    assert documented == printed
    total = re.search(r"Total params: ([\d,]+)", text).group(1)
    assert f"Total: {total} parameters" in DOC.read_text()


def test_doc_links_resolve():
    links = re.findall(r"\]\((\.\./[^)#]+)\)", DOC.read_text())
    assert {"../xpnet/ops/conv.py", "../xpnet/ops/im2col.py", "../xpnet/ops/pool.py", "../xpnet/ops/loss.py",
            "../xpnet/optim.py"} <= set(links)
    missing = [link for link in links if not (DOC.parent / link).resolve().is_file()]
    assert missing == []


def test_doc_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["model"].optimizer.iterations == 1


@pytest.mark.parametrize("model", ["resnet", "mobilenet"])
def test_tree_model_example_trains_and_reports(model):
    result = run_script(EXAMPLES / "resnet_mnist.py", "--model", model, "--epochs", "1", "--train-images", "128",
                        "--test-images", "200", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{model}: [\d,]+ parameters, \d+ state_dict entries; 128 training images", result.stdout, re.M)
    assert re.search(r"^test accuracy \d+\.\d\d% on 200 images; \d+ s, [\d,]+ images/s$", result.stdout, re.M)
